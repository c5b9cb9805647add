//! Data-channel frames: one frame per WebRTC message, a type byte and a payload.
//!
//! ```text
//! 0x00 DATA  bytes        the next bytes of the current file (1 ..= MAX_DATA bytes)
//! 0x01 END   sha256[32]   the current file is complete; its SHA-256
//! 0x02 DONE               receiver → sender: every file verified and stored
//! 0x03 FAIL  utf-8 text   either way: stop, and why (at most MAX_REASON bytes)
//! ```
//!
//! Files travel one after the other in manifest order on one reliable, ordered channel.

/// Largest data-channel message we send or accept (the SCTP limit we negotiate).
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Largest DATA payload.
pub const MAX_DATA: usize = MAX_MESSAGE - 1;
/// Largest FAIL reason, in bytes.
pub const MAX_REASON: usize = 1024;

const DATA: u8 = 0x00;
const END: u8 = 0x01;
const DONE: u8 = 0x02;
const FAIL: u8 = 0x03;

/// A decoded frame, borrowing the message it came from.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Data(&'a [u8]),
    End([u8; 32]),
    Done,
    Fail(String),
}

/// Why bytes are not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("empty data-channel message")]
    Empty,
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("data-channel message too large ({0} bytes)")]
    TooLarge(usize),
}

impl<'a> Frame<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(FrameError::TooLarge(bytes.len()));
        }
        let (&kind, body) = bytes.split_first().ok_or(FrameError::Empty)?;
        match kind {
            DATA if !body.is_empty() => Ok(Frame::Data(body)),
            DATA => Err(FrameError::Malformed("DATA")),
            END => body
                .try_into()
                .map(Frame::End)
                .map_err(|_| FrameError::Malformed("END")),
            DONE if body.is_empty() => Ok(Frame::Done),
            DONE => Err(FrameError::Malformed("DONE")),
            FAIL if body.len() <= MAX_REASON => std::str::from_utf8(body)
                .map(|s| Frame::Fail(s.to_string()))
                .map_err(|_| FrameError::Malformed("FAIL")),
            FAIL => Err(FrameError::Malformed("FAIL")),
            other => Err(FrameError::UnknownType(other)),
        }
    }

    /// Encodes this frame into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Data(bytes) => {
                let mut out = Vec::with_capacity(1 + bytes.len());
                out.push(DATA);
                out.extend_from_slice(bytes);
                out
            }
            Frame::End(hash) => {
                let mut out = vec![END];
                out.extend_from_slice(hash);
                out
            }
            Frame::Done => vec![DONE],
            Frame::Fail(reason) => {
                let mut end = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                let mut out = vec![FAIL];
                out.extend_from_slice(&reason.as_bytes()[..end]);
                out
            }
        }
    }
}

/// The type byte of a DATA frame, for writers that fill the payload in place.
pub const DATA_TYPE: u8 = DATA;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let frames = [
            Frame::Data(b"abc"),
            Frame::End([9; 32]),
            Frame::Done,
            Frame::Fail("disk full".into()),
        ];
        for frame in frames {
            assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        }
    }

    #[test]
    fn refuses_malformed_frames() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[DATA]), Err(FrameError::Malformed("DATA")));
        assert_eq!(
            Frame::decode(&[END, 1, 2]),
            Err(FrameError::Malformed("END"))
        );
        assert_eq!(
            Frame::decode(&[DONE, 0]),
            Err(FrameError::Malformed("DONE"))
        );
        assert_eq!(
            Frame::decode(&[FAIL, 0xff]),
            Err(FrameError::Malformed("FAIL"))
        );
        assert_eq!(Frame::decode(&[0x7f]), Err(FrameError::UnknownType(0x7f)));
        assert_eq!(
            Frame::decode(&vec![DATA; MAX_MESSAGE + 1]),
            Err(FrameError::TooLarge(MAX_MESSAGE + 1))
        );
    }

    #[test]
    fn long_fail_reasons_are_cut_on_a_char_boundary() {
        let reason = "é".repeat(MAX_REASON);
        let encoded = Frame::Fail(reason).encode();
        assert!(encoded.len() <= 1 + MAX_REASON);
        assert!(matches!(Frame::decode(&encoded), Ok(Frame::Fail(_))));
    }
}
