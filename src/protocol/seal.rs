//! The sealed envelope that carries every signaling message after the key exchange.
//!
//! ```text
//! envelope  = counter (8 bytes, big-endian) || ChaCha20-Poly1305(key, nonce, padded)
//! nonce     = 4 zero bytes || counter (8 bytes, big-endian)
//! padded    = length (4 bytes, big-endian) || message || zero bytes up to a multiple of 256
//! ```
//!
//! Each direction has its own key and its own counter, starting at 0 and rising by one per
//! message. The opener accepts only the next counter, so a replayed, dropped, reordered or altered
//! envelope is refused. Padding hides the exact length of SDPs and file names from the server.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Plaintext is padded to a multiple of this many bytes.
pub const PAD_BLOCK: usize = 256;
/// The largest message that may be sealed (an SDP is a few KiB).
pub const MAX_MESSAGE: usize = 32 * 1024;
/// The largest envelope that may be opened.
pub const MAX_ENVELOPE: usize = 8 + 4 + MAX_MESSAGE + PAD_BLOCK + 16;

const TAG_LEN: usize = 16;

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed message out of order (expected #{expected}, got #{got})")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("sealed message failed authentication")]
    Forged,
    #[error("sealed message is malformed")]
    Malformed,
    #[error("message too large to seal")]
    TooLarge,
}

fn nonce(counter: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::from(nonce)
}

/// Seals outgoing messages of one direction.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    next: u64,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            next: 0,
        }
    }

    /// Seals `message` into the next envelope.
    pub fn seal(&mut self, message: &[u8]) -> Result<Vec<u8>, SealError> {
        if message.len() > MAX_MESSAGE {
            return Err(SealError::TooLarge);
        }
        let counter = self.next;
        let padded_len = (4 + message.len()).div_ceil(PAD_BLOCK) * PAD_BLOCK;
        let mut padded = Vec::with_capacity(padded_len);
        padded.extend_from_slice(&(message.len() as u32).to_be_bytes());
        padded.extend_from_slice(message);
        padded.resize(padded_len, 0);
        let header = counter.to_be_bytes();
        let sealed = self
            .cipher
            .encrypt(
                &nonce(counter),
                Payload {
                    msg: &padded,
                    aad: &header,
                },
            )
            .map_err(|_| SealError::TooLarge)?;
        self.next += 1;
        let mut envelope = Vec::with_capacity(8 + sealed.len());
        envelope.extend_from_slice(&header);
        envelope.extend_from_slice(&sealed);
        Ok(envelope)
    }
}

/// Opens incoming messages of one direction, in order.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    next: u64,
}

impl Opener {
    pub fn new(key: &[u8; 32]) -> Opener {
        Opener {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            next: 0,
        }
    }

    /// Opens the next envelope and returns the message inside.
    pub fn open(&mut self, envelope: &[u8]) -> Result<Vec<u8>, SealError> {
        if envelope.len() < 8 + PAD_BLOCK + TAG_LEN || envelope.len() > MAX_ENVELOPE {
            return Err(SealError::Malformed);
        }
        let (header, sealed) = envelope.split_at(8);
        let got = u64::from_be_bytes(header.try_into().expect("split at 8"));
        if got != self.next {
            return Err(SealError::OutOfOrder {
                expected: self.next,
                got,
            });
        }
        let padded = self
            .cipher
            .decrypt(
                &nonce(got),
                Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| SealError::Forged)?;
        self.next += 1;
        let len =
            u32::from_be_bytes(padded[..4].try_into().expect("padded holds a length")) as usize;
        if len > padded.len() - 4 {
            return Err(SealError::Malformed);
        }
        Ok(padded[4..4 + len].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Sealer, Opener) {
        let key = [7u8; 32];
        (Sealer::new(&key), Opener::new(&key))
    }

    #[test]
    fn round_trip_in_order() {
        let (mut s, mut o) = pair();
        for msg in [&b""[..], b"hello", &[0xAB; 5000]] {
            let env = s.seal(msg).unwrap();
            assert_eq!((env.len() - 8 - 16) % PAD_BLOCK, 0);
            assert_eq!(o.open(&env).unwrap(), msg);
        }
    }

    #[test]
    fn padding_hides_small_length_differences() {
        let (mut s, _) = pair();
        assert_eq!(
            s.seal(b"a").unwrap().len(),
            s.seal(&[b'a'; 200]).unwrap().len()
        );
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let (mut s, _) = pair();
        let env = s.seal(b"v=0 fingerprint sha-256 AA:BB").unwrap();
        for i in 8..env.len() {
            for bit in 0..8 {
                let mut bad = env.clone();
                bad[i] ^= 1 << bit;
                let (_, mut o) = pair();
                assert_eq!(o.open(&bad), Err(SealError::Forged), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn replay_and_reorder_are_refused() {
        let (mut s, mut o) = pair();
        let first = s.seal(b"one").unwrap();
        let second = s.seal(b"two").unwrap();
        assert_eq!(
            o.open(&second),
            Err(SealError::OutOfOrder {
                expected: 0,
                got: 1
            })
        );
        o.open(&first).unwrap();
        assert_eq!(
            o.open(&first),
            Err(SealError::OutOfOrder {
                expected: 1,
                got: 0
            })
        );
        o.open(&second).unwrap();
    }

    #[test]
    fn rewriting_the_counter_is_refused() {
        let (mut s, mut o) = pair();
        let _skipped = s.seal(b"one").unwrap();
        let mut second = s.seal(b"two").unwrap();
        second[..8].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(o.open(&second), Err(SealError::Forged));
    }

    #[test]
    fn wrong_key_is_refused() {
        let mut s = Sealer::new(&[1u8; 32]);
        let mut o = Opener::new(&[2u8; 32]);
        assert_eq!(o.open(&s.seal(b"x").unwrap()), Err(SealError::Forged));
    }

    #[test]
    fn sizes_are_bounded() {
        let (mut s, mut o) = pair();
        assert_eq!(s.seal(&vec![0; MAX_MESSAGE + 1]), Err(SealError::TooLarge));
        assert_eq!(o.open(&[0u8; 10]), Err(SealError::Malformed));
        assert_eq!(
            o.open(&vec![0u8; MAX_ENVELOPE + 1]),
            Err(SealError::Malformed)
        );
    }

    /// Test vector for docs/PROTOCOL.md: `{"type":"accept"}` sealed as message #0 with the
    /// sender's key from the key-derivation vector (computed independently).
    #[test]
    fn sealed_message_vector() {
        let key = "5ec62b8e403679797d2f2cb56edef2dc84b08619534de3364637e046be39cd2c";
        let key: [u8; 32] = unhex(key).try_into().unwrap();
        let expected = unhex(concat!(
            "00000000000000000deaaa723abbfddbb23c1a0cb8b42acdd356a92bf2a3530b",
            "caf53dcb7d3e2d6450a2f8cd1276f9e393690cb8e7d1b205bf41113ad5924b5a",
            "4f67fd8ddbceed4e584a238bc90f4743cea8fc1581ce75827606fbd1f4d7f861",
            "1296a8282e962dc838fe7bcb88d371882cb5ae9625cc4e0001ec9cf4f5255495",
            "71d665ab3d6c26932ab3f55ce184dc21e4ca299fd28d1aede482b98b6422ab82",
            "3365315f4d6c41fe2e3cf76d033a032e53bea432b0a3f272ed938898d22b1150",
            "1ce73e0eb452a537583953a5fb8bfecb062a00e5024a5d2a16f43e7e396dba3b",
            "68f9d6edb8f0dcc78d130fc94b3a9f0de81cdbefac1db610bcae096db052e23c",
            "d3eed4c297a05b443fe41e3f2679a164323fd0c9f312790c",
        ));
        let mut sealer = Sealer::new(&key);
        assert_eq!(sealer.seal(br#"{"type":"accept"}"#).unwrap(), expected);
        let mut opener = Opener::new(&key);
        assert_eq!(opener.open(&expected).unwrap(), br#"{"type":"accept"}"#);
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
