//! The signaling session between the two peers, as a pure state machine over byte strings.
//!
//! ```text
//! each side:  send PAKE message ──► on the other's PAKE message: send sealed Hello
//!             on the other's sealed Hello: confirmed ──► SecureChannel (seal / open Messages)
//! ```
//!
//! Nothing here touches a socket; the signaling client moves the bytes. A wrong code shows up as
//! a Hello that fails to open: [`SessionError::WrongCode`]. After confirmation, any envelope that
//! fails to open is [`SessionError::Tampered`].
//!
//! [`Conversation`] wraps both stages for the engines: envelopes in, messages out, and the
//! envelopes to send queued until the caller polls them.

use std::collections::VecDeque;

use super::code::Code;
use super::message::Message;
use super::pake::{Pake, PakeError, Side};
use super::seal::{Opener, SealError, Sealer};
use crate::error::{Failure, Kind};

/// The protocol version this implementation speaks (in the sealed `hello`).
pub const VERSION: u32 = 2;

/// Optional features this implementation offers in its `hello`. A feature is used only when
/// both hellos list it; unknown ones are ignored.
///
/// - `trickle`: SDPs are sent at once, and ICE candidates follow one by one in `candidate`
///   messages, so a slow STUN or TURN server never holds up a connection on one network.
/// - `wide-window`: the receiver grants a flow-control window of
///   [`WIDE_WINDOW`](super::frame::WIDE_WINDOW) bytes instead of
///   [`WINDOW`](super::frame::WINDOW), and the sender grows into it as the path's
///   bandwidth-delay product requires ([`grown_window`](super::frame::grown_window)), so a long
///   path is not held to 4 MiB per round trip.
pub const FEATURES: &[&str] = &[TRICKLE, WIDE_WINDOW];

/// The feature name of trickled ICE candidates.
pub const TRICKLE: &str = "trickle";

/// The feature name of the wide flow-control window.
pub const WIDE_WINDOW: &str = "wide-window";

/// Why the session failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("wrong code, or the signaling server tampered with the key exchange")]
    WrongCode,
    #[error("the other side is also {0}: one side runs `mp send`, the other `mp receive`")]
    SameSide(&'static str),
    #[error("signaling message tampered with ({0})")]
    Tampered(SealError),
    #[error(
        "the other side speaks protocol version {0}, this is version {VERSION}: \
         update mp on the side with the older version"
    )]
    Version(u32),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// The key exchange and confirmation, before any other message.
pub enum Handshake {
    AwaitPake(Pake),
    AwaitHello(Sealer, Opener),
}

impl Handshake {
    /// Starts the handshake; returns it and the PAKE message to send.
    pub fn start(code: &Code, side: Side) -> (Handshake, Vec<u8>) {
        let (pake, message) = Pake::start(code, side);
        (Handshake::AwaitPake(pake), message)
    }

    /// Takes the other side's PAKE message; returns the sealed Hello to send.
    pub fn on_pake(self, inbound: &[u8]) -> Result<(Handshake, Vec<u8>), SessionError> {
        let Handshake::AwaitPake(pake) = self else {
            return Err(SessionError::Protocol("second key-exchange message".into()));
        };
        let keys = pake.finish(inbound).map_err(|e| match e {
            PakeError::SameSide(what) => SessionError::SameSide(what),
            // A mangled PAKE message is what a wrong code looks like from a tampering server.
            PakeError::Malformed => SessionError::WrongCode,
        })?;
        let mut sealer = Sealer::new(&keys.seal);
        let hello = Message::Hello {
            version: VERSION,
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
        };
        let hello = sealer.seal(&hello.to_bytes()).expect("hello is small");
        Ok((
            Handshake::AwaitHello(sealer, Opener::new(&keys.open)),
            hello,
        ))
    }

    /// Takes the other side's sealed Hello; on success the channel is confirmed.
    pub fn on_hello(self, inbound: &[u8]) -> Result<SecureChannel, SessionError> {
        let Handshake::AwaitHello(sealer, mut opener) = self else {
            return Err(SessionError::Protocol("hello before key exchange".into()));
        };
        let plain = opener.open(inbound).map_err(|_| SessionError::WrongCode)?;
        match Message::from_bytes(&plain) {
            Ok(Message::Hello { version, features }) if version == VERSION => {
                let features = features
                    .into_iter()
                    .filter(|f| FEATURES.contains(&f.as_str()))
                    .collect();
                Ok(SecureChannel {
                    sealer,
                    opener,
                    features,
                })
            }
            Ok(Message::Hello { version, .. }) => Err(SessionError::Version(version)),
            _ => Err(SessionError::Protocol("expected hello".into())),
        }
    }
}

impl SessionError {
    /// What the user is told, and with which exit code.
    pub fn into_failure(self) -> Failure {
        let kind = match &self {
            SessionError::WrongCode | SessionError::Tampered(_) => Kind::WrongCode,
            SessionError::SameSide(_) => Kind::Usage,
            SessionError::Version(_) => Kind::Version,
            // Before confirmation, a message out of place is what a tampering server produces.
            SessionError::Protocol(_) => Kind::WrongCode,
        };
        Failure::new(kind, self.to_string()).caused_by(self)
    }
}

/// The signaling conversation of one side, from the first key-exchange message to the last
/// sealed message: envelopes in, messages out.
pub struct Conversation {
    handshake: Option<Handshake>,
    channel: Option<SecureChannel>,
    outbox: VecDeque<Vec<u8>>,
}

impl Conversation {
    /// Starts the key exchange; its first message waits in the outbox.
    pub fn start(code: &Code, side: Side) -> Conversation {
        let (handshake, pake) = Handshake::start(code, side);
        Conversation {
            handshake: Some(handshake),
            channel: None,
            outbox: VecDeque::from([pake]),
        }
    }

    /// True once both sides proved they hold the same code.
    pub fn is_confirmed(&self) -> bool {
        self.channel.is_some()
    }

    /// The features both sides listed.
    pub fn features(&self) -> &[String] {
        self.channel.as_ref().map_or(&[], |c| &c.features)
    }

    /// Takes one envelope from the peer. During the handshake it is consumed here (`None`);
    /// afterwards it is opened into a message. The peer's `abort` is a failure.
    pub fn receive(&mut self, envelope: &[u8]) -> Result<Option<Message>, Failure> {
        if let Some(channel) = &mut self.channel {
            return match channel.open(envelope) {
                Ok(Message::Abort { reason }) => Err(Failure::new(
                    Kind::PeerGone,
                    format!(
                        "the other side stopped: {}",
                        super::manifest::display(&reason)
                    ),
                )),
                Ok(message) => Ok(Some(message)),
                Err(SessionError::Protocol(why)) => Err(Failure::new(
                    Kind::Integrity,
                    format!("protocol violation: {why}"),
                )),
                Err(err) => Err(err.into_failure()),
            };
        }
        let handshake = self
            .handshake
            .take()
            .ok_or_else(|| Failure::new(Kind::Internal, "the conversation already failed"))?;
        match handshake {
            Handshake::AwaitPake(_) => {
                let (next, hello) = handshake
                    .on_pake(envelope)
                    .map_err(SessionError::into_failure)?;
                self.handshake = Some(next);
                self.outbox.push_back(hello);
            }
            Handshake::AwaitHello(..) => {
                self.channel = Some(
                    handshake
                        .on_hello(envelope)
                        .map_err(SessionError::into_failure)?,
                );
            }
        }
        Ok(None)
    }

    /// Seals `message` into the outbox.
    pub fn send(&mut self, message: &Message) -> Result<(), Failure> {
        let channel = self
            .channel
            .as_mut()
            .ok_or_else(|| Failure::new(Kind::Internal, "a message before the handshake"))?;
        let envelope = channel.seal(message).map_err(|e| {
            Failure::new(
                Kind::Internal,
                format!("cannot send the {} message: {e}", message.kind_name()),
            )
        })?;
        self.outbox.push_back(envelope);
        Ok(())
    }

    /// The next envelope to hand to the rendezvous.
    pub fn poll_envelope(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }
}

/// A confirmed session: every message is sealed, in order, per direction.
pub struct SecureChannel {
    sealer: Sealer,
    opener: Opener,
    /// The optional features both sides listed.
    features: Vec<String>,
}

impl SecureChannel {
    pub fn seal(&mut self, message: &Message) -> Result<Vec<u8>, SessionError> {
        self.sealer
            .seal(&message.to_bytes())
            .map_err(|e| SessionError::Protocol(e.to_string()))
    }

    pub fn open(&mut self, envelope: &[u8]) -> Result<Message, SessionError> {
        let plain = self.opener.open(envelope).map_err(SessionError::Tampered)?;
        Message::from_bytes(&plain).map_err(|e| SessionError::Protocol(format!("bad message: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::manifest::Manifest;

    fn code(text: &str) -> Code {
        Code::parse(text).unwrap()
    }

    /// Runs both handshakes through `relay`, a stand-in for the (possibly malicious) server
    /// that may rewrite each message; returns both outcomes.
    fn handshake(
        sender_code: &str,
        receiver_code: &str,
        mut relay: impl FnMut(usize, Vec<u8>) -> Vec<u8>,
    ) -> (
        Result<SecureChannel, SessionError>,
        Result<SecureChannel, SessionError>,
    ) {
        let (s, s_pake) = Handshake::start(&code(sender_code), Side::Sender);
        let (r, r_pake) = Handshake::start(&code(receiver_code), Side::Receiver);
        let s = s.on_pake(&relay(0, r_pake));
        let r = r.on_pake(&relay(1, s_pake));
        match (s, r) {
            (Ok((s, s_hello)), Ok((r, r_hello))) => (
                s.on_hello(&relay(2, r_hello)),
                r.on_hello(&relay(3, s_hello)),
            ),
            // One side stopped at the key exchange; the other would wait for a hello in vain.
            (s, r) => {
                let halted = || Err(SessionError::Protocol("halted".into()));
                (s.and_then(|_| halted()), r.and_then(|_| halted()))
            }
        }
    }

    fn confirmed() -> (SecureChannel, SecureChannel) {
        let (s, r) = handshake("7-guitar-ocean", "7-guitar-ocean", |_, m| m);
        (s.unwrap(), r.unwrap())
    }

    #[test]
    fn same_code_confirms_and_carries_messages_both_ways() {
        let (mut s, mut r) = confirmed();
        let offer = Message::Offer {
            manifest: Manifest::single("a", 1),
            more: false,
        };
        assert_eq!(r.open(&s.seal(&offer).unwrap()).unwrap(), offer);
        let accept = Message::Accept { resume: vec![] };
        assert_eq!(s.open(&r.seal(&accept).unwrap()).unwrap(), accept);
    }

    #[test]
    fn wrong_code_fails_on_both_sides() {
        let (s, r) = handshake("7-guitar-ocean", "7-guitar-oceam", |_, m| m);
        assert_eq!(s.err(), Some(SessionError::WrongCode));
        assert_eq!(r.err(), Some(SessionError::WrongCode));
    }

    #[test]
    fn a_server_that_flips_any_handshake_message_is_caught() {
        for target in 0..4 {
            let (s, r) = handshake("7-x-y", "7-x-y", |i, mut m| {
                if i == target {
                    let last = m.len() - 1;
                    m[last] ^= 1;
                }
                m
            });
            assert!(
                s.is_err() || r.is_err(),
                "flipping message {target} went unnoticed"
            );
        }
    }

    #[test]
    fn a_server_that_substitutes_its_own_pake_messages_is_caught() {
        // A man in the middle who does not know the code runs SPAKE2 with each side.
        let (s, r) = handshake("7-x-y", "7-x-y", |i, m| match i {
            0 => Handshake::start(&code("7-guess"), Side::Receiver).1,
            1 => Handshake::start(&code("7-guess"), Side::Sender).1,
            _ => m,
        });
        assert_eq!(s.err(), Some(SessionError::WrongCode));
        assert_eq!(r.err(), Some(SessionError::WrongCode));
    }

    #[test]
    fn two_senders_are_told_so() {
        let (a, a_pake) = Handshake::start(&code("7-x"), Side::Sender);
        let (_, b_pake) = Handshake::start(&code("7-x"), Side::Sender);
        assert!(matches!(
            a.on_pake(&b_pake),
            Err(SessionError::SameSide("sending"))
        ));
        drop(a_pake);
    }

    #[test]
    fn replayed_reordered_or_swapped_messages_are_refused() {
        let (mut s, mut r) = confirmed();
        let sdp = |text: &str| Message::Sdp {
            kind: crate::protocol::message::SdpKind::Offer,
            sdp: text.into(),
        };
        let m1 = s.seal(&sdp("a=fingerprint:sha-256 AA")).unwrap();
        let m2 = s.seal(&sdp("a=fingerprint:sha-256 BB")).unwrap();
        // Reordered.
        assert!(matches!(
            r.open(&m2),
            Err(SessionError::Tampered(SealError::OutOfOrder { .. }))
        ));
        r.open(&m1).unwrap();
        // Replayed.
        assert!(matches!(r.open(&m1), Err(SessionError::Tampered(_))));
        // Reflected back to its own author (wrong direction key).
        let mut reflected = m2.clone();
        reflected[..8].copy_from_slice(&0u64.to_be_bytes());
        assert!(matches!(s.open(&reflected), Err(SessionError::Tampered(_))));
        // A fingerprint swapped inside the ciphertext.
        let mut swapped = m2.clone();
        swapped[40] ^= 0x55;
        assert!(matches!(
            r.open(&swapped),
            Err(SessionError::Tampered(SealError::Forged))
        ));
    }

    #[test]
    fn hello_must_come_first_and_match_the_version() {
        let (s, _) = Handshake::start(&code("7-x"), Side::Sender);
        assert!(matches!(
            s.on_hello(b"anything"),
            Err(SessionError::Protocol(_))
        ));
    }
}

#[cfg(test)]
mod version_tests {
    use super::*;
    use crate::protocol::pake::Pake;

    #[test]
    fn another_protocol_version_is_named_not_mistaken_for_a_wrong_code() {
        let code = Code::parse("7-guitar-ocean").unwrap();
        let mut ours = Conversation::start(&code, Side::Receiver);
        let our_pake = ours.poll_envelope().unwrap();
        // A peer of version 3: same key schedule, another conversation version.
        let (theirs, their_pake) = Pake::start(&code, Side::Sender);
        let keys = theirs.finish(&our_pake).unwrap();
        let hello = br#"{"type":"hello","version":3,"features":["later"]}"#;
        let sealed = Sealer::new(&keys.seal).seal(hello).unwrap();
        assert_eq!(ours.receive(&their_pake).unwrap(), None);
        let failure = ours.receive(&sealed).unwrap_err();
        assert_eq!(failure.kind, Kind::Version);
        assert!(failure.message.contains("version 3"), "{}", failure.message);
    }

    #[test]
    fn unknown_features_are_ignored_and_an_abort_is_the_peers_failure() {
        let code = Code::parse("7-guitar-ocean").unwrap();
        let mut ours = Conversation::start(&code, Side::Receiver);
        let our_pake = ours.poll_envelope().unwrap();
        let (theirs, their_pake) = Pake::start(&code, Side::Sender);
        let keys = theirs.finish(&our_pake).unwrap();
        let mut sealer = Sealer::new(&keys.seal);
        let hello = br#"{"type":"hello","version":2,"features":["from-the-future"]}"#;
        ours.receive(&their_pake).unwrap();
        ours.receive(&sealer.seal(hello).unwrap()).unwrap();
        assert!(ours.is_confirmed());
        assert!(
            ours.features().is_empty(),
            "only features both list are used"
        );
        let abort = sealer
            .seal(br#"{"type":"abort","reason":"disk \u001b[2J full"}"#)
            .unwrap();
        let failure = ours.receive(&abort).unwrap_err();
        assert_eq!(failure.kind, Kind::PeerGone);
        assert!(!failure.message.contains('\u{1b}'), "{}", failure.message);
        // A message too large to seal is ours to fix, not a wrong code.
        let huge = Message::Text {
            text: "x".repeat(64 * 1024),
        };
        assert_eq!(ours.send(&huge).unwrap_err().kind, Kind::Internal);
    }
}
