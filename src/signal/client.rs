//! The client side of the signaling protocol: join a room, wait for the peer, exchange blobs.
//!
//! A joined [`SignalClient`] is the WebSocket [`Rendezvous`]. Everything it carries after
//! joining is already sealed by the engines; it only moves bytes and turns server replies into
//! [`Failure`]s. It sets no timeouts of its own once joined: the engines own those.
//!
//! The server's `joined` may name ICE servers: its STUN port (on the host of the URL this
//! client connected to) and a TURN server with a credential. [`Rendezvous::ice_servers`]
//! returns them.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::wire::{ClientMessage, ErrorKind, ServerMessage, TurnServer, MAX_MESSAGE};
use crate::error::{fail, Failure, Kind};
use crate::protocol::pake::Side;
use crate::rendezvous::{IceServer, Rendezvous};

/// How long sending one message to the server may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to the server (TCP, TLS and WebSocket handshake, join reply) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks that `url` is a `ws://` or `wss://` URL with a host.
pub fn check_url(url: &str) -> anyhow::Result<()> {
    let bad = |why: &str| {
        fail(
            Kind::Server,
            format!("bad signaling URL {url:?}: {why} (expected ws://host:port or wss://host)"),
        )
    };
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| bad("the scheme must be ws:// or wss://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') || host.contains(char::is_whitespace) {
        return Err(bad("no host"));
    }
    Ok(())
}

/// The host of a `ws://` or `wss://` URL as a STUN URL writes it: a name, an IPv4 address or
/// an IPv6 address in brackets; without user information or port.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host = if host_port.starts_with('[') {
        &host_port[..=host_port.find(']')?]
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

/// The ICE servers a `joined` from the server at `url` announces: `stun:<host of url>:<port>`
/// and the TURN server, if it has `turn:`/`turns:` URLs and a credential.
pub fn announced_ice_servers(
    url: &str,
    stun_port: Option<u16>,
    turn: Option<TurnServer>,
) -> Vec<IceServer> {
    let mut servers = Vec::new();
    if let (Some(host), Some(port)) = (url_host(url), stun_port.filter(|&p| p != 0)) {
        servers.push(IceServer {
            urls: vec![format!("stun:{host}:{port}")],
            ..Default::default()
        });
    }
    if let Some(turn) = turn {
        let urls: Vec<String> = turn
            .urls
            .into_iter()
            .filter(|u| super::turn::parse_url(u).is_ok())
            .collect();
        if !urls.is_empty() && !turn.username.is_empty() && !turn.credential.is_empty() {
            servers.push(IceServer {
                urls,
                username: turn.username,
                credential: turn.credential,
            });
        }
    }
    servers
}

/// Why connecting failed, for people: an HTTP answer says what the server said (a TLS-only
/// server tells a ws:// client to use wss://), a TLS failure that TLS may not be spoken.
fn connect_error(url: &str, err: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match err {
        Error::Http(response) => {
            let said = response
                .body()
                .as_deref()
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|b| b.lines().next())
                .map(|line| line.chars().filter(|c| !c.is_control()).take(200))
                .map(|line| format!(": {}", line.collect::<String>()))
                .unwrap_or_default();
            format!("it answered {}{said}", response.status())
        }
        Error::Tls(_) | Error::Io(_) if err.to_string().contains("certificate") => format!(
            "{err} (for a private or self-signed certificate, give it with --signal-ca FILE)"
        ),
        Error::Tls(_) | Error::Io(_) if url.starts_with("wss://") => format!(
            "{err} (wss:// needs a server that speaks TLS: mp signal --tls-cert, or a proxy)"
        ),
        err => err.to_string(),
    }
}

/// A joined room on the signaling server.
pub struct SignalClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    url: String,
    /// What the server's `joined` announced.
    ice_servers: Vec<IceServer>,
}

/// The outcome of a join attempt that the caller may want to retry elsewhere.
pub enum Join {
    Joined(Box<SignalClient>),
    /// The room is taken (full, or the same side is already waiting).
    Busy,
    /// Asked to join only if the other side waits: nobody does.
    NoPeer,
    /// The server did not understand `if_waiting` (one from before it).
    Unsupported,
}

/// The outcome of asking the server for a room.
pub enum Allocate {
    /// In the room the server picked.
    Joined(Box<SignalClient>, u32),
    /// A server from before `allocate`: the client picks a room itself.
    Unsupported,
}

impl SignalClient {
    /// Connects and asks to join `room` as `side`.
    pub async fn join(url: &str, room: &str, side: Side) -> anyhow::Result<Join> {
        Self::join_with(url, room, side, false).await
    }

    /// Connects and asks to join `room` as `side` only if the other side is waiting there
    /// (the receiver of a generated code): [`Join::NoPeer`] at once otherwise. A server from
    /// before `if_waiting` refuses the request as malformed; then this is a plain join.
    pub async fn join_waiting(url: &str, room: &str, side: Side) -> anyhow::Result<Join> {
        match Self::join_with(url, room, side, true).await? {
            Join::Unsupported => Self::join_with(url, room, side, false).await,
            other => Ok(other),
        }
    }

    async fn join_with(
        url: &str,
        room: &str,
        side: Side,
        if_waiting: bool,
    ) -> anyhow::Result<Join> {
        let join = ClientMessage::Join {
            room: room.to_string(),
            side: side.wire_name().to_string(),
            if_waiting,
        };
        match Self::enter(url, join).await? {
            Ok((client, _)) => Ok(Join::Joined(client)),
            Err(ErrorKind::NoPeer) => Ok(Join::NoPeer),
            Err(ErrorKind::BadRequest) => Ok(Join::Unsupported),
            Err(_) => Ok(Join::Busy),
        }
    }

    /// Connects and asks the server to open a room for `side` (the lowest free number).
    pub async fn allocate(url: &str, side: Side) -> anyhow::Result<Allocate> {
        let allocate = ClientMessage::Allocate {
            side: side.wire_name().to_string(),
        };
        match Self::enter(url, allocate).await? {
            Ok((client, Some(room))) => match room.parse::<u32>() {
                Ok(n) if n > 0 && n.to_string() == room => Ok(Allocate::Joined(client, n)),
                _ => Err(client.protocol_error()),
            },
            Ok((client, None)) => Err(client.protocol_error()),
            // An older server refuses a first message that is not `join`.
            Err(ErrorKind::BadRequest) => Ok(Allocate::Unsupported),
            Err(_) => Err(fail(
                Kind::Server,
                format!("the signaling server at {url} gave a room that is not free"),
            )),
        }
    }

    /// Connects and sends `request`: the client and the room `joined` names, or the kind of a
    /// refusal the caller handles (`room-full`, `side-taken`; `bad-request` to `allocate`).
    async fn enter(
        url: &str,
        request: ClientMessage,
    ) -> anyhow::Result<Result<(Box<SignalClient>, Option<String>), ErrorKind>> {
        check_url(url)?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        // A root added with --signal-ca, besides the public web CAs tungstenite trusts.
        let tls = super::tls::client_config().map(tokio_tungstenite::Connector::Rustls);
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, tls);
        let (ws, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => {
                return Err(fail(
                    Kind::Server,
                    format!(
                        "cannot reach the signaling server at {url}: {}",
                        connect_error(url, &err)
                    ),
                ))
            }
            Err(_) => {
                return Err(fail(
                    Kind::Server,
                    format!("cannot reach the signaling server at {url}: timed out"),
                ))
            }
        };
        let mut client = SignalClient {
            ws,
            url: url.to_string(),
            ice_servers: Vec::new(),
        };
        // The refusals the caller handles: a busy room; to `allocate` or an `if_waiting` join, a
        // server from before them (`bad-request`); to the latter, nobody waiting (`no-peer`).
        let (allocating, if_waiting) = match &request {
            ClientMessage::Allocate { .. } => (true, false),
            ClientMessage::Join { if_waiting, .. } => (false, *if_waiting),
        };
        let text = serde_json::to_string(&request).expect("requests serialise");
        client.send_ws(WsMessage::text(text)).await?;
        let reply = tokio::time::timeout(CONNECT_TIMEOUT, client.next_control()).await;
        let reply = reply.map_err(|_| {
            fail(
                Kind::Server,
                format!("the signaling server at {url} did not answer"),
            )
        })?;
        match reply? {
            ServerMessage::Joined {
                room,
                stun_port,
                turn,
            } => {
                client.ice_servers = announced_ice_servers(url, stun_port, turn);
                Ok(Ok((Box::new(client), room)))
            }
            ServerMessage::Error {
                kind: kind @ (ErrorKind::RoomFull | ErrorKind::SideTaken),
                ..
            } => Ok(Err(kind)),
            ServerMessage::Error {
                kind: ErrorKind::BadRequest,
                ..
            } if allocating || if_waiting => Ok(Err(ErrorKind::BadRequest)),
            ServerMessage::Error {
                kind: ErrorKind::NoPeer,
                ..
            } if if_waiting => Ok(Err(ErrorKind::NoPeer)),
            other => Err(client.unexpected(other)),
        }
    }

    async fn send_ws(&mut self, message: WsMessage) -> anyhow::Result<()> {
        match tokio::time::timeout(SEND_TIMEOUT, self.ws.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.closed()),
            Err(_) => Err(fail(
                Kind::Server,
                "the signaling server stopped taking messages",
            )),
        }
    }

    async fn next_control(&mut self) -> anyhow::Result<ServerMessage> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Text(text))) => {
                    return serde_json::from_str(&text).map_err(|_| self.protocol_error())
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                Some(Ok(WsMessage::Binary(_))) => return Err(self.protocol_error()),
                _ => return Err(self.closed()),
            }
        }
    }

    fn unexpected(&self, message: ServerMessage) -> anyhow::Error {
        match message {
            ServerMessage::PeerLeft => fail(Kind::PeerGone, "the other side left"),
            ServerMessage::Error { kind, message } => {
                let kind = match kind {
                    ErrorKind::RoomFull | ErrorKind::SideTaken => Kind::RoomFull,
                    ErrorKind::Timeout => Kind::Timeout,
                    ErrorKind::NoPeer => Kind::NoSender,
                    ErrorKind::BadRequest | ErrorKind::Busy => Kind::Server,
                };
                let message = crate::protocol::manifest::display(&message);
                fail(kind, format!("signaling server: {message}"))
            }
            _ => self.protocol_error(),
        }
    }

    fn protocol_error(&self) -> anyhow::Error {
        fail(
            Kind::Server,
            format!("{} does not speak the mp signaling protocol", self.url),
        )
    }

    fn closed(&self) -> anyhow::Error {
        fail(
            Kind::PeerGone,
            "lost the connection to the signaling server before the transfer could start",
        )
    }
}

#[async_trait::async_trait]
impl Rendezvous for SignalClient {
    async fn paired(&mut self) -> Result<(), Failure> {
        match self.next_control().await.map_err(Failure::from_any)? {
            ServerMessage::Paired => Ok(()),
            other => Err(Failure::from_any(self.unexpected(other))),
        }
    }

    async fn send(&mut self, envelope: Vec<u8>) -> Result<(), Failure> {
        self.send_ws(WsMessage::binary(envelope))
            .await
            .map_err(Failure::from_any)
    }

    async fn recv(&mut self) -> Result<Vec<u8>, Failure> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Binary(bytes))) => return Ok(bytes.to_vec()),
                Some(Ok(WsMessage::Text(text))) => {
                    let error = match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(message) => self.unexpected(message),
                        Err(_) => self.protocol_error(),
                    };
                    return Err(Failure::from_any(error));
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                _ => return Err(Failure::from_any(self.closed())),
            }
        }
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }

    fn ice_servers(&self) -> Vec<IceServer> {
        self.ice_servers.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for ok in [
            "ws://127.0.0.1:8080",
            "wss://example.org/signal",
            "ws://[::1]:1",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://x",
            "ws://",
            "127.0.0.1:8080",
            "ws://:80",
            "wss:///x",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_stun_url_names_the_host_the_client_connected_to() {
        for (url, want) in [
            ("ws://127.0.0.1:8080", "stun:127.0.0.1:3478"),
            (
                "wss://signal.example.org/mp?x=1",
                "stun:signal.example.org:3478",
            ),
            ("ws://[::1]:1/", "stun:[::1]:3478"),
            (
                "wss://user:pw@signal.example.org:443",
                "stun:signal.example.org:3478",
            ),
        ] {
            let servers = announced_ice_servers(url, Some(3478), None);
            assert_eq!(
                servers,
                vec![IceServer {
                    urls: vec![want.into()],
                    ..Default::default()
                }],
                "{url}"
            );
        }
        assert!(announced_ice_servers("ws://h:1", None, None).is_empty());
        assert!(announced_ice_servers("ws://h:1", Some(0), None).is_empty());
        assert!(announced_ice_servers("ws://[::1:1", Some(1), None).is_empty());
    }

    #[test]
    fn an_announced_turn_server_is_kept_only_when_usable() {
        let turn = |urls: &[&str], username: &str| TurnServer {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            username: username.into(),
            credential: "c".into(),
        };
        let servers = announced_ice_servers(
            "ws://h:1",
            Some(1),
            Some(turn(&["turn:relay:3478", "http://elsewhere"], "9:t")),
        );
        assert_eq!(servers.len(), 2);
        assert_eq!(
            servers[1],
            IceServer {
                urls: vec!["turn:relay:3478".into()],
                username: "9:t".into(),
                credential: "c".into(),
            }
        );
        for bad in [turn(&["stun:x:1"], "9:t"), turn(&["turn:relay:3478"], "")] {
            assert!(announced_ice_servers("ws://h:1", None, Some(bad)).is_empty());
        }
    }
}
