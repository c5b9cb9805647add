
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
            cand partial 'List the partial data interrupted transfers left in a folder, or remove it'
        }
        &'mp;signal'= {
            cand --listen 'Address and port to listen on'
            cand --room-timeout 'Seconds a room may live, from its first client, before the server closes it'
            cand --drain-timeout 'Seconds open rooms may go on after SIGTERM, which stops new clients at once'
            cand --redis 'Keep rooms in the Redis at this URL (redis://HOST:PORT, or redis://:PASSWORD@HOST:PORT/DB) instead of in memory, so that several instances behind one load balancer act as one; prefer the environment variable, which `ps` does not show'
            cand --wait-timeout 'Seconds a room may wait for its second member (within --room-timeout)'
            cand --max-clients 'Most connections served at once'
            cand --handshake-timeout 'Seconds a new connection may take for its WebSocket handshake, and again for its first message'
            cand --max-handshakes 'Most WebSocket handshakes under way at once (past it, new connections are closed)'
            cand --max-handshakes-per-addr 'Most WebSocket handshakes under way from one client address (an IPv6 /64); the oldest makes way for a new one'
            cand --max-waiting-per-addr 'Most rooms one client address (an IPv6 /64) may keep waiting for their second member'
            cand --joins-per-minute 'Joins one client address (an IPv6 /64) may make per minute (all at once, then one every 60/N seconds)'
            cand --tls-cert 'Serve wss:// and https:// with this certificate chain (PEM, the server''s certificate first). Needs --tls-key'
            cand --tls-key 'The private key of --tls-cert (PEM: PKCS #8, PKCS #1 or SEC1)'
            cand --trust-proxy 'Take each client''s address from the header a reverse proxy writes: X-Forwarded-For (its rightmost entry, the default) or Forwarded (RFC 7239). Only when every connection comes through your proxy: anyone reaching the server directly could claim any address'
            cand --turn 'TURN server URL(s) to hand out to clients with short-lived credentials, e.g. turn:relay.example.org:3478. Needs --turn-secret'
            cand --turn-secret 'Secret shared with the TURN server (coturn''s static-auth-secret); prefer the environment variable, which `ps` does not show'
            cand --turn-ttl 'Seconds a handed-out TURN credential stays valid'
            cand --no-stun 'Do not answer STUN Binding requests on UDP at the --listen address and port'
            cand -q 'Print only errors and the code'
            cand --quiet 'Print only errors and the code'
            cand --json 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'mp;send'= {
            cand --text 'Send this short text instead of files; the receiver prints it (`-`: read it from standard input)'
            cand --name 'The name the receiver gets for standard input (`mp send -`)'
            cand --code 'Use this code instead of a generated one (`<number>-<anything>`)'
            cand --qr 'Also write the QR code of the link to FILE, as SVG or PNG (by its extension), with the code written beneath, for printing'
            cand --signal 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it'
            cand --timeout 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)'
            cand --bind 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones'
            cand --stun 'STUN server(s) for finding this machine''s public address, e.g. stun:host:3478 (default: what the signaling server hands out)'
            cand --turn 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password'
            cand --turn-user 'User name for --turn'
            cand --turn-password 'Password for --turn'
            cand --signal-ca 'Also trust the certificates in this PEM file as roots for a wss:// signaling server (a private CA, or a server''s self-signed certificate), besides the public web CAs'
            cand --skip-unsafe 'Leave out files and folders whose names the receiver would refuse (a control character, say) instead of stopping; each is named in a warning'
            cand --no-qr 'Do not draw the QR code of the link on the terminal'
            cand --relay 'Only ever connect through a TURN relay, so the other side never learns this machine''s address'
            cand -q 'Print only errors and the code'
            cand --quiet 'Print only errors and the code'
            cand --json 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'mp;receive'= {
            cand --code-file 'Read the code (or link) from the first line of FILE, `-` for standard input: for scripts that keep it in a file rather than in the environment'
            cand -o 'Where to write: an existing folder, a new name for the single file or folder offered, or `-` for standard output (a single file or stream only)'
            cand --output 'Where to write: an existing folder, a new name for the single file or folder offered, or `-` for standard output (a single file or stream only)'
            cand --signal 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it'
            cand --timeout 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)'
            cand --bind 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones'
            cand --stun 'STUN server(s) for finding this machine''s public address, e.g. stun:host:3478 (default: what the signaling server hands out)'
            cand --turn 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password'
            cand --turn-user 'User name for --turn'
            cand --turn-password 'Password for --turn'
            cand --signal-ca 'Also trust the certificates in this PEM file as roots for a wss:// signaling server (a private CA, or a server''s self-signed certificate), besides the public web CAs'
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
        &'mp;partial'= {
            cand --remove 'Remove them (only those that belong to you and no receiver is using)'
            cand -q 'Print only errors and the code'
            cand --quiet 'Print only errors and the code'
            cand --json 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data'
            cand -h 'Print help'
            cand --help 'Print help'
        }
    ]
    $completions[$command]
}
