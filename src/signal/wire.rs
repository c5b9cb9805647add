//! The WebSocket protocol between a client and `mp signal`.
//!
//! Control messages are JSON text frames; the peers' own messages are binary frames that the
//! server relays unread once a room holds one sender and one receiver.
//!
//! ```text
//! client → server   {"type":"join","room":"7","side":"send"}        first message, once: a
//!                                                                     room the client chose,
//!                   {"type":"join","room":"7","side":"receive",       that room only if the
//!                    "if_waiting":true}                               other side waits in it, or
//!                   {"type":"allocate","side":"send"}                 a room the server picks
//! server → client   {"type":"joined","stun_port":8080,"turn":{…}}    waiting for the other side
//!                   {"type":"joined","room":"3",…}                    (after allocate) in room 3
//!                   {"type":"paired"}                                 the other side is here
//!                   {"type":"peer-left"}                              the other side went away
//!                   {"type":"error","kind":"room-full","message":…}   refused; the server closes
//!                   {"type":"error","kind":"no-peer",…}               (if_waiting) nobody waits
//! either way        binary frames                                     relayed to the other side
//! ```
//!
//! `joined` may carry ICE servers for the client: `stun_port`, the UDP port of the server's
//! own STUN service on the host the client connected to, and `turn`, one TURN server with a
//! credential minted for this client. Both are optional; a client that knows neither ignores
//! them (unknown fields are tolerated in every server message).

use serde::{Deserialize, Serialize};

/// Largest WebSocket message either side accepts: the largest sealed envelope
/// ([`crate::protocol::seal::MAX_ENVELOPE`], 33,048 bytes) and a little margin. Anything
/// larger is no `mp` message, and a larger limit only multiplies what a relay may hold.
pub const MAX_MESSAGE: usize = 34 * 1024;
const _: () = assert!(MAX_MESSAGE >= crate::protocol::seal::MAX_ENVELOPE);
/// Longest room name, in digits.
pub const MAX_ROOM_LEN: usize = 9;

/// Client → server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Join (or open) the room the client names. With `if_waiting`, only join a room where
    /// the other side is already waiting, else be refused `no-peer` at once: the receiver of a
    /// generated code, whose sender is in its room before the code is shown.
    Join {
        room: String,
        side: String,
        #[serde(default, skip_serializing_if = "is_false")]
        if_waiting: bool,
    },
    /// Open a new room whose number the server picks (the lowest free one): a generated code's.
    Allocate { side: String },
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    Joined {
        /// The room the server picked, in answer to `allocate` only.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "or_none"
        )]
        room: Option<String>,
        /// UDP port of the STUN service at the host of the URL the client connected to.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "or_none"
        )]
        stun_port: Option<u16>,
        /// A TURN server and a short-lived credential for this client.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "or_none"
        )]
        turn: Option<TurnServer>,
    },
    Paired,
    PeerLeft,
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// An optional field that a client does without when it does not understand it, so a server
/// that one day changes its shape does not lock older clients out of their rooms.
fn or_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// A TURN server as `joined` announces it: `turn:`/`turns:` URLs and a credential in the
/// TURN REST API form (see [`super::turn`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
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
    /// The server is at a limit (connections, or what one address may hold), or shutting down,
    /// or it cannot reach its backplane (Redis).
    Busy,
    /// A `join` with `if_waiting` found nobody of the other side waiting in the room.
    NoPeer,
}

impl ClientMessage {
    /// Checks a request: a room of 1 to 9 ASCII digits, side "send" or "receive".
    pub fn validate(&self) -> Result<(), &'static str> {
        let side = match self {
            ClientMessage::Join { room, side, .. } => {
                if !is_room(room) {
                    return Err("room must be 1 to 9 digits");
                }
                side
            }
            ClientMessage::Allocate { side } => side,
        };
        if side != "send" && side != "receive" {
            return Err("side must be \"send\" or \"receive\"");
        }
        Ok(())
    }
}

/// 1 to 9 ASCII digits.
pub fn is_room(room: &str) -> bool {
    !room.is_empty() && room.len() <= MAX_ROOM_LEN && room.bytes().all(|b| b.is_ascii_digit())
}

impl ServerMessage {
    /// `joined` with no ICE server to announce.
    pub const JOINED: ServerMessage = ServerMessage::Joined {
        room: None,
        stun_port: None,
        turn: None,
    };

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
    fn joined_announces_ice_servers_only_when_there_are_some() {
        assert_eq!(ServerMessage::JOINED.to_text(), r#"{"type":"joined"}"#);
        let full = ServerMessage::Joined {
            room: None,
            stun_port: Some(8080),
            turn: Some(TurnServer {
                urls: vec!["turn:relay.example.org:3478".into()],
                username: "1700003600:00ff".into(),
                credential: "abc=".into(),
            }),
        };
        let text = full.to_text();
        assert_eq!(
            text,
            r#"{"type":"joined","stun_port":8080,"turn":{"urls":["turn:relay.example.org:3478"],"username":"1700003600:00ff","credential":"abc="}}"#
        );
        assert_eq!(serde_json::from_str::<ServerMessage>(&text).unwrap(), full);
        // From an older server, and with fields a newer one may add.
        for old in [
            r#"{"type":"joined"}"#,
            r#"{"type":"joined","future":{"x":1}}"#,
            r#"{"type":"joined","stun_port":"8080","turn":{"urls":"turn:x"}}"#,
            r#"{"type":"joined","stun_port":70000,"turn":null}"#,
        ] {
            assert_eq!(
                serde_json::from_str::<ServerMessage>(old).unwrap(),
                ServerMessage::JOINED
            );
        }
    }

    #[test]
    fn clients_from_before_ice_servers_still_understand_joined() {
        // `ServerMessage` as released before `joined` had fields.
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(tag = "type", rename_all = "kebab-case")]
        enum OldServerMessage {
            Joined,
            Paired,
            PeerLeft,
            Error { kind: ErrorKind, message: String },
        }
        let full = ServerMessage::Joined {
            room: Some("3".into()),
            stun_port: Some(3478),
            turn: Some(TurnServer {
                urls: vec!["turns:relay.example.org:5349".into()],
                username: "1:2".into(),
                credential: "c".into(),
            }),
        };
        assert_eq!(
            serde_json::from_str::<OldServerMessage>(&full.to_text()).unwrap(),
            OldServerMessage::Joined
        );
    }

    #[test]
    fn join_requests_are_checked() {
        let join = |room: &str, side: &str| ClientMessage::Join {
            room: room.into(),
            side: side.into(),
            if_waiting: false,
        };
        assert!(join("", "send").validate().is_err());
        assert!(join("1234567890", "send").validate().is_err());
        assert!(join("7a", "send").validate().is_err());
        assert!(join("7", "both").validate().is_err());
        assert!(join("123456789", "receive").validate().is_ok());
        let allocate = |side: &str| ClientMessage::Allocate { side: side.into() };
        assert!(allocate("send").validate().is_ok());
        assert!(allocate("both").validate().is_err());
        let text = r#"{"type":"allocate","side":"send"}"#;
        assert_eq!(
            serde_json::from_str::<ClientMessage>(text).unwrap(),
            allocate("send")
        );
        assert!(serde_json::from_str::<ClientMessage>(
            r#"{"type":"allocate","side":"send","room":"7"}"#
        )
        .is_err());
        // `if_waiting` is sent only when true, so older servers see the join they know.
        assert_eq!(
            serde_json::to_string(&join("7", "send")).unwrap(),
            r#"{"type":"join","room":"7","side":"send"}"#
        );
        let waiting = ClientMessage::Join {
            room: "7".into(),
            side: "receive".into(),
            if_waiting: true,
        };
        let text = r#"{"type":"join","room":"7","side":"receive","if_waiting":true}"#;
        assert_eq!(serde_json::to_string(&waiting).unwrap(), text);
        assert_eq!(
            serde_json::from_str::<ClientMessage>(text).unwrap(),
            waiting
        );
        assert_eq!(
            ServerMessage::Error {
                kind: ErrorKind::NoPeer,
                message: "x".into()
            }
            .to_text(),
            r#"{"type":"error","kind":"no-peer","message":"x"}"#
        );
        let joined = ServerMessage::Joined {
            room: Some("12".into()),
            stun_port: None,
            turn: None,
        };
        assert_eq!(joined.to_text(), r#"{"type":"joined","room":"12"}"#);
    }
}
