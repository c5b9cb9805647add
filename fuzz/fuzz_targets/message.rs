//! What a peer says inside a sealed envelope: parsed, and offers put together part by part
//! and checked as the receiver does before it asks anyone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mp::protocol::manifest::{check_path, Manifest, MAX_ENTRIES};
use mp::protocol::message::{offer_messages, Message, OfferAssembly};

// Sealed messages, in the order they arrive, separated by 0xff (a byte no JSON text holds).
fuzz_target!(|data: &[u8]| {
    let mut assembly = OfferAssembly::default();
    let mut failed = false;
    for bytes in data.split(|&b| b == 0xff) {
        let Ok(message) = Message::from_bytes(bytes) else {
            continue;
        };
        let again = Message::from_bytes(&message.to_bytes()).expect("what parses re-parses");
        assert_eq!(again, message);
        let _ = message.kind_name();
        let Message::Offer { manifest, more } = message else {
            continue;
        };
        check_manifest(&manifest);
        if failed {
            continue;
        }
        match assembly.add(manifest, more) {
            Ok(Some(whole)) => check_manifest(&whole),
            Ok(None) => {}
            Err(_) => failed = true,
        }
    }
});

fn check_manifest(manifest: &Manifest) {
    let id = manifest.id();
    assert_eq!(id.len(), 16);
    assert_eq!(id, manifest.clone().id());
    let _ = manifest.roots();
    let Ok(summary) = manifest.validate() else {
        return;
    };
    assert!(!manifest.entries.is_empty() && manifest.entries.len() <= MAX_ENTRIES);
    assert_eq!(summary.files + summary.folders, manifest.entries.len());
    let _ = manifest.title(&summary);
    for entry in &manifest.entries {
        assert!(check_path(&entry.path).is_ok());
    }
    // What a sender splits for sending goes back together as it was.
    let mut assembly = OfferAssembly::default();
    let mut whole = None;
    for part in offer_messages(manifest) {
        let bytes = part.to_bytes();
        let Ok(Message::Offer { manifest, more }) = Message::from_bytes(&bytes) else {
            panic!("an offer part does not parse back");
        };
        whole = assembly
            .add(manifest, more)
            .expect("a valid manifest's parts");
    }
    assert_eq!(whole.as_ref(), Some(manifest));
}
