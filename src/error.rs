//! Failures a user can cause or meet, each with its own exit code.
//!
//! Every layer returns [`Failure`] for anything a person should be told about; `main` prints its
//! message as one line on stderr and exits with [`Kind::exit_code`]. Anything else is a bug or an
//! unforeseen I/O error and exits with 1.

use std::fmt;

use crate::protocol::frame::FailKind;

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
    /// The other side runs a version of mp that speaks another protocol version.
    Version,
    /// Nobody is waiting with this generated code: it was used already, it expired, or its
    /// sender stopped.
    NoSender,
    /// A bug or an unforeseen error (exit code 1).
    Internal,
}

impl Kind {
    /// Every kind with an exit code of its own (all but [`Kind::Internal`], which is 1).
    pub const ALL: [Kind; 15] = [
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
        Kind::Version,
        Kind::NoSender,
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
            Kind::Version => 14,
            Kind::NoSender => 15,
            Kind::Internal => 1,
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
            Kind::Version => "version",
            Kind::NoSender => "no-sender",
            Kind::Internal => "internal",
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
            Kind::Integrity => {
                "integrity check failed (hash or size mismatch), or the other side broke the protocol"
            }
            Kind::NoTerminal => "confirmation needed but no terminal (use --yes)",
            Kind::Interrupted => "interrupted (Ctrl-C)",
            Kind::Version => "the other side speaks another protocol version (update mp)",
            Kind::NoSender => {
                "no sender is waiting with this code (used, expired or stopped): ask for a new one"
            }
            Kind::Internal => "unexpected error",
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

impl Kind {
    /// The FAIL kind that tells the peer, on the data channel, why this side stopped.
    pub fn fail_kind(self) -> FailKind {
        match self {
            Kind::Integrity => FailKind::Integrity,
            Kind::LocalIo => FailKind::LocalIo,
            Kind::Interrupted => FailKind::Interrupted,
            _ => FailKind::Other,
        }
    }

    /// How this side reads the peer's FAIL of `kind`: its integrity verdict is ours too;
    /// anything else means the other side is gone.
    pub fn from_peer_fail(kind: FailKind) -> Kind {
        match kind {
            FailKind::Integrity => Kind::Integrity,
            _ => Kind::PeerGone,
        }
    }

    /// What the peer is told about a failure of this kind (in a `reject`, an `abort` or a
    /// FAIL): the generic meaning, never a local path or detail.
    pub fn public_reason(self) -> &'static str {
        match self {
            Kind::Declined => "declined",
            Kind::NoTerminal => "the receiver could not confirm",
            Kind::Usage => "the receiver cannot take this offer as asked",
            Kind::Internal => "unexpected error",
            other => other.meaning(),
        }
    }
}

/// A failure to report to the user: a kind, one line of text, and the error that caused it.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Keeps `source` as the cause (its text is already part of `message` where it helps).
    pub fn caused_by(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Failure {
        self.source = Some(source.into());
        self
    }

    /// The same failure with `context` put in front of its message ("…; partial data kept").
    pub fn with_message(mut self, message: impl Into<String>) -> Failure {
        self.message = message.into();
        self
    }

    /// What the peer is told about this failure: as precise as the cause allows without
    /// giving away a local path or detail ("the receiver's disk is full", "permission
    /// denied"), else the generic meaning of its kind.
    pub fn public_reason(&self) -> String {
        if self.kind == Kind::LocalIo {
            let io =
                std::error::Error::source(self).and_then(|e| e.downcast_ref::<std::io::Error>());
            if let Some(io) = io {
                let why = match io.kind() {
                    std::io::ErrorKind::StorageFull => Some("the disk is full"),
                    std::io::ErrorKind::PermissionDenied => Some("permission denied"),
                    std::io::ErrorKind::BrokenPipe => Some("its output was closed (broken pipe)"),
                    std::io::ErrorKind::ReadOnlyFilesystem => Some("the file system is read-only"),
                    std::io::ErrorKind::NotFound => Some("a file or folder is missing"),
                    std::io::ErrorKind::QuotaExceeded => Some("the disk quota is exceeded"),
                    std::io::ErrorKind::FileTooLarge => {
                        Some("a file is too large for the file system")
                    }
                    _ => None,
                };
                if let Some(why) = why {
                    return format!("a local file could not be read or written: {why}");
                }
            }
        }
        self.kind.public_reason().to_string()
    }

    /// Takes any error: a [`Failure`] inside it is kept as is; anything else is internal.
    pub fn from_any(err: anyhow::Error) -> Failure {
        match err.downcast::<Failure>() {
            Ok(failure) => failure,
            Err(other) => Failure::new(Kind::Internal, format!("{other:#}")).caused_by(other),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Shorthand: `Err(fail(Kind::X, "..."))?`.
pub fn fail(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    Failure::new(kind, message).into()
}

/// Maps a local file error to a failure with a helpful line, keeping the error as its cause.
pub fn local_io(what: &str, err: std::io::Error) -> anyhow::Error {
    local_io_failure(what, err).into()
}

/// [`local_io`] as a [`Failure`].
pub fn local_io_failure(what: &str, err: std::io::Error) -> Failure {
    let reason = match err.kind() {
        std::io::ErrorKind::StorageFull => "disk full".to_string(),
        _ => err.to_string(),
    };
    Failure::new(Kind::LocalIo, format!("{what}: {reason}")).caused_by(err)
}

/// True when the failure's cause is a full disk.
pub fn is_disk_full(failure: &Failure) -> bool {
    let mut cause = failure
        .source
        .as_deref()
        .map(|e| e as &dyn std::error::Error);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull {
                return true;
            }
        }
        cause = err.source();
    }
    false
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
    fn the_kind_and_fail_tables_agree() {
        for kind in [
            Kind::Integrity,
            Kind::LocalIo,
            Kind::Interrupted,
            Kind::PeerGone,
        ] {
            let seen = Kind::from_peer_fail(kind.fail_kind());
            // What the peer concludes is ours for integrity, and "gone" for the rest.
            let expected = if kind == Kind::Integrity {
                Kind::Integrity
            } else {
                Kind::PeerGone
            };
            assert_eq!(seen, expected, "{kind:?}");
        }
        assert!(!Kind::Declined.public_reason().contains('/'));
    }

    #[test]
    fn the_peer_is_told_the_real_reason_without_local_details() {
        let denied = local_io_failure(
            "cannot write /home/ana/secret/x",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        let reason = denied.public_reason();
        assert_eq!(
            reason,
            "a local file could not be read or written: permission denied"
        );
        assert!(!reason.contains("/home"));
        let pipe = Failure::new(Kind::LocalIo, "standard output was closed")
            .caused_by(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(pipe.public_reason().contains("broken pipe"));
        assert_eq!(
            Failure::new(Kind::Declined, "transfer declined").public_reason(),
            "declined"
        );
    }

    #[test]
    fn the_cause_of_a_failure_is_kept() {
        let err = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let failure = local_io_failure("cannot write x", err);
        assert_eq!(failure.message, "cannot write x: disk full");
        assert!(is_disk_full(&failure));
        assert!(std::error::Error::source(&failure).is_some());
        let wrapped = Failure::from_any(anyhow::Error::from(failure));
        assert_eq!(wrapped.kind, Kind::LocalIo);
        let internal = Failure::from_any(anyhow::anyhow!("boom"));
        assert_eq!(internal.kind, Kind::Internal);
    }

    #[test]
    fn table_lists_every_code() {
        let table = Kind::table();
        for kind in Kind::ALL {
            assert!(table.contains(kind.meaning()));
        }
    }
}
