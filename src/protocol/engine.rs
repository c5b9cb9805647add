//! What the two engines ([`super::sender`] and [`super::receiver`]) share: the timers of the
//! protocol and how a missed deadline or a message out of place becomes a [`Failure`].
//!
//! Both engines are driven the same way, in the style of str0m's `Rtc`:
//!
//! ```text
//! loop {
//!     match engine.poll_output() {          // drain everything the engine wants done
//!         Output::Timeout(at) => wait for the next input, or until `at`,
//!                                then engine.handle(now, input or Input::Timeout),
//!         Output::Done(result) => stop,
//!         other => carry it out (send bytes, start a file operation, show an event),
//!     }
//! }
//! ```
//!
//! Time is an input: an engine never reads a clock, so every timer can be tested with made-up
//! instants.

use std::time::{Duration, Instant};

use super::frame::Frame;
use super::message::{Candidate, Message};
use super::session::Conversation;
use crate::error::{Failure, Kind};

/// How long each handshake message may take once both sides are paired.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reply may take that no person waits on (offer parts, prefixes, SDPs, a text's
/// receipt): a server that drops a message is noticed in a minute.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the sender waits for `accept` (a person may be reading the receiver's prompt).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the local WebRTC side may take to produce its SDP (gathering candidates).
pub const LOCAL_SDP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the data channel may take to open once the SDPs are exchanged.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the data channel may still take to open once the peer has left the rendezvous
/// (it leaves as soon as *its* end is open).
pub const LEFT_GRACE: Duration = Duration::from_secs(5);
/// Sender: how long the receiver may take in nothing while data waits for the window.
pub const ACK_STALL: Duration = Duration::from_secs(60);
/// Sender: how long to wait for the receiver's verdict after the last frame or ACK.
pub const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);
/// Sender: a quiet spell after which it sends KEEPALIVE.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);
/// Receiver: how long the sender may send nothing (not even KEEPALIVE) before it is given up.
pub const SENDER_SILENCE: Duration = Duration::from_secs(60);
/// Receiver: an ACK at least this often while anything changed, and while syncing and placing.
pub const ACK_INTERVAL: Duration = Duration::from_secs(1);
/// Receiver: how long to wait for the sender to close after DONE.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Most ICE candidates taken from the peer: a host has a few per interface and server.
pub const MAX_CANDIDATES: usize = 64;

/// A deadline and the failure it means when it passes.
pub struct Timer {
    pub at: Instant,
    failure: (Kind, String),
}

impl Timer {
    pub fn new(at: Instant, kind: Kind, message: impl Into<String>) -> Timer {
        Timer {
            at,
            failure: (kind, message.into()),
        }
    }

    /// The wait for the other side to arrive at the rendezvous.
    pub fn arrival(now: Instant, wait: Duration) -> Timer {
        Timer::new(
            now + wait,
            Kind::Timeout,
            format!("the other side did not arrive within {} s", wait.as_secs()),
        )
    }

    /// The deadline for the peer's next message.
    pub fn reply(now: Instant, within: Duration) -> Timer {
        Timer::new(
            now + within,
            Kind::PeerGone,
            format!(
                "the other side stopped answering (no message for {} s)",
                within.as_secs()
            ),
        )
    }

    pub fn failure(&self) -> Failure {
        Failure::new(self.failure.0, self.failure.1.clone())
    }
}

/// A message the protocol did not expect at this point: a violation by the peer.
pub fn unexpected(message: &Message, waiting_for: &str) -> Failure {
    Failure::new(
        Kind::Integrity,
        format!(
            "protocol violation: got {} while waiting for {waiting_for}",
            message.kind_name()
        ),
    )
}

/// The earliest of some deadlines.
pub fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

/// A violation of the protocol by the peer.
pub fn violation(what: &str) -> Failure {
    Failure::new(Kind::Integrity, format!("protocol violation: {what}"))
}

/// Why an engine stops: the failure, and whether the peer should hear about it.
pub struct Stop {
    pub failure: Failure,
    pub tell: bool,
}

impl Stop {
    /// Stop, and tell the peer why (a sealed `abort` or a FAIL frame).
    pub fn tell(failure: Failure) -> Stop {
        Stop {
            failure,
            tell: true,
        }
    }

    /// Stop; the peer already knows (it failed, declined or left).
    pub fn quiet(failure: Failure) -> Stop {
        Stop {
            failure,
            tell: false,
        }
    }

    /// A bug in the pump that drives the engine.
    pub fn internal(what: &str) -> Stop {
        Stop::tell(Failure::new(Kind::Internal, what.to_string()))
    }
}

/// The peer's `abort` saying it could not connect, received while this side is connecting
/// too, is the same failure on both sides (exit 9), with the peer's words; any other
/// failure stays as it is. `peer` names the other side ("sender", "receiver").
pub fn gave_up(failure: Failure, connecting: bool, peer: &str) -> Failure {
    let could_not_connect = failure.message.ends_with(Kind::Connect.public_reason());
    if connecting && failure.kind == Kind::PeerGone && could_not_connect {
        let message = format!(
            "no direct connection could be established with the {peer} ({})",
            failure.message
        );
        return Failure::new(Kind::Connect, message);
    }
    failure
}

/// The peer left the rendezvous while the link was opening (it leaves as soon as *its* end
/// is open): give ours [`LEFT_GRACE`] more at most, failing with `why` if it does not open.
pub fn shorten_to_grace(timer: &mut Option<Timer>, now: Instant, why: Failure) {
    let grace = now + LEFT_GRACE;
    if timer.as_ref().is_none_or(|t| t.at > grace) {
        *timer = Some(Timer::new(grace, why.kind, why.message));
    }
}

/// Trickled ICE candidates, both ways.
#[derive(Default)]
pub struct Trickle {
    /// Both hellos listed `trickle`.
    pub on: bool,
    /// Our SDP went out: our candidates may follow it.
    pub sdp_sent: bool,
    /// Our candidates gathered before our SDP went out.
    pub waiting: Vec<Candidate>,
    /// The peer's candidates taken so far.
    pub taken: usize,
}

/// What one envelope from the peer brought.
pub enum Received {
    /// A step of the handshake; `confirmed` when this step proved both sides hold the same
    /// code (it happens once).
    Handshake { confirmed: bool },
    /// A message of the sealed conversation.
    Message(Message),
}

/// Opens the peer's `envelope`. A failure to open it ends the run quietly (the peer cannot be
/// told through a channel that failed); see [`gave_up`] for `connecting` and `peer`.
pub fn receive(
    conversation: &mut Option<Conversation>,
    envelope: &[u8],
    connecting: bool,
    peer: &str,
) -> Result<Received, Stop> {
    let conversation = conversation
        .as_mut()
        .ok_or_else(|| Stop::internal("engine: an envelope before pairing"))?;
    let was_confirmed = conversation.is_confirmed();
    let message = conversation
        .receive(envelope)
        .map_err(|failure| Stop::quiet(gave_up(failure, connecting, peer)))?;
    Ok(match message {
        Some(message) => Received::Message(message),
        None => Received::Handshake {
            confirmed: !was_confirmed && conversation.is_confirmed(),
        },
    })
}

/// Seals `message` for the peer.
pub fn send(conversation: &mut Option<Conversation>, message: &Message) -> Result<(), Stop> {
    let conversation = conversation
        .as_mut()
        .ok_or_else(|| Stop::internal("engine: a message before pairing"))?;
    conversation.send(message).map_err(Stop::quiet)
}

/// Tells the peer why this side stops: a FAIL frame to send when the link carries the
/// transfer (`on_link`), else a sealed `abort` (queued in the conversation) once both sides
/// proved the code; before that, nothing can be said safely.
pub fn last_word(
    failure: &Failure,
    on_link: bool,
    conversation: &mut Option<Conversation>,
) -> Option<Vec<u8>> {
    let reason = failure.public_reason();
    if on_link {
        return Some(Frame::Fail(failure.kind.fail_kind(), reason).encode());
    }
    if let Some(conversation) = conversation.as_mut().filter(|c| c.is_confirmed()) {
        let _ = conversation.send(&Message::Abort { reason });
    }
    None
}
