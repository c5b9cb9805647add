# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mp_global_optspecs
    string join \n q/quiet json h/help V/version
end

function __fish_mp_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mp_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mp_using_subcommand
    set -l cmd (__fish_mp_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mp -n "__fish_mp_needs_command" -s q -l quiet -d 'Print only errors and the code'
complete -c mp -n "__fish_mp_needs_command" -l json -d 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
complete -c mp -n "__fish_mp_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mp -n "__fish_mp_needs_command" -s V -l version -d 'Print version'
complete -c mp -n "__fish_mp_needs_command" -f -a "signal" -d 'Run a signaling server that pairs senders and receivers'
complete -c mp -n "__fish_mp_needs_command" -f -a "send" -d 'Send files, folders, stdin or a text; prints the code to give to the receiver'
complete -c mp -n "__fish_mp_needs_command" -f -a "receive" -d 'Receive what the sender offers, given its code'
complete -c mp -n "__fish_mp_needs_command" -f -a "generate" -d 'Write shell completions and man pages (for packagers and this repository)'
complete -c mp -n "__fish_mp_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mp -n "__fish_mp_using_subcommand signal" -l listen -d 'Address and port to listen on' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l room-timeout -d 'Seconds a room may live, from its first client, before the server closes it' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l max-clients -d 'Most connections served at once' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -s q -l quiet -d 'Print only errors and the code'
complete -c mp -n "__fish_mp_using_subcommand signal" -l json -d 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
complete -c mp -n "__fish_mp_using_subcommand signal" -s h -l help -d 'Print help'
complete -c mp -n "__fish_mp_using_subcommand send" -l text -d 'Send this short text instead of files; the receiver prints it' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l name -d 'The name the receiver gets for standard input (`mp send -`)' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l code -d 'Use this code instead of a generated one (`<number>-<anything>`)' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l signal -d 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l timeout -d 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l bind -d 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l stun -d 'STUN server(s) for finding this machine\'s public address, e.g. stun:host:3478 (default: what the signaling server hands out)' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l turn -d 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l turn-user -d 'User name for --turn' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l turn-password -d 'Password for --turn' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l sctp-mtu -d 'SCTP packet size in bytes, for tuning (default: 1191, or 16000 when --bind names only loopback addresses)' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l relay -d 'Only ever connect through a TURN relay, so the other side never learns this machine\'s address'
complete -c mp -n "__fish_mp_using_subcommand send" -s q -l quiet -d 'Print only errors and the code'
complete -c mp -n "__fish_mp_using_subcommand send" -l json -d 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
complete -c mp -n "__fish_mp_using_subcommand send" -s h -l help -d 'Print help'
complete -c mp -n "__fish_mp_using_subcommand receive" -s o -l output -d 'Where to write: an existing folder, a new name for the single file or folder offered, or `-` for standard output (a single file or stream only)' -r -F
complete -c mp -n "__fish_mp_using_subcommand receive" -l signal -d 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l timeout -d 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l bind -d 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l stun -d 'STUN server(s) for finding this machine\'s public address, e.g. stun:host:3478 (default: what the signaling server hands out)' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l turn -d 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l turn-user -d 'User name for --turn' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l turn-password -d 'Password for --turn' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l sctp-mtu -d 'SCTP packet size in bytes, for tuning (default: 1191, or 16000 when --bind names only loopback addresses)' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -s y -l yes -d 'Accept the offer without asking'
complete -c mp -n "__fish_mp_using_subcommand receive" -l overwrite -d 'Replace existing files and merge into existing folders (never through a symbolic link)'
complete -c mp -n "__fish_mp_using_subcommand receive" -l relay -d 'Only ever connect through a TURN relay, so the other side never learns this machine\'s address'
complete -c mp -n "__fish_mp_using_subcommand receive" -s q -l quiet -d 'Print only errors and the code'
complete -c mp -n "__fish_mp_using_subcommand receive" -l json -d 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
complete -c mp -n "__fish_mp_using_subcommand receive" -s h -l help -d 'Print help'
complete -c mp -n "__fish_mp_using_subcommand generate" -s q -l quiet -d 'Print only errors and the code'
complete -c mp -n "__fish_mp_using_subcommand generate" -l json -d 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
complete -c mp -n "__fish_mp_using_subcommand generate" -s h -l help -d 'Print help'
complete -c mp -n "__fish_mp_using_subcommand help; and not __fish_seen_subcommand_from signal send receive generate help" -f -a "signal" -d 'Run a signaling server that pairs senders and receivers'
complete -c mp -n "__fish_mp_using_subcommand help; and not __fish_seen_subcommand_from signal send receive generate help" -f -a "send" -d 'Send files, folders, stdin or a text; prints the code to give to the receiver'
complete -c mp -n "__fish_mp_using_subcommand help; and not __fish_seen_subcommand_from signal send receive generate help" -f -a "receive" -d 'Receive what the sender offers, given its code'
complete -c mp -n "__fish_mp_using_subcommand help; and not __fish_seen_subcommand_from signal send receive generate help" -f -a "generate" -d 'Write shell completions and man pages (for packagers and this repository)'
complete -c mp -n "__fish_mp_using_subcommand help; and not __fish_seen_subcommand_from signal send receive generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
