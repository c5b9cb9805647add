
use builtin;
use str;

set edit:completion:arg-completer[mp] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'mp'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'mp'= {
            cand -q 'Print only errors and the code'
            cand --quiet 'Print only errors and the code'
            cand --json 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand signal 'Run a signaling server that pairs senders and receivers'
            cand send 'Send files, folders, stdin or a text; prints the code to give to the receiver'
            cand receive 'Receive what the sender offers, given its code'
            cand generate 'Write shell completions and man pages (for packagers and this repository)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mp;signal'= {
            cand --listen 'Address and port to listen on'
            cand --room-timeout 'Seconds a room may live, from its first client, before the server closes it'
            cand --max-clients 'Most connections served at once'
            cand -q 'Print only errors and the code'
            cand --quiet 'Print only errors and the code'
            cand --json 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'mp;send'= {
            cand --text 'Send this short text instead of files; the receiver prints it'
            cand --name 'The name the receiver gets for standard input (`mp send -`)'
            cand --code 'Use this code instead of a generated one (`<number>-<anything>`)'
            cand --signal 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it'
            cand --timeout 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)'
            cand --bind 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones'
            cand --stun 'STUN server(s) for finding this machine''s public address, e.g. stun:host:3478 (default: what the signaling server hands out)'
            cand --turn 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password'
            cand --turn-user 'User name for --turn'
            cand --turn-password 'Password for --turn'
            cand --sctp-mtu 'SCTP packet size in bytes, for tuning (default: 1191, or 16000 when --bind names only loopback addresses)'
            cand --relay 'Only ever connect through a TURN relay, so the other side never learns this machine''s address'
            cand -q 'Print only errors and the code'
            cand --quiet 'Print only errors and the code'
            cand --json 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'mp;receive'= {
            cand -o 'Where to write: an existing folder, a new name for the single file or folder offered, or `-` for standard output (a single file or stream only)'
            cand --output 'Where to write: an existing folder, a new name for the single file or folder offered, or `-` for standard output (a single file or stream only)'
            cand --signal 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it'
            cand --timeout 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)'
            cand --bind 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones'
            cand --stun 'STUN server(s) for finding this machine''s public address, e.g. stun:host:3478 (default: what the signaling server hands out)'
            cand --turn 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password'
            cand --turn-user 'User name for --turn'
            cand --turn-password 'Password for --turn'
            cand --sctp-mtu 'SCTP packet size in bytes, for tuning (default: 1191, or 16000 when --bind names only loopback addresses)'
            cand -y 'Accept the offer without asking'
            cand --yes 'Accept the offer without asking'
            cand --overwrite 'Replace existing files and merge into existing folders (never through a symbolic link)'
            cand --relay 'Only ever connect through a TURN relay, so the other side never learns this machine''s address'
            cand -q 'Print only errors and the code'
            cand --quiet 'Print only errors and the code'
            cand --json 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'mp;generate'= {
            cand -q 'Print only errors and the code'
            cand --quiet 'Print only errors and the code'
            cand --json 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'mp;help'= {
            cand signal 'Run a signaling server that pairs senders and receivers'
            cand send 'Send files, folders, stdin or a text; prints the code to give to the receiver'
            cand receive 'Receive what the sender offers, given its code'
            cand generate 'Write shell completions and man pages (for packagers and this repository)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mp;help;signal'= {
        }
        &'mp;help;send'= {
        }
        &'mp;help;receive'= {
        }
        &'mp;help;generate'= {
        }
        &'mp;help;help'= {
        }
    ]
    $completions[$command]
}
