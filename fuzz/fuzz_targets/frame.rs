//! Data-channel frames from the peer: decoded, and what decodes encodes back to the same.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mp::protocol::frame::{data_len, FailKind, Frame, Taken, MAX_DATA, MAX_MESSAGE, MAX_REASON};

#[derive(Arbitrary, Debug)]
enum Built<'a> {
    Data(&'a [u8]),
    End([u8; 32]),
    Done,
    Fail(u8, String),
    Begin(u64),
    Ack(u64, u64),
    Keepalive,
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    raw: &'a [u8],
    built: Built<'a>,
}

fuzz_target!(|input: Input| {
    if let Ok(frame) = Frame::decode(input.raw) {
        assert!(input.raw.len() <= MAX_MESSAGE);
        let encoded = frame.encode();
        assert_eq!(Frame::decode(&encoded).as_ref(), Ok(&frame));
        if let Frame::Data(payload) = &frame {
            assert!(!payload.is_empty() && payload.len() <= MAX_DATA);
            assert_eq!(data_len(input.raw), payload.len() as u64);
        } else {
            assert_eq!(data_len(input.raw), 0);
        }
        if let Frame::Fail(_, reason) = &frame {
            assert!(reason.len() <= MAX_REASON);
        }
        // Every decoded frame but FAIL (whose unknown kinds read as "other") is its encoding.
        if !matches!(frame, Frame::Fail(..)) {
            assert_eq!(encoded, input.raw);
        }
    }

    let kind = |k: u8| match k % 4 {
        1 => FailKind::Integrity,
        2 => FailKind::LocalIo,
        3 => FailKind::Interrupted,
        _ => FailKind::Other,
    };
    let frame = match input.built {
        Built::Data(bytes) if !bytes.is_empty() && bytes.len() <= MAX_DATA => Frame::Data(bytes),
        Built::Data(_) => return,
        Built::End(hash) => Frame::End(hash),
        Built::Done => Frame::Done,
        Built::Fail(k, reason) => Frame::Fail(kind(k), reason),
        Built::Begin(offset) => Frame::Begin(offset),
        Built::Ack(bytes, messages) => Frame::Ack(Taken { bytes, messages }),
        Built::Keepalive => Frame::Keepalive,
    };
    let encoded = frame.encode();
    assert!(encoded.len() <= MAX_MESSAGE);
    match (Frame::decode(&encoded), &frame) {
        // A long reason is cut (on a character boundary).
        (Ok(Frame::Fail(k, got)), Frame::Fail(kind, reason)) => {
            assert_eq!(k, *kind);
            assert!(reason.starts_with(&got));
            assert!(got.len() == reason.len() || got.len() + 4 > MAX_REASON);
        }
        (Ok(got), frame) => assert_eq!(&got, frame),
        (Err(err), frame) => panic!("{frame:?} encodes to something that does not decode: {err}"),
    }
});
