//! The WebSocket protocol between a client and `mp signal`.
//!
//! Control messages are JSON text frames; the peers' own messages are binary frames that the
//! server relays unread once a room holds one sender and one receiver.
//!
//! ```text
//! client → server   {"type":"join","room":"7","side":"send"}        first message, once
//! server → client   {"type":"joined"}                                 waiting for the other side
//!                   {"type":"paired"}                                 the other side is here
//!                   {"type":"peer-left"}                              the other side went away
//!                   {"type":"error","kind":"room-full","message":…}   refused; the server closes
//! either way        binary frames                                     relayed to the other side
//! ```

use serde::{Deserialize, Serialize};

/// Largest WebSocket message either side accepts.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Longest room name, in digits.
pub const MAX_ROOM_LEN: usize = 9;

/// Client → server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMessage {
    Join { room: String, side: String },
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    Joined,
    Paired,
    PeerLeft,
    Error { kind: ErrorKind, message: String },
}

/// Why the server refused or ended a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Two clients are already in the room.
    RoomFull,
    /// A client of the same side is already waiting in the room.
    SideTaken,
    /// The room waited longer than the server allows.
    Timeout,
    /// The client broke the protocol.
    BadRequest,
    /// The server is at its connection limit.
    Busy,
}

impl ClientMessage {
    /// Checks a join request: a room of 1 to 9 ASCII digits, side "send" or "receive".
    pub fn validate(&self) -> Result<(), &'static str> {
        let ClientMessage::Join { room, side } = self;
        if room.is_empty() || room.len() > MAX_ROOM_LEN || !room.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("room must be 1 to 9 digits");
        }
        if side != "send" && side != "receive" {
            return Err("side must be \"send\" or \"receive\"");
        }
        Ok(())
    }
}

impl ServerMessage {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let join: ClientMessage =
            serde_json::from_str(r#"{"type":"join","room":"7","side":"send"}"#).unwrap();
        assert_eq!(join.validate(), Ok(()));
        assert_eq!(ServerMessage::PeerLeft.to_text(), r#"{"type":"peer-left"}"#);
        assert_eq!(
            ServerMessage::Error {
                kind: ErrorKind::RoomFull,
                message: "x".into()
            }
            .to_text(),
            r#"{"type":"error","kind":"room-full","message":"x"}"#
        );
    }

    #[test]
    fn join_requests_are_checked() {
        let join = |room: &str, side: &str| ClientMessage::Join {
            room: room.into(),
            side: side.into(),
        };
        assert!(join("", "send").validate().is_err());
        assert!(join("1234567890", "send").validate().is_err());
        assert!(join("7a", "send").validate().is_err());
        assert!(join("7", "both").validate().is_err());
        assert!(join("123456789", "receive").validate().is_ok());
    }
}
