//! Failures a user can cause or meet, each with its own exit code.
//!
//! Every layer returns [`Failure`] for anything a person should be told about; `main` prints its
//! message as one line on stderr and exits with [`Kind::exit_code`]. Anything else is a bug or an
//! unforeseen I/O error and exits with 1.

use std::fmt;

/// The kinds of failure, one exit code each. The table in README.md and `mp --help` is built
/// from [`Kind::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The command line is wrong (clap uses 2 as well).
    Usage,
    /// Wrong code, or a signaling server that tampered with messages.
    WrongCode,
    /// One side declined the transfer.
    Declined,
    /// The other side never arrived.
    Timeout,
    /// The other side left or the connection dropped mid-way.
    PeerGone,
    /// The signaling server could not be reached, or the URL is wrong.
    Server,
    /// The room for this code already holds a transfer.
    RoomFull,
    /// The direct WebRTC connection could not be established.
    Connect,
    /// The target file already exists.
    Exists,
    /// Reading or writing a local file failed (missing file, disk full, permission).
    LocalIo,
    /// The received data failed its SHA-256 check, or the sender broke the stream rules.
    Integrity,
    /// Confirmation is needed but there is no terminal to ask on (use --yes).
    NoTerminal,
    /// Interrupted by Ctrl-C.
    Interrupted,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Usage,
        Kind::WrongCode,
        Kind::Declined,
        Kind::Timeout,
        Kind::PeerGone,
        Kind::Server,
        Kind::RoomFull,
        Kind::Connect,
        Kind::Exists,
        Kind::LocalIo,
        Kind::Integrity,
        Kind::NoTerminal,
        Kind::Interrupted,
    ];

    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Usage => 2,
            Kind::WrongCode => 3,
            Kind::Declined => 4,
            Kind::Timeout => 5,
            Kind::PeerGone => 6,
            Kind::Server => 7,
            Kind::RoomFull => 8,
            Kind::Connect => 9,
            Kind::Exists => 10,
            Kind::LocalIo => 11,
            Kind::Integrity => 12,
            Kind::NoTerminal => 13,
            Kind::Interrupted => 130,
        }
    }

    /// A stable name for scripts (the `kind` of a JSON `error` event).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Usage => "usage",
            Kind::WrongCode => "wrong-code",
            Kind::Declined => "declined",
            Kind::Timeout => "timeout",
            Kind::PeerGone => "peer-gone",
            Kind::Server => "server",
            Kind::RoomFull => "room-full",
            Kind::Connect => "connect",
            Kind::Exists => "exists",
            Kind::LocalIo => "local-io",
            Kind::Integrity => "integrity",
            Kind::NoTerminal => "no-terminal",
            Kind::Interrupted => "interrupted",
        }
    }

    /// What the exit code means, for the documentation table.
    pub fn meaning(self) -> &'static str {
        match self {
            Kind::Usage => "bad command line or malformed code",
            Kind::WrongCode => "wrong code, or tampered signaling",
            Kind::Declined => "the transfer was declined",
            Kind::Timeout => "the other side never arrived",
            Kind::PeerGone => "the other side left or the connection dropped",
            Kind::Server => "signaling server unreachable, bad URL or protocol error",
            Kind::RoomFull => "the code's room is already in use",
            Kind::Connect => "no direct connection could be established",
            Kind::Exists => "the target file exists (use --overwrite)",
            Kind::LocalIo => "a local file could not be read or written (e.g. disk full)",
            Kind::Integrity => "integrity check failed (hash or size mismatch)",
            Kind::NoTerminal => "confirmation needed but no terminal (use --yes)",
            Kind::Interrupted => "interrupted (Ctrl-C)",
        }
    }

    /// The exit-code table as plain text, for `--help`.
    pub fn table() -> String {
        let mut out = String::from("Exit codes:\n  0    success\n  1    unexpected error\n");
        for kind in Kind::ALL {
            out.push_str(&format!("  {:<4} {}\n", kind.exit_code(), kind.meaning()));
        }
        out
    }
}

/// A failure to report to the user: a kind and one line of text.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Shorthand: `Err(fail(Kind::X, "..."))?`.
pub fn fail(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    Failure::new(kind, message).into()
}

/// Maps a local file error to a failure with a helpful line.
pub fn local_io(what: &str, err: std::io::Error) -> anyhow::Error {
    let reason = match err.kind() {
        std::io::ErrorKind::StorageFull => "disk full".to_string(),
        _ => err.to_string(),
    };
    fail(Kind::LocalIo, format!("{what}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_not_zero_or_one() {
        let mut codes: Vec<u8> = Kind::ALL.iter().map(|k| k.exit_code()).collect();
        assert!(codes.iter().all(|&c| c > 1));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Kind::ALL.len());
    }

    #[test]
    fn table_lists_every_code() {
        let table = Kind::table();
        for kind in Kind::ALL {
            assert!(table.contains(kind.meaning()));
        }
    }
}
