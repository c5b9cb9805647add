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
    /// Sender → receiver, instead of an offer: a short text for the receiver's stdout.
    Text { text: String },
    /// Receiver → sender: go ahead (for a text: it was shown). `resume` lists the files of
    /// which the receiver kept a prefix from an interrupted transfer.
    Accept {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resume: Vec<Resume>,
    },
    /// Receiver → sender: no, with a reason for the sender's terminal.
    Reject { reason: String },
    /// Either way: a WebRTC session description (`kind` is `"offer"` or `"answer"`), with its
    /// ICE candidates gathered into it.
    Sdp { kind: SdpKind, sdp: String },
    /// Either way: something failed; the other side should stop.
    Abort { reason: String },
}

/// A prefix the receiver kept: the first `offset` bytes of manifest entry `index`, whose
/// SHA-256 is `sha256` (lowercase hex). The sender continues after it only if its own prefix
/// has the same hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub index: usize,
    pub offset: u64,
    pub sha256: String,
}

/// Longest text `mp send --text` carries.
pub const MAX_TEXT: usize = 16 * 1024;

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
            Message::Text { .. } => "text",
            Message::Accept { .. } => "accept",
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
            String::from_utf8(Message::Accept { resume: vec![] }.to_bytes()).unwrap(),
            r#"{"type":"accept"}"#
        );
        let resume = Message::Accept {
            resume: vec![Resume {
                index: 0,
                offset: 5,
                sha256: "ab".into(),
            }],
        };
        assert_eq!(
            String::from_utf8(resume.to_bytes()).unwrap(),
            r#"{"type":"accept","resume":[{"index":0,"offset":5,"sha256":"ab"}]}"#
        );
        let offer = Message::Offer {
            manifest: Manifest {
                entries: vec![Entry::file("a.txt", 3)],
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
