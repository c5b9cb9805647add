//! `mp signal`: rooms of two, relaying opaque binary messages between them.
//!
//! The server writes nothing to disk and logs no client address. A room is created by its
//! first client, holds at most one sender and one receiver, and is forgotten as soon as either
//! leaves or the room outlives its timeout. A `join` with `if_waiting` (the receiver of a
//! generated code) is refused `no-peer` at once when nobody of the other side waits.
//!
//! Rooms live in a store (`store.rs`): this process's memory, or, with `--redis`, Redis shared by
//! several instances behind one load balancer ([`super::backplane`]: the two members of a
//! room may be on different instances, allocation stays unique, rooms have leases). A session
//! reads the same either way; only per-address limits and byte budgets stay per instance.
//!
//! The same port serves the web peer ([`super::web`]): a request that does not ask for a
//! WebSocket gets the page's files.
//!
//! Each client's `joined` names the ICE servers it may use: the server's own STUN service
//! ([`super::stun`], on UDP at the listener's port) and, when configured, a TURN server with a
//! credential minted for that client ([`super::turn`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::backplane::Backplane;
use super::store::{Event, Peer, Placed, Release, Request, Store, Tick};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::metrics::{Gauges, Limit, Metrics};
use super::tls::Stream;
use super::turn::Turn;
use super::web::{Accepted, Front, ProxyHeader};
use super::wire::{ClientMessage, ErrorKind, ServerMessage, MAX_MESSAGE};

/// How the server is run.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a room may live, waiting or relaying.
    pub room_timeout: Duration,
    /// How long open rooms may go on after SIGTERM (or whatever ends [`serve`]).
    pub drain_timeout: Duration,
    /// How long a room may wait for its second member (within `room_timeout`).
    pub wait_timeout: Duration,
    /// Most rooms one client address may have waiting for their second member at once.
    pub max_waiting_per_addr: u32,
    /// Most `join`/`allocate` requests one client address may make in a minute (a burst of
    /// that many, then one every 60/N s).
    pub joins_per_minute: u32,
    /// How long a new connection may take for its HTTP request and WebSocket handshake, and
    /// then again for its first message.
    pub handshake_timeout: Duration,
    /// Most WebSocket handshakes under way at once.
    pub max_handshakes: usize,
    /// Most WebSocket handshakes under way from one client address (the oldest gives way).
    pub max_handshakes_per_addr: usize,
    /// Most connections open at once.
    pub max_clients: usize,
    /// Most bytes waiting to be written to one client (relayed messages not yet taken).
    pub member_queue_bytes: usize,
    /// Most bytes waiting to be written to all clients together.
    pub relay_budget: usize,
    /// The UDP port of the STUN service, announced in `joined`.
    pub stun_port: Option<u16>,
    /// The TURN server whose credentials `joined` hands out.
    pub turn: Option<Arc<Turn>>,
    /// Rooms kept in Redis, shared with other instances (`--redis`), instead of in memory.
    pub redis: Option<Arc<Backplane>>,
    /// Serve `wss://` and `https://` with this (`--tls-cert`, `--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Take client addresses from this header, written by a reverse proxy every connection
    /// comes through (`--trust-proxy`); the per-address handshake limit is then the proxy's.
    pub trust_proxy: Option<ProxyHeader>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            room_timeout: Duration::from_secs(600),
            wait_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(60),
            max_waiting_per_addr: 32,
            joins_per_minute: 60,
            handshake_timeout: Duration::from_secs(5),
            max_handshakes: MAX_HANDSHAKES,
            max_handshakes_per_addr: 8,
            max_clients: 100_000,
            member_queue_bytes: MEMBER_QUEUE_BYTES,
            relay_budget: RELAY_BUDGET,
            stun_port: None,
            turn: None,
            redis: None,
            tls: None,
            trust_proxy: None,
        }
    }
}

/// Handshakes under way at once, by default (one open file each, besides the clients').
pub const MAX_HANDSHAKES: usize = 256;

/// The WebSocket read buffer of each client. Messages longer than this still arrive whole (the
/// buffer grows to a message's length, then reads this much at a time); 1 KiB instead of 4 KiB
/// took 10,000 waiting clients from 101 to 72 MiB.
const READ_BUFFER: usize = 1024;

/// How long relaying one message may wait for the other side's queue.
const RELAY_STALL: Duration = Duration::from_secs(10);

/// Bytes that may wait for one client: four of the largest messages, enough to keep a long
/// offer (§8.2, many parts) flowing.
pub const MEMBER_QUEUE_BYTES: usize = 4 * MAX_MESSAGE;
/// Bytes that may wait for all clients together (64 MiB).
pub const RELAY_BUDGET: usize = 64 << 20;

/// A client address as the per-address limits see it: an IPv4 address, or the /64 prefix of
/// an IPv6 address (one subscriber's usual allocation, which an attacker gets whole).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct AddrKey(u128);

impl AddrKey {
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey(u32::from(v4) as u128),
                None => AddrKey(((u128::from(v6) >> 64) << 64) | (1 << 32)),
            },
        }
    }
}

type JoinLimiter = governor::DefaultKeyedRateLimiter<AddrKey>;

struct Rooms {
    store: Store,
    /// Bytes of relayed messages waiting to be written, all clients together.
    relay_budget: Arc<Semaphore>,
    next_id: AtomicU64,
    /// Joins per client address; entries that are full again are dropped every minute.
    joins: JoinLimiter,
    metrics: Metrics,
    /// True once the server is shutting down.
    stopping: watch::Receiver<bool>,
}

impl Rooms {
    fn new(config: &Config, stopping: watch::Receiver<bool>) -> Rooms {
        let per_minute = NonZeroU32::new(config.joins_per_minute.max(1)).expect("at least one");
        Rooms {
            store: Store::new(config.redis.clone()),
            relay_budget: Arc::new(Semaphore::new(config.relay_budget.max(MAX_MESSAGE))),
            next_id: AtomicU64::new(0),
            joins: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
            metrics: Metrics::default(),
            stopping,
        }
    }
}

/// How often the per-address join counters forget addresses whose budget is whole again.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The server's sockets: TCP for WebSocket, and UDP at the same address and port for STUN.
pub struct Listeners {
    pub tcp: TcpListener,
    pub stun: Option<UdpSocket>,
}

/// Descriptors kept for everything but clients: standard streams, the listeners, the
/// runtime's own (epoll, wakers), a STUN socket, a DNS lookup or two.
pub const RESERVED_FILES: u64 = 64;

/// Raises the soft limit on open files to the hard limit (`ulimit -n` caps a server that
/// never asked), and returns the limit now in force, or `None` where it cannot be read.
#[cfg(unix)]
pub fn raise_open_files() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current?;
    // An unlimited hard limit is still capped by the kernel (fs.nr_open on Linux).
    let ceiling = limit.maximum.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(1 << 20)
    });
    if ceiling > current {
        let raised = Rlimit {
            current: Some(ceiling),
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return Some(ceiling);
        }
    }
    Some(current)
}

#[cfg(not(unix))]
pub fn raise_open_files() -> Option<u64> {
    None
}

/// How `open_files` descriptors are shared, after [`RESERVED_FILES`]: at most a quarter for
/// handshakes under way (up to `max_handshakes`), the rest for clients (up to
/// `max_clients`). Returns (clients, handshakes).
pub fn share_open_files(
    open_files: u64,
    max_clients: usize,
    max_handshakes: usize,
) -> (usize, usize) {
    let spare = usize::try_from(open_files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
    let handshakes = max_handshakes.min(spare / 4).max(1);
    let clients = max_clients.min(spare.saturating_sub(handshakes)).max(1);
    (clients, handshakes)
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

/// Serves STUN (if bound) and WebSocket clients until `stop` resolves, then drains (see
/// [`serve`]); `joined` announces the STUN port.
pub async fn run(
    listeners: Listeners,
    mut config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    if let Some(udp) = listeners.stun {
        config.stun_port = Some(udp.local_addr()?.port());
        tokio::spawn(super::stun::serve(udp));
    }
    serve(listeners.tcp, config, stop).await
}

/// Serves on `listener` until `stop` resolves. Then it stops listening, ends the rooms still
/// waiting for their second member (`busy`), and returns once the paired rooms have finished,
/// or after `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let (stopping_tx, stopping) = watch::channel(false);
    let rooms = Arc::new(Rooms::new(&config, stopping));
    let slots = Arc::new(Semaphore::new(config.max_clients));
    {
        let rooms = Arc::downgrade(&rooms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FORGET_EVERY);
            loop {
                tick.tick().await;
                let Some(rooms) = rooms.upgrade() else { return };
                rooms.joins.retain_recent();
                rooms.joins.shrink_to_fit();
            }
        });
    }
    let handshakes = Arc::new(Handshakes::new(&config));
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let metrics_text: Arc<super::web::MetricsText> = {
        let (rooms, slots, handshakes) = (rooms.clone(), slots.clone(), handshakes.clone());
        let (max_clients, max_handshakes) = (config.max_clients, handshakes.size);
        let relay_budget = config.relay_budget.max(MAX_MESSAGE);
        Arc::new(move || {
            let (open, waiting) = rooms.store.gauges();
            rooms.metrics.render(&Gauges {
                clients: (max_clients - slots.available_permits()) as u64,
                handshakes: (max_handshakes - handshakes.total.available_permits()) as u64,
                rooms: open,
                rooms_waiting: waiting,
                shutting_down: *rooms.stopping.borrow(),
                relay_queued_bytes: (relay_budget - rooms.relay_budget.available_permits()) as u64,
                max_clients: max_clients as u64,
            })
        })
    };
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => break,
        };
        let (stream, addr): (TcpStream, SocketAddr) = match accepted {
            Ok(conn) => conn,
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        Metrics::add(&rooms.metrics.connections_total, 1);
        let key = AddrKey::of(addr.ip());
        // Slowloris: a connection that has not finished its handshake holds a handshake
        // place, never a client's. Past the total, new connections are closed at once; past
        // an address's share, its oldest handshake makes way for the new one.
        let Some(place) = handshakes.enter(key, &rooms.metrics) else {
            rooms.metrics.hit(Limit::Handshakes);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let rooms = rooms.clone();
        let config = config.clone();
        let slots = slots.clone();
        let metrics_text = metrics_text.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let (place, evicted) = place;
            // Small buffers: most connections wait idle, and 128 KiB each (the default) made
            // 10,000 waiting clients cost 1.3 GB (4 KiB each, 100 MB).
            let ws_config = WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(0)
                .max_write_buffer_size(4 * MAX_MESSAGE)
                .max_message_size(Some(MAX_MESSAGE))
                .max_frame_size(Some(MAX_MESSAGE));
            // A WebSocket (any path) is a signaling client; a plain GET gets the web peer.
            let front = Front {
                tls: tls.as_ref(),
                trust_proxy: config.trust_proxy,
                timeout: config.handshake_timeout,
                metrics: &*metrics_text,
            };
            // Boxed, here and for the session: the task keeps only what the current step needs
            // (unboxed, every waiting client's task had room for both: 6.5 KiB in a debug build).
            let accept = Box::pin(super::web::accept(stream, ws_config, &front));
            let accepted = tokio::select! {
                accepted = accept => accepted,
                _ = evicted => return,
            };
            let metrics = &rooms.metrics;
            let (mut ws, key) = match accepted {
                Accepted::Ws(ws, forwarded) => (*ws, forwarded.map_or(key, AddrKey::of)),
                Accepted::Http => return Metrics::add(&metrics.http_requests_total, 1),
                Accepted::TimedOut => return metrics.hit(Limit::HandshakeTimeout),
                Accepted::Tls => return Metrics::add(&metrics.tls_failures_total, 1),
                Accepted::Broken => return Metrics::add(&metrics.broken_requests_total, 1),
            };
            // A client's place is taken once it is a WebSocket, and only then.
            let Ok(_permit) = slots.try_acquire_owned() else {
                rooms.metrics.hit(Limit::Clients);
                let full = "the signaling server is full, try again later";
                Box::pin(refuse(&mut ws, ErrorKind::Busy, full)).await;
                return;
            };
            drop(place);
            Box::pin(session(ws, rooms, config, key)).await;
        });
    }

    // Draining: no new connection; rooms still waiting end now, paired ones may finish.
    drop(listener);
    let _ = stopping_tx.send(true);
    let all = u32::try_from(config.max_clients).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(config.drain_timeout, slots.acquire_many(all)).await;
    Ok(())
}

/// The WebSocket handshakes under way: how many in all, and which for each address.
struct Handshakes {
    size: usize,
    total: Arc<Semaphore>,
    per_addr: usize,
    next: AtomicU64,
    by_addr: Mutex<HashMap<AddrKey, Pending>>,
}

/// One address's handshakes under way, oldest first: an id, what evicts it when dropped, and
/// its place in the total (held here, so that an eviction hands it over at once).
type Pending = std::collections::VecDeque<(u64, oneshot::Sender<()>, OwnedSemaphorePermit)>;

/// A handshake's place; given back on drop.
struct Handshake {
    handshakes: Arc<Handshakes>,
    key: AddrKey,
    id: u64,
}

impl Handshakes {
    fn new(config: &Config) -> Handshakes {
        Handshakes {
            size: config.max_handshakes.max(1),
            total: Arc::new(Semaphore::new(config.max_handshakes.max(1))),
            // Behind a proxy every connection comes from the proxy: it limits per client.
            per_addr: match config.trust_proxy {
                Some(_) => usize::MAX,
                None => config.max_handshakes_per_addr.max(1),
            },
            next: AtomicU64::new(0),
            by_addr: Mutex::new(HashMap::new()),
        }
    }

    /// A place for a new handshake from `key`, and what resolves if it is evicted; `None`
    /// when all places are taken.
    fn enter(
        self: &Arc<Self>,
        key: AddrKey,
        metrics: &Metrics,
    ) -> Option<(Handshake, oneshot::Receiver<()>)> {
        let mut by_addr = self.by_addr.lock().expect("handshakes lock");
        let mine = by_addr.entry(key).or_default();
        let evicted = if mine.len() >= self.per_addr {
            metrics.hit(Limit::HandshakesPerAddr);
            mine.pop_front()
        } else {
            None
        };
        // Dropping the oldest's sender wakes it to close; its place in the total goes to the
        // new one now, not once its task has run: an address that connects fast would
        // otherwise hold more than its share of the total until then.
        let total = match evicted {
            Some((_, _wake, total)) => total,
            None => match self.total.clone().try_acquire_owned() {
                Ok(total) => total,
                Err(_) => {
                    if mine.is_empty() {
                        by_addr.remove(&key);
                    }
                    return None;
                }
            },
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        mine.push_back((id, tx, total));
        let place = Handshake {
            handshakes: self.clone(),
            key,
            id,
        };
        Some((place, rx))
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut by_addr = self.handshakes.by_addr.lock().expect("handshakes lock");
        if let Some(mine) = by_addr.get_mut(&self.key) {
            mine.retain(|(id, _, _)| *id != self.id);
            if mine.is_empty() {
                by_addr.remove(&self.key);
            }
        }
    }
}

/// Sends a refusal and closes, briefly: a client that does not read its refusal at once loses
/// it.
async fn refuse(ws: &mut Ws, kind: ErrorKind, message: &str) {
    let _ = tokio::time::timeout(REFUSAL_STALL, ws.send(error(kind, message))).await;
    close(ws).await;
}

/// How long a refusal may wait to be taken.
const REFUSAL_STALL: Duration = Duration::from_secs(1);

fn error(kind: ErrorKind, message: &str) -> WsMessage {
    WsMessage::text(
        ServerMessage::Error {
            kind,
            message: message.to_string(),
        }
        .to_text(),
    )
}

type Ws = tokio_tungstenite::WebSocketStream<Stream>;

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

/// What a client waiting alone hears when the server shuts down.
const SHUTTING_DOWN: &str = "the signaling server is restarting; try again";

async fn session(mut ws: Ws, rooms: Arc<Rooms>, config: Config, key: AddrKey) {
    let request = match tokio::time::timeout(config.handshake_timeout, ws.next()).await {
        Ok(Some(Ok(WsMessage::Text(text)))) => serde_json::from_str::<ClientMessage>(&text).ok(),
        Err(_) => {
            rooms.metrics.hit(Limit::HandshakeTimeout);
            None
        }
        _ => None,
    };
    let mut stopping = rooms.stopping.clone();
    if *stopping.borrow_and_update() {
        refuse(&mut ws, ErrorKind::Busy, SHUTTING_DOWN).await;
        return;
    }
    let Some(request) = request.filter(|r| r.validate().is_ok()) else {
        refuse(&mut ws, ErrorKind::BadRequest, "expected a join message").await;
        return;
    };
    if rooms.joins.check_key(&key).is_err() {
        rooms.metrics.hit(Limit::JoinsPerAddr);
        refuse(
            &mut ws,
            ErrorKind::Busy,
            "too many joins from your address; try again in a minute",
        )
        .await;
        return;
    }
    let (room, side, if_waiting, allocated) = match request {
        ClientMessage::Join {
            room,
            side,
            if_waiting,
        } => (Some(room), side, if_waiting, false),
        ClientMessage::Allocate { side } => (None, side, false, true),
    };

    let (tx, mut rx) = mpsc::channel::<Event>(64);
    let id = rooms.next_id.fetch_add(1, Ordering::Relaxed);
    let budget = Arc::new(Semaphore::new(config.member_queue_bytes.max(MAX_MESSAGE)));
    let me = Peer::Local {
        tx: tx.clone(),
        budget: budget.clone(),
    };
    let request = Request {
        room,
        side,
        if_waiting,
        key,
        id,
        tx,
        budget,
    };
    let placed = rooms
        .store
        .place(&rooms.metrics, config.max_waiting_per_addr, request)
        .await;
    let Placed {
        room,
        mut peer,
        opened,
    } = match placed {
        Ok(placed) => placed,
        Err((kind, why)) => {
            let _ = tokio::time::timeout(REFUSAL_STALL, ws.send(error(kind, why))).await;
            close(&mut ws).await;
            return;
        }
    };
    let joined = ServerMessage::Joined {
        room: allocated.then(|| room.clone()),
        stun_port: config.stun_port,
        turn: config
            .turn
            .as_ref()
            .map(|turn| turn.mint(SystemTime::now())),
    };
    let mut announce = vec![WsMessage::text(joined.to_text())];
    if let Some(other) = &peer {
        // Tell the first member who its peer is (a member elsewhere was told by the store);
        // both learn they are paired.
        if let Peer::Local { tx, .. } = other {
            let _ = tx.send(Event::Paired(me.clone())).await;
        }
        announce.push(WsMessage::text(ServerMessage::Paired.to_text()));
    }
    drop(me);

    // Alone in the room, the shorter wait applies; once paired, the room's whole lifetime.
    let wait_deadline = opened + config.wait_timeout.min(config.room_timeout);
    let room_deadline = opened + config.room_timeout;
    let deadline = tokio::time::sleep_until(if peer.is_some() {
        room_deadline
    } else {
        wait_deadline
    });
    tokio::pin!(deadline);
    // A shared store's room must be kept alive, and a peer elsewhere checked on.
    let ticking = rooms.store.tick_every();
    let every = ticking.unwrap_or(Duration::from_secs(3600));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut ok = true;
    for message in announce {
        ok &= deliver(&mut ws, message).await;
    }
    while ok {
        tokio::select! {
            event = rx.recv() => match event {
                Some(Event::Paired(other)) => {
                    peer = Some(other);
                    deadline.as_mut().reset(room_deadline);
                    ok = deliver(&mut ws, WsMessage::text(ServerMessage::Paired.to_text())).await;
                }
                Some(Event::Relay(relayed)) => {
                    let (bytes, release) = *relayed;
                    ok = deliver(&mut ws, WsMessage::binary(bytes)).await;
                    if let (Release::Remote, Some(other), true) = (&release, &peer, ok) {
                        rooms.store.delivered(&rooms.metrics, other).await;
                    }
                    drop(release);
                }
                Some(Event::PeerLeft) | None => {
                    deliver(&mut ws, WsMessage::text(ServerMessage::PeerLeft.to_text())).await;
                    break;
                }
                Some(Event::Lost) => {
                    deliver(&mut ws, error(ErrorKind::Busy, LOST)).await;
                    break;
                }
            },
            incoming = ws.next() => match incoming {
                Some(Ok(WsMessage::Binary(bytes))) => match &peer {
                    // Back-pressure on a fast sender (a long offer comes in many parts); one
                    // whose peer stops draining for long loses its session rather than
                    // stalling the server.
                    Some(other) => {
                        let n = bytes.len() as u64;
                        let relay = relay(&rooms, other, bytes.to_vec());
                        let relayed = match tokio::time::timeout(RELAY_STALL, relay).await {
                            Ok(relayed) => relayed,
                            Err(_) => {
                                rooms.metrics.hit(Limit::RelayStall);
                                Relayed::Failed
                            }
                        };
                        match relayed {
                            Relayed::Sent => {
                                Metrics::add(&rooms.metrics.relayed_messages_total, 1);
                                Metrics::add(&rooms.metrics.relayed_bytes_total, n);
                            }
                            Relayed::Failed => ok = false,
                            Relayed::PeerGone => {
                                deliver(&mut ws, WsMessage::text(ServerMessage::PeerLeft.to_text())).await;
                                break;
                            }
                            Relayed::Lost => {
                                deliver(&mut ws, error(ErrorKind::Busy, LOST)).await;
                                break;
                            }
                        }
                    }
                    None => {
                        deliver(&mut ws, error(ErrorKind::BadRequest, "no peer to relay to yet")).await;
                        break;
                    }
                },
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                _ => break,
            },
            _ = tick.tick(), if ticking.is_some() => {
                match rooms.store.tick(&rooms.metrics, id, peer.as_ref()).await {
                    Tick::Fine => {}
                    Tick::PeerGone => {
                        deliver(&mut ws, WsMessage::text(ServerMessage::PeerLeft.to_text())).await;
                        break;
                    }
                    Tick::Lost => {
                        deliver(&mut ws, error(ErrorKind::Busy, LOST)).await;
                        break;
                    }
                }
            }
            _ = stopping.changed(), if peer.is_none() => {
                deliver(&mut ws, error(ErrorKind::Busy, SHUTTING_DOWN)).await;
                break;
            }
            _ = &mut deadline => {
                Metrics::add(&rooms.metrics.room_timeouts_total, 1);
                let why = if peer.is_some() {
                    "the room timed out"
                } else {
                    "nobody joined the room in time"
                };
                deliver(&mut ws, error(ErrorKind::Timeout, why)).await;
                break;
            }
        }
    }
    rooms.store.leave(&rooms.metrics, &room, id).await;
    close(&mut ws).await;
}

/// What a client hears when the shared store (Redis) fails under its session.
const LOST: &str = "the signaling server lost its shared store; try again";

/// How relaying one message went.
pub(super) enum Relayed {
    Sent,
    /// The peer's session is gone or stalled: end this one.
    Failed,
    /// The peer left (its instance says so, or is gone).
    PeerGone,
    /// The shared store failed.
    Lost,
}

/// Queues `bytes` for `peer` once its queue and the server's budget have room for them.
async fn relay(rooms: &Rooms, peer: &Peer, bytes: Vec<u8>) -> Relayed {
    let global = &rooms.relay_budget;
    let (tx, budget) = match (peer, &rooms.store) {
        (Peer::Local { tx, budget }, _) => (tx, budget),
        (Peer::Remote(remote), Store::Redis(backplane)) => {
            return backplane.relay(&rooms.metrics, remote, global, bytes).await
        }
        (Peer::Remote(_), Store::Memory(_)) => return Relayed::Failed,
    };
    // Messages are at most MAX_MESSAGE long, which both budgets hold whole.
    let n = bytes.len().max(1) as u32;
    let Ok(mine) = budget.clone().acquire_many_owned(n).await else {
        return Relayed::Failed;
    };
    let Ok(all) = global.clone().acquire_many_owned(n).await else {
        return Relayed::Failed;
    };
    let release = Release::Local(super::store::Budget(mine, all));
    match tx.send(Event::Relay(Box::new((bytes, release)))).await {
        Ok(()) => Relayed::Sent,
        Err(_) => Relayed::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_by_ipv4_address_or_ipv6_slash_64() {
        let key = |s: &str| AddrKey::of(s.parse().unwrap());
        assert_eq!(key("192.0.2.7"), key("::ffff:192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("::"), key("0.0.0.0"));
    }

    #[test]
    fn an_evicted_handshake_hands_its_place_over_at_once() {
        let config = Config {
            max_handshakes: 2,
            max_handshakes_per_addr: 1,
            ..Default::default()
        };
        let handshakes = Arc::new(Handshakes::new(&config));
        let metrics = Metrics::default();
        let (a, b, c) = (
            AddrKey::of([192, 0, 2, 1].into()),
            AddrKey::of([192, 0, 2, 2].into()),
            AddrKey::of([192, 0, 2, 3].into()),
        );
        let (first, mut first_evicted) = handshakes.enter(a, &metrics).unwrap();
        // The same address again: the first is told to go, and its place is the new one's,
        // before the first's task has even run.
        let (_second, _) = handshakes.enter(a, &metrics).unwrap();
        assert_eq!(
            first_evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Closed),
            "woken: its sender is gone"
        );
        assert_eq!(handshakes.total.available_permits(), 1);
        let (_third, _) = handshakes.enter(b, &metrics).unwrap();
        assert!(handshakes.enter(c, &metrics).is_none(), "the total is full");
        drop(first);
        assert_eq!(
            handshakes.total.available_permits(),
            0,
            "first held nothing any more"
        );
    }

    #[test]
    fn open_files_are_shared_between_handshakes_and_clients() {
        assert_eq!(share_open_files(1024, 100_000, 256), (720, 240));
        assert_eq!(share_open_files(1 << 20, 100_000, 256), (100_000, 256));
        assert_eq!(share_open_files(10, 100, 256), (1, 1));
    }
}
