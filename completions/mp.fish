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
complete -c mp -n "__fish_mp_needs_command" -f -a "partial" -d 'List the partial data interrupted transfers left in a folder, or remove it'
complete -c mp -n "__fish_mp_using_subcommand signal" -l listen -d 'Address and port to listen on' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l room-timeout -d 'Seconds a room may live, from its first client, before the server closes it' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l drain-timeout -d 'Seconds open rooms may go on after SIGTERM, which stops new clients at once' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l redis -d 'Keep rooms in the Redis at this URL (redis://HOST:PORT, or redis://:PASSWORD@HOST:PORT/DB) instead of in memory, so that several instances behind one load balancer act as one; prefer the environment variable, which `ps` does not show' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l wait-timeout -d 'Seconds a room may wait for its second member (within --room-timeout)' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l max-clients -d 'Most connections served at once' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l handshake-timeout -d 'Seconds a new connection may take for its WebSocket handshake, and again for its first message' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l max-handshakes -d 'Most WebSocket handshakes under way at once (past it, new connections are closed)' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l max-handshakes-per-addr -d 'Most WebSocket handshakes under way from one client address (an IPv6 /64); the oldest makes way for a new one' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l max-waiting-per-addr -d 'Most rooms one client address (an IPv6 /64) may keep waiting for their second member' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l joins-per-minute -d 'Joins one client address (an IPv6 /64) may make per minute (all at once, then one every 60/N seconds)' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l tls-cert -d 'Serve wss:// and https:// with this certificate chain (PEM, the server\'s certificate first). Needs --tls-key' -r -F
complete -c mp -n "__fish_mp_using_subcommand signal" -l tls-key -d 'The private key of --tls-cert (PEM: PKCS #8, PKCS #1 or SEC1)' -r -F
complete -c mp -n "__fish_mp_using_subcommand signal" -l trust-proxy -d 'Take each client\'s address from the header a reverse proxy writes: X-Forwarded-For (its rightmost entry, the default) or Forwarded (RFC 7239). Only when every connection comes through your proxy: anyone reaching the server directly could claim any address' -r -f -a "x-forwarded-for\t'`X-Forwarded-For: client, proxy1, proxy2`: the rightmost entry, which the last proxy (yours) appended or set'
forwarded\t'RFC 7239 `Forwarded: for=…`: the `for` of the rightmost element'"
complete -c mp -n "__fish_mp_using_subcommand signal" -l turn -d 'TURN server URL(s) to hand out to clients with short-lived credentials, e.g. turn:relay.example.org:3478. Needs --turn-secret' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l turn-secret -d 'Secret shared with the TURN server (coturn\'s static-auth-secret); prefer the environment variable, which `ps` does not show' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l turn-ttl -d 'Seconds a handed-out TURN credential stays valid' -r
complete -c mp -n "__fish_mp_using_subcommand signal" -l no-stun -d 'Do not answer STUN Binding requests on UDP at the --listen address and port'
complete -c mp -n "__fish_mp_using_subcommand signal" -s q -l quiet -d 'Print only errors and the code'
complete -c mp -n "__fish_mp_using_subcommand signal" -l json -d 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
complete -c mp -n "__fish_mp_using_subcommand signal" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mp -n "__fish_mp_using_subcommand send" -l text -d 'Send this short text instead of files; the receiver prints it (`-`: read it from standard input)' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l name -d 'The name the receiver gets for standard input (`mp send -`)' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l code -d 'Use this code instead of a generated one (`<number>-<anything>`)' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l qr -d 'Also write the QR code of the link to FILE, as SVG or PNG (by its extension), with the code written beneath, for printing' -r -F
complete -c mp -n "__fish_mp_using_subcommand send" -l signal -d 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l timeout -d 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l bind -d 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l stun -d 'STUN server(s) for finding this machine\'s public address, e.g. stun:host:3478 (default: what the signaling server hands out)' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l turn -d 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l turn-user -d 'User name for --turn' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l turn-password -d 'Password for --turn' -r
complete -c mp -n "__fish_mp_using_subcommand send" -l signal-ca -d 'Also trust the certificates in this PEM file as roots for a wss:// signaling server (a private CA, or a server\'s self-signed certificate), besides the public web CAs' -r -F
complete -c mp -n "__fish_mp_using_subcommand send" -l skip-unsafe -d 'Leave out files and folders whose names the receiver would refuse (a control character, say) instead of stopping; each is named in a warning'
complete -c mp -n "__fish_mp_using_subcommand send" -l no-qr -d 'Do not draw the QR code of the link on the terminal'
complete -c mp -n "__fish_mp_using_subcommand send" -l relay -d 'Only ever connect through a TURN relay, so the other side never learns this machine\'s address'
complete -c mp -n "__fish_mp_using_subcommand send" -s q -l quiet -d 'Print only errors and the code'
complete -c mp -n "__fish_mp_using_subcommand send" -l json -d 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
complete -c mp -n "__fish_mp_using_subcommand send" -s h -l help -d 'Print help'
complete -c mp -n "__fish_mp_using_subcommand receive" -l code-file -d 'Read the code (or link) from the first line of FILE, `-` for standard input: for scripts that keep it in a file rather than in the environment' -r -F
complete -c mp -n "__fish_mp_using_subcommand receive" -s o -l output -d 'Where to write: an existing folder, a new name for the single file or folder offered, or `-` for standard output (a single file or stream only)' -r -F
complete -c mp -n "__fish_mp_using_subcommand receive" -l signal -d 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l timeout -d 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l bind -d 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l stun -d 'STUN server(s) for finding this machine\'s public address, e.g. stun:host:3478 (default: what the signaling server hands out)' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l turn -d 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l turn-user -d 'User name for --turn' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l turn-password -d 'Password for --turn' -r
complete -c mp -n "__fish_mp_using_subcommand receive" -l signal-ca -d 'Also trust the certificates in this PEM file as roots for a wss:// signaling server (a private CA, or a server\'s self-signed certificate), besides the public web CAs' -r -F
complete -c mp -n "__fish_mp_using_subcommand receive" -s y -l yes -d 'Accept the offer without asking'
complete -c mp -n "__fish_mp_using_subcommand receive" -l overwrite -d 'Replace existing files and merge into existing folders (never through a symbolic link)'
complete -c mp -n "__fish_mp_using_subcommand receive" -l relay -d 'Only ever connect through a TURN relay, so the other side never learns this machine\'s address'
complete -c mp -n "__fish_mp_using_subcommand receive" -s q -l quiet -d 'Print only errors and the code'
complete -c mp -n "__fish_mp_using_subcommand receive" -l json -d 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
complete -c mp -n "__fish_mp_using_subcommand receive" -s h -l help -d 'Print help'
complete -c mp -n "__fish_mp_using_subcommand partial" -l remove -d 'Remove them (only those that belong to you and no receiver is using)'
complete -c mp -n "__fish_mp_using_subcommand partial" -s q -l quiet -d 'Print only errors and the code'
complete -c mp -n "__fish_mp_using_subcommand partial" -l json -d 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
complete -c mp -n "__fish_mp_using_subcommand partial" -s h -l help -d 'Print help'
