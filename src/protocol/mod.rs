//! The wire protocol as pure code over bytes: no sockets, no files, no clock.
//!
//! - [`code`]: the transfer code and its word list.
//! - [`pake`]: SPAKE2 over the code, and HKDF key derivation.
//! - [`seal`]: the sealed, padded, counted envelope for signaling messages.
//! - [`message`]: what the peers say to each other inside envelopes.
//! - [`session`]: the handshake state machine (key exchange, confirmation, sealed channel).
//! - [`manifest`]: what the sender offers, and the checks that keep paths inside the target.
//! - [`frame`]: data-channel frames and the flow-control window.
//! - [`sender`], [`receiver`]: the two engines. Every protocol decision and every timer of a
//!   transfer lives in them; [`engine`] holds what they share (timeouts, how a pump drives
//!   them).
//!
//! Nothing here may name tokio, webrtc-rs or the file system, nor read a clock: a test below
//! checks the source. docs/PROTOCOL.md describes the same protocol for someone writing another
//! implementation.

pub mod code;
pub mod engine;
pub mod frame;
pub mod manifest;
pub mod message;
pub mod pake;
pub mod receiver;
pub mod seal;
pub mod sender;
pub mod session;

/// Lowercase hex, as hashes appear in resume requests, offer ids and test vectors.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod engine_tests;

/// The protocol is pure: no module of it names tokio, webrtc-rs, the file system or the
/// network, or reads a clock. (A separate crate would make the compiler check it; this keeps
/// the top level the user asked for.)
#[cfg(test)]
#[test]
fn the_protocol_does_no_io() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol");
    let forbidden = [
        "tokio",
        "webrtc",
        "rtc::",
        "std::fs",
        "std::net",
        "std::io::",
        "Instant::now",
        "SystemTime",
        "std::thread",
        "std::env",
        "crate::transfer",
        "crate::peer",
        "crate::signal",
        "crate::rendezvous",
        "crate::ui",
    ];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("engine_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Only the code, not its tests.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect();
        for word in forbidden {
            assert!(!code.contains(word), "{} names {word}", path.display());
        }
    }
}

/// Hostile bytes into every decoder: random and mutated inputs must give an error or a value,
/// never a panic. (A deterministic stand-in for a fuzzer, run by `cargo test`.)
#[cfg(test)]
mod robustness {
    use super::frame::Frame;
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
}
