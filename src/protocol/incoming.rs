//! The receiver's check of the byte stream against the manifest.
//!
//! Fed one frame at a time, it says what to write and when a file is complete, and refuses a
//! sender that sends more or fewer bytes than it announced, or whose hash does not match. Files
//! are only named final by the caller after [`Step::FileComplete`].

use sha2::{Digest, Sha256};

use super::frame::Frame;
use super::manifest::{display, Manifest};

/// What the caller should do with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Append these bytes to the current file (`index` in the manifest).
    Write { index: usize, bytes: &'a [u8] },
    /// The file at `index` is complete and its SHA-256 matched.
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
    #[error("the sender stopped: {0}")]
    PeerFailed(String),
}

/// Receiver-side stream state.
pub struct Incoming {
    paths: Vec<String>,
    sizes: Vec<u64>,
    index: usize,
    received: u64,
    hasher: Sha256,
}

impl Incoming {
    /// Starts checking a stream for a manifest that has already been validated.
    pub fn new(manifest: &Manifest) -> Incoming {
        Incoming {
            paths: manifest.entries.iter().map(|e| display(&e.path)).collect(),
            sizes: manifest.entries.iter().map(|e| e.size).collect(),
            index: 0,
            received: 0,
            hasher: Sha256::new(),
        }
    }

    /// True once every file has been completed.
    pub fn is_complete(&self) -> bool {
        self.index == self.sizes.len()
    }

    /// Takes the next frame from the sender.
    pub fn on_frame<'a>(&mut self, frame: Frame<'a>) -> Result<Step<'a>, StreamError> {
        match frame {
            Frame::Data(bytes) => {
                let expected = *self.sizes.get(self.index).ok_or(StreamError::AfterEnd)?;
                if self.received + bytes.len() as u64 > expected {
                    return Err(StreamError::TooMuchData(self.paths[self.index].clone()));
                }
                self.received += bytes.len() as u64;
                self.hasher.update(bytes);
                Ok(Step::Write {
                    index: self.index,
                    bytes,
                })
            }
            Frame::End(hash) => {
                let expected = *self.sizes.get(self.index).ok_or(StreamError::AfterEnd)?;
                let path = &self.paths[self.index];
                if self.received != expected {
                    return Err(StreamError::TooLittleData {
                        path: path.clone(),
                        got: self.received,
                        expected,
                    });
                }
                let actual: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
                if actual != hash {
                    return Err(StreamError::HashMismatch(path.clone()));
                }
                let index = self.index;
                self.index += 1;
                self.received = 0;
                Ok(Step::FileComplete { index })
            }
            Frame::Done => Err(StreamError::Unexpected("DONE")),
            Frame::Fail(reason) => Err(StreamError::PeerFailed(display(&reason))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::manifest::Entry;

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    fn manifest(files: &[(&str, u64)]) -> Manifest {
        Manifest {
            entries: files
                .iter()
                .map(|(p, s)| Entry {
                    path: p.to_string(),
                    size: *s,
                })
                .collect(),
        }
    }

    #[test]
    fn accepts_an_honest_stream_of_two_files() {
        let mut inc = Incoming::new(&manifest(&[("a", 5), ("empty", 0)]));
        assert_eq!(
            inc.on_frame(Frame::Data(b"hel")).unwrap(),
            Step::Write {
                index: 0,
                bytes: b"hel"
            }
        );
        inc.on_frame(Frame::Data(b"lo")).unwrap();
        assert_eq!(
            inc.on_frame(Frame::End(sha(b"hello"))).unwrap(),
            Step::FileComplete { index: 0 }
        );
        assert!(!inc.is_complete());
        assert_eq!(
            inc.on_frame(Frame::End(sha(b""))).unwrap(),
            Step::FileComplete { index: 1 }
        );
        assert!(inc.is_complete());
        assert_eq!(inc.on_frame(Frame::Data(b"x")), Err(StreamError::AfterEnd));
    }

    #[test]
    fn refuses_more_bytes_than_announced() {
        let mut inc = Incoming::new(&manifest(&[("a", 2)]));
        assert_eq!(
            inc.on_frame(Frame::Data(b"abc")),
            Err(StreamError::TooMuchData("a".into()))
        );
    }

    #[test]
    fn refuses_fewer_bytes_than_announced() {
        let mut inc = Incoming::new(&manifest(&[("a", 4)]));
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
        let mut inc = Incoming::new(&manifest(&[("a", 3)]));
        inc.on_frame(Frame::Data(b"abc")).unwrap();
        assert_eq!(
            inc.on_frame(Frame::End(sha(b"abd"))),
            Err(StreamError::HashMismatch("a".into()))
        );
    }

    #[test]
    fn passes_on_the_senders_failure_neutralised() {
        let mut inc = Incoming::new(&manifest(&[("a", 3)]));
        assert_eq!(
            inc.on_frame(Frame::Fail("read error\u{1b}[2J".into())),
            Err(StreamError::PeerFailed("read error\\u{1b}[2J".into()))
        );
        assert_eq!(
            inc.on_frame(Frame::Done),
            Err(StreamError::Unexpected("DONE"))
        );
    }
}
