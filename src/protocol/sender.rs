//! The sender as a state machine: every decision of `mp send`, and every timer, with no I/O.
//!
//! ```text
//!  Paired ─► key exchange ─► offer ──► accept ──┬─────────────────────────► CreateOffer
//!                                               └ resume? HashPrefixes ─► prefixes ─┘
//!  LocalSdp ─► sdp offer ─► (resume) ─► sdp answer: ApplyAnswer ─► LinkOpen ─► StartReading
//!  Chunk… ─► frames within the window ◄─ ACK … ─► DONE: Done(Ok)     FAIL / lost: Done(Err)
//! ```
//!
//! The pump (`transfer::send`) feeds [`Input`]s with the time, and carries out every
//! [`Output`] until [`Output::Done`]: it moves envelopes through the rendezvous and frames
//! through the data channel, makes the WebRTC offer, hashes prefixes and reads files. Reading
//! is the pump's, deciding is the engine's: the pump hands it a [`Chunk`] only when
//! [`Sender::wants_chunk`] says the window has room, so at most two frames wait here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use super::code::Code;
use super::engine::{self, earliest, unexpected, violation, Received, Stop, Timer, Trickle};
use super::frame::{grown_window, Frame, Taken, Window, MAX_MESSAGE, WIDE_WINDOW, WINDOW};
use super::hex;
use super::manifest::{display, Manifest};
use super::message::{offer_messages, Candidate, Kept, Message, Prefix, SdpKind};
use super::pake::Side;
use super::session::{self, Conversation, TRICKLE};
use crate::error::{Failure, Kind};

/// The smallest data-channel message a peer must accept (a FAIL with its reason fits).
pub const MIN_MESSAGE: usize = 2048;

/// What is sent.
#[derive(Clone)]
pub enum Offer {
    /// Files and folders (validated by the caller).
    Files(Manifest),
    /// A short text.
    Text(String),
}

/// What happened, fed to [`Sender::handle`].
pub enum Input {
    /// Both sides are at the rendezvous: the conversation starts.
    Paired,
    /// An envelope from the peer, through the rendezvous.
    Envelope(Vec<u8>),
    /// The rendezvous went away (why, as seen by the pump).
    RendezvousClosed(Failure),
    /// The WebRTC offer asked for with [`Output::CreateOffer`].
    LocalSdp(String),
    /// A local ICE candidate, gathered after the SDP was made (when trickling).
    LocalCandidate(Candidate),
    /// The data channel is open; the peer accepts messages of at most `max_message` bytes.
    LinkOpen {
        max_message: usize,
        /// The path's round trip as ICE measured it, if it did (see [`grown_window`]).
        path_rtt: Option<std::time::Duration>,
    },
    /// The direct connection could not be made.
    LinkFailed(Failure),
    /// The data channel closed (after delivering every message that had arrived).
    LinkClosed,
    /// A data-channel message from the receiver.
    Frame(Vec<u8>),
    /// The sender's own prefix hashes asked for with [`Output::HashPrefixes`], in the same
    /// order (`None`: the file is shorter than the offset now), or why they could not be read.
    Prefixes(Result<Vec<Option<[u8; 32]>>, Failure>),
    /// The next piece read by the pump (see [`Output::StartReading`]).
    Chunk(Chunk),
    /// The user pressed Ctrl-C.
    Interrupt,
    /// Nothing happened until now.
    Timeout,
}

/// A piece of the files, read in the order of [`Output::StartReading`]'s plan.
pub enum Chunk {
    /// An encoded DATA frame of the file at manifest `index`.
    Data { index: usize, frame: Vec<u8> },
    /// The file at `index` is read to its end; the SHA-256 of the whole file.
    End { index: usize, sha256: [u8; 32] },
    /// Reading failed.
    Failed(Failure),
}

/// One file to read: manifest `index`, from byte `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    pub index: usize,
    pub start: u64,
}

/// What the pump should do next.
#[derive(Debug)]
pub enum Output {
    /// Send this envelope through the rendezvous.
    Envelope(Vec<u8>),
    /// The rendezvous is no longer needed: leave it.
    CloseRendezvous,
    /// Make the WebRTC peer and its offer; answer with [`Input::LocalSdp`]. With `trickle`,
    /// the offer is wanted at once, and local candidates follow as [`Input::LocalCandidate`];
    /// without, the offer carries every candidate.
    CreateOffer { trickle: bool },
    /// Add the receiver's ICE candidate to the peer connection.
    AddCandidate(Candidate),
    /// Apply the receiver's SDP answer.
    ApplyAnswer(String),
    /// Hash the first `offset` bytes of each file; answer with [`Input::Prefixes`].
    HashPrefixes(Vec<Kept>),
    /// Start reading these files, in this order, into DATA frames of at most `max_data`
    /// payload bytes; hand them over with [`Input::Chunk`] when [`Sender::wants_chunk`].
    StartReading { plan: Vec<Planned>, max_data: usize },
    /// Send this frame on the data channel.
    Frame(Vec<u8>),
    /// Tell the user.
    Event(Event),
    /// The transfer is over; send nothing more (the last frame, if any, was output before).
    Done(Result<Report, Failure>),
    /// Nothing to do before this instant, unless an input arrives.
    Timeout(Instant),
}

/// What the user is told.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Paired,
    /// The offer is out; the receiver is deciding.
    AwaitingAccept,
    /// `resuming` files continue after what the receiver kept.
    Accepted {
        resuming: usize,
    },
    Connected,
    /// Bytes the receiver already holds (resumed prefixes): count them as done.
    AlreadyThere {
        bytes: u64,
    },
    /// DATA payload bytes handed to the data channel.
    Sent {
        bytes: u64,
    },
}

/// What was done.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// DATA payload bytes sent.
    pub sent: u64,
    /// Bytes the receiver already had from an earlier attempt.
    pub already_there: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    WaitPeer,
    Handshake,
    AwaitAccept,
    Hashing,
    AwaitLocalSdp,
    AwaitResume,
    AwaitAnswer,
    Connecting,
    Streaming,
    Finished,
}

/// The sender engine.
pub struct Sender {
    code: Code,
    offer: Offer,
    phase: Phase,
    conversation: Option<Conversation>,
    outputs: VecDeque<Output>,
    now: Instant,
    /// The deadline of the current phase.
    timer: Option<Timer>,
    /// The receiver's kept prefixes, and those it agreed to continue after.
    kept: Vec<Kept>,
    agreed: HashMap<usize, u64>,
    /// The receiver's `resume` answer is still to come.
    resume_pending: bool,
    ice: Trickle,
    stream: Stream,
}

/// The data phase's state.
#[derive(Default)]
struct Stream {
    /// Frames read but held back by the window (at most two: a BEGIN and what follows).
    pending: VecDeque<Vec<u8>>,
    sent: Taken,
    acked: Taken,
    sent_bytes: u64,
    already_there: u64,
    files_left: usize,
    /// Resumed files whose BEGIN is still to be sent.
    to_begin: HashSet<usize>,
    /// When the window last closed with frames waiting (for the stall timer).
    blocked_since: Option<Instant>,
    last_frame_at: Option<Instant>,
    /// Set once every frame has left: the receiver's verdict is due by then.
    verdict_by: Option<Instant>,
    /// The byte window in force: [`WINDOW`], grown towards `max_window` (`wide-window`).
    window: u64,
    /// [`WIDE_WINDOW`] when both sides list `wide-window`, else [`WINDOW`].
    max_window: u64,
    /// DATA frames not yet acknowledged, oldest first, while the window may still grow: when
    /// each left and how much was acknowledged then (at most [`WINDOW_MESSAGES`] + 1 entries,
    /// as the message window bounds them).
    ///
    /// [`WINDOW_MESSAGES`]: super::frame::WINDOW_MESSAGES
    marks: VecDeque<Mark>,
    /// The path's round trip, as ICE measured it when the link opened.
    path_rtt: std::time::Duration,
}

/// The shortest path round trip for which the window may grow (`wide-window`): below it 4 MiB
/// per round trip is 400 MB/s or more, and a STUN round trip measured on a busy machine can be
/// a few milliseconds too long, which must not cost a LAN transfer memory.
pub const LONG_PATH: std::time::Duration = std::time::Duration::from_millis(10);

/// One DATA frame in flight, for measuring the path ([`grown_window`]).
struct Mark {
    /// `sent.bytes` once this frame had left: an ACK of at least this covers it.
    sent: u64,
    at: Instant,
    /// `acked.bytes` when it left.
    acked: u64,
}

impl Stream {
    /// After an ACK: takes the DATA frames it covers off `marks`, and grows the window by the
    /// delivery rate since the newest of them left.
    fn measure(&mut self, now: Instant) {
        let mut newest = None;
        while self
            .marks
            .front()
            .is_some_and(|m| m.sent <= self.acked.bytes)
        {
            newest = self.marks.pop_front();
        }
        let Some(mark) = newest else { return };
        self.window = grown_window(
            self.window,
            self.max_window,
            self.acked.bytes - mark.acked,
            now.saturating_duration_since(mark.at),
            self.path_rtt,
        );
        if self.window >= self.max_window {
            self.marks.clear();
        }
    }
}

impl Sender {
    /// A sender that will offer `offer` under `code`, waiting at the rendezvous for at most
    /// `wait` from `now`.
    pub fn new(code: Code, offer: Offer, now: Instant, wait: std::time::Duration) -> Sender {
        Sender {
            code,
            offer,
            phase: Phase::WaitPeer,
            conversation: None,
            outputs: VecDeque::new(),
            now,
            timer: Some(Timer::arrival(now, wait)),
            kept: Vec::new(),
            agreed: HashMap::new(),
            resume_pending: false,
            ice: Trickle::default(),
            stream: Stream::default(),
        }
    }

    /// True once both sides proved they hold the same code.
    pub fn is_confirmed(&self) -> bool {
        self.conversation.as_ref().is_some_and(|c| c.is_confirmed())
    }

    /// True when the pump may hand over the next [`Chunk`]: the data phase runs, nothing is
    /// held back, and the window has room.
    pub fn wants_chunk(&self) -> bool {
        self.phase == Phase::Streaming
            && self.stream.pending.is_empty()
            && self.stream.files_left > 0
            && Window::open(self.stream.sent, self.stream.acked, self.stream.window)
    }

    /// Takes one input at time `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.now = now;
        if self.phase == Phase::Finished {
            return;
        }
        if let Err(err) = self.step(input) {
            self.fail(err.failure, err.tell);
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
        if self.phase == Phase::Streaming {
            if let Some(frame) = self.release() {
                return Output::Frame(frame);
            }
        }
        Output::Timeout(
            self.next_deadline()
                .unwrap_or(self.now + engine::REPLY_TIMEOUT),
        )
    }

    fn next_deadline(&self) -> Option<Instant> {
        let s = &self.stream;
        let streaming = self.phase == Phase::Streaming;
        earliest([
            self.timer.as_ref().map(|t| t.at),
            s.blocked_since
                .filter(|_| streaming)
                .map(|at| at + engine::ACK_STALL),
            s.last_frame_at
                .filter(|_| streaming)
                .map(|at| at + engine::KEEPALIVE_EVERY),
            s.verdict_by.filter(|_| streaming),
        ])
    }

    /// The next frame the window lets out.
    fn release(&mut self) -> Option<Vec<u8>> {
        let s = &mut self.stream;
        if !Window::open(s.sent, s.acked, s.window) {
            // Waiting for the receiver: the stall timer runs while there is more to send.
            if !s.pending.is_empty() || s.files_left > 0 {
                s.blocked_since.get_or_insert(self.now);
            }
            return None;
        }
        s.blocked_since = None;
        if s.pending.is_empty() {
            return None;
        }
        let frame = s.pending.pop_front().expect("checked above");
        let data = super::frame::data_len(&frame);
        s.sent.bytes += data;
        s.sent.messages += 1;
        s.sent_bytes += data;
        s.last_frame_at = Some(self.now);
        if data > 0 && s.window < s.max_window {
            s.marks.push_back(Mark {
                sent: s.sent.bytes,
                at: self.now,
                acked: s.acked.bytes,
            });
        }
        if data > 0 {
            self.outputs
                .push_back(Output::Event(Event::Sent { bytes: data }));
        }
        if s.files_left == 0 && s.pending.is_empty() {
            s.verdict_by = Some(self.now + engine::VERDICT_TIMEOUT);
        }
        Some(frame)
    }

    fn step(&mut self, input: Input) -> Result<(), Stop> {
        match input {
            Input::Paired if self.phase == Phase::WaitPeer => {
                self.conversation = Some(Conversation::start(&self.code, Side::Sender));
                self.phase = Phase::Handshake;
                self.timer = Some(Timer::reply(self.now, engine::HANDSHAKE_TIMEOUT));
                self.outputs.push_back(Output::Event(Event::Paired));
                Ok(())
            }
            Input::Paired => Err(Stop::internal("sender engine: paired twice")),
            Input::Envelope(envelope) => self.on_envelope(&envelope),
            Input::RendezvousClosed(why) => match self.phase {
                // The receiver leaves the rendezvous once its end of the link is open: give
                // ours a moment to open too.
                Phase::Connecting => {
                    engine::shorten_to_grace(&mut self.timer, self.now, why);
                    Ok(())
                }
                Phase::Streaming => Ok(()),
                _ => Err(Stop::quiet(why)),
            },
            Input::LocalSdp(sdp) if self.phase == Phase::AwaitLocalSdp => {
                self.send(&Message::Sdp {
                    kind: SdpKind::Offer,
                    sdp,
                })?;
                self.ice.sdp_sent = true;
                for candidate in std::mem::take(&mut self.ice.waiting) {
                    self.send(&Message::Candidate(candidate))?;
                }
                self.phase = if self.resume_pending {
                    Phase::AwaitResume
                } else {
                    Phase::AwaitAnswer
                };
                self.timer = Some(Timer::reply(self.now, engine::STEP_TIMEOUT));
                Ok(())
            }
            Input::LocalSdp(_) => Err(Stop::internal("sender engine: an SDP nobody asked for")),
            Input::LocalCandidate(candidate) => {
                if self.ice.on && self.phase != Phase::Streaming {
                    if self.ice.sdp_sent {
                        self.send(&Message::Candidate(candidate))?;
                    } else {
                        self.ice.waiting.push(candidate);
                    }
                }
                Ok(())
            }
            Input::Prefixes(Err(why)) if self.phase == Phase::Hashing => Err(Stop::tell(why)),
            Input::Prefixes(Ok(hashes)) if self.phase == Phase::Hashing => {
                if hashes.len() != self.kept.len() {
                    return Err(Stop::internal(
                        "sender engine: prefix hashes do not match the request",
                    ));
                }
                let prefixes = self
                    .kept
                    .iter()
                    .zip(hashes)
                    .map(|(kept, hash)| Prefix {
                        index: kept.index,
                        sha256: hash.map(|h| hex(&h)),
                    })
                    .collect();
                self.send(&Message::Prefixes { prefixes })?;
                self.create_offer();
                Ok(())
            }
            Input::Prefixes(_) => Err(Stop::internal(
                "sender engine: prefix hashes nobody asked for",
            )),
            Input::LinkOpen {
                max_message,
                path_rtt,
            } if self.phase == Phase::Connecting => {
                self.start_streaming(max_message, path_rtt);
                Ok(())
            }
            Input::LinkOpen { .. } => {
                Err(Stop::internal("sender engine: a data channel out of turn"))
            }
            Input::LinkFailed(why) => Err(Stop::tell(why)),
            Input::LinkClosed if self.phase == Phase::Streaming => Err(Stop::quiet(Failure::new(
                Kind::PeerGone,
                "the connection to the receiver was lost",
            ))),
            Input::LinkClosed => Ok(()),
            Input::Frame(bytes) => self.on_frame(&bytes),
            Input::Chunk(chunk) => self.on_chunk(chunk),
            Input::Interrupt => Err(Stop::tell(Failure::new(Kind::Interrupted, "interrupted"))),
            Input::Timeout => self.on_timeout(),
        }
    }

    fn on_timeout(&mut self) -> Result<(), Stop> {
        let now = self.now;
        if let Some(timer) = self.timer.as_ref().filter(|t| t.at <= now) {
            return Err(Stop::tell(timer.failure()));
        }
        if self.phase != Phase::Streaming {
            return Ok(());
        }
        let s = &mut self.stream;
        if s.blocked_since
            .is_some_and(|at| at + engine::ACK_STALL <= now)
        {
            return Err(Stop::tell(Failure::new(
                Kind::PeerGone,
                format!(
                    "the receiver stopped taking data for {} s",
                    engine::ACK_STALL.as_secs()
                ),
            )));
        }
        if s.verdict_by.is_some_and(|at| at <= now) {
            return Err(Stop::tell(Failure::new(
                Kind::PeerGone,
                "the receiver never confirmed the transfer",
            )));
        }
        if s.last_frame_at
            .is_some_and(|at| at + engine::KEEPALIVE_EVERY <= now)
        {
            s.last_frame_at = Some(now);
            self.outputs
                .push_back(Output::Frame(Frame::Keepalive.encode()));
        }
        Ok(())
    }

    fn on_envelope(&mut self, envelope: &[u8]) -> Result<(), Stop> {
        let connecting = self.phase == Phase::Connecting;
        let message =
            match engine::receive(&mut self.conversation, envelope, connecting, "receiver")? {
                Received::Message(message) => message,
                Received::Handshake { confirmed: true } => return self.confirmed(),
                Received::Handshake { confirmed: false } => {
                    self.timer = Some(Timer::reply(self.now, engine::HANDSHAKE_TIMEOUT));
                    return Ok(());
                }
            };
        match (self.phase, message) {
            (Phase::AwaitAccept, Message::Reject { reason }) => {
                let message = if reason == Kind::Declined.public_reason() {
                    "the receiver declined the transfer".to_string()
                } else {
                    format!("the receiver refused the transfer: {}", display(&reason))
                };
                Err(Stop::quiet(Failure::new(Kind::Declined, message)))
            }
            (Phase::AwaitAccept, Message::Accept { resume }) => self.on_accept(resume),
            (Phase::AwaitLocalSdp | Phase::AwaitResume, Message::Resume { files })
                if self.resume_pending =>
            {
                self.resume_pending = false;
                let mut agreed = HashMap::new();
                for index in files {
                    let kept = self.kept.iter().find(|k| k.index == index);
                    match kept {
                        Some(kept) if !agreed.contains_key(&index) => {
                            agreed.insert(index, kept.offset);
                        }
                        _ => return Err(Stop::tell(violation("a resume that was not offered"))),
                    }
                }
                self.agreed = agreed;
                // It may come before our own SDP is ready (the two are pipelined).
                if self.phase == Phase::AwaitResume {
                    self.phase = Phase::AwaitAnswer;
                    self.timer = Some(Timer::reply(self.now, engine::STEP_TIMEOUT));
                }
                Ok(())
            }
            (
                Phase::AwaitAnswer,
                Message::Sdp {
                    kind: SdpKind::Answer,
                    sdp,
                },
            ) => {
                self.outputs.push_back(Output::ApplyAnswer(sdp));
                self.phase = Phase::Connecting;
                self.timer = Some(Timer::new(
                    self.now + engine::CONNECT_TIMEOUT,
                    Kind::Connect,
                    "no direct connection could be established with the receiver",
                ));
                Ok(())
            }
            (Phase::Connecting, Message::Candidate(candidate)) if self.ice.on => {
                self.ice.taken += 1;
                if self.ice.taken > engine::MAX_CANDIDATES {
                    return Err(Stop::tell(violation("too many ICE candidates")));
                }
                self.outputs.push_back(Output::AddCandidate(candidate));
                Ok(())
            }
            (phase, message) => Err(Stop::tell(unexpected(&message, phase.waiting_for()))),
        }
    }

    /// Both sides hold the same code: make the offer.
    fn confirmed(&mut self) -> Result<(), Stop> {
        self.ice.on = self
            .conversation
            .as_ref()
            .is_some_and(|c| c.features().iter().any(|f| f == TRICKLE));
        match &self.offer {
            Offer::Text(text) => {
                let text = Message::Text { text: text.clone() };
                self.send(&text)?;
                self.timer = Some(Timer::reply(self.now, engine::STEP_TIMEOUT));
            }
            Offer::Files(manifest) => {
                for part in offer_messages(manifest) {
                    self.send(&part)?;
                }
                self.outputs.push_back(Output::Event(Event::AwaitingAccept));
                self.timer = Some(Timer::reply(self.now, engine::REPLY_TIMEOUT));
            }
        }
        self.phase = Phase::AwaitAccept;
        Ok(())
    }

    fn on_accept(&mut self, resume: Vec<Kept>) -> Result<(), Stop> {
        let manifest = match &self.offer {
            Offer::Text(_) => {
                if !resume.is_empty() {
                    return Err(Stop::tell(violation("a resume for a text")));
                }
                self.outputs.push_back(Output::CloseRendezvous);
                self.finish(Ok(Report::default()));
                return Ok(());
            }
            Offer::Files(manifest) => manifest,
        };
        let mut seen = HashSet::new();
        for kept in &resume {
            let fits = manifest.entries.get(kept.index).is_some_and(|e| {
                e.is_file()
                    && e.size
                        .is_some_and(|size| kept.offset > 0 && kept.offset <= size)
            });
            if !fits || !seen.insert(kept.index) {
                return Err(Stop::tell(violation(
                    "the receiver asked to resume a file that is not offered",
                )));
            }
        }
        self.outputs.push_back(Output::Event(Event::Accepted {
            resuming: resume.len(),
        }));
        self.kept = resume;
        self.timer = None;
        if self.kept.is_empty() {
            self.create_offer();
        } else {
            self.phase = Phase::Hashing;
            self.resume_pending = true;
            self.outputs
                .push_back(Output::HashPrefixes(self.kept.clone()));
        }
        Ok(())
    }

    fn create_offer(&mut self) {
        self.phase = Phase::AwaitLocalSdp;
        self.outputs.push_back(Output::CreateOffer {
            trickle: self.ice.on,
        });
        self.timer = Some(Timer::new(
            self.now + engine::LOCAL_SDP_TIMEOUT,
            Kind::Connect,
            "WebRTC did not produce an offer (ICE gathering did not complete)",
        ));
    }

    fn start_streaming(&mut self, max_message: usize, path_rtt: Option<std::time::Duration>) {
        let Offer::Files(manifest) = &self.offer else {
            return;
        };
        let plan: Vec<Planned> = manifest
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_file())
            .map(|(index, _)| Planned {
                index,
                start: self.agreed.get(&index).copied().unwrap_or(0),
            })
            .collect();
        let already_there = self.agreed.values().sum();
        let wide = self
            .conversation
            .as_ref()
            .is_some_and(|c| c.features().iter().any(|f| f == session::WIDE_WINDOW));
        self.phase = Phase::Streaming;
        self.timer = None;
        self.stream = Stream {
            files_left: plan.len(),
            to_begin: self.agreed.keys().copied().collect(),
            already_there,
            last_frame_at: Some(self.now),
            verdict_by: plan.is_empty().then(|| self.now + engine::VERDICT_TIMEOUT),
            window: WINDOW,
            // Without a measured round trip there is nothing to size a wider window by, and
            // below LONG_PATH the first window already allows 400 MB/s or more.
            max_window: if wide && path_rtt.is_some_and(|rtt| rtt >= LONG_PATH) {
                WIDE_WINDOW
            } else {
                WINDOW
            },
            path_rtt: path_rtt.unwrap_or_default(),
            ..Stream::default()
        };
        self.outputs.push_back(Output::CloseRendezvous);
        self.outputs.push_back(Output::Event(Event::Connected));
        if already_there > 0 {
            self.outputs.push_back(Output::Event(Event::AlreadyThere {
                bytes: already_there,
            }));
        }
        if max_message < MIN_MESSAGE {
            self.fail(
                violation(&format!(
                    "the receiver accepts data-channel messages of only {max_message} bytes"
                )),
                true,
            );
            return;
        }
        let max_data = max_message.min(MAX_MESSAGE) - 1;
        self.outputs
            .push_back(Output::StartReading { plan, max_data });
    }

    fn on_chunk(&mut self, chunk: Chunk) -> Result<(), Stop> {
        if self.phase != Phase::Streaming || self.stream.files_left == 0 {
            return Err(Stop::internal("sender engine: a chunk out of turn"));
        }
        let (index, frame) = match chunk {
            Chunk::Failed(why) => return Err(Stop::tell(why)),
            Chunk::Data { index, frame } => (index, frame),
            Chunk::End { index, sha256 } => {
                self.stream.files_left -= 1;
                (index, Frame::End(sha256).encode())
            }
        };
        if self.stream.to_begin.remove(&index) {
            let offset = self.agreed.get(&index).copied().unwrap_or(0);
            self.stream.pending.push_back(Frame::Begin(offset).encode());
        }
        self.stream.pending.push_back(frame);
        Ok(())
    }

    fn on_frame(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        if self.phase != Phase::Streaming {
            return Err(Stop::tell(violation("a frame before the transfer")));
        }
        match Frame::decode(bytes) {
            Ok(Frame::Ack(taken)) => {
                let s = &mut self.stream;
                let progressed = taken.bytes > s.acked.bytes || taken.messages > s.acked.messages;
                s.acked.bytes = s.acked.bytes.max(taken.bytes);
                s.acked.messages = s.acked.messages.max(taken.messages);
                if s.acked.bytes > s.sent.bytes || s.acked.messages > s.sent.messages {
                    return Err(Stop::tell(violation("an ACK for more than was sent")));
                }
                if progressed && s.blocked_since.is_some() {
                    s.blocked_since = Some(self.now);
                }
                s.measure(self.now);
                // The receiver is alive (it acknowledges while it syncs and places).
                if s.verdict_by.is_some() {
                    s.verdict_by = Some(self.now + engine::VERDICT_TIMEOUT);
                }
                Ok(())
            }
            Ok(Frame::Done) => {
                if self.stream.files_left > 0 || !self.stream.pending.is_empty() {
                    return Err(Stop::tell(violation(
                        "the receiver confirmed before everything was sent",
                    )));
                }
                let report = Report {
                    sent: self.stream.sent_bytes,
                    already_there: self.stream.already_there,
                };
                self.finish(Ok(report));
                Ok(())
            }
            Ok(Frame::Fail(kind, reason)) => Err(Stop::quiet(Failure::new(
                Kind::from_peer_fail(kind),
                format!("the receiver stopped: {}", display(&reason)),
            ))),
            Ok(other) => Err(Stop::tell(violation(&format!(
                "the receiver sent a {} frame",
                other.name()
            )))),
            Err(err) => Err(Stop::tell(violation(&format!(
                "bad frame from the receiver: {err}"
            )))),
        }
    }

    fn send(&mut self, message: &Message) -> Result<(), Stop> {
        engine::send(&mut self.conversation, message)
    }

    /// Ends the transfer with `failure`; `tell`: let the peer know why.
    fn fail(&mut self, failure: Failure, tell: bool) {
        if tell {
            let on_link = self.phase == Phase::Streaming;
            if let Some(frame) = engine::last_word(&failure, on_link, &mut self.conversation) {
                self.outputs.push_back(Output::Frame(frame));
            }
        }
        self.finish(Err(failure));
    }

    fn finish(&mut self, result: Result<Report, Failure>) {
        self.phase = Phase::Finished;
        self.timer = None;
        self.stream.pending.clear();
        self.outputs.push_back(Output::Done(result));
    }
}

impl Phase {
    fn waiting_for(self) -> &'static str {
        match self {
            Phase::AwaitAccept => "accept",
            Phase::AwaitResume | Phase::AwaitLocalSdp => "resume",
            Phase::AwaitAnswer => "an SDP answer",
            Phase::Connecting | Phase::Streaming => "the connection",
            _ => "nothing",
        }
    }
}
