//! The sender engine fed any sequence of inputs: envelopes and frames of arbitrary bytes,
//! the pump's reports with arbitrary values, time moving on by arbitrary amounts. It must
//! never panic, never output anything after `Done`, and always come back to waiting.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mp::protocol::manifest::Manifest;
use mp::protocol::message::Candidate;
use mp::protocol::sender::{Chunk, Input, Offer, Sender};
use mp_fuzz::{code, failure, manifest, start, EntrySpec, Watch, WAIT};

#[derive(Arbitrary, Debug)]
enum OfferSpec {
    Files(Vec<EntrySpec>),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Step {
    Paired,
    Envelope(Vec<u8>),
    RendezvousClosed(u8),
    LocalSdp(String),
    LocalCandidate(String, Option<String>, Option<u16>),
    LinkOpen(u32),
    LinkFailed(u8),
    LinkClosed,
    Frame(Vec<u8>),
    Prefixes(Result<Vec<Option<[u8; 32]>>, u8>),
    Data(u16, Vec<u8>),
    End(u16, [u8; 32]),
    ReadFailed(u8),
    Interrupt,
    /// Time moves on by this many milliseconds, then `Timeout`.
    Timeout(u32),
    /// Time moves on to the deadline the engine asked for, then `Timeout`.
    Deadline,
}

fuzz_target!(|input: (OfferSpec, Vec<Step>)| {
    let (offer, steps) = input;
    let offer = match offer {
        OfferSpec::Files(specs) => {
            Offer::Files(manifest(&specs).unwrap_or_else(|| Manifest::single("a", 3)))
        }
        OfferSpec::Text(text) => Offer::Text(text),
    };
    let mut now = start();
    let mut engine = Sender::new(code(), offer, now, WAIT);
    let mut watch = Watch::default();
    let (_, mut deadline) = watch.sender(&mut engine, now, false);
    for step in steps.into_iter().take(256) {
        let mut timeout = false;
        let input = match step {
            Step::Paired => Input::Paired,
            Step::Envelope(bytes) => Input::Envelope(bytes),
            Step::RendezvousClosed(kind) => Input::RendezvousClosed(failure(kind)),
            Step::LocalSdp(sdp) => Input::LocalSdp(sdp),
            Step::LocalCandidate(candidate, mid, mline) => Input::LocalCandidate(Candidate {
                candidate,
                mid,
                mline,
            }),
            Step::LinkOpen(max_message) => Input::LinkOpen {
                max_message: max_message as usize,
                // The low bits choose the path: none measured, a LAN, or a long path.
                path_rtt: [None, Some(1), Some(100)][max_message as usize % 3]
                    .map(std::time::Duration::from_millis),
            },
            Step::LinkFailed(kind) => Input::LinkFailed(failure(kind)),
            Step::LinkClosed => Input::LinkClosed,
            Step::Frame(bytes) => Input::Frame(bytes),
            Step::Prefixes(hashes) => Input::Prefixes(hashes.map_err(failure)),
            Step::Data(index, frame) => Input::Chunk(Chunk::Data {
                index: index.into(),
                frame,
            }),
            Step::End(index, sha256) => Input::Chunk(Chunk::End {
                index: index.into(),
                sha256,
            }),
            Step::ReadFailed(kind) => Input::Chunk(Chunk::Failed(failure(kind))),
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
        (_, deadline) = watch.sender(&mut engine, now, timeout);
    }
});
