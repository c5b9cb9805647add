//! The messages the two peers exchange *inside* sealed envelopes, through the server.
//!
//! Each is one JSON object with a `"type"` field. The server never sees them in clear.

use serde::{Deserialize, Serialize};

use super::manifest::Manifest;

/// A signaling message between the peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Message {
    /// First sealed message of each side: the explicit key confirmation.
    Hello { version: u32 },
    /// Sender → receiver: what would be sent.
    Offer { manifest: Manifest },
    /// Receiver → sender: go ahead.
    Accept,
    /// Receiver → sender: no, with a reason for the sender's terminal.
    Reject { reason: String },
    /// Either way: a WebRTC session description (`kind` is `"offer"` or `"answer"`), with its
    /// ICE candidates gathered into it.
    Sdp { kind: SdpKind, sdp: String },
    /// Either way: something failed; the other side should stop.
    Abort { reason: String },
}

/// The two kinds of session description we exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    Offer,
    Answer,
}

impl Message {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("messages always serialise")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Message, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// A short name for error messages ("an offer", "an sdp", …).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Offer { .. } => "offer",
            Message::Accept => "accept",
            Message::Reject { .. } => "reject",
            Message::Sdp { .. } => "sdp",
            Message::Abort { .. } => "abort",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::manifest::Entry;

    #[test]
    fn json_shape_is_stable() {
        assert_eq!(
            String::from_utf8(Message::Hello { version: 1 }.to_bytes()).unwrap(),
            r#"{"type":"hello","version":1}"#
        );
        assert_eq!(
            String::from_utf8(Message::Accept.to_bytes()).unwrap(),
            r#"{"type":"accept"}"#
        );
        let offer = Message::Offer {
            manifest: Manifest {
                entries: vec![Entry {
                    path: "a.txt".into(),
                    size: 3,
                }],
            },
        };
        assert_eq!(
            String::from_utf8(offer.to_bytes()).unwrap(),
            r#"{"type":"offer","manifest":{"entries":[{"path":"a.txt","size":3}]}}"#
        );
        let sdp = Message::Sdp {
            kind: SdpKind::Answer,
            sdp: "v=0".into(),
        };
        assert_eq!(
            String::from_utf8(sdp.to_bytes()).unwrap(),
            r#"{"type":"sdp","kind":"answer","sdp":"v=0"}"#
        );
    }

    #[test]
    fn unknown_or_broken_messages_are_errors() {
        assert!(Message::from_bytes(br#"{"type":"nope"}"#).is_err());
        assert!(Message::from_bytes(br#"{"type":"offer"}"#).is_err());
        assert!(Message::from_bytes(b"\xff").is_err());
    }
}
