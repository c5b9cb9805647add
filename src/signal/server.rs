//! `mp signal`: rooms of two, relaying opaque binary messages between them.
//!
//! The server keeps everything in memory, writes nothing to disk and logs no client address.
//! A room is created by its first client, holds at most one sender and one receiver, and is
//! forgotten as soon as either leaves or the room outlives its timeout.
//!
//! The same port serves the web peer ([`super::web`]): a request that does not ask for a
//! WebSocket gets the page's files.
//!
//! Each client's `joined` names the ICE servers it may use: the server's own STUN service
//! ([`super::stun`], on UDP at the listener's port) and, when configured, a TURN server with a
//! credential minted for that client ([`super::turn`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::turn::Turn;
use super::wire::{ClientMessage, ErrorKind, ServerMessage, MAX_MESSAGE};

/// How the server is run.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a room may live, waiting or relaying.
    pub room_timeout: Duration,
    /// How long a new connection may take to say which room it wants.
    pub join_timeout: Duration,
    /// Most connections open at once.
    pub max_clients: usize,
    /// The UDP port of the STUN service, announced in `joined`.
    pub stun_port: Option<u16>,
    /// The TURN server whose credentials `joined` hands out.
    pub turn: Option<Arc<Turn>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            room_timeout: Duration::from_secs(600),
            join_timeout: Duration::from_secs(10),
            max_clients: 100_000,
            stun_port: None,
            turn: None,
        }
    }
}

/// How long relaying one message may wait for the other side's queue.
const RELAY_STALL: Duration = Duration::from_secs(10);

/// What a connection's task is told by the other member of its room.
enum Event {
    Paired(mpsc::Sender<Event>),
    Relay(Vec<u8>),
    PeerLeft,
}

struct Member {
    id: u64,
    side: String,
    tx: mpsc::Sender<Event>,
}

/// One room: its members and when it was opened (its timeout counts from then).
struct Room {
    opened: tokio::time::Instant,
    members: Vec<Member>,
}

#[derive(Default)]
struct Rooms {
    map: Mutex<HashMap<String, Room>>,
    next_id: AtomicU64,
}

/// The server's sockets: TCP for WebSocket, and UDP at the same address and port for STUN.
pub struct Listeners {
    pub tcp: TcpListener,
    pub stun: Option<UdpSocket>,
}

/// How often a free port is drawn again when `--listen` asked for port 0 and the port the
/// system gave for TCP is taken on UDP.
const BIND_ATTEMPTS: usize = 10;

/// Listens on `addr` over TCP and, with `stun`, over UDP on the same address and port.
pub async fn bind(addr: SocketAddr, stun: bool) -> std::io::Result<Listeners> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tcp = TcpListener::bind(addr).await?;
        if !stun {
            return Ok(Listeners { tcp, stun: None });
        }
        let local = tcp.local_addr()?;
        match UdpSocket::bind(local).await {
            Ok(udp) => {
                return Ok(Listeners {
                    tcp,
                    stun: Some(udp),
                })
            }
            Err(err)
                if addr.port() == 0
                    && err.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < BIND_ATTEMPTS =>
            {
                continue
            }
            Err(err) => {
                return Err(std::io::Error::new(
                    err.kind(),
                    format!("UDP, for STUN (--no-stun turns it off): {err}"),
                ))
            }
        }
    }
}

/// Serves STUN (if bound) and WebSocket clients until the process ends; `joined` announces
/// the STUN port.
pub async fn run(listeners: Listeners, mut config: Config) -> std::io::Result<()> {
    if let Some(udp) = listeners.stun {
        config.stun_port = Some(udp.local_addr()?.port());
        tokio::spawn(super::stun::serve(udp));
    }
    serve(listeners.tcp, config).await
}

/// Serves on `listener` until the process ends.
pub async fn serve(listener: TcpListener, config: Config) -> std::io::Result<()> {
    let rooms = Arc::new(Rooms::default());
    let slots = Arc::new(Semaphore::new(config.max_clients));
    loop {
        let (stream, _addr): (TcpStream, SocketAddr) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let rooms = rooms.clone();
        let config = config.clone();
        let permit = slots.clone().try_acquire_owned();
        tokio::spawn(async move {
            // Small buffers: most connections wait idle, and 128 KiB each (the default) made
            // 10,000 waiting clients cost 1.3 GB.
            let ws_config = WebSocketConfig::default()
                .read_buffer_size(4 * 1024)
                .write_buffer_size(0)
                .max_write_buffer_size(4 * MAX_MESSAGE)
                .max_message_size(Some(MAX_MESSAGE))
                .max_frame_size(Some(MAX_MESSAGE));
            // A WebSocket (any path) is a signaling client; a plain GET gets the web peer.
            let accepted = super::web::accept(stream, ws_config, config.join_timeout).await;
            let Some(mut ws) = accepted else {
                return;
            };
            let Ok(_permit) = permit else {
                let busy = error(
                    ErrorKind::Busy,
                    "the signaling server is full, try again later",
                );
                deliver(&mut ws, busy).await;
                close(&mut ws).await;
                return;
            };
            session(ws, rooms, config).await;
        });
    }
}

fn error(kind: ErrorKind, message: &str) -> WsMessage {
    WsMessage::text(
        ServerMessage::Error {
            kind,
            message: message.to_string(),
        }
        .to_text(),
    )
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Sends one message; a client that does not take it within [`RELAY_STALL`] (a full TCP
/// window: alive but not reading) is treated as gone, so it cannot pin its task and queue.
async fn deliver(ws: &mut Ws, message: WsMessage) -> bool {
    matches!(
        tokio::time::timeout(RELAY_STALL, ws.send(message)).await,
        Ok(Ok(()))
    )
}

/// Closes politely, but never waits long for it.
async fn close(ws: &mut Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

async fn session(mut ws: Ws, rooms: Arc<Rooms>, config: Config) {
    let join = match tokio::time::timeout(config.join_timeout, ws.next()).await {
        Ok(Some(Ok(WsMessage::Text(text)))) => serde_json::from_str::<ClientMessage>(&text).ok(),
        _ => None,
    };
    let Some(ClientMessage::Join { room, side }) = join.filter(|j| j.validate().is_ok()) else {
        deliver(
            &mut ws,
            error(ErrorKind::BadRequest, "expected a join message"),
        )
        .await;
        close(&mut ws).await;
        return;
    };

    let (tx, mut rx) = mpsc::channel::<Event>(64);
    let id = rooms.next_id.fetch_add(1, Ordering::Relaxed);
    let joined = {
        let mut map = rooms.map.lock().expect("rooms lock");
        let entry = map.entry(room.clone()).or_insert_with(|| Room {
            opened: tokio::time::Instant::now(),
            members: Vec::new(),
        });
        let members = &mut entry.members;
        if members.len() >= 2 {
            Err(error(ErrorKind::RoomFull, "this code's room is full"))
        } else if members.iter().any(|m| m.side == side) {
            Err(error(
                ErrorKind::SideTaken,
                "someone else is already using this code on the same side",
            ))
        } else {
            let other = members.first().map(|m| m.tx.clone());
            members.push(Member {
                id,
                side,
                tx: tx.clone(),
            });
            Ok((other, entry.opened))
        }
    };
    let (mut peer, opened) = match joined {
        Ok(joined) => joined,
        Err(refusal) => {
            deliver(&mut ws, refusal).await;
            close(&mut ws).await;
            return;
        }
    };
    let joined = ServerMessage::Joined {
        stun_port: config.stun_port,
        turn: config
            .turn
            .as_ref()
            .map(|turn| turn.mint(SystemTime::now())),
    };
    let mut announce = vec![WsMessage::text(joined.to_text())];
    if let Some(other) = &peer {
        // Tell the first member who its peer is; both learn they are paired.
        let _ = other.send(Event::Paired(tx.clone())).await;
        announce.push(WsMessage::text(ServerMessage::Paired.to_text()));
    }
    drop(tx);

    let deadline = tokio::time::sleep_until(opened + config.room_timeout);
    tokio::pin!(deadline);
    let mut ok = true;
    for message in announce {
        ok &= deliver(&mut ws, message).await;
    }
    while ok {
        tokio::select! {
            event = rx.recv() => match event {
                Some(Event::Paired(other)) => {
                    peer = Some(other);
                    ok = deliver(&mut ws, WsMessage::text(ServerMessage::Paired.to_text())).await;
                }
                Some(Event::Relay(bytes)) => {
                    ok = deliver(&mut ws, WsMessage::binary(bytes)).await;
                }
                Some(Event::PeerLeft) | None => {
                    deliver(&mut ws, WsMessage::text(ServerMessage::PeerLeft.to_text())).await;
                    break;
                }
            },
            incoming = ws.next() => match incoming {
                Some(Ok(WsMessage::Binary(bytes))) => match &peer {
                    // Back-pressure on a fast sender (a long offer comes in many parts); one
                    // whose peer stops draining for long loses its session rather than
                    // stalling the server.
                    Some(other) => {
                        let relay = other.send(Event::Relay(bytes.to_vec()));
                        ok = matches!(tokio::time::timeout(RELAY_STALL, relay).await, Ok(Ok(())));
                    }
                    None => {
                        deliver(&mut ws, error(ErrorKind::BadRequest, "no peer to relay to yet")).await;
                        break;
                    }
                },
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                _ => break,
            },
            _ = &mut deadline => {
                deliver(&mut ws, error(ErrorKind::Timeout, "the room timed out")).await;
                break;
            }
        }
    }
    leave(&rooms, &room, id);
    close(&mut ws).await;
}

/// Forgets the room and tells the other member, if any.
/// (The paired peer is either still a member, and told here, or gone already.)
fn leave(rooms: &Rooms, room: &str, id: u64) {
    let others: Vec<mpsc::Sender<Event>> = {
        let mut map = rooms.map.lock().expect("rooms lock");
        // The room may already be gone, and its number reused by strangers: only forget it if
        // this member is still in it.
        let ours = map
            .get(room)
            .is_some_and(|r| r.members.iter().any(|m| m.id == id));
        match ours.then(|| map.remove(room)).flatten() {
            Some(removed) => removed
                .members
                .into_iter()
                .filter(|m| m.id != id)
                .map(|m| m.tx)
                .collect(),
            None => Vec::new(),
        }
    };
    for other in others {
        let _ = other.try_send(Event::PeerLeft);
    }
}
