//! The receiver engine fed any sequence of inputs: envelopes and frames of arbitrary bytes,
//! the pump's reports with arbitrary values, time moving on by arbitrary amounts. It must
//! never panic, never output anything after `Done`, and always come back to waiting.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mp::protocol::frame::Taken;
use mp::protocol::message::Candidate;
use mp::protocol::receiver::{Input, KeptPrefix, Receiver};
use mp_fuzz::{code, failure, start, Watch, WAIT};

#[derive(Arbitrary, Debug)]
enum Step {
    Paired,
    Envelope(Vec<u8>),
    RendezvousClosed(u8),
    Accept(Vec<(u16, u64, [u8; 32])>),
    Decline(u8),
    TextShown(Option<u8>),
    LocalSdp(String),
    LocalCandidate(String, Option<String>, Option<u16>),
    LinkOpen,
    LinkFailed(u8),
    LinkClosed,
    Frame(Vec<u8>),
    Taken(u64, u64),
    Written(u16, [u8; 32]),
    WriteFailed(u8),
    Placed(Option<u8>),
    Interrupt,
    /// Time moves on by this many milliseconds, then `Timeout`.
    Timeout(u32),
    /// Time moves on to the deadline the engine asked for, then `Timeout`.
    Deadline,
}

fuzz_target!(|steps: Vec<Step>| {
    let mut now = start();
    let mut engine = Receiver::new(code(), now, WAIT);
    let mut watch = Watch::default();
    let (_, mut deadline) = watch.receiver(&mut engine, now, false);
    for step in steps.into_iter().take(256) {
        let mut timeout = false;
        let input = match step {
            Step::Paired => Input::Paired,
            Step::Envelope(bytes) => Input::Envelope(bytes),
            Step::RendezvousClosed(kind) => Input::RendezvousClosed(failure(kind)),
            Step::Accept(kept) => Input::Accept {
                kept: kept
                    .into_iter()
                    .map(|(index, offset, sha256)| KeptPrefix {
                        index: index.into(),
                        offset,
                        sha256,
                    })
                    .collect(),
            },
            Step::Decline(kind) => Input::Decline(failure(kind)),
            Step::TextShown(shown) => Input::TextShown(match shown {
                None => Ok(()),
                Some(kind) => Err(failure(kind)),
            }),
            Step::LocalSdp(sdp) => Input::LocalSdp(sdp),
            Step::LocalCandidate(candidate, mid, mline) => Input::LocalCandidate(Candidate {
                candidate,
                mid,
                mline,
            }),
            Step::LinkOpen => Input::LinkOpen,
            Step::LinkFailed(kind) => Input::LinkFailed(failure(kind)),
            Step::LinkClosed => Input::LinkClosed,
            Step::Frame(bytes) => Input::Frame(bytes),
            Step::Taken(bytes, messages) => Input::Taken(Taken { bytes, messages }),
            Step::Written(index, sha256) => Input::Written {
                index: index.into(),
                sha256,
            },
            Step::WriteFailed(kind) => Input::WriteFailed(failure(kind)),
            Step::Placed(placed) => Input::Placed(match placed {
                None => Ok(()),
                Some(kind) => Err(failure(kind)),
            }),
            Step::Interrupt => Input::Interrupt,
            Step::Timeout(ms) => {
                now += Duration::from_millis(ms.into());
                timeout = true;
                Input::Timeout
            }
            Step::Deadline => {
                now = now.max(deadline);
                timeout = true;
                Input::Timeout
            }
        };
        engine.handle(now, input);
        (_, deadline) = watch.receiver(&mut engine, now, timeout);
    }
});
