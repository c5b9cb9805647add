//! The receiver's check of the byte stream against the manifest.
//!
//! Fed one frame at a time, it says what to write and when a file is complete, and refuses a
//! sender that sends more or fewer bytes than it announced, or whose hash does not match. Files
//! are only named final by the caller after [`Step::FileComplete`].
//!
//! To resume, the receiver registers the prefix it kept ([`Incoming::resume`]); the sender then
//! opens that file with a BEGIN frame, at the agreed offset or at 0 if its prefix differs. Either
//! way the final hash covers the whole file.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::frame::Frame;
use super::manifest::{display, Manifest};

/// What the caller should do with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// The file at manifest `index` continues at `offset`: keep that many bytes, drop the rest.
    Begin { index: usize, offset: u64 },
    /// Append these bytes to the file at manifest `index`.
    Write { index: usize, bytes: &'a [u8] },
    /// The file at manifest `index` is complete and its SHA-256 matched.
    FileComplete { index: usize },
}

/// Why the stream was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamError {
    #[error("integrity check failed: the sender sent more bytes than announced for {0}")]
    TooMuchData(String),
    #[error("integrity check failed: the sender ended {path} after {got} of {expected} bytes")]
    TooLittleData {
        path: String,
        got: u64,
        expected: u64,
    },
    #[error("integrity check failed: SHA-256 of {0} does not match")]
    HashMismatch(String),
    #[error("the sender sent data after the last file")]
    AfterEnd,
    #[error("unexpected {0} frame from the sender")]
    Unexpected(&'static str),
    #[error("the sender resumed {0} at an offset that was not offered")]
    BadResume(String),
    #[error("the sender stopped: {0}")]
    PeerFailed(String),
}

struct FileSpec {
    index: usize,
    path: String,
    size: Option<u64>,
}

/// Receiver-side stream state.
pub struct Incoming {
    files: Vec<FileSpec>,
    current: usize,
    received: u64,
    hasher: Sha256,
    /// Offered resumptions by position in `files`: the kept length and the hash state after it.
    resume: HashMap<usize, (u64, Sha256)>,
    awaiting_begin: bool,
}

impl Incoming {
    /// Starts checking a stream for a manifest that has already been validated.
    pub fn new(manifest: &Manifest) -> Incoming {
        let files = manifest
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_file())
            .map(|(index, e)| FileSpec {
                index,
                path: display(&e.path),
                size: e.size,
            })
            .collect();
        let mut incoming = Incoming {
            files,
            current: 0,
            received: 0,
            hasher: Sha256::new(),
            resume: HashMap::new(),
            awaiting_begin: false,
        };
        incoming.enter_file();
        incoming
    }

    /// Offers to resume the file at manifest `index` after `offset` kept bytes, whose hash
    /// state is `prefix`. Call before any frame arrives.
    pub fn resume(&mut self, index: usize, offset: u64, prefix: Sha256) {
        if let Some(pos) = self.files.iter().position(|f| f.index == index) {
            self.resume.insert(pos, (offset, prefix));
            self.enter_file();
        }
    }

    /// The manifest index of the file whose bytes come next, if any.
    pub fn current(&self) -> Option<usize> {
        self.files.get(self.current).map(|f| f.index)
    }

    /// True once every file has been completed.
    pub fn is_complete(&self) -> bool {
        self.current == self.files.len()
    }

    fn enter_file(&mut self) {
        self.awaiting_begin = self.resume.contains_key(&self.current);
        self.received = 0;
        self.hasher = Sha256::new();
    }

    /// Takes the next frame from the sender.
    pub fn on_frame<'a>(&mut self, frame: Frame<'a>) -> Result<Step<'a>, StreamError> {
        if let Frame::Fail(_, reason) = frame {
            return Err(StreamError::PeerFailed(display(&reason)));
        }
        let file = self.files.get(self.current).ok_or(StreamError::AfterEnd)?;
        if self.awaiting_begin {
            let Frame::Begin(offset) = frame else {
                return Err(StreamError::Unexpected("non-BEGIN"));
            };
            let (offered, prefix) = self.resume.remove(&self.current).expect("awaiting");
            self.awaiting_begin = false;
            if offset == offered {
                self.hasher = prefix;
            } else if offset != 0 {
                return Err(StreamError::BadResume(file.path.clone()));
            }
            self.received = offset;
            return Ok(Step::Begin {
                index: file.index,
                offset,
            });
        }
        match frame {
            Frame::Data(bytes) => {
                let received = self.received.saturating_add(bytes.len() as u64);
                if file.size.is_some_and(|size| received > size) {
                    return Err(StreamError::TooMuchData(file.path.clone()));
                }
                self.received = received;
                self.hasher.update(bytes);
                Ok(Step::Write {
                    index: file.index,
                    bytes,
                })
            }
            Frame::End(hash) => {
                if let Some(expected) = file.size.filter(|&size| size != self.received) {
                    return Err(StreamError::TooLittleData {
                        path: file.path.clone(),
                        got: self.received,
                        expected,
                    });
                }
                let actual: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
                if actual != hash {
                    return Err(StreamError::HashMismatch(file.path.clone()));
                }
                let index = file.index;
                self.current += 1;
                self.enter_file();
                Ok(Step::FileComplete { index })
            }
            Frame::Begin(_) => Err(StreamError::Unexpected("BEGIN")),
            Frame::Ack(_) => Err(StreamError::Unexpected("ACK")),
            Frame::Done => Err(StreamError::Unexpected("DONE")),
            Frame::Fail(..) => unreachable!("handled above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::FailKind;
    use crate::protocol::manifest::Entry;

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest { entries }
    }

    #[test]
    fn accepts_an_honest_stream_of_files_and_skips_folders() {
        let mut inc = Incoming::new(&manifest(vec![
            Entry::dir("d"),
            Entry::file("d/a", 5),
            Entry::file("empty", 0),
        ]));
        assert_eq!(inc.current(), Some(1));
        assert_eq!(
            inc.on_frame(Frame::Data(b"hel")).unwrap(),
            Step::Write {
                index: 1,
                bytes: b"hel"
            }
        );
        inc.on_frame(Frame::Data(b"lo")).unwrap();
        assert_eq!(
            inc.on_frame(Frame::End(sha(b"hello"))).unwrap(),
            Step::FileComplete { index: 1 }
        );
        assert!(!inc.is_complete());
        assert_eq!(
            inc.on_frame(Frame::End(sha(b""))).unwrap(),
            Step::FileComplete { index: 2 }
        );
        assert!(inc.is_complete());
        assert_eq!(inc.on_frame(Frame::Data(b"x")), Err(StreamError::AfterEnd));
    }

    #[test]
    fn a_manifest_of_folders_only_is_complete_at_once() {
        assert!(Incoming::new(&manifest(vec![Entry::dir("d")])).is_complete());
    }

    #[test]
    fn refuses_more_bytes_than_announced() {
        let mut inc = Incoming::new(&manifest(vec![Entry::file("a", 2)]));
        assert_eq!(
            inc.on_frame(Frame::Data(b"abc")),
            Err(StreamError::TooMuchData("a".into()))
        );
    }

    #[test]
    fn refuses_fewer_bytes_than_announced() {
        let mut inc = Incoming::new(&manifest(vec![Entry::file("a", 4)]));
        inc.on_frame(Frame::Data(b"abc")).unwrap();
        assert_eq!(
            inc.on_frame(Frame::End(sha(b"abc"))),
            Err(StreamError::TooLittleData {
                path: "a".into(),
                got: 3,
                expected: 4
            })
        );
    }

    #[test]
    fn refuses_a_wrong_hash() {
        let mut inc = Incoming::new(&manifest(vec![Entry::file("a", 3)]));
        inc.on_frame(Frame::Data(b"abc")).unwrap();
        assert_eq!(
            inc.on_frame(Frame::End(sha(b"abd"))),
            Err(StreamError::HashMismatch("a".into()))
        );
    }

    #[test]
    fn a_stream_of_unknown_length_is_checked_by_hash_alone() {
        let stream = Entry {
            size: None,
            ..Entry::file("-", 0)
        };
        let mut inc = Incoming::new(&manifest(vec![stream.clone()]));
        inc.on_frame(Frame::Data(&[7; 1000])).unwrap();
        assert!(inc.on_frame(Frame::End(sha(&[7; 1000]))).is_ok());
        let mut inc = Incoming::new(&manifest(vec![stream]));
        inc.on_frame(Frame::Data(b"x")).unwrap();
        assert!(matches!(
            inc.on_frame(Frame::End(sha(b"y"))),
            Err(StreamError::HashMismatch(_))
        ));
    }

    #[test]
    fn resumes_after_an_agreed_prefix_and_checks_the_whole_file() {
        let mut inc = Incoming::new(&manifest(vec![Entry::file("a", 6)]));
        let mut prefix = Sha256::new();
        prefix.update(b"abc");
        inc.resume(0, 3, prefix);
        assert_eq!(
            inc.on_frame(Frame::Data(b"def")),
            Err(StreamError::Unexpected("non-BEGIN"))
        );
        let mut inc = Incoming::new(&manifest(vec![Entry::file("a", 6)]));
        let mut prefix = Sha256::new();
        prefix.update(b"abc");
        inc.resume(0, 3, prefix);
        assert_eq!(
            inc.on_frame(Frame::Begin(3)).unwrap(),
            Step::Begin {
                index: 0,
                offset: 3
            }
        );
        inc.on_frame(Frame::Data(b"def")).unwrap();
        assert!(inc.on_frame(Frame::End(sha(b"abcdef"))).is_ok());
    }

    #[test]
    fn a_sender_may_restart_a_resumed_file_but_not_invent_an_offset() {
        let offered = || {
            let mut inc = Incoming::new(&manifest(vec![Entry::file("a", 3)]));
            inc.resume(0, 2, Sha256::new());
            inc
        };
        let mut inc = offered();
        assert_eq!(
            inc.on_frame(Frame::Begin(0)).unwrap(),
            Step::Begin {
                index: 0,
                offset: 0
            }
        );
        inc.on_frame(Frame::Data(b"xyz")).unwrap();
        assert!(inc.on_frame(Frame::End(sha(b"xyz"))).is_ok());
        assert_eq!(
            offered().on_frame(Frame::Begin(1)),
            Err(StreamError::BadResume("a".into()))
        );
        let mut plain = Incoming::new(&manifest(vec![Entry::file("a", 3)]));
        assert_eq!(
            plain.on_frame(Frame::Begin(0)),
            Err(StreamError::Unexpected("BEGIN"))
        );
    }

    #[test]
    fn passes_on_the_senders_failure_neutralised() {
        let mut inc = Incoming::new(&manifest(vec![Entry::file("a", 3)]));
        assert_eq!(
            inc.on_frame(Frame::Fail(FailKind::Other, "read error\u{1b}[2J".into())),
            Err(StreamError::PeerFailed("read error\\u{1b}[2J".into()))
        );
        assert_eq!(
            inc.on_frame(Frame::Done),
            Err(StreamError::Unexpected("DONE"))
        );
    }
}
