//! The sender against a peer that knows the code: after a real key exchange, anything sealed
//! with the right key (accepts with any resume list, prefixes, resume answers, SDPs,
//! candidates, rejects, any bytes), forged and replayed envelopes, and the pump's answers in
//! turn, time moving on.
//!
//! Besides never panicking and never outputting after `Done`, the sender must say only
//! well-formed messages, offer exactly its manifest (in parts that reassemble), hash only
//! prefixes of offered files within their size, connect only after an accept, and read from
//! exactly the offsets agreed.
#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mp::protocol::engine::MAX_CANDIDATES;
use mp::protocol::manifest::Manifest;
use mp::protocol::message::{Candidate, Kept, Message, OfferAssembly};
use mp::protocol::pake::Side;
use mp::protocol::sender::{Input, Offer, Output, Sender};
use mp_fuzz::{check_plan, code, failure, manifest, start, EntrySpec, Peer, Said, Watch, WAIT};

#[derive(Arbitrary, Debug)]
enum OfferSpec {
    Files(Vec<EntrySpec>),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Step {
    Say(Said),
    /// Shortcuts to what an honest receiver says: accept, with prefixes kept of some files…
    Accept(Vec<(u8, u32)>),
    /// …which of those match…
    Resume(Vec<bool>),
    /// …and its WebRTC answer.
    SdpAnswer,
    /// An envelope not sealed with the key.
    Forged(Vec<u8>),
    /// The last sealed envelope again.
    Replay,
    /// The pump's prefix hashes, when asked: each the same as the receiver's or not.
    Prefixes(Vec<Option<bool>>, Option<u8>),
    LocalSdp(String),
    LocalCandidate(String),
    LinkOpen(u32),
    LinkFailed(u8),
    LinkClosed,
    RendezvousClosed(u8),
    Interrupt,
    Timeout(u32),
    Deadline,
}

#[derive(Default)]
struct State {
    /// The peer's ICE candidates passed on to the peer connection.
    candidates: usize,
    manifest: Option<Manifest>,
    text: Option<String>,
    assembly: OfferAssembly,
    offered: Option<Manifest>,
    /// The last accept said, and the last resume.
    accept: Option<Vec<Kept>>,
    resume: Option<Vec<usize>>,
    answer_said: bool,
    hash_asked: Option<usize>,
    offer_asked: bool,
    local_sdp: bool,
    apply_asked: bool,
}

fuzz_target!(|input: (OfferSpec, Vec<Step>)| {
    let (offer, steps) = input;
    let mut state = State::default();
    let offer = match offer {
        OfferSpec::Files(specs) => {
            let manifest = manifest(&specs).unwrap_or_else(|| Manifest::single("a", 3));
            state.manifest = Some(manifest.clone());
            Offer::Files(manifest)
        }
        OfferSpec::Text(text) => {
            state.text = Some(text.clone());
            Offer::Text(text)
        }
    };
    let mut now = start();
    let mut engine = Sender::new(code(), offer, now, WAIT);
    let mut watch = Watch::default();
    engine.handle(now, Input::Paired);
    let (outputs, _) = watch.sender(&mut engine, now, false);
    let Some(Output::Envelope(theirs)) = outputs
        .into_iter()
        .find(|o| matches!(o, Output::Envelope(_)))
    else {
        panic!("no key exchange from the sender");
    };
    let (mut peer, pake, hello) = Peer::start(Side::Receiver, &theirs);
    let mut last = hello.clone();
    for envelope in [pake, hello] {
        engine.handle(now, Input::Envelope(envelope));
        let (outputs, _) = watch.sender(&mut engine, now, false);
        for output in outputs {
            observe(output, &mut peer, &mut state);
        }
    }
    assert!(engine.is_confirmed());
    let (_, mut deadline) = watch.sender(&mut engine, now, false);
    for step in steps.into_iter().take(256) {
        let step = match step {
            Step::Accept(kept) => {
                let mut resume: Vec<(u16, u64)> = Vec::new();
                if let Some(manifest) = &state.manifest {
                    for (index, len) in kept {
                        let index = index as usize % manifest.entries.len();
                        let entry = &manifest.entries[index];
                        let Some(size) = entry.size.filter(|_| entry.is_file()) else {
                            continue;
                        };
                        let len = u64::from(len).min(size);
                        if len > 0 && !resume.iter().any(|&(i, _)| usize::from(i) == index) {
                            resume.push((index as u16, len));
                        }
                    }
                }
                Step::Say(Said::Accept(resume))
            }
            Step::Resume(matches) => {
                let accepted = state.accept.clone().unwrap_or_default();
                Step::Say(Said::Resume(
                    accepted
                        .iter()
                        .zip(matches)
                        .filter(|(_, m)| *m)
                        .map(|(k, _)| k.index as u16)
                        .collect(),
                ))
            }
            Step::SdpAnswer => Step::Say(Said::Sdp {
                answer: true,
                sdp: "v=0".into(),
            }),
            step => step,
        };
        let mut timeout = false;
        let input = match step {
            Step::Say(said) => {
                // What the sender should take: an accept (its resume list), a resume, an SDP
                // answer; if it takes them, its later outputs are checked against them.
                let bytes = said.bytes(|_| None);
                match Message::from_bytes(&bytes) {
                    Ok(Message::Accept { resume }) if state.accept.is_none() => {
                        state.accept = Some(resume)
                    }
                    Ok(Message::Resume { files }) if state.resume.is_none() => {
                        state.resume = Some(files)
                    }
                    Ok(Message::Sdp { .. }) => state.answer_said = true,
                    _ => {}
                }
                last = peer.seal(&bytes);
                Input::Envelope(last.clone())
            }
            Step::Accept(_) | Step::Resume(_) | Step::SdpAnswer => unreachable!("made a Say above"),
            Step::Forged(bytes) => Input::Envelope(bytes),
            Step::Replay => Input::Envelope(last.clone()),
            Step::Prefixes(matches, fail) => {
                let Some(count) = state.hash_asked.take() else {
                    continue;
                };
                match fail {
                    Some(kind) => Input::Prefixes(Err(failure(kind))),
                    None => Input::Prefixes(Ok((0..count)
                        .map(|i| match matches.get(i).copied().flatten() {
                            Some(true) => Some([1; 32]),
                            Some(false) => Some([2; 32]),
                            None => None,
                        })
                        .collect())),
                }
            }
            Step::LocalSdp(sdp) => {
                if !state.offer_asked || state.local_sdp {
                    continue;
                }
                state.local_sdp = true;
                Input::LocalSdp(sdp)
            }
            Step::LocalCandidate(candidate) => Input::LocalCandidate(Candidate {
                candidate,
                mid: Some("0".into()),
                mline: Some(0),
            }),
            Step::LinkOpen(max_message) => {
                if !state.apply_asked {
                    continue;
                }
                Input::LinkOpen {
                    max_message: max_message as usize,
                    path_rtt: Some(std::time::Duration::from_millis(100)),
                }
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
        (outputs, deadline) = watch.sender(&mut engine, now, timeout);
        for output in outputs {
            observe(output, &mut peer, &mut state);
        }
    }
});

fn observe(output: Output, peer: &mut Peer, state: &mut State) {
    match output {
        Output::Envelope(envelope) => match peer.open(&envelope) {
            Message::Offer { manifest, more } => {
                assert!(
                    state.offered.is_none(),
                    "an offer part after the whole offer"
                );
                let whole = state
                    .assembly
                    .add(manifest, more)
                    .expect("the sender's own offer parts");
                if let Some(whole) = whole {
                    assert_eq!(Some(&whole), state.manifest.as_ref(), "offered other files");
                    state.offered = Some(whole);
                }
            }
            Message::Text { text } => assert_eq!(Some(&text), state.text.as_ref()),
            Message::Prefixes { prefixes } => {
                let asked = state.accept.as_deref().unwrap_or_default();
                assert_eq!(prefixes.len(), asked.len());
                for (prefix, kept) in prefixes.iter().zip(asked) {
                    assert_eq!(prefix.index, kept.index);
                }
            }
            Message::Hello { .. }
            | Message::Sdp { .. }
            | Message::Candidate(_)
            | Message::Abort { .. } => {}
            other => panic!("the sender said {}", other.kind_name()),
        },
        Output::HashPrefixes(kept) => {
            let manifest = state.manifest.as_ref().expect("hashing for files");
            assert_eq!(
                Some(&kept),
                state.accept.as_ref(),
                "hashing what was not asked"
            );
            let mut seen = std::collections::HashSet::new();
            for k in &kept {
                let entry = &manifest.entries[k.index];
                assert!(entry.is_file() && seen.insert(k.index));
                assert!(k.offset > 0 && k.offset <= entry.size.expect("a file of known size"));
            }
            state.hash_asked = Some(kept.len());
        }
        Output::CreateOffer { .. } => {
            assert!(state.accept.is_some(), "connecting before an accept");
            assert!(state.offered.is_some(), "connecting before offering");
            assert!(!state.offer_asked);
            state.offer_asked = true;
        }
        Output::ApplyAnswer(_) => {
            assert!(state.local_sdp && state.answer_said);
            state.apply_asked = true;
        }
        Output::StartReading { plan, .. } => {
            let manifest = state.manifest.as_ref().expect("reading files");
            let accept = state.accept.as_deref().unwrap_or_default();
            let agreed: HashMap<usize, u64> = state
                .resume
                .iter()
                .flatten()
                .map(|&index| {
                    let kept = accept.iter().find(|k| k.index == index).expect("offered");
                    (index, kept.offset)
                })
                .collect();
            check_plan(&plan, manifest, &agreed);
        }
        Output::Done(Ok(_)) => {
            assert!(state.accept.is_some(), "success without an accept");
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
