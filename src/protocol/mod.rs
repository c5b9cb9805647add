//! The wire protocol as pure code over bytes: no sockets, no files, no clock.
//!
//! - [`code`]: the transfer code and its word list.
//! - [`pake`]: SPAKE2 over the code, and HKDF key derivation.
//! - [`seal`]: the sealed, padded, counted envelope for signaling messages.
//! - [`message`]: what the peers say to each other inside envelopes.
//! - [`session`]: the handshake state machine (key exchange, confirmation, sealed channel).
//! - [`manifest`]: what the sender offers, and the checks that keep paths inside the target.
//! - [`frame`]: data-channel frames.
//! - [`incoming`]: the receiver's size and hash checks over the frame stream.
//!
//! docs/PROTOCOL.md describes the same protocol for someone writing another implementation.

pub mod code;
pub mod frame;
pub mod incoming;
pub mod manifest;
pub mod message;
pub mod pake;
pub mod seal;
pub mod session;

/// Lowercase hex, as hashes appear in resume requests, offer ids and test vectors.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hostile bytes into every decoder: random and mutated inputs must give an error or a value,
/// never a panic. (A deterministic stand-in for a fuzzer, run by `cargo test`.)
#[cfg(test)]
mod robustness {
    use super::frame::Frame;
    use super::incoming::Incoming;
    use super::manifest::{Entry, Manifest};
    use super::message::{offer_messages, Message, OfferAssembly};
    use super::seal::{Opener, Sealer};

    /// xorshift64*: reproducible pseudo-random bytes.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let len = (self.next() as usize) % (max + 1);
            (0..len).map(|_| self.next() as u8).collect()
        }

        /// `seed` with a few bytes flipped, cut or extended.
        fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
            let mut out = seed.to_vec();
            for _ in 0..(1 + self.next() % 4) {
                match self.next() % 3 {
                    0 if !out.is_empty() => {
                        let at = (self.next() as usize) % out.len();
                        out[at] ^= 1 << (self.next() % 8);
                    }
                    1 => out.truncate((self.next() as usize) % (out.len() + 1)),
                    _ => out.push(self.next() as u8),
                }
            }
            out
        }
    }

    fn seeds() -> Vec<Vec<u8>> {
        let manifest = Manifest {
            entries: vec![Entry::dir("d"), Entry::file("d/a", 3)],
        };
        let mut seeds: Vec<Vec<u8>> = offer_messages(&manifest)
            .iter()
            .map(Message::to_bytes)
            .collect();
        seeds
            .push(br#"{"type":"accept","resume":[{"index":0,"offset":1,"sha256":"00"}]}"#.to_vec());
        seeds.push(br#"{"type":"sdp","kind":"offer","sdp":"v=0"}"#.to_vec());
        for frame in [
            Frame::Data(b"abc"),
            Frame::End([1; 32]),
            Frame::Begin(2),
            Frame::Ack(super::frame::Taken {
                bytes: 3,
                messages: 1,
            }),
            Frame::Done,
        ] {
            seeds.push(frame.encode());
        }
        seeds
    }

    #[test]
    fn decoders_never_panic_on_hostile_bytes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let seeds = seeds();
        let key = [3u8; 32];
        let mut sealer = Sealer::new(&key);
        let envelope = sealer.seal(b"{}").unwrap();
        for round in 0..20_000 {
            let input = if round % 2 == 0 {
                rng.bytes(600)
            } else {
                rng.mutate(&seeds[round % seeds.len()])
            };
            let _ = Frame::decode(&input);
            if let Ok(Message::Offer { manifest, more }) = Message::from_bytes(&input) {
                let _ = manifest.validate();
                let _ = manifest.id();
                let _ = OfferAssembly::default().add(manifest, more);
            }
            let _ = Opener::new(&key).open(&rng.mutate(&envelope));
        }
    }

    #[test]
    fn the_stream_checker_never_panics_on_hostile_frames() {
        let mut rng = Rng(42);
        let seeds = seeds();
        let manifest = Manifest {
            entries: vec![Entry::file("a", 5), Entry::dir("d"), Entry::file("d/b", 0)],
        };
        for _ in 0..2_000 {
            let mut incoming = Incoming::new(&manifest);
            if rng.next() % 2 == 0 {
                incoming.resume(0, rng.next() % 8, sha2::Sha256::default());
            }
            for _ in 0..8 {
                let seed = (rng.next() as usize) % seeds.len();
                let bytes = rng.mutate(&seeds[seed]);
                if let Ok(frame) = Frame::decode(&bytes) {
                    if incoming.on_frame(frame).is_err() {
                        break;
                    }
                }
            }
        }
    }
}
