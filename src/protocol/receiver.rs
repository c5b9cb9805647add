//! The receiver as a state machine: every decision of `mp receive`, and every timer, with no
//! I/O.
//!
//! ```text
//!  Paired ─► key exchange ─► offer parts ─► Ask ──► Accept{kept} ─► accept ─┬──────────────┐
//!                        └─► text ─► ShowText ─► accept  Decline ─► reject   └ prefixes ─► resume
//!  sdp offer ─► Answer ─► LocalSdp ─► sdp answer ─► LinkOpen
//!  frames ─► checks, window policing ─► Write… ◄─ Taken (ACK) / Written (hash verdict)
//!  every file verified ─► Place ─► Placed ─► DONE ─► Done(Ok)
//! ```
//!
//! The pump (`transfer::receive`) feeds [`Input`]s with the time and carries out every
//! [`Output`] until [`Output::Done`]. Writing and hashing are the pump's (on a thread of their
//! own); every verdict is the engine's: sizes, order, the resume agreement, the SHA-256 of
//! each file, the flow-control window the sender must stay in, and what happens to the staging
//! folder when the transfer fails ([`Output::Discard`]).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::code::Code;
use super::engine::{self, earliest, unexpected, violation, Received, Stop, Timer, Trickle};
use super::frame::{
    Frame, Taken, Window, ACK_EVERY, ACK_EVERY_MESSAGES, MAX_DATA, WIDE_WINDOW, WINDOW,
};
use super::hex;
use super::manifest::{display, Manifest, ManifestError, Summary};
use super::message::{Candidate, Kept, Message, OfferAssembly, SdpKind, MAX_TEXT};
use super::pake::Side;
use super::session::{self, Conversation, TRICKLE};
use crate::error::{Failure, Kind};

/// A prefix kept from an earlier attempt: the first `offset` bytes of entry `index`, whose
/// SHA-256 is `sha256`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeptPrefix {
    pub index: usize,
    pub offset: u64,
    pub sha256: [u8; 32],
}

/// What happened, fed to [`Receiver::handle`].
pub enum Input {
    /// Both sides are at the rendezvous: the conversation starts.
    Paired,
    /// An envelope from the peer, through the rendezvous.
    Envelope(Vec<u8>),
    /// The rendezvous went away (why, as seen by the pump).
    RendezvousClosed(Failure),
    /// The user accepted the offer of [`Output::Ask`]; these prefixes are kept in the staging
    /// folder from an earlier attempt.
    Accept { kept: Vec<KeptPrefix> },
    /// The offer cannot be taken (declined, no terminal, no room): why.
    Decline(Failure),
    /// The text of [`Output::ShowText`] was shown (or could not be).
    TextShown(Result<(), Failure>),
    /// The WebRTC answer asked for with [`Output::Answer`].
    LocalSdp(String),
    /// A local ICE candidate, gathered after the SDP was made (when trickling).
    LocalCandidate(Candidate),
    /// The data channel is open.
    LinkOpen,
    /// The direct connection could not be made.
    LinkFailed(Failure),
    /// The data channel closed (after delivering every message that had arrived).
    LinkClosed,
    /// A data-channel message from the sender.
    Frame(Vec<u8>),
    /// The writer has taken in this much (cumulative): the sender may have more.
    Taken(Taken),
    /// The writer finished the file at `index`; the SHA-256 of everything it holds.
    Written { index: usize, sha256: [u8; 32] },
    /// Writing failed.
    WriteFailed(Failure),
    /// The verified entries were synced and moved to their final names (or not).
    Placed(Result<(), Failure>),
    /// The user pressed Ctrl-C.
    Interrupt,
    /// Nothing happened until now.
    Timeout,
}

/// What the writer is asked to do, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// Start the file at `index`, keeping its first `keep` bytes (a resumed prefix) and
    /// dropping anything after them. `begin`: this stands for the sender's BEGIN frame (one
    /// message taken in).
    Open {
        index: usize,
        keep: u64,
        begin: bool,
    },
    /// Append the payload of this encoded DATA frame (`frame[1..]`) to the open file.
    Data { index: usize, frame: Vec<u8> },
    /// The file is complete: flush it and report [`Input::Written`].
    End { index: usize },
}

/// What the pump should do next.
#[derive(Debug)]
pub enum Output {
    /// Send this envelope through the rendezvous.
    Envelope(Vec<u8>),
    /// The rendezvous is no longer needed: leave it.
    CloseRendezvous,
    /// Check where the offer would go and ask the user; answer with [`Input::Accept`] or
    /// [`Input::Decline`].
    Ask {
        manifest: Manifest,
        summary: Summary,
    },
    /// Show this text; answer with [`Input::TextShown`].
    ShowText(String),
    /// Make the WebRTC peer and answer this offer; reply with [`Input::LocalSdp`]. With
    /// `trickle`, the answer is wanted at once and local candidates follow as
    /// [`Input::LocalCandidate`].
    Answer { offer: String, trickle: bool },
    /// Add the sender's ICE candidate to the peer connection.
    AddCandidate(Candidate),
    /// Hand this to the writer.
    Write(Write),
    /// Every file is verified: sync and move the entries to their final names; reply with
    /// [`Input::Placed`].
    Place,
    /// Remove everything this offer staged: what a misbehaving sender wrote, or what cannot
    /// be completed (disk full), is not worth keeping.
    Discard,
    /// Send this frame on the data channel.
    Frame(Vec<u8>),
    /// Tell the user.
    Event(Event),
    /// The transfer is over.
    Done(Result<Report, Failure>),
    /// Nothing to do before this instant, unless an input arrives.
    Timeout(Instant),
}

/// What the user is told.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Paired,
    Connected,
    /// Bytes already held from an earlier attempt (agreed resumed prefixes).
    AlreadyThere {
        bytes: u64,
    },
    /// The file at `index` arrived complete and its SHA-256 matched.
    FileVerified {
        index: usize,
    },
}

/// What was received.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// DATA payload bytes received.
    pub received: u64,
    /// Bytes that were already there (resumed prefixes).
    pub already_there: u64,
    /// For a text: its length in bytes.
    pub text: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    WaitPeer,
    Handshake,
    AwaitOffer,
    Deciding,
    ShowingText,
    AwaitPrefixes,
    AwaitSdp,
    AwaitLocalSdp,
    Connecting,
    Streaming,
    Placing,
    Closing,
    Finished,
}

/// One file of the offer, in stream order.
struct FileSpec {
    index: usize,
    path: String,
    size: Option<u64>,
}

/// The receiver engine.
pub struct Receiver {
    code: Code,
    phase: Phase,
    conversation: Option<Conversation>,
    outputs: VecDeque<Output>,
    now: Instant,
    timer: Option<Timer>,
    assembly: OfferAssembly,
    manifest: Option<Manifest>,
    kept: Vec<KeptPrefix>,
    /// Files that continue after a kept prefix, with its length.
    agreed: HashMap<usize, u64>,
    ice: Trickle,
    /// The sender's candidates that came before our answer (the peer connection cannot take
    /// them before it has the offer).
    early: Vec<Candidate>,
    stream: Stream,
}

/// The data phase's state.
#[derive(Default)]
struct Stream {
    files: Vec<FileSpec>,
    /// Position in `files` of the file whose frames come next.
    current: usize,
    opened: bool,
    in_file: u64,
    /// END hashes waiting for the writer's own hash of the same file.
    expected: VecDeque<(usize, [u8; 32])>,
    verified: usize,
    received: Taken,
    received_bytes: u64,
    taken: Taken,
    /// The last ACK sent: what the sender was granted.
    acked: Taken,
    last_ack_at: Option<Instant>,
    last_frame_at: Option<Instant>,
    link_gone: bool,
    /// The byte window granted: [`WIDE_WINDOW`] when both sides list `wide-window`, else
    /// [`WINDOW`].
    window: u64,
}

impl Receiver {
    /// A receiver for `code`, waiting at the rendezvous for at most `wait` from `now`.
    pub fn new(code: Code, now: Instant, wait: std::time::Duration) -> Receiver {
        Receiver {
            code,
            phase: Phase::WaitPeer,
            conversation: None,
            outputs: VecDeque::new(),
            now,
            timer: Some(Timer::arrival(now, wait)),
            assembly: OfferAssembly::default(),
            manifest: None,
            kept: Vec::new(),
            agreed: HashMap::new(),
            ice: Trickle::default(),
            early: Vec::new(),
            stream: Stream::default(),
        }
    }

    /// Takes one input at time `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.now = now;
        if self.phase == Phase::Finished {
            return;
        }
        if let Err(stop) = self.step(input) {
            self.fail(stop.failure, stop.tell);
        }
    }

    /// The next thing to do; [`Output::Timeout`] when there is nothing until then.
    pub fn poll_output(&mut self) -> Output {
        if let Some(envelope) = self.conversation.as_mut().and_then(|c| c.poll_envelope()) {
            return Output::Envelope(envelope);
        }
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        let s = &self.stream;
        let flowing = matches!(self.phase, Phase::Streaming | Phase::Placing);
        let waiting_for_data = self.phase == Phase::Streaming && s.current < s.files.len();
        let next = earliest([
            self.timer.as_ref().map(|t| t.at),
            s.last_ack_at
                .filter(|_| flowing)
                .map(|at| at + engine::ACK_INTERVAL),
            s.last_frame_at
                .filter(|_| waiting_for_data)
                .map(|at| at + engine::SENDER_SILENCE),
        ]);
        Output::Timeout(next.unwrap_or(self.now + engine::REPLY_TIMEOUT))
    }

    fn step(&mut self, input: Input) -> Result<(), Stop> {
        match input {
            Input::Paired if self.phase == Phase::WaitPeer => {
                self.conversation = Some(Conversation::start(&self.code, Side::Receiver));
                self.phase = Phase::Handshake;
                self.timer = Some(Timer::reply(self.now, engine::HANDSHAKE_TIMEOUT));
                self.outputs.push_back(Output::Event(Event::Paired));
                Ok(())
            }
            Input::Paired => Err(Stop::internal("receiver engine: paired twice")),
            Input::Envelope(envelope) => self.on_envelope(&envelope),
            Input::RendezvousClosed(why) => match self.phase {
                Phase::Connecting => {
                    engine::shorten_to_grace(&mut self.timer, self.now, why);
                    Ok(())
                }
                Phase::Streaming | Phase::Placing | Phase::Closing => Ok(()),
                _ => Err(Stop::quiet(why)),
            },
            Input::Accept { kept } if self.phase == Phase::Deciding => self.on_accept(kept),
            Input::Decline(why) if self.phase == Phase::Deciding => {
                let reason = why.public_reason();
                self.send(&Message::Reject { reason })?;
                Err(Stop::quiet(why))
            }
            Input::TextShown(shown) if self.phase == Phase::ShowingText => {
                shown.map_err(Stop::tell)?;
                self.send(&Message::Accept { resume: vec![] })?;
                self.outputs.push_back(Output::CloseRendezvous);
                let text = self.stream.received_bytes as usize;
                self.finish(Ok(Report {
                    text: Some(text),
                    ..Report::default()
                }));
                Ok(())
            }
            Input::LocalSdp(sdp) if self.phase == Phase::AwaitLocalSdp => {
                self.send(&Message::Sdp {
                    kind: SdpKind::Answer,
                    sdp,
                })?;
                self.ice.sdp_sent = true;
                for candidate in std::mem::take(&mut self.ice.waiting) {
                    self.send(&Message::Candidate(candidate))?;
                }
                for candidate in std::mem::take(&mut self.early) {
                    self.outputs.push_back(Output::AddCandidate(candidate));
                }
                self.phase = Phase::Connecting;
                self.timer = Some(Timer::new(
                    self.now + engine::CONNECT_TIMEOUT,
                    Kind::Connect,
                    "no direct connection could be established with the sender",
                ));
                Ok(())
            }
            Input::LocalCandidate(candidate) => {
                let before_link = matches!(self.phase, Phase::AwaitLocalSdp | Phase::Connecting);
                if self.ice.on && before_link {
                    if self.ice.sdp_sent {
                        self.send(&Message::Candidate(candidate))?;
                    } else {
                        self.ice.waiting.push(candidate);
                    }
                }
                Ok(())
            }
            Input::LinkOpen if self.phase == Phase::Connecting => {
                self.start_streaming();
                Ok(())
            }
            Input::LinkFailed(why) => Err(Stop::tell(why)),
            Input::LinkClosed => self.on_link_closed(),
            Input::Frame(bytes) if self.phase == Phase::Streaming => self.on_frame(bytes),
            // Every file is verified: whatever the sender says now (a FAIL after its Ctrl-C,
            // a KEEPALIVE, junk) cannot undo that, and placing runs to its end.
            Input::Frame(_) if matches!(self.phase, Phase::Placing | Phase::Closing) => Ok(()),
            Input::Taken(taken) => {
                self.on_taken(taken);
                Ok(())
            }
            Input::Written { index, sha256 } => self.on_written(index, sha256),
            Input::WriteFailed(why) => Err(Stop::tell(why)),
            Input::Placed(Ok(())) if self.phase == Phase::Placing => {
                if self.stream.link_gone {
                    self.finish_ok();
                } else {
                    self.outputs.push_back(Output::Frame(Frame::Done.encode()));
                    self.phase = Phase::Closing;
                    self.timer = Some(Timer::new(
                        self.now + engine::CLOSE_GRACE,
                        Kind::Internal,
                        "",
                    ));
                }
                Ok(())
            }
            Input::Placed(Err(why)) => Err(Stop::tell(why)),
            // Placing is short and leaves either everything or nothing half-named: finish it.
            Input::Interrupt if self.phase == Phase::Placing => Ok(()),
            Input::Interrupt if self.phase == Phase::Closing => {
                self.finish_ok();
                Ok(())
            }
            Input::Interrupt => Err(Stop::tell(Failure::new(Kind::Interrupted, "interrupted"))),
            Input::Timeout => self.on_timeout(),
            _ => Err(Stop::internal("receiver engine: an input out of turn")),
        }
    }

    fn on_timeout(&mut self) -> Result<(), Stop> {
        let now = self.now;
        if let Some(timer) = self.timer.as_ref().filter(|t| t.at <= now) {
            if self.phase == Phase::Closing {
                // DONE had its chance to arrive; the sender need not say goodbye.
                self.finish_ok();
                return Ok(());
            }
            return Err(Stop::tell(timer.failure()));
        }
        let s = &self.stream;
        if self.phase == Phase::Streaming
            && s.current < s.files.len()
            && s.last_frame_at
                .is_some_and(|at| at + engine::SENDER_SILENCE <= now)
        {
            return Err(Stop::tell(Failure::new(
                Kind::PeerGone,
                format!(
                    "the sender sent nothing for {} s",
                    engine::SENDER_SILENCE.as_secs()
                ),
            )));
        }
        let flowing = matches!(self.phase, Phase::Streaming | Phase::Placing);
        if flowing
            && s.last_ack_at
                .is_some_and(|at| at + engine::ACK_INTERVAL <= now)
        {
            // Acknowledge what trickled in, and show the sender we are alive while placing.
            if s.taken != s.acked || self.phase == Phase::Placing {
                self.send_ack();
            } else {
                self.stream.last_ack_at = Some(now);
            }
        }
        Ok(())
    }

    fn on_envelope(&mut self, envelope: &[u8]) -> Result<(), Stop> {
        let connecting = self.phase == Phase::Connecting;
        let message = match engine::receive(&mut self.conversation, envelope, connecting, "sender")?
        {
            Received::Message(message) => message,
            Received::Handshake { confirmed } => {
                let within = if confirmed {
                    self.phase = Phase::AwaitOffer;
                    self.ice.on = self
                        .conversation
                        .as_ref()
                        .is_some_and(|c| c.features().iter().any(|f| f == TRICKLE));
                    engine::STEP_TIMEOUT
                } else {
                    engine::HANDSHAKE_TIMEOUT
                };
                self.timer = Some(Timer::reply(self.now, within));
                return Ok(());
            }
        };
        match (self.phase, message) {
            (Phase::AwaitOffer, Message::Offer { manifest, more }) => {
                self.timer = Some(Timer::reply(self.now, engine::STEP_TIMEOUT));
                match self.assembly.add(manifest, more) {
                    Ok(Some(manifest)) => self.on_offer(manifest),
                    Ok(None) => Ok(()),
                    Err(err) => self.refuse(err),
                }
            }
            (Phase::AwaitOffer, Message::Text { text }) if self.assembly.is_empty() => {
                if text.len() > MAX_TEXT {
                    self.send(&Message::Reject {
                        reason: "the text is too long".into(),
                    })?;
                    return Err(Stop::quiet(Failure::new(
                        Kind::Integrity,
                        "refused a text longer than allowed",
                    )));
                }
                self.stream.received_bytes = text.len() as u64;
                self.phase = Phase::ShowingText;
                self.timer = None;
                self.outputs.push_back(Output::ShowText(text));
                Ok(())
            }
            (Phase::AwaitPrefixes, Message::Prefixes { prefixes }) => {
                let asked = prefixes.len() == self.kept.len()
                    && prefixes
                        .iter()
                        .zip(&self.kept)
                        .all(|(p, k)| p.index == k.index);
                if !asked {
                    return Err(Stop::tell(violation("prefixes that were not asked for")));
                }
                let mut files = Vec::new();
                for (prefix, kept) in prefixes.iter().zip(&self.kept) {
                    match &prefix.sha256 {
                        None => {}
                        Some(hash) if !is_sha256_hex(hash) => {
                            return Err(Stop::tell(violation("a prefix hash that is not hex")))
                        }
                        Some(hash) if *hash == hex(&kept.sha256) => {
                            files.push(kept.index);
                            self.agreed.insert(kept.index, kept.offset);
                        }
                        Some(_) => {}
                    }
                }
                self.send(&Message::Resume { files })?;
                self.phase = Phase::AwaitSdp;
                self.timer = Some(Timer::reply(self.now, engine::STEP_TIMEOUT));
                Ok(())
            }
            (
                Phase::AwaitSdp,
                Message::Sdp {
                    kind: SdpKind::Offer,
                    sdp,
                },
            ) => {
                self.outputs.push_back(Output::Answer {
                    offer: sdp,
                    trickle: self.ice.on,
                });
                self.phase = Phase::AwaitLocalSdp;
                self.timer = Some(Timer::new(
                    self.now + engine::LOCAL_SDP_TIMEOUT,
                    Kind::Connect,
                    "WebRTC did not produce an answer (ICE gathering did not complete)",
                ));
                Ok(())
            }
            (Phase::AwaitLocalSdp | Phase::Connecting, Message::Candidate(candidate))
                if self.ice.on =>
            {
                self.ice.taken += 1;
                if self.ice.taken > engine::MAX_CANDIDATES {
                    return Err(Stop::tell(violation("too many ICE candidates")));
                }
                if self.phase == Phase::AwaitLocalSdp {
                    self.early.push(candidate);
                } else {
                    self.outputs.push_back(Output::AddCandidate(candidate));
                }
                Ok(())
            }
            (phase, message) => Err(Stop::tell(unexpected(&message, phase.waiting_for()))),
        }
    }

    /// An offer that cannot even be assembled: too large or unsafe.
    fn refuse(&mut self, err: ManifestError) -> Result<(), Stop> {
        let reason = match err {
            ManifestError::TooManyEntries
            | ManifestError::EmptyPart
            | ManifestError::PathsTooLong => "the offer is too large",
            _ => "the offer was refused as unsafe",
        };
        self.send(&Message::Reject {
            reason: reason.into(),
        })?;
        Err(Stop::quiet(Failure::new(
            Kind::Integrity,
            format!("refused the offer: {err}"),
        )))
    }

    fn on_offer(&mut self, manifest: Manifest) -> Result<(), Stop> {
        let summary = match manifest.validate() {
            Ok(summary) => summary,
            Err(err) => return self.refuse(err),
        };
        self.phase = Phase::Deciding;
        // A person decides; the sender's own timer bounds how long it waits.
        self.timer = None;
        self.manifest = Some(manifest.clone());
        self.outputs.push_back(Output::Ask { manifest, summary });
        Ok(())
    }

    fn on_accept(&mut self, kept: Vec<KeptPrefix>) -> Result<(), Stop> {
        let resume = kept
            .iter()
            .map(|k| Kept {
                index: k.index,
                offset: k.offset,
            })
            .collect();
        self.send(&Message::Accept { resume })?;
        self.phase = if kept.is_empty() {
            Phase::AwaitSdp
        } else {
            Phase::AwaitPrefixes
        };
        self.kept = kept;
        self.timer = Some(Timer::reply(self.now, engine::STEP_TIMEOUT));
        Ok(())
    }

    fn start_streaming(&mut self) {
        let manifest = self.manifest.as_ref().expect("accepted an offer");
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
        self.phase = Phase::Streaming;
        self.timer = None;
        let wide = self
            .conversation
            .as_ref()
            .is_some_and(|c| c.features().iter().any(|f| f == session::WIDE_WINDOW));
        self.stream = Stream {
            files,
            window: if wide { WIDE_WINDOW } else { WINDOW },
            last_ack_at: Some(self.now),
            last_frame_at: Some(self.now),
            ..Stream::default()
        };
        self.outputs.push_back(Output::CloseRendezvous);
        self.outputs.push_back(Output::Event(Event::Connected));
        let already_there: u64 = self.agreed.values().sum();
        if already_there > 0 {
            self.outputs.push_back(Output::Event(Event::AlreadyThere {
                bytes: already_there,
            }));
        }
        // Folders only: nothing will come; place them.
        self.check_all_verified();
    }

    fn on_frame(&mut self, bytes: Vec<u8>) -> Result<(), Stop> {
        self.stream.last_frame_at = Some(self.now);
        let frame = match Frame::decode(&bytes) {
            Ok(frame) => frame,
            Err(err) => {
                return Err(Stop::tell(violation(&format!(
                    "bad frame from the sender: {err}"
                ))))
            }
        };
        let data = match frame {
            Frame::Keepalive => return Ok(()),
            Frame::Fail(kind, reason) => {
                return Err(Stop::quiet(Failure::new(
                    Kind::from_peer_fail(kind),
                    format!("the sender stopped: {}", display(&reason)),
                )))
            }
            Frame::Data(payload) => payload.len() as u64,
            Frame::End(_) | Frame::Begin(_) => 0,
            Frame::Ack(_) | Frame::Done => {
                return Err(Stop::tell(violation(&format!(
                    "the sender sent a {} frame",
                    frame.name()
                ))))
            }
        };
        let s = &mut self.stream;
        s.received.bytes += data;
        s.received.messages += 1;
        s.received_bytes += data;
        if !Window::admits(s.received, s.acked, MAX_DATA, s.window) {
            return Err(Stop::tell(violation(
                "the sender exceeded the flow-control window",
            )));
        }
        let Some(file) = s.files.get(s.current) else {
            return Err(Stop::tell(violation(
                "the sender sent data after the last file",
            )));
        };
        let index = file.index;
        if !s.opened {
            s.opened = true;
            s.in_file = 0;
            match (self.agreed.get(&index), &frame) {
                (Some(&offset), Frame::Begin(at)) if *at == offset => {
                    s.in_file = offset;
                    self.outputs.push_back(Output::Write(Write::Open {
                        index,
                        keep: offset,
                        begin: true,
                    }));
                    return Ok(());
                }
                (Some(_), _) => {
                    return Err(Stop::tell(violation(&format!(
                        "the sender did not resume {} at the agreed offset",
                        file.path
                    ))))
                }
                (None, _) => self.outputs.push_back(Output::Write(Write::Open {
                    index,
                    keep: 0,
                    begin: false,
                })),
            }
        }
        let file = &s.files[s.current];
        match frame {
            Frame::Data(payload) => {
                let in_file = s.in_file.saturating_add(payload.len() as u64);
                if file.size.is_some_and(|size| in_file > size) {
                    return Err(Stop::tell(integrity(format!(
                        "integrity check failed: the sender sent more bytes than announced for {}",
                        file.path
                    ))));
                }
                s.in_file = in_file;
                self.outputs.push_back(Output::Write(Write::Data {
                    index,
                    frame: bytes,
                }));
                Ok(())
            }
            Frame::End(hash) => {
                if let Some(expected) = file.size.filter(|&size| size != s.in_file) {
                    return Err(Stop::tell(integrity(format!(
                        "integrity check failed: the sender ended {} after {} of {expected} bytes",
                        file.path, s.in_file
                    ))));
                }
                s.expected.push_back((index, hash));
                s.current += 1;
                s.opened = false;
                self.outputs.push_back(Output::Write(Write::End { index }));
                Ok(())
            }
            _ => Err(Stop::tell(violation("an unexpected BEGIN frame"))),
        }
    }

    fn on_written(&mut self, index: usize, sha256: [u8; 32]) -> Result<(), Stop> {
        let s = &mut self.stream;
        let Some((expected_index, expected)) = s.expected.pop_front() else {
            return Err(Stop::internal("receiver engine: a file written twice"));
        };
        if expected_index != index {
            return Err(Stop::internal(
                "receiver engine: files written out of order",
            ));
        }
        let position = s.files.iter().position(|f| f.index == index).unwrap_or(0);
        if expected != sha256 {
            return Err(Stop::tell(integrity(format!(
                "integrity check failed: SHA-256 of {} does not match",
                s.files[position].path
            ))));
        }
        s.verified += 1;
        self.outputs
            .push_back(Output::Event(Event::FileVerified { index }));
        self.check_all_verified();
        Ok(())
    }

    fn check_all_verified(&mut self) {
        if self.phase == Phase::Streaming && self.stream.verified == self.stream.files.len() {
            self.phase = Phase::Placing;
            self.outputs.push_back(Output::Place);
        }
    }

    fn on_taken(&mut self, taken: Taken) {
        let s = &mut self.stream;
        s.taken = taken;
        if taken.bytes - s.acked.bytes.min(taken.bytes) >= ACK_EVERY
            || taken.messages - s.acked.messages.min(taken.messages) >= ACK_EVERY_MESSAGES
        {
            self.send_ack();
        }
    }

    fn send_ack(&mut self) {
        let s = &mut self.stream;
        s.acked = s.taken;
        s.last_ack_at = Some(self.now);
        self.outputs
            .push_back(Output::Frame(Frame::Ack(s.taken).encode()));
    }

    fn on_link_closed(&mut self) -> Result<(), Stop> {
        match self.phase {
            Phase::Streaming => Err(Stop::quiet(Failure::new(
                Kind::PeerGone,
                "the sender closed the connection before the end",
            ))),
            // Everything is verified: a sender gone by now does not undo that.
            Phase::Placing => {
                self.stream.link_gone = true;
                Ok(())
            }
            Phase::Closing => {
                self.finish_ok();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn send(&mut self, message: &Message) -> Result<(), Stop> {
        engine::send(&mut self.conversation, message)
    }

    /// Ends the transfer with `failure`; `tell`: let the peer know why.
    fn fail(&mut self, failure: Failure, tell: bool) {
        let on_link = matches!(
            self.phase,
            Phase::Streaming | Phase::Placing | Phase::Closing
        );
        if tell {
            if let Some(frame) = engine::last_word(&failure, on_link, &mut self.conversation) {
                self.outputs.push_back(Output::Frame(frame));
            }
        }
        // What a sender that broke the rules wrote is not kept, nor what cannot be finished
        // for lack of space; an interrupted or lost transfer keeps its data for a resume.
        let worthless = failure.kind == Kind::Integrity || crate::error::is_disk_full(&failure);
        let verified = matches!(self.phase, Phase::Placing | Phase::Closing);
        if on_link && worthless && !verified {
            self.outputs.push_back(Output::Discard);
        }
        self.finish(Err(failure));
    }

    fn finish_ok(&mut self) {
        let report = Report {
            received: self.stream.received_bytes,
            already_there: self.agreed.values().sum(),
            text: None,
        };
        self.finish(Ok(report));
    }

    fn finish(&mut self, result: Result<Report, Failure>) {
        self.phase = Phase::Finished;
        self.timer = None;
        self.outputs.push_back(Output::Done(result));
    }
}

impl Phase {
    fn waiting_for(self) -> &'static str {
        match self {
            Phase::AwaitOffer => "an offer",
            Phase::AwaitPrefixes => "prefixes",
            Phase::AwaitSdp => "an SDP offer",
            Phase::Deciding => "the receiver's decision",
            _ => "the connection",
        }
    }
}

fn integrity(message: String) -> Failure {
    Failure::new(Kind::Integrity, message)
}

/// 64 lowercase hex digits.
fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
