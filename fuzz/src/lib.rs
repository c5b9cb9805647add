//! What the engine targets share: draining an engine's outputs with the invariants every pump
//! relies on, failures made from a byte, small manifests, and a real handshake between a
//! sender and a receiver that gets both engines to an open data channel.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use mp::error::{Failure, Kind};
use mp::protocol::code::Code;
use mp::protocol::manifest::{Entry, Manifest};
use mp::protocol::receiver::{self, KeptPrefix, Receiver};
use mp::protocol::sender::{self, Offer, Planned, Sender};
use sha2::{Digest, Sha256};

/// More outputs than any one input can cause: past this, `poll_output` does not terminate.
pub const POLL_LIMIT: usize = 100_000;

/// How long each engine waits at the rendezvous.
pub const WAIT: Duration = Duration::from_secs(600);

/// One fixed starting instant, so that runs differ only by their input.
pub fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

pub fn code() -> Code {
    Code::parse("7-guitar-ocean").unwrap()
}

/// A failure of any kind.
pub fn failure(kind: u8) -> Failure {
    let kinds = Kind::ALL;
    let kind = kinds
        .get(kind as usize % (kinds.len() + 1))
        .copied()
        .unwrap_or(Kind::Internal);
    Failure::new(kind, "fuzz")
}

/// What an engine's outputs must respect, whatever it was fed.
#[derive(Default)]
pub struct Watch {
    /// `Done` was output.
    pub done: bool,
}

impl Watch {
    /// Every output of the receiver until it waits; returns them (without the final
    /// `Timeout`) and the instant it waits for.
    ///
    /// `after_timeout`: the last input was `Input::Timeout` at `now`, so the engine has dealt
    /// with every deadline up to `now` and must wait for a later one (else a pump would spin).
    pub fn receiver(
        &mut self,
        engine: &mut Receiver,
        now: Instant,
        after_timeout: bool,
    ) -> (Vec<receiver::Output>, Instant) {
        let mut outputs = Vec::new();
        for _ in 0..POLL_LIMIT {
            match engine.poll_output() {
                receiver::Output::Timeout(at) => {
                    if after_timeout && !self.done {
                        assert!(
                            at > now,
                            "the receiver waits for a deadline already handled"
                        );
                    }
                    return (outputs, at);
                }
                output => {
                    assert!(!self.done, "the receiver output {output:?} after Done");
                    if matches!(output, receiver::Output::Done(_)) {
                        self.done = true;
                    }
                    outputs.push(output);
                }
            }
        }
        panic!("the receiver's poll_output never returned Timeout");
    }

    /// As [`Watch::receiver`], for the sender.
    pub fn sender(
        &mut self,
        engine: &mut Sender,
        now: Instant,
        after_timeout: bool,
    ) -> (Vec<sender::Output>, Instant) {
        let mut outputs = Vec::new();
        for _ in 0..POLL_LIMIT {
            match engine.poll_output() {
                sender::Output::Timeout(at) => {
                    if after_timeout && !self.done {
                        assert!(at > now, "the sender waits for a deadline already handled");
                    }
                    return (outputs, at);
                }
                output => {
                    assert!(!self.done, "the sender output {output:?} after Done");
                    if matches!(output, sender::Output::Done(_)) {
                        self.done = true;
                    }
                    outputs.push(output);
                }
            }
        }
        panic!("the sender's poll_output never returned Timeout");
    }
}

/// One entry of a small offer: files and folders named `e<i>` (a folder holds the entries
/// after it that ask to be inside one).
#[derive(Arbitrary, Debug, Clone)]
pub enum EntrySpec {
    /// A file of a few bytes to a few MiB.
    File {
        size: u32,
        inside: bool,
    },
    /// A file of any size (only its frames are ever made).
    Huge {
        size: u64,
        inside: bool,
    },
    /// A stream of unknown length (valid only alone).
    Stream,
    Dir,
}

/// A manifest from specs; `None` when it is not valid (a sender only offers valid ones).
pub fn manifest(specs: &[EntrySpec]) -> Option<Manifest> {
    let mut entries = Vec::new();
    let mut folder: Option<String> = None;
    for (i, spec) in specs.iter().take(8).enumerate() {
        let name = |inside: bool| match (&folder, inside) {
            (Some(dir), true) => format!("{dir}/e{i}"),
            _ => format!("e{i}"),
        };
        entries.push(match spec {
            EntrySpec::File { size, inside } => {
                Entry::file(&name(*inside), u64::from(*size % (8 << 20)))
            }
            EntrySpec::Huge { size, inside } => Entry::file(&name(*inside), *size),
            EntrySpec::Stream => Entry {
                size: None,
                ..Entry::file(&name(false), 0)
            },
            EntrySpec::Dir => {
                let path = name(false);
                folder = Some(path.clone());
                Entry::dir(&path)
            }
        });
    }
    let manifest = Manifest { entries };
    manifest.validate().ok().map(|_| manifest)
}

/// The bytes a receiver kept of file `index` from an earlier attempt (the first `len`).
pub fn kept_bytes(index: usize, len: u64) -> Vec<u8> {
    vec![(index as u8) ^ 0x5a; len as usize]
}

/// Largest kept prefix the handshake makes (its bytes are hashed on every run).
pub const MAX_KEPT: u64 = 1 << 20;

/// How the handshake goes: what is offered, what the receiver kept, what the sender finds.
#[derive(Arbitrary, Debug)]
pub struct HandshakeSpec {
    pub entries: Vec<EntrySpec>,
    /// Kept prefixes: (which file, how long); made valid as the receiver's pump makes them.
    pub kept: Vec<(u8, u32)>,
    /// For each kept prefix: the sender's own prefix matches it (else it differs, or the file
    /// is shorter now).
    pub matches: Vec<Option<bool>>,
    /// The data channel's largest message, as the receiver's side announces it.
    pub max_message: u32,
}

/// Both engines with the data channel open.
pub struct Linked {
    pub now: Instant,
    pub sender: Sender,
    pub receiver: Receiver,
    pub manifest: Manifest,
    /// Files the sender resumes, with the length kept.
    pub agreed: HashMap<usize, u64>,
    /// The receiver's kept prefixes.
    pub kept: Vec<KeptPrefix>,
}

/// Runs a real handshake between a sender and a receiver of the same code, as the two pumps
/// would, up to the open data channel; `None` if the spec makes no valid offer or the
/// engines stop on their own (a resume the sender refuses, a channel too small).
///
/// What either engine outputs once the channel is open is left for the caller to poll.
pub fn handshake(spec: &HandshakeSpec) -> Option<Linked> {
    let manifest = manifest(&spec.entries)?;
    let now = start();
    let mut sender = Sender::new(code(), Offer::Files(manifest.clone()), now, WAIT);
    let mut receiver = Receiver::new(code(), now, WAIT);
    let mut kept: Vec<KeptPrefix> = Vec::new();
    for &(index, len) in &spec.kept {
        let index = index as usize % manifest.entries.len();
        let entry = &manifest.entries[index];
        let Some(size) = entry.size.filter(|_| entry.is_file()) else {
            continue;
        };
        let len = u64::from(len).min(size).min(MAX_KEPT);
        if len == 0 || kept.iter().any(|k| k.index == index) {
            continue;
        }
        kept.push(KeptPrefix {
            index,
            offset: len,
            sha256: Sha256::digest(kept_bytes(index, len)).into(),
        });
    }
    kept.sort_by_key(|k| k.index);
    kept.truncate(4);
    let mut agreed = HashMap::new();
    sender.handle(now, sender::Input::Paired);
    receiver.handle(now, receiver::Input::Paired);
    for _ in 0..1000 {
        let mut busy = false;
        match sender.poll_output() {
            sender::Output::Timeout(_) => {}
            sender::Output::Done(_) => return None,
            output => {
                busy = true;
                match output {
                    sender::Output::Envelope(e) => {
                        receiver.handle(now, receiver::Input::Envelope(e))
                    }
                    sender::Output::CreateOffer { .. } => {
                        sender.handle(now, sender::Input::LocalSdp("offer".into()))
                    }
                    sender::Output::HashPrefixes(asked) => {
                        let hashes = asked
                            .iter()
                            .enumerate()
                            .map(|(i, k)| match spec.matches.get(i).copied().flatten() {
                                Some(true) => {
                                    Some(Sha256::digest(kept_bytes(k.index, k.offset)).into())
                                }
                                Some(false) => Some([0; 32]),
                                None => None,
                            })
                            .collect();
                        sender.handle(now, sender::Input::Prefixes(Ok(hashes)));
                    }
                    sender::Output::ApplyAnswer(_) => {
                        let max_message = spec.max_message as usize;
                        // A long path, so the window may grow (`wide-window`).
                        let path_rtt = Some(std::time::Duration::from_millis(100));
                        sender.handle(
                            now,
                            sender::Input::LinkOpen {
                                max_message,
                                path_rtt,
                            },
                        );
                        receiver.handle(now, receiver::Input::LinkOpen);
                        return Some(Linked {
                            now,
                            sender,
                            receiver,
                            manifest,
                            agreed,
                            kept,
                        });
                    }
                    _ => {}
                }
            }
        }
        match receiver.poll_output() {
            receiver::Output::Timeout(_) => {}
            receiver::Output::Done(_) => return None,
            output => {
                busy = true;
                match output {
                    receiver::Output::Envelope(e) => {
                        // What the sender will resume: the prefixes whose hashes match.
                        sender.handle(now, sender::Input::Envelope(e))
                    }
                    receiver::Output::Ask { .. } => {
                        for (i, k) in kept.iter().enumerate() {
                            if spec.matches.get(i).copied().flatten() == Some(true) {
                                agreed.insert(k.index, k.offset);
                            }
                        }
                        receiver.handle(now, receiver::Input::Accept { kept: kept.clone() });
                    }
                    receiver::Output::Answer { .. } => {
                        receiver.handle(now, receiver::Input::LocalSdp("answer".into()))
                    }
                    _ => {}
                }
            }
        }
        if !busy {
            return None;
        }
    }
    panic!("the handshake never ended");
}

/// The files of a manifest in stream order: (manifest index, size).
pub fn files(manifest: &Manifest) -> Vec<(usize, Option<u64>)> {
    manifest
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_file())
        .map(|(i, e)| (i, e.size))
        .collect()
}

/// The plan a sender announces, checked against what was agreed.
pub fn check_plan(plan: &[Planned], manifest: &Manifest, agreed: &HashMap<usize, u64>) {
    let expected: Vec<Planned> = files(manifest)
        .into_iter()
        .map(|(index, _)| Planned {
            index,
            start: agreed.get(&index).copied().unwrap_or(0),
        })
        .collect();
    assert_eq!(plan, expected.as_slice());
}

/// The other side of a conversation, played by the harness: it knows the keys, so it can
/// seal anything (not only well-formed messages) and read what the engine says.
pub struct Peer {
    pub sealer: mp::protocol::seal::Sealer,
    pub opener: mp::protocol::seal::Opener,
}

impl Peer {
    /// Plays `side` against an engine whose first envelope (its key-exchange message) is
    /// `theirs`; returns the peer and the two envelopes to give the engine (our key-exchange
    /// message, then our sealed hello). The engine's own hello is to be given to
    /// [`Peer::open`] first.
    pub fn start(side: mp::protocol::pake::Side, theirs: &[u8]) -> (Peer, Vec<u8>, Vec<u8>) {
        use mp::protocol::session::Handshake;
        let (handshake, pake) = Handshake::start(&code(), side);
        let (handshake, hello) = handshake
            .on_pake(theirs)
            .expect("the engine's key exchange");
        let Handshake::AwaitHello(sealer, opener) = handshake else {
            unreachable!("after the key exchange comes the hello");
        };
        (Peer { sealer, opener }, pake, hello)
    }

    /// Opens what the engine sent: it must open, and be a message.
    pub fn open(&mut self, envelope: &[u8]) -> mp::protocol::message::Message {
        let plain = self
            .opener
            .open(envelope)
            .expect("the engine's envelope opens");
        mp::protocol::message::Message::from_bytes(&plain).expect("the engine says a message")
    }

    pub fn seal(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.sealer
            .seal(&bytes[..bytes.len().min(mp::protocol::seal::MAX_MESSAGE)])
            .expect("a message within the limit")
    }
}

/// A path in a hostile offer: mostly names that collide, nest and clash, sometimes anything.
#[derive(Arbitrary, Debug)]
pub enum PathSpec {
    Name(u8),
    Nested(u8, u8),
    Upper(u8),
    Any(String),
}

impl PathSpec {
    pub fn path(&self) -> String {
        match self {
            PathSpec::Name(n) => format!("e{}", n % 8),
            PathSpec::Nested(a, b) => format!("e{}/e{}", a % 8, b % 8),
            PathSpec::Upper(n) => format!("E{}", n % 8),
            PathSpec::Any(text) => text.clone(),
        }
    }
}

/// One entry of a hostile offer.
#[derive(Arbitrary, Debug)]
pub struct EntryRaw {
    pub path: PathSpec,
    pub dir: bool,
    pub size: Option<u64>,
    pub mode: Option<u32>,
}

/// A prefix hash in a hostile `prefixes`.
#[derive(Arbitrary, Debug)]
pub enum HashSpec {
    /// The hash of what the receiver kept of that file (as if the sender had the same bytes).
    Real,
    Hex([u8; 32]),
    Any(String),
    Null,
}

/// Anything a peer may say, sealed with the right key.
#[derive(Arbitrary, Debug)]
pub enum Said {
    Hello {
        version: u32,
        features: Vec<String>,
    },
    Offer {
        entries: Vec<EntryRaw>,
        more: bool,
    },
    Text(String),
    Accept(Vec<(u16, u64)>),
    Prefixes(Vec<(u16, HashSpec)>),
    Resume(Vec<u16>),
    Reject(String),
    Sdp {
        answer: bool,
        sdp: String,
    },
    Candidate {
        candidate: String,
        mid: Option<String>,
        mline: Option<u16>,
    },
    Abort(String),
    /// Any bytes, sealed as they are.
    Bytes(Vec<u8>),
}

impl Said {
    /// The bytes to seal; `real(index)`: the hash the receiver kept of `index`, if any.
    pub fn bytes(&self, real: impl Fn(usize) -> Option<[u8; 32]>) -> Vec<u8> {
        use mp::protocol::manifest::Kind as EntryKind;
        use mp::protocol::message::{Candidate, Kept, Message, Prefix, SdpKind};
        let message = match self {
            Said::Bytes(bytes) => return bytes.clone(),
            Said::Hello { version, features } => Message::Hello {
                version: *version,
                features: features.clone(),
            },
            Said::Offer { entries, more } => Message::Offer {
                manifest: Manifest {
                    entries: entries
                        .iter()
                        .take(64)
                        .map(|e| Entry {
                            path: e.path.path(),
                            kind: if e.dir {
                                EntryKind::Dir
                            } else {
                                EntryKind::File
                            },
                            size: e.size,
                            mode: e.mode,
                        })
                        .collect(),
                },
                more: *more,
            },
            Said::Text(text) => Message::Text { text: text.clone() },
            Said::Accept(resume) => Message::Accept {
                resume: resume
                    .iter()
                    .map(|&(index, offset)| Kept {
                        index: index.into(),
                        offset,
                    })
                    .collect(),
            },
            Said::Prefixes(prefixes) => Message::Prefixes {
                prefixes: prefixes
                    .iter()
                    .map(|(index, hash)| Prefix {
                        index: (*index).into(),
                        sha256: match hash {
                            HashSpec::Real => real((*index).into()).map(|h| mp::protocol::hex(&h)),
                            HashSpec::Hex(h) => Some(mp::protocol::hex(h)),
                            HashSpec::Any(text) => Some(text.clone()),
                            HashSpec::Null => None,
                        },
                    })
                    .collect(),
            },
            Said::Resume(files) => Message::Resume {
                files: files.iter().map(|&i| i.into()).collect(),
            },
            Said::Reject(reason) => Message::Reject {
                reason: reason.clone(),
            },
            Said::Sdp { answer, sdp } => Message::Sdp {
                kind: if *answer {
                    SdpKind::Answer
                } else {
                    SdpKind::Offer
                },
                sdp: sdp.clone(),
            },
            Said::Candidate {
                candidate,
                mid,
                mline,
            } => Message::Candidate(Candidate {
                candidate: candidate.clone(),
                mid: mid.clone(),
                mline: *mline,
            }),
            Said::Abort(reason) => Message::Abort {
                reason: reason.clone(),
            },
        };
        message.to_bytes()
    }
}
