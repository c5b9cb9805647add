//! SPAKE2 over the whole code, and the keys derived from its result.
//!
//! Each side sends one SPAKE2 message (33 bytes, through the server). Both then hold the same
//! 32-byte secret if, and only if, they typed the same code and nobody altered the messages.
//! HKDF-SHA256 turns it into one key per direction; the sealed `hello` exchanged next is the
//! explicit key confirmation (see [`crate::protocol::session`]).

use hkdf::Hkdf;
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

use super::code::Code;

/// Version of the key schedule, bound into the SPAKE2 identities and every HKDF label. It is
/// not the protocol version (that is negotiated in the sealed `hello`, see
/// [`crate::protocol::session::VERSION`]): keeping it fixed lets peers of different protocol
/// versions still open each other's `hello` and report the mismatch instead of "wrong code".
pub const KEY_SCHEDULE: u32 = 1;

/// HKDF salt.
pub const HKDF_SALT: &[u8] = b"mp/1 hkdf salt";
/// HKDF info for the key that seals messages from the sender to the receiver.
pub const LABEL_SENDER_TO_RECEIVER: &[u8] = b"mp/1 seal sender->receiver";
/// HKDF info for the key that seals messages from the receiver to the sender.
pub const LABEL_RECEIVER_TO_SENDER: &[u8] = b"mp/1 seal receiver->sender";

/// Which end of the transfer this is. The sender is SPAKE2 side A, the receiver side B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Sender,
    Receiver,
}

impl Side {
    /// The name the signaling server is told (`"send"` or `"receive"`).
    pub fn wire_name(self) -> &'static str {
        match self {
            Side::Sender => "send",
            Side::Receiver => "receive",
        }
    }
}

/// The two sealing keys of one side: what it seals with and what it opens with.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub seal: [u8; 32],
    pub open: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// Why the key exchange failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PakeError {
    /// The other message came from the same side (two senders or two receivers in one room).
    #[error("the other side is also {0}")]
    SameSide(&'static str),
    /// The message is not a SPAKE2 message at all.
    #[error("malformed key-exchange message")]
    Malformed,
}

/// The SPAKE2 identity of side A (the sender) for `room`.
pub fn identity_sender(room: &str) -> Vec<u8> {
    format!("mp/{KEY_SCHEDULE} sender room={room}").into_bytes()
}

/// The SPAKE2 identity of side B (the receiver) for `room`.
pub fn identity_receiver(room: &str) -> Vec<u8> {
    format!("mp/{KEY_SCHEDULE} receiver room={room}").into_bytes()
}

/// One side's half-finished key exchange.
pub struct Pake {
    side: Side,
    state: Spake2<Ed25519Group>,
}

impl Pake {
    /// Starts the exchange; returns the state and the message to send to the other side.
    pub fn start(code: &Code, side: Side) -> (Pake, Vec<u8>) {
        let password = Password::new(code.as_str().as_bytes());
        let id_a = Identity::new(&identity_sender(code.room()));
        let id_b = Identity::new(&identity_receiver(code.room()));
        let (state, message) = match side {
            Side::Sender => Spake2::<Ed25519Group>::start_a(&password, &id_a, &id_b),
            Side::Receiver => Spake2::<Ed25519Group>::start_b(&password, &id_a, &id_b),
        };
        (Pake { side, state }, message)
    }

    /// Finishes the exchange with the other side's message and derives the sealing keys.
    ///
    /// A wrong code does *not* fail here: SPAKE2 then yields different secrets on each side,
    /// which the key confirmation catches.
    pub fn finish(self, inbound: &[u8]) -> Result<Keys, PakeError> {
        // The crate's first byte says which side made the message; a clearer error for the
        // common mistake of two senders (or two receivers) sharing a code.
        match (self.side, inbound.first()) {
            (Side::Sender, Some(b'A')) => return Err(PakeError::SameSide("sending")),
            (Side::Receiver, Some(b'B')) => return Err(PakeError::SameSide("receiving")),
            _ => {}
        }
        let secret = self
            .state
            .finish(inbound)
            .map_err(|_| PakeError::Malformed)?;
        Ok(derive_keys(&secret, self.side))
    }
}

/// Derives the per-direction sealing keys from the SPAKE2 secret.
pub fn derive_keys(secret: &[u8], side: Side) -> Keys {
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret);
    let expand = |label: &[u8]| {
        let mut key = [0u8; 32];
        hkdf.expand(label, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    };
    let to_receiver = expand(LABEL_SENDER_TO_RECEIVER);
    let to_sender = expand(LABEL_RECEIVER_TO_SENDER);
    match side {
        Side::Sender => Keys {
            seal: to_receiver,
            open: to_sender,
        },
        Side::Receiver => Keys {
            seal: to_sender,
            open: to_receiver,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::hex;

    fn code(text: &str) -> Code {
        Code::parse(text).unwrap()
    }

    #[test]
    fn same_code_gives_mirrored_keys() {
        let (a, msg_a) = Pake::start(&code("7-guitar-ocean"), Side::Sender);
        let (b, msg_b) = Pake::start(&code("7-guitar-ocean"), Side::Receiver);
        let ka = a.finish(&msg_b).unwrap();
        let kb = b.finish(&msg_a).unwrap();
        assert_eq!(ka.seal, kb.open);
        assert_eq!(ka.open, kb.seal);
        assert_ne!(ka.seal, ka.open);
    }

    #[test]
    fn different_codes_give_different_keys() {
        let (a, msg_a) = Pake::start(&code("7-guitar-ocean"), Side::Sender);
        let (b, msg_b) = Pake::start(&code("7-guitar-oceans"), Side::Receiver);
        let ka = a.finish(&msg_b).unwrap();
        let kb = b.finish(&msg_a).unwrap();
        assert_ne!(ka.seal, kb.open);
    }

    #[test]
    fn two_senders_are_told_apart() {
        let (a, _) = Pake::start(&code("7-x"), Side::Sender);
        let (_, msg_a2) = Pake::start(&code("7-x"), Side::Sender);
        assert_eq!(a.finish(&msg_a2), Err(PakeError::SameSide("sending")));
    }

    #[test]
    fn garbage_is_malformed() {
        let (a, _) = Pake::start(&code("7-x"), Side::Sender);
        assert_eq!(a.finish(b"Bshort"), Err(PakeError::Malformed));
    }

    /// Test vector for docs/PROTOCOL.md: the keys derived from a fixed SPAKE2 secret.
    #[test]
    fn key_derivation_vector() {
        let secret = [0x11u8; 32];
        let keys = derive_keys(&secret, Side::Sender);
        assert_eq!(
            hex(&keys.seal),
            "5ec62b8e403679797d2f2cb56edef2dc84b08619534de3364637e046be39cd2c"
        );
        assert_eq!(
            hex(&keys.open),
            "e83f8e55bc0ec78c05ad8ebbf3d5a3fd80610849fe704ef200a195002ff4f0e6"
        );
        let receiver = derive_keys(&secret, Side::Receiver);
        assert_eq!(keys.seal, receiver.open);
        assert_eq!(keys.open, receiver.seal);
    }
}
