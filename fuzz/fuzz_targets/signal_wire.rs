//! What `mp signal` reads from a client and what a client reads from the server: JSON
//! control messages, checked with `validate`, and the ICE servers a `joined` announces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mp::signal::client::announced_ice_servers;
use mp::signal::wire::{ClientMessage, ServerMessage, MAX_ROOM_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = serde_json::from_slice::<ClientMessage>(data) {
        let (room, side) = match &message {
            ClientMessage::Join { room, side } => (Some(room), side),
            ClientMessage::Allocate { side } => (None, side),
        };
        if message.validate().is_ok() {
            if let Some(room) = room {
                assert!(!room.is_empty() && room.len() <= MAX_ROOM_LEN);
                assert!(room.bytes().all(|b| b.is_ascii_digit()));
            }
            assert!(side == "send" || side == "receive");
        }
        let again: ClientMessage =
            serde_json::from_slice(&serde_json::to_vec(&message).unwrap()).unwrap();
        assert_eq!(again, message);
    }
    if let Ok(message) = serde_json::from_slice::<ServerMessage>(data) {
        let text = message.to_text();
        let again: ServerMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(again, message);
        if let ServerMessage::Joined { stun_port, turn, .. } = message {
            for url in ["ws://signal.example.org:8080", "wss://[::1]/x", "ws://"] {
                for server in announced_ice_servers(url, stun_port, turn.clone()) {
                    assert!(!server.urls.is_empty());
                    for url in &server.urls {
                        assert!(
                            url.starts_with("stun:")
                                || url.starts_with("turn:")
                                || url.starts_with("turns:"),
                            "{url}"
                        );
                    }
                }
            }
        }
    }
});
