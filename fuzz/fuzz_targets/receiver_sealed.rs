//! The receiver against a peer that knows the code: after a real key exchange, anything
//! sealed with the right key (offers in parts, texts, prefixes, SDPs, candidates, any bytes),
//! forged and replayed envelopes, and the pump's answers in turn, time moving on.
//!
//! Besides never panicking and never outputting after `Done`, the receiver must say only
//! well-formed messages, ask only about an offer that passes its checks, write, place, accept
//! or connect nothing before the user accepted, and resume only prefixes the sender proved.
#![no_main]

use std::collections::HashSet;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mp::protocol::engine::MAX_CANDIDATES;
use mp::protocol::manifest::Manifest;
use mp::protocol::message::{Candidate, Message, MAX_TEXT};
use mp::protocol::pake::Side;
use mp::protocol::receiver::{Input, KeptPrefix, Output, Receiver};
use mp_fuzz::{
    code, failure, kept_bytes, manifest, start, EntrySpec, HashSpec, Peer, Said, Watch, MAX_KEPT,
    WAIT,
};
use sha2::{Digest, Sha256};

#[derive(Arbitrary, Debug)]
enum Step {
    Say(Said),
    /// Shortcuts to what an honest sender says: a valid offer, in one message…
    Offer(Vec<EntrySpec>),
    /// …the SHA-256 of each kept prefix (or not)…
    Prove(Vec<bool>),
    /// …and its WebRTC offer.
    SdpOffer,
    /// An envelope not sealed with the key.
    Forged(Vec<u8>),
    /// The last sealed envelope again.
    Replay,
    /// The user accepts the offer asked about; prefixes kept: (which entry, how long).
    Accept(Vec<(u8, u32)>),
    Decline(u8),
    TextShown(Option<u8>),
    LocalSdp(String),
    LocalCandidate(String),
    LinkOpen,
    LinkFailed(u8),
    LinkClosed,
    RendezvousClosed(u8),
    Interrupt,
    Timeout(u32),
    Deadline,
}

/// What the pump was asked, and what the receiver has been seen to do.
#[derive(Default)]
struct State {
    /// The peer's ICE candidates passed on to the peer connection.
    candidates: usize,
    asked: Option<Manifest>,
    answered: bool,
    accepted: bool,
    text: bool,
    text_answered: bool,
    answer_asked: bool,
    local_sdp: bool,
    kept: Vec<KeptPrefix>,
    /// Entries whose real prefix hash the peer said.
    proved: HashSet<usize>,
}

fuzz_target!(|steps: Vec<Step>| {
    let mut now = start();
    let mut engine = Receiver::new(code(), now, WAIT);
    let mut watch = Watch::default();
    engine.handle(now, Input::Paired);
    let (outputs, _) = watch.receiver(&mut engine, now, false);
    let Some(Output::Envelope(theirs)) = outputs
        .into_iter()
        .find(|o| matches!(o, Output::Envelope(_)))
    else {
        panic!("no key exchange from the receiver");
    };
    let (mut peer, pake, hello) = Peer::start(Side::Sender, &theirs);
    let mut state = State::default();
    let mut last = hello.clone();
    for envelope in [pake, hello] {
        engine.handle(now, Input::Envelope(envelope));
        let (outputs, _) = watch.receiver(&mut engine, now, false);
        for output in outputs {
            observe(output, &mut peer, &mut state);
        }
    }
    let (_, mut deadline) = watch.receiver(&mut engine, now, false);
    for step in steps.into_iter().take(256) {
        let step = match step {
            Step::Offer(specs) => match manifest(&specs) {
                Some(manifest) => Step::Say(Said::Bytes(
                    Message::Offer {
                        manifest,
                        more: false,
                    }
                    .to_bytes(),
                )),
                None => continue,
            },
            Step::Prove(real) => Step::Say(Said::Prefixes(
                state
                    .kept
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        let hash = match real.get(i) {
                            Some(true) => HashSpec::Real,
                            _ => HashSpec::Hex([0; 32]),
                        };
                        (k.index as u16, hash)
                    })
                    .collect(),
            )),
            Step::SdpOffer => Step::Say(Said::Sdp {
                answer: false,
                sdp: "v=0".into(),
            }),
            step => step,
        };
        let mut timeout = false;
        let input = match step {
            Step::Say(said) => {
                let kept = state.kept.clone();
                let real = |index| kept.iter().find(|k| k.index == index).map(|k| k.sha256);
                if let Said::Prefixes(prefixes) = &said {
                    state.proved = prefixes
                        .iter()
                        .filter(|(i, h)| matches!(h, HashSpec::Real) && real((*i).into()).is_some())
                        .map(|(i, _)| (*i).into())
                        .collect();
                }
                last = peer.seal(&said.bytes(real));
                Input::Envelope(last.clone())
            }
            Step::Offer(_) | Step::Prove(_) | Step::SdpOffer => unreachable!("made a Say above"),
            Step::Forged(bytes) => Input::Envelope(bytes),
            Step::Replay => Input::Envelope(last.clone()),
            Step::Accept(kept) => {
                let Some(manifest) = state.asked.as_ref().filter(|_| !state.answered) else {
                    continue;
                };
                let mut prefixes: Vec<KeptPrefix> = Vec::new();
                for (index, len) in kept {
                    let index = index as usize % manifest.entries.len();
                    let entry = &manifest.entries[index];
                    let Some(size) = entry.size.filter(|_| entry.is_file()) else {
                        continue;
                    };
                    let len = u64::from(len).min(size).min(MAX_KEPT);
                    if len > 0 && !prefixes.iter().any(|k| k.index == index) {
                        prefixes.push(KeptPrefix {
                            index,
                            offset: len,
                            sha256: Sha256::digest(kept_bytes(index, len)).into(),
                        });
                    }
                }
                prefixes.sort_by_key(|k| k.index);
                state.answered = true;
                state.accepted = true;
                state.kept = prefixes.clone();
                Input::Accept { kept: prefixes }
            }
            Step::Decline(kind) => {
                if state.asked.is_none() || state.answered {
                    continue;
                }
                state.answered = true;
                Input::Decline(failure(kind))
            }
            Step::TextShown(shown) => {
                if !state.text || state.text_answered {
                    continue;
                }
                state.text_answered = true;
                Input::TextShown(match shown {
                    None => Ok(()),
                    Some(kind) => Err(failure(kind)),
                })
            }
            Step::LocalSdp(sdp) => {
                if !state.answer_asked || state.local_sdp {
                    continue;
                }
                state.local_sdp = true;
                Input::LocalSdp(sdp)
            }
            Step::LocalCandidate(candidate) => Input::LocalCandidate(Candidate {
                candidate,
                mid: None,
                mline: None,
            }),
            Step::LinkOpen => {
                if !state.local_sdp {
                    continue;
                }
                Input::LinkOpen
            }
            Step::LinkFailed(kind) => Input::LinkFailed(failure(kind)),
            Step::LinkClosed => Input::LinkClosed,
            Step::RendezvousClosed(kind) => Input::RendezvousClosed(failure(kind)),
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
        let outputs;
        (outputs, deadline) = watch.receiver(&mut engine, now, timeout);
        for output in outputs {
            observe(output, &mut peer, &mut state);
        }
    }
});

fn observe(output: Output, peer: &mut Peer, state: &mut State) {
    match output {
        Output::Envelope(envelope) => match peer.open(&envelope) {
            Message::Accept { resume } => {
                assert!(
                    state.accepted || state.text_answered,
                    "accept before the user accepted"
                );
                for kept in &resume {
                    assert!(state
                        .kept
                        .iter()
                        .any(|k| k.index == kept.index && k.offset == kept.offset));
                }
            }
            Message::Resume { files } => {
                for index in files {
                    assert!(
                        state.proved.contains(&index),
                        "resuming entry {index}, whose prefix the sender did not prove"
                    );
                }
            }
            Message::Hello { .. }
            | Message::Reject { .. }
            | Message::Sdp { .. }
            | Message::Candidate(_)
            | Message::Abort { .. } => {}
            other => panic!("the receiver said {}", other.kind_name()),
        },
        Output::Ask { manifest, summary } => {
            assert!(state.asked.is_none(), "asked twice");
            assert_eq!(manifest.validate(), Ok(summary));
            state.asked = Some(manifest);
        }
        Output::ShowText(text) => {
            assert!(text.len() <= MAX_TEXT);
            assert!(!state.text, "a text shown twice");
            state.text = true;
        }
        Output::Answer { .. } => {
            assert!(state.accepted, "connecting before the user accepted");
            assert!(!state.answer_asked, "answering twice");
            state.answer_asked = true;
        }
        Output::Write(_) | Output::Place | Output::Discard => {
            assert!(state.accepted, "touching files before the user accepted")
        }
        Output::AddCandidate(_) => {
            state.candidates += 1;
            assert!(
                state.candidates <= MAX_CANDIDATES,
                "more ICE candidates than taken"
            );
        }
        _ => {}
    }
}
