//! Sealed envelopes, as they come from the (untrusted) signaling server: opened with a fixed
//! key, and sealed then opened back, with any change refused.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mp::protocol::seal::{Opener, SealError, Sealer, MAX_MESSAGE, PAD_BLOCK};

const KEY: [u8; 32] = [7; 32];

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Opened as it is, as the first envelope of a direction.
    raw: &'a [u8],
    /// Sealed, then opened.
    messages: Vec<&'a [u8]>,
    /// After the round trip: one bit of one envelope flipped, or a byte cut off.
    flip: Option<(u16, u8)>,
    cut: bool,
}

fuzz_target!(|input: Input| {
    let mut opener = Opener::new(&KEY);
    let _ = opener.open(input.raw);

    let mut sealer = Sealer::new(&KEY);
    let mut opener = Opener::new(&KEY);
    for message in &input.messages {
        match sealer.seal(message) {
            Ok(envelope) => {
                assert!(message.len() <= MAX_MESSAGE);
                assert_eq!((envelope.len() - 8 - 16) % PAD_BLOCK, 0);
                assert!(envelope.len() - 8 - 16 >= message.len() + 4);
                assert_eq!(opener.open(&envelope).as_deref(), Ok(&message[..]));
                // Replayed: refused.
                assert!(matches!(
                    opener.open(&envelope),
                    Err(SealError::OutOfOrder { .. })
                ));
            }
            Err(err) => {
                assert_eq!(err, SealError::TooLarge);
                assert!(message.len() > MAX_MESSAGE);
            }
        }
    }
    // Any change to the next envelope is refused, and the one after still opens.
    if let Some(message) = input.messages.last().filter(|m| m.len() <= MAX_MESSAGE) {
        let envelope = sealer.seal(message).unwrap();
        let mut bad = envelope.clone();
        if let Some((at, bit)) = input.flip {
            let at = at as usize % bad.len();
            bad[at] ^= 1 << (bit % 8);
        }
        if input.cut {
            bad.pop();
        }
        if bad != envelope {
            assert!(opener.open(&bad).is_err());
        }
        assert_eq!(opener.open(&envelope).as_deref(), Ok(&message[..]));
    }
});
