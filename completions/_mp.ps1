
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
            [CompletionResult]::new('generate', 'generate', [CompletionResultType]::ParameterValue, 'Write shell completions and man pages (for packagers and this repository)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mp;signal' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address and port to listen on')
            [CompletionResult]::new('--room-timeout', '--room-timeout', [CompletionResultType]::ParameterName, 'Seconds a room may live, from its first client, before the server closes it')
            [CompletionResult]::new('--max-clients', '--max-clients', [CompletionResultType]::ParameterName, 'Most connections served at once')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'mp;send' {
            [CompletionResult]::new('--text', '--text', [CompletionResultType]::ParameterName, 'Send this short text instead of files; the receiver prints it')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The name the receiver gets for standard input (`mp send -`)')
            [CompletionResult]::new('--code', '--code', [CompletionResultType]::ParameterName, 'Use this code instead of a generated one (`<number>-<anything>`)')
            [CompletionResult]::new('--signal', '--signal', [CompletionResultType]::ParameterName, 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)')
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones')
            [CompletionResult]::new('--stun', '--stun', [CompletionResultType]::ParameterName, 'STUN server(s) for finding this machine''s public address, e.g. stun:host:3478 (default: what the signaling server hands out)')
            [CompletionResult]::new('--turn', '--turn', [CompletionResultType]::ParameterName, 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password')
            [CompletionResult]::new('--turn-user', '--turn-user', [CompletionResultType]::ParameterName, 'User name for --turn')
            [CompletionResult]::new('--turn-password', '--turn-password', [CompletionResultType]::ParameterName, 'Password for --turn')
            [CompletionResult]::new('--sctp-mtu', '--sctp-mtu', [CompletionResultType]::ParameterName, 'SCTP packet size in bytes, for tuning (default: 1191, or 16000 when --bind names only loopback addresses)')
            [CompletionResult]::new('--relay', '--relay', [CompletionResultType]::ParameterName, 'Only ever connect through a TURN relay, so the other side never learns this machine''s address')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'mp;receive' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Where to write: an existing folder, a new name for the single file or folder offered, or `-` for standard output (a single file or stream only)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Where to write: an existing folder, a new name for the single file or folder offered, or `-` for standard output (a single file or stream only)')
            [CompletionResult]::new('--signal', '--signal', [CompletionResultType]::ParameterName, 'Signaling server URL (ws:// or wss://). Without one, the sender runs a rendezvous itself and announces it on the local network (mDNS), where the receiver finds it')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds to wait for the other side to arrive (default: 600). Without --signal, also how long the receiver looks for the sender on the local network (default there: 10)')
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Local IP address(es) the direct connection may use (default: every non-loopback interface). Loopback addresses are allowed when given here. Without --signal, mDNS runs only on the interfaces of the non-loopback ones')
            [CompletionResult]::new('--stun', '--stun', [CompletionResultType]::ParameterName, 'STUN server(s) for finding this machine''s public address, e.g. stun:host:3478 (default: what the signaling server hands out)')
            [CompletionResult]::new('--turn', '--turn', [CompletionResultType]::ParameterName, 'TURN server(s) to relay through when no direct path exists, e.g. turn:host:3478 (default: what the signaling server hands out). Needs --turn-user and --turn-password')
            [CompletionResult]::new('--turn-user', '--turn-user', [CompletionResultType]::ParameterName, 'User name for --turn')
            [CompletionResult]::new('--turn-password', '--turn-password', [CompletionResultType]::ParameterName, 'Password for --turn')
            [CompletionResult]::new('--sctp-mtu', '--sctp-mtu', [CompletionResultType]::ParameterName, 'SCTP packet size in bytes, for tuning (default: 1191, or 16000 when --bind names only loopback addresses)')
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
        'mp;generate' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and the code')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Report progress as JSON lines (docs/JSON.md) instead of text: on stdout, or on stderr when stdout carries the received data')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'mp;help' {
            [CompletionResult]::new('signal', 'signal', [CompletionResultType]::ParameterValue, 'Run a signaling server that pairs senders and receivers')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send files, folders, stdin or a text; prints the code to give to the receiver')
            [CompletionResult]::new('receive', 'receive', [CompletionResultType]::ParameterValue, 'Receive what the sender offers, given its code')
            [CompletionResult]::new('generate', 'generate', [CompletionResultType]::ParameterValue, 'Write shell completions and man pages (for packagers and this repository)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mp;help;signal' {
            break
        }
        'mp;help;send' {
            break
        }
        'mp;help;receive' {
            break
        }
        'mp;help;generate' {
            break
        }
        'mp;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
