//! The messages the two peers exchange *inside* sealed envelopes, through the server.
//!
//! Each is one JSON object with a `"type"` field. The server never sees them in clear.

use serde::{Deserialize, Serialize};

use super::manifest::{Manifest, ManifestError, MAX_ENTRIES};

/// A signaling message between the peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Message {
    /// First sealed message of each side: the explicit key confirmation, the protocol version
    /// and the optional features this side supports (used only when both list them).
    Hello {
        version: u32,
        #[serde(default)]
        features: Vec<String>,
    },
    /// Sender → receiver: what would be sent. A long manifest is split over several offers;
    /// all but the last say `"more": true`.
    Offer {
        manifest: Manifest,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// Sender → receiver, instead of an offer: a short text for the receiver's stdout.
    Text { text: String },
    /// Receiver → sender: go ahead (for a text: it was shown). `resume` lists the files of
    /// which the receiver kept a prefix from an interrupted transfer (lengths only: the
    /// receiver never reveals what it holds).
    Accept {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resume: Vec<Kept>,
    },
    /// Sender → receiver, when `accept` listed kept prefixes: the SHA-256 of the sender's own
    /// prefix of each, in the same order (`None` when its file is now shorter).
    Prefixes { prefixes: Vec<Prefix> },
    /// Receiver → sender: the files whose prefixes matched; they continue after the kept
    /// bytes, every other file starts at 0.
    Resume { files: Vec<usize> },
    /// Receiver → sender: no, with a reason for the sender's terminal.
    Reject { reason: String },
    /// Either way: a WebRTC session description (`kind` is `"offer"` or `"answer"`), with its
    /// ICE candidates gathered into it.
    Sdp { kind: SdpKind, sdp: String },
    /// Either way, after its own SDP and before the data channel opens, when both hellos list
    /// the `trickle` feature: one more ICE candidate of the sender of this message.
    Candidate(Candidate),
    /// Either way: something failed; the other side should stop.
    Abort { reason: String },
}

/// One ICE candidate (RFC 8839 `candidate-attribute`, with or without the `candidate:`
/// prefix), and the media section it belongs to (`mid`, `mline`: optional, as a browser gives
/// them; `mp` has one section).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mline: Option<u16>,
}

/// A prefix the receiver kept: the first `offset` bytes of manifest entry `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub index: usize,
    pub offset: u64,
}

/// The sender's proof of one prefix: the SHA-256 (lowercase hex) of its first `offset` bytes
/// of entry `index`, or `None` when its file is shorter than that now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefix {
    pub index: usize,
    pub sha256: Option<String>,
}

/// Most bytes of manifest JSON in one offer message (well below the sealing limit).
pub const OFFER_PART: usize = 24 * 1024;

/// The offer messages that carry `manifest`, each at most about [`OFFER_PART`] bytes.
pub fn offer_messages(manifest: &Manifest) -> Vec<Message> {
    let mut parts: Vec<Manifest> = vec![Manifest { entries: vec![] }];
    let mut used = 0;
    for entry in &manifest.entries {
        let len = serde_json::to_vec(entry).map_or(0, |v| v.len()) + 1;
        let last = parts.last_mut().expect("never empty");
        if used + len > OFFER_PART && !last.entries.is_empty() {
            parts.push(Manifest { entries: vec![] });
            used = 0;
        }
        used += len;
        parts
            .last_mut()
            .expect("never empty")
            .entries
            .push(entry.clone());
    }
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, manifest)| Message::Offer {
            manifest,
            more: i + 1 < count,
        })
        .collect()
}

/// Puts a split manifest back together, refusing one that grows past [`MAX_ENTRIES`].
#[derive(Default)]
pub struct OfferAssembly {
    entries: Vec<super::manifest::Entry>,
    path_bytes: usize,
}

/// Most bytes of paths an offer may carry in all (what the receiver holds before asking).
pub const MAX_PATH_BYTES: usize = 16 * 1024 * 1024;

impl OfferAssembly {
    /// True before the first part.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds one part; returns the whole manifest after the last.
    pub fn add(&mut self, part: Manifest, more: bool) -> Result<Option<Manifest>, ManifestError> {
        if self.entries.len() + part.entries.len() > MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries);
        }
        self.path_bytes += part.entries.iter().map(|e| e.path.len()).sum::<usize>();
        if self.path_bytes > MAX_PATH_BYTES {
            return Err(ManifestError::PathsTooLong);
        }
        // Every part but the last carries entries, so the number of parts is bounded too.
        if more && part.entries.is_empty() {
            return Err(ManifestError::EmptyPart);
        }
        self.entries.extend(part.entries);
        Ok((!more).then(|| Manifest {
            entries: std::mem::take(&mut self.entries),
        }))
    }
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
            Message::Prefixes { .. } => "prefixes",
            Message::Resume { .. } => "resume",
            Message::Sdp { .. } => "sdp",
            Message::Abort { .. } => "abort",
            Message::Candidate(_) => "candidate",
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
            String::from_utf8(
                Message::Hello {
                    version: 2,
                    features: vec![]
                }
                .to_bytes()
            )
            .unwrap(),
            r#"{"type":"hello","version":2,"features":[]}"#
        );
        // Unknown fields are ignored; a hello without features has none.
        assert_eq!(
            Message::from_bytes(br#"{"type":"hello","version":2,"later":true}"#).unwrap(),
            Message::Hello {
                version: 2,
                features: vec![]
            }
        );
        assert_eq!(
            String::from_utf8(Message::Accept { resume: vec![] }.to_bytes()).unwrap(),
            r#"{"type":"accept"}"#
        );
        let resume = Message::Accept {
            resume: vec![Kept {
                index: 0,
                offset: 5,
            }],
        };
        assert_eq!(
            String::from_utf8(resume.to_bytes()).unwrap(),
            r#"{"type":"accept","resume":[{"index":0,"offset":5}]}"#
        );
        let prefixes = Message::Prefixes {
            prefixes: vec![
                Prefix {
                    index: 0,
                    sha256: Some("ab".into()),
                },
                Prefix {
                    index: 2,
                    sha256: None,
                },
            ],
        };
        assert_eq!(
            String::from_utf8(prefixes.to_bytes()).unwrap(),
            r#"{"type":"prefixes","prefixes":[{"index":0,"sha256":"ab"},{"index":2,"sha256":null}]}"#
        );
        assert_eq!(
            String::from_utf8(Message::Resume { files: vec![0] }.to_bytes()).unwrap(),
            r#"{"type":"resume","files":[0]}"#
        );
        let candidate = Message::Candidate(Candidate {
            candidate: "candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host".into(),
            mid: Some("0".into()),
            mline: None,
        });
        assert_eq!(
            String::from_utf8(candidate.to_bytes()).unwrap(),
            r#"{"type":"candidate","candidate":"candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host","mid":"0"}"#
        );
        let offer = Message::Offer {
            manifest: Manifest {
                entries: vec![Entry::file("a.txt", 3)],
            },
            more: false,
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
    fn long_manifests_are_split_and_reassembled() {
        let manifest = Manifest {
            entries: (0..5000)
                .map(|i| Entry::file(&format!("folder/file-{i:05}.txt"), i))
                .collect(),
        };
        let messages = offer_messages(&manifest);
        assert!(messages.len() > 1);
        let mut assembly = OfferAssembly::default();
        let mut whole = None;
        for message in messages {
            assert!(message.to_bytes().len() <= OFFER_PART + 200);
            let Message::Offer { manifest, more } = message else {
                panic!("not an offer")
            };
            whole = assembly.add(manifest, more).unwrap();
        }
        assert_eq!(whole, Some(manifest));
        let single = offer_messages(&Manifest::single("a", 1));
        assert_eq!(single.len(), 1);
    }

    #[test]
    fn reassembly_is_bounded() {
        let mut assembly = OfferAssembly::default();
        let part = Manifest {
            entries: (0..1000).map(|i| Entry::file(&i.to_string(), 0)).collect(),
        };
        let mut result = Ok(None);
        for _ in 0..=(MAX_ENTRIES / 1000) {
            result = assembly.add(part.clone(), true);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ManifestError::TooManyEntries));
    }

    #[test]
    fn unknown_or_broken_messages_are_errors() {
        assert!(Message::from_bytes(br#"{"type":"nope"}"#).is_err());
        assert!(Message::from_bytes(br#"{"type":"offer"}"#).is_err());
        assert!(Message::from_bytes(b"\xff").is_err());
    }
}
