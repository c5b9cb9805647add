//! Data-channel frames: one frame per WebRTC message, a type byte and a payload.
//!
//! ```text
//! 0x00 DATA  bytes        the next bytes of the current file (1 ..= MAX_DATA bytes)
//! 0x01 END   sha256[32]   the current file is complete; its SHA-256
//! 0x02 DONE               receiver → sender: every file verified and stored
//! 0x03 FAIL  kind[1] text either way: stop; kind 0 other, 1 integrity, 2 local I/O,
//!                         3 interrupted; then why, in UTF-8 (at most MAX_REASON bytes)
//! 0x04 BEGIN offset[8]    the current file's DATA starts at this offset (big-endian u64);
//!                         sent only for files the receiver asked to resume
//! 0x05 ACK   bytes[8] messages[8]
//!                         receiver → sender: DATA payload bytes and messages (DATA, END
//!                         and BEGIN frames) taken in so far, all files together (big-endian
//!                         u64 each)
//! 0x06 KEEPALIVE          sender → receiver: still here (sent after a quiet spell; not
//!                         counted by flow control)
//! ```
//!
//! Flow control, enforced on both sides: before each DATA, END or BEGIN frame the sender checks
//! that fewer than [`WINDOW`] DATA payload bytes (up to [`WIDE_WINDOW`] with the `wide-window`
//! feature, [`grown_window`]) and [`WINDOW_MESSAGES`] messages are beyond the
//! last ACK; the receiver acknowledges at least every [`ACK_EVERY`] bytes or
//! [`ACK_EVERY_MESSAGES`] messages it takes in, and fails a sender that goes past what it
//! granted ([`Window::admits`]). The byte
//! bound caps the receiver's memory; the message bound keeps many small files from filling the
//! WebRTC stack's 256-message queue, which would close the SCTP window and stall the transfer
//! until a retransmission timer (a second or more).
//!
//! Files travel one after the other in manifest order on one reliable, ordered channel; folders
//! have no frames.

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
const BEGIN: u8 = 0x04;
const ACK: u8 = 0x05;
const KEEPALIVE: u8 = 0x06;

/// DATA payload bytes the sender may have in flight beyond the receiver's last ACK.
pub const WINDOW: u64 = 4 * 1024 * 1024;
/// With the `wide-window` feature: what the receiver grants, and the most the sender's window
/// may grow to ([`grown_window`]). 16 MiB keeps 100 MB/s going at 160 ms of round trip.
pub const WIDE_WINDOW: u64 = 16 * 1024 * 1024;
/// Messages the sender may have in flight beyond the receiver's last ACK.
pub const WINDOW_MESSAGES: u64 = 128;
/// The receiver acknowledges at least this often (in DATA payload bytes)…
pub const ACK_EVERY: u64 = 1024 * 1024;
/// …and at least this often in messages.
pub const ACK_EVERY_MESSAGES: u64 = 32;

/// The receiver's check that the sender stays inside the window it was granted.
pub struct Window;

impl Window {
    /// True if `received` (DATA payload bytes, and DATA/END/BEGIN messages, counted by the
    /// receiver) is within what an ACK of `granted` allows a sender whose largest DATA payload
    /// is `max_data` bytes: the sender checks before sending, so it may overshoot by one frame.
    /// `window` is the byte window granted: [`WINDOW`], or [`WIDE_WINDOW`] with `wide-window`.
    pub fn admits(received: Taken, granted: Taken, max_data: usize, window: u64) -> bool {
        received.bytes.saturating_sub(granted.bytes) < window + max_data as u64
            && received.messages.saturating_sub(granted.messages) <= WINDOW_MESSAGES
    }

    /// True if a sender that has sent `sent` and seen `acked` may send one more frame, its byte
    /// window being `window`.
    pub fn open(sent: Taken, acked: Taken, window: u64) -> bool {
        sent.bytes.saturating_sub(acked.bytes) < window
            && sent.messages.saturating_sub(acked.messages) < WINDOW_MESSAGES
    }
}

/// The sender's byte window after one measurement (`wide-window`): twice the bandwidth-delay
/// product the path has shown, plus one ACK interval, never less than `current` nor more than
/// `max`. `delivered` bytes were acknowledged in `elapsed` (from a DATA frame's hand-over to the
/// ACK that covered it), and `path_rtt` is the path's round trip as ICE measured it (its
/// connectivity checks), which data queued at either end does not inflate.
///
/// On a short path the product is small, so the window stays at [`WINDOW`] even when data
/// queues in front of a slower link. On a long one each round trip acknowledges a whole window,
/// so the window about doubles per round trip until it covers the path or reaches `max`. It
/// never shrinks: it bounds memory; congestion is SCTP's business.
pub fn grown_window(
    current: u64,
    max: u64,
    delivered: u64,
    elapsed: std::time::Duration,
    path_rtt: std::time::Duration,
) -> u64 {
    let elapsed = elapsed.as_secs_f64();
    if elapsed <= 0.0 {
        return current;
    }
    let bdp = delivered as f64 / elapsed * path_rtt.as_secs_f64();
    let want = (2.0 * bdp) as u64 + ACK_EVERY;
    current.max(want.min(max))
}

/// What the receiver has taken in: the content of an ACK.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub bytes: u64,
    pub messages: u64,
}

/// Why a side stopped, so the other can pick the right exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    Other = 0,
    Integrity = 1,
    LocalIo = 2,
    Interrupted = 3,
}

impl FailKind {
    fn from_byte(byte: u8) -> FailKind {
        match byte {
            1 => FailKind::Integrity,
            2 => FailKind::LocalIo,
            3 => FailKind::Interrupted,
            _ => FailKind::Other,
        }
    }
}

/// A decoded frame, borrowing the message it came from.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Data(&'a [u8]),
    End([u8; 32]),
    Done,
    Fail(FailKind, String),
    Begin(u64),
    Ack(Taken),
    Keepalive,
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
            FAIL if !body.is_empty() && body.len() <= 1 + MAX_REASON => {
                std::str::from_utf8(&body[1..])
                    .map(|s| Frame::Fail(FailKind::from_byte(body[0]), s.to_string()))
                    .map_err(|_| FrameError::Malformed("FAIL"))
            }
            FAIL => Err(FrameError::Malformed("FAIL")),
            BEGIN => body
                .try_into()
                .map(|b| Frame::Begin(u64::from_be_bytes(b)))
                .map_err(|_| FrameError::Malformed("BEGIN")),
            ACK if body.len() == 16 => Ok(Frame::Ack(Taken {
                bytes: u64::from_be_bytes(body[..8].try_into().expect("8 bytes")),
                messages: u64::from_be_bytes(body[8..].try_into().expect("8 bytes")),
            })),
            ACK => Err(FrameError::Malformed("ACK")),
            KEEPALIVE if body.is_empty() => Ok(Frame::Keepalive),
            KEEPALIVE => Err(FrameError::Malformed("KEEPALIVE")),
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
            Frame::Keepalive => vec![KEEPALIVE],
            Frame::Begin(offset) => {
                let mut out = vec![BEGIN];
                out.extend_from_slice(&offset.to_be_bytes());
                out
            }
            Frame::Ack(taken) => {
                let mut out = vec![ACK];
                out.extend_from_slice(&taken.bytes.to_be_bytes());
                out.extend_from_slice(&taken.messages.to_be_bytes());
                out
            }
            Frame::Fail(kind, reason) => {
                let mut end = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                let mut out = vec![FAIL, *kind as u8];
                out.extend_from_slice(&reason.as_bytes()[..end]);
                out
            }
        }
    }
}

/// The DATA payload length of an encoded frame (0 for any other frame).
pub fn data_len(message: &[u8]) -> u64 {
    match message.first() {
        Some(&DATA) => message.len() as u64 - 1,
        _ => 0,
    }
}

/// The type byte of a DATA frame, for writers that fill the payload in place.
pub const DATA_TYPE: u8 = DATA;

impl Frame<'_> {
    /// A short name for messages ("DATA", "END", …).
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Data(_) => "DATA",
            Frame::End(_) => "END",
            Frame::Done => "DONE",
            Frame::Fail(..) => "FAIL",
            Frame::Begin(_) => "BEGIN",
            Frame::Ack(_) => "ACK",
            Frame::Keepalive => "KEEPALIVE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_window_grows_with_the_bandwidth_delay_product_only() {
        let ms = Duration::from_millis;
        // A LAN: 500 MB/s and 1 ms; and the same link with 40 ms of data queued in front of it.
        assert_eq!(
            grown_window(WINDOW, WIDE_WINDOW, 500_000, ms(1), ms(1)),
            WINDOW
        );
        assert_eq!(
            grown_window(WINDOW, WIDE_WINDOW, 20_000_000, ms(40), ms(1)),
            WINDOW
        );
        // A 100 ms path that acknowledged a whole 4 MiB window in one round trip: doubled, plus
        // one ACK interval; then the next round trip reaches the ceiling.
        let once = grown_window(WINDOW, WIDE_WINDOW, WINDOW, ms(100), ms(100));
        assert_eq!(once, 2 * WINDOW + ACK_EVERY);
        assert_eq!(
            grown_window(once, WIDE_WINDOW, once, ms(100), ms(100)),
            WIDE_WINDOW
        );
        // It never shrinks, and a zero interval measures nothing.
        assert_eq!(grown_window(once, WIDE_WINDOW, 1, ms(100), ms(1)), once);
        assert_eq!(
            grown_window(WINDOW, WIDE_WINDOW, WINDOW, ms(0), ms(0)),
            WINDOW
        );
        // The ceiling holds 100 MB/s at 100 ms (10 MB in flight) with room for ACK pacing.
        const { assert!(WIDE_WINDOW >= 10_000_000 + ACK_EVERY) };
    }

    #[test]
    fn round_trips() {
        let frames = [
            Frame::Data(b"abc"),
            Frame::End([9; 32]),
            Frame::Done,
            Frame::Keepalive,
            Frame::Fail(FailKind::LocalIo, "disk full".into()),
            Frame::Fail(FailKind::Other, String::new()),
            Frame::Begin(1 << 40),
            Frame::Ack(Taken {
                bytes: 7,
                messages: 3,
            }),
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
            Frame::decode(&[FAIL, 1, 0xff]),
            Err(FrameError::Malformed("FAIL"))
        );
        assert_eq!(Frame::decode(&[FAIL]), Err(FrameError::Malformed("FAIL")));
        assert_eq!(
            Frame::decode(&[FAIL, 99, b'x']),
            Ok(Frame::Fail(FailKind::Other, "x".into()))
        );
        assert_eq!(
            Frame::decode(&[BEGIN, 1]),
            Err(FrameError::Malformed("BEGIN"))
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
        let encoded = Frame::Fail(FailKind::Other, reason).encode();
        assert!(encoded.len() <= 2 + MAX_REASON);
        assert!(matches!(Frame::decode(&encoded), Ok(Frame::Fail(..))));
    }
}
