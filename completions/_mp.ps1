
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'mp' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'mp'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'mp' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('signal', 'signal', [CompletionResultType]::ParameterValue, 'Run a signaling server that pairs senders and receivers')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send files, folders, stdin or a text; prints the code to give to the receiver')
            [CompletionResult]::new('receive', 'receive', [CompletionResultType]::ParameterValue, 'Receive what the sender offers, given its code')
            [CompletionResult]::new('partial', 'partial', [CompletionResultType]::ParameterValue, 'List the partial data interrupted transfers left in a folder, or remove it')
            break
        }
        'mp;signal' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address and port to listen on')
            [CompletionResult]::new('--room-timeout', '--room-timeout', [CompletionResultType]::ParameterName, 'Seconds a room may live, from its first client, before the server closes it')
            [CompletionResult]::new('--drain-timeout', '--drain-timeout', [CompletionResultType]::ParameterName, 'Seconds open rooms may go on after SIGTERM, which stops new clients at once')
            [CompletionResult]::new('--redis', '--redis', [CompletionResultType]::ParameterName, 'Keep rooms in the Redis at this URL (redis://HOST:PORT, or redis://:PASSWORD@HOST:PORT/DB) instead of in memory, so that several instances behind one load balancer act as one; prefer the environment variable, which `ps` does not show')
            [CompletionResult]::new('--wait-timeout', '--wait-timeout', [CompletionResultType]::ParameterName, 'Seconds a room may wait for its second member (within --room-timeout)')
            [CompletionResult]::new('--max-clients', '--max-clients', [CompletionResultType]::ParameterName, 'Most connections served at once')
            [CompletionResult]::new('--handshake-timeout', '--handshake-timeout', [CompletionResultType]::ParameterName, 'Seconds a new connection may take for its WebSocket handshake, and again for its first message')
            [CompletionResult]::new('--max-handshakes', '--max-handshakes', [CompletionResultType]::ParameterName, 'Most WebSocket handshakes under way at once (past it, new connections are closed)')
            [CompletionResult]::new('--max-handshakes-per-addr', '--max-handshakes-per-addr', [CompletionResultType]::ParameterName, 'Most WebSocket handshakes under way from one client address (an IPv6 /64); the oldest makes way for a new one')
            [CompletionResult]::new('--max-waiting-per-addr', '--max-waiting-per-addr', [CompletionResultType]::ParameterName, 'Most rooms one client address (an IPv6 /64) may keep waiting for their second member')
            [CompletionResult]::new('--joins-per-minute', '--joins-per-minute', [CompletionResultType]::ParameterName, 'Joins one client address (an IPv6 /64) may make per minute (all at once, then one every 60/N seconds)')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'Serve wss:// and https:// with this certificate chain (PEM, the server''s certificate first). Needs --tls-key')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The private key of --tls-cert (PEM: PKCS #8, PKCS #1 or SEC1)')
            [CompletionResult]::new('--trust-proxy', '--trust-proxy', [CompletionResultType]::ParameterName, 'Take each client''s address from the header a reverse proxy writes: X-Forwarded-For (its rightmost entry, the default) or Forwarded (RFC 7239). Only when every connection comes through your proxy: anyone reaching the server directly could claim any address')
            [CompletionResult]::new('--turn', '--turn', [CompletionResultType]::ParameterName, 'TURN server URL(s) to hand out to clients with short-lived credentials, e.g. turn:relay.example.org:3478. Needs --turn-secret')
            [CompletionResult]::new('--turn-secret', '--turn-secret', [CompletionResultType]::ParameterName, 'Secret shared with the TURN server (coturn''s static-auth-secret); prefer the environment variable, which `ps` does not show')
            [CompletionResult]::new('--turn-ttl', '--turn-ttl', [CompletionResultType]::ParameterName, 'Seconds a handed-out TURN credential stays valid')
            [CompletionResult]::new('--no-stun', '--no-stun', [CompletionResultType]::ParameterName, 'Do not answer STUN Binding requests on UDP at the --listen address and port')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'mp;send' {
            [CompletionResult]::new('--text', '--text', [CompletionResultType]::ParameterName, 'Send this short text instead of files; the receiver prints it (`-`: read it from standard input)')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The name the receiver gets for standard input (`mp send -`)')
            [CompletionResult]::new('--code', '--code', [CompletionResultType]::ParameterName, 'Use this code instead of a generated one (`<number>-<anything>`)')
            [CompletionResult]::new('--qr', '--qr', [CompletionResultType]::ParameterName, 'Also write the QR code of the link to FILE, as SVG or PNG (by its extension), with the code written beneath, for printing')
            [CompletionResult]::new('--signal', '--signal', [CompletionResultType]::ParameterName, 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)')
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones')
            [CompletionResult]::new('--stun', '--stun', [CompletionResultType]::ParameterName, 'STUN server(s) for finding this machine''s public address, e.g. stun:host:3478 (default: what the signaling server hands out)')
            [CompletionResult]::new('--turn', '--turn', [CompletionResultType]::ParameterName, 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password')
            [CompletionResult]::new('--turn-user', '--turn-user', [CompletionResultType]::ParameterName, 'User name for --turn')
            [CompletionResult]::new('--turn-password', '--turn-password', [CompletionResultType]::ParameterName, 'Password for --turn')
            [CompletionResult]::new('--signal-ca', '--signal-ca', [CompletionResultType]::ParameterName, 'Also trust the certificates in this PEM file as roots for a wss:// signaling server (a private CA, or a server''s self-signed certificate), besides the public web CAs')
            [CompletionResult]::new('--skip-unsafe', '--skip-unsafe', [CompletionResultType]::ParameterName, 'Leave out files and folders whose names the receiver would refuse (a control character, say) instead of stopping; each is named in a warning')
            [CompletionResult]::new('--no-qr', '--no-qr', [CompletionResultType]::ParameterName, 'Do not draw the QR code of the link on the terminal')
            [CompletionResult]::new('--relay', '--relay', [CompletionResultType]::ParameterName, 'Only ever connect through a TURN relay, so the other side never learns this machine''s address')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'mp;receive' {
            [CompletionResult]::new('--code-file', '--code-file', [CompletionResultType]::ParameterName, 'Read the code (or link) from the first line of FILE, `-` for standard input: for scripts that keep it in a file rather than in the environment')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Where to write: an existing folder, a new name for the single file or folder offered, or `-` for standard output (a single file or stream only)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Where to write: an existing folder, a new name for the single file or folder offered, or `-` for standard output (a single file or stream only)')
            [CompletionResult]::new('--signal', '--signal', [CompletionResultType]::ParameterName, 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)')
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones')
            [CompletionResult]::new('--stun', '--stun', [CompletionResultType]::ParameterName, 'STUN server(s) for finding this machine''s public address, e.g. stun:host:3478 (default: what the signaling server hands out)')
            [CompletionResult]::new('--turn', '--turn', [CompletionResultType]::ParameterName, 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password')
            [CompletionResult]::new('--turn-user', '--turn-user', [CompletionResultType]::ParameterName, 'User name for --turn')
            [CompletionResult]::new('--turn-password', '--turn-password', [CompletionResultType]::ParameterName, 'Password for --turn')
            [CompletionResult]::new('--signal-ca', '--signal-ca', [CompletionResultType]::ParameterName, 'Also trust the certificates in this PEM file as roots for a wss:// signaling server (a private CA, or a server''s self-signed certificate), besides the public web CAs')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Accept the offer without asking')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Accept the offer without asking')
            [CompletionResult]::new('--overwrite', '--overwrite', [CompletionResultType]::ParameterName, 'Replace existing files and merge into existing folders (never through a symbolic link)')
            [CompletionResult]::new('--relay', '--relay', [CompletionResultType]::ParameterName, 'Only ever connect through a TURN relay, so the other side never learns this machine''s address')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'mp;partial' {
            [CompletionResult]::new('--remove', '--remove', [CompletionResultType]::ParameterName, 'Remove them (only those that belong to you and no receiver is using)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
