//! Meeting on the local network with nothing set up: no `--signal`, no `MP_SIGNAL`.
//!
//! The sender hosts the rendezvous itself. It runs the `mp signal` server
//! ([`crate::signal::server::serve`]) inside the process, reachable on one ephemeral TCP port
//! of every address it may use, joins it over WebSocket like any client, and announces it with
//! mDNS/DNS-SD as `mp-<room>._mp._tcp.local.` with TXT `v=2` (the protocol version). The
//! receiver browses for that one instance, connects to an advertised address with `ws://` and
//! joins the room. From there on nothing differs from a signaling server: the key exchange over
//! the whole code, then sealed envelopes. The announcement carries the room number and nothing
//! else about the transfer, and a neighbour who answers in the sender's place gets one wrong
//! guess at the code, no more than a dishonest signaling server would.
//!
//! Where it multicasts: only on the interfaces of the addresses the user allows (`--bind`,
//! `MP_BIND`), else on those of every non-loopback address; never on loopback. When only
//! loopback addresses are allowed there is nowhere to announce, and [`join`] says so before
//! any mDNS starts. (One caveat: as its thread starts, mdns-sd joins the mDNS group on every
//! interface, so the kernel sends a membership report there, then leaves the group where the
//! interface is not enabled; it sends no mDNS packet there.) The receiver connects
//! only to advertised addresses inside the subnet of an allowed address, so an answer cannot
//! send it anywhere else.
//!
//! How long things live: the announcement is withdrawn (with goodbye packets) as soon as the
//! receiver has arrived, or when the rendezvous closes. When the rendezvous is dropped the
//! hosted server stops taking connections, and it is gone once the connections it still has
//! (the receiver's, which may be waiting for a last relayed message) have ended, after
//! [`LINGER`] at most. The receiver's mDNS stops as soon as it has joined.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mdns_sd::{DaemonEvent, IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::error::{Failure, Kind};
use crate::protocol::code::{Code, MAX_GENERATED_ROOM};
use crate::protocol::pake::Side;
use crate::rendezvous::Rendezvous;
use crate::signal::client::{Join, SignalClient};

/// The DNS-SD service type senders announce.
pub const SERVICE_TYPE: &str = "_mp._tcp.local.";
/// How long a receiver looks for the sender's announcement unless `--timeout` says otherwise.
pub const DISCOVERY: Duration = Duration::from_secs(10);
/// How long the sender waits for mDNS to confirm its name is its own (probing takes ~1 s, and
/// finding a name in use ~1 s more).
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);
/// Once announced on one interface, how long the others may take (each probes on its own,
/// starting up to 250 ms apart).
const ANNOUNCE_GRACE: Duration = Duration::from_millis(1500);
/// How long connecting to one advertised address may take.
const CANDIDATE_TIMEOUT: Duration = Duration::from_secs(3);
/// Advertised addresses tried, at most, per answer.
const MAX_CANDIDATES: usize = 4;
/// How long stopping mDNS may wait for the daemon to have sent its goodbyes.
const MDNS_STOP: Duration = Duration::from_millis(500);
/// How long the hosted server may keep serving the connections it has, once dropped.
pub const LINGER: Duration = Duration::from_secs(2);
/// Connections the hosted server takes at once: a receiver, and a few curious neighbours.
const MAX_CONNECTIONS: usize = 16;
/// How long the hosted room may live; the engines time out the wait and the transfer.
const ROOM_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How often a generated code is redrawn when another sender announces its room.
const ROOM_ATTEMPTS: usize = 8;
/// Tries at finding one free port on every allowed address.
const PORT_ATTEMPTS: usize = 8;
/// How [`Options`] are written in the one string the pumps carry (see [`Options::to_place`]).
const SCHEME: &str = "lan:";

/// mDNS daemons this process started (a test checks that some paths start none).
static DAEMONS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// How to meet on the local network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Addresses the user allows (`--bind`); empty: every non-loopback address.
    pub bind: Vec<IpAddr>,
    /// How long a receiver looks for the sender.
    pub discovery: Duration,
}

impl Options {
    /// These options as the meeting place given to [`crate::rendezvous::join`], which the
    /// pumps carry as one string: `lan:?bind=10.0.0.2,fd00::2&discovery-ms=10000`.
    pub fn to_place(&self) -> String {
        let bind: Vec<String> = self.bind.iter().map(IpAddr::to_string).collect();
        format!(
            "{SCHEME}?bind={}&discovery-ms={}",
            bind.join(","),
            self.discovery.as_millis()
        )
    }

    /// Reads [`Options::to_place`]'s text back; `None` for any other place (a server's URL).
    pub fn from_place(place: &str) -> Option<Result<Options, Failure>> {
        let rest = place.strip_prefix(SCHEME)?;
        Some(Self::parse_query(rest).ok_or_else(|| {
            Failure::new(Kind::Internal, format!("malformed meeting place {place:?}"))
        }))
    }

    fn parse_query(rest: &str) -> Option<Options> {
        let mut options = Options {
            bind: Vec::new(),
            discovery: DISCOVERY,
        };
        let query = match rest {
            "" => "",
            _ => rest.strip_prefix('?')?,
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=')? {
                ("bind", list) => {
                    options.bind = list
                        .split(',')
                        .filter(|ip| !ip.is_empty())
                        .map(|ip| ip.parse().ok())
                        .collect::<Option<_>>()?;
                }
                ("discovery-ms", ms) => options.discovery = Duration::from_millis(ms.parse().ok()?),
                _ => return None,
            }
        }
        Some(options)
    }
}

/// Joins the room of `code` on the local network: a sender hosts and announces it (drawing a
/// code whose room nobody announces when it has none), a receiver finds it.
pub async fn join(
    options: &Options,
    code: Option<Code>,
    side: Side,
) -> Result<(Box<dyn Rendezvous>, Code), Failure> {
    match (side, code) {
        (Side::Sender, code) => host(options, code).await,
        (Side::Receiver, Some(code)) => find(options, code).await,
        (Side::Receiver, None) => Err(Failure::new(
            Kind::Usage,
            "a receiver needs the sender's code",
        )),
    }
}

/// The DNS-SD instance name for `code`: its room number only.
fn instance(code: &Code) -> String {
    format!("mp-{}", code.room())
}

// ---------------------------------------------------------------------------------------------
// Which addresses

/// One address of this machine, with its subnet's prefix length and its interface.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Local {
    ip: IpAddr,
    prefix: u8,
    /// The interface's name, as mdns-sd reports where it announced.
    interface: String,
    /// Whether mdns-sd uses the interface now: operationally up, not point-to-point.
    multicast: bool,
}

impl Local {
    /// Whether `other` is in this address's subnet.
    fn on_link(&self, other: IpAddr) -> bool {
        match (self.ip, other) {
            (IpAddr::V4(a), IpAddr::V4(b)) => same_prefix(&a.octets(), &b.octets(), self.prefix),
            (IpAddr::V6(a), IpAddr::V6(b)) => same_prefix(&a.octets(), &b.octets(), self.prefix),
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` agree.
fn same_prefix(a: &[u8], b: &[u8], bits: u8) -> bool {
    let bits = usize::from(bits).min(a.len() * 8);
    let (whole, rest) = (bits / 8, bits % 8);
    a[..whole] == b[..whole] && (rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0)
}

/// Whether LAN mode can use `ip`: not loopback, and not an IPv6 link-local address (which
/// would need an interface scope in every URL).
fn usable(ip: IpAddr) -> bool {
    let link_local_v6 = matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
    !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast() && !link_local_v6
}

const LOOPBACK_ONLY: &str = "without a signaling server mp meets on the local network (mDNS), \
which needs a non-loopback address, but --bind/MP_BIND allows only loopback: pass --signal \
ws://HOST:PORT or set MP_SIGNAL (run a server with `mp signal`)";

const NO_NETWORK: &str = "without a signaling server mp meets on the local network (mDNS), but \
this machine has no network address besides loopback: pass --signal ws://HOST:PORT or set \
MP_SIGNAL (run a server with `mp signal`)";

/// The addresses mDNS and the hosted rendezvous may use, out of `interfaces` (every address
/// of this machine): the non-loopback ones of `bind`, each of which must be there, or, with
/// no `bind`, every usable one. Never loopback; never empty.
fn locals(bind: &[IpAddr], interfaces: &[Local]) -> Result<Vec<Local>, Failure> {
    if !bind.is_empty() && bind.iter().all(IpAddr::is_loopback) {
        return Err(Failure::new(Kind::Usage, LOOPBACK_ONLY));
    }
    let mut locals: Vec<Local> = Vec::new();
    if bind.is_empty() {
        locals.extend(interfaces.iter().filter(|l| usable(l.ip)).cloned());
        if locals.is_empty() {
            return Err(Failure::new(Kind::Usage, NO_NETWORK));
        }
    }
    for &ip in bind.iter().filter(|ip| !ip.is_loopback()) {
        if !usable(ip) {
            return Err(Failure::new(
                Kind::Usage,
                format!(
                    "--bind {ip}: meeting on the local network cannot use this address; \
                     name another, or pass --signal ws://HOST:PORT"
                ),
            ));
        }
        match interfaces.iter().find(|have| have.ip == ip) {
            Some(found) => locals.push(found.clone()),
            None => {
                return Err(Failure::new(
                    Kind::Usage,
                    format!("--bind {ip}: no network interface of this machine has this address"),
                ))
            }
        }
    }
    locals.dedup_by_key(|l| l.ip);
    Ok(locals)
}

/// Every address of this machine.
fn interfaces() -> Result<Vec<Local>, Failure> {
    let list = if_addrs::get_if_addrs().map_err(|e| {
        Failure::new(
            Kind::Internal,
            format!("cannot list the network interfaces: {e}"),
        )
    })?;
    Ok(list
        .into_iter()
        .map(|interface| {
            let (ip, prefix) = match &interface.addr {
                if_addrs::IfAddr::V4(v4) => (IpAddr::V4(v4.ip), v4.prefixlen),
                if_addrs::IfAddr::V6(v6) => (IpAddr::V6(v6.ip), v6.prefixlen),
            };
            Local {
                ip,
                prefix,
                multicast: interface.is_oper_up() && !interface.is_p2p(),
                interface: interface.name,
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// mDNS

fn mdns_failure(err: impl std::fmt::Display) -> Failure {
    Failure::new(
        Kind::Server,
        format!("local network discovery (mDNS) failed: {err}"),
    )
}

/// An mDNS daemon restricted to the interfaces of some [`Local`]s; shut down when dropped.
struct Mdns {
    daemon: Option<ServiceDaemon>,
}

impl Mdns {
    /// Starts a daemon that uses only the interfaces of `locals` (never loopback).
    fn start(locals: &[Local]) -> Result<Mdns, Failure> {
        assert!(
            locals.iter().all(|l| usable(l.ip)) && !locals.is_empty(),
            "mDNS only on usable addresses"
        );
        DAEMONS_STARTED.fetch_add(1, Ordering::SeqCst);
        let mdns = Mdns {
            daemon: Some(ServiceDaemon::new().map_err(mdns_failure)?),
        };
        // Everything off, then each allowed address's interface (IPv4 or IPv6 as the address
        // is) back on: commands run in order, before any browse or register sent after them.
        let daemon = mdns.daemon();
        daemon
            .disable_interface(IfKind::All)
            .map_err(mdns_failure)?;
        let allowed: Vec<IfKind> = locals.iter().map(|l| IfKind::Addr(l.ip)).collect();
        daemon.enable_interface(allowed).map_err(mdns_failure)?;
        // mdns-sd leaves out interfaces that are not up yet (a link just plugged in) until its
        // next look, by default 5 s later: look every second.
        daemon.set_ip_check_interval(1).map_err(mdns_failure)?;
        Ok(mdns)
    }

    fn daemon(&self) -> &ServiceDaemon {
        self.daemon.as_ref().expect("a running daemon")
    }

    /// Withdraws one registration, waiting briefly for its goodbye packets.
    async fn withdraw(&self, fullname: &str) {
        if let Ok(done) = self.daemon().unregister(fullname) {
            let _ = tokio::time::timeout(MDNS_STOP, done.recv_async()).await;
        }
    }

    /// Stops the daemon (withdrawing what it announced), waiting [`MDNS_STOP`] at most.
    async fn stop(mut self) {
        if let Some(daemon) = self.daemon.take() {
            if let Ok(done) = daemon.shutdown() {
                let _ = tokio::time::timeout(MDNS_STOP, done.recv_async()).await;
            }
        }
    }
}

impl Drop for Mdns {
    fn drop(&mut self) {
        // Only queues the command: the daemon's thread says goodbye and ends on its own.
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.shutdown();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sender: host, announce

/// The sender's side: a room on its own server, announced until the receiver arrives.
struct Hosted {
    client: Box<SignalClient>,
    mdns: Option<Mdns>,
    _hosting: Hosting,
}

#[async_trait::async_trait]
impl Rendezvous for Hosted {
    async fn paired(&mut self) -> Result<(), Failure> {
        self.client.paired().await?;
        // The receiver is here: stop announcing. (Not awaited, so this stays cancel-safe: the
        // daemon's thread sends the goodbyes while the transfer starts.)
        self.mdns = None;
        Ok(())
    }

    async fn send(&mut self, envelope: Vec<u8>) -> Result<(), Failure> {
        self.client.send(envelope).await
    }

    async fn recv(&mut self) -> Result<Vec<u8>, Failure> {
        self.client.recv().await
    }

    async fn close(&mut self) {
        self.client.close().await;
        if let Some(mdns) = self.mdns.take() {
            mdns.stop().await;
        }
    }
}

/// Outcome of one announcement.
enum Announced {
    Yes,
    /// Another sender on the network already announces this room.
    Taken,
    /// mDNS never confirmed it (and why, if it said).
    Silent(String),
}

async fn host(
    options: &Options,
    code: Option<Code>,
) -> Result<(Box<dyn Rendezvous>, Code), Failure> {
    let locals = locals(&options.bind, &interfaces()?)?;
    let hosting = Hosting::start(&locals).await?;
    let mdns = Mdns::start(&locals)?;
    let events = mdns.daemon().monitor().map_err(mdns_failure)?;
    // A made-up host name: the announcement says nothing about the machine either.
    let host_name = format!("mp-{:016x}.local.", rand::random::<u64>());
    let version = crate::protocol::session::VERSION.to_string();
    let given = code.is_some();
    let mut code = code.unwrap_or_else(Code::generate);
    let mut attempts = 0;
    loop {
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance(&code),
            &host_name,
            hosting.addresses.as_slice(),
            hosting.port,
            &[("v", version.as_str())][..],
        )
        .map_err(mdns_failure)?;
        let fullname = info.get_fullname().to_string();
        mdns.daemon().register(info).map_err(mdns_failure)?;
        match announced(&events, &fullname, &locals).await {
            Announced::Yes => break,
            Announced::Taken => {
                mdns.withdraw(&fullname).await;
                if given {
                    return Err(Failure::new(
                        Kind::RoomFull,
                        format!(
                            "another sender on this network already announces a code \
                             starting with {}-; pick another",
                            code.room()
                        ),
                    ));
                }
                attempts += 1;
                if attempts == ROOM_ATTEMPTS {
                    return Err(Failure::new(
                        Kind::RoomFull,
                        "every code tried is announced by another sender on this network; \
                         try again later",
                    ));
                }
                let room = rand::Rng::gen_range(&mut rand::rngs::OsRng, 1..=MAX_GENERATED_ROOM);
                code = code.with_room(room);
            }
            Announced::Silent(why) => {
                return Err(Failure::new(
                    Kind::Server,
                    format!(
                        "could not announce this transfer on the local network (mDNS){why}; \
                         to meet through a signaling server instead, pass --signal \
                         ws://HOST:PORT (run one with `mp signal`)"
                    ),
                ))
            }
        }
    }
    let client = match SignalClient::join(&hosting.url, code.room(), Side::Sender)
        .await
        .map_err(Failure::from_any)?
    {
        Join::Joined(client) => client,
        Join::Busy | Join::NoPeer | Join::Unsupported => {
            return Err(Failure::new(
                Kind::Internal,
                "the hosted rendezvous refused its own sender",
            ))
        }
    };
    let hosted = Hosted {
        client,
        mdns: Some(mdns),
        _hosting: hosting,
    };
    Ok((Box::new(hosted), code))
}

/// Waits until mDNS has announced `fullname` (after probing that nobody else uses it) on
/// every interface of `locals` it uses, or on some of them and [`ANNOUNCE_GRACE`] has passed.
/// Each interface probes on its own: the code must not be shown while another sender could
/// still win the name on one of them.
async fn announced(
    events: &mdns_sd::Receiver<DaemonEvent>,
    fullname: &str,
    locals: &[Local],
) -> Announced {
    let mut pending: HashSet<&str> = locals
        .iter()
        .filter(|l| l.multicast)
        .map(|l| l.interface.as_str())
        .collect();
    let mut deadline = Instant::now() + ANNOUNCE_TIMEOUT;
    let mut somewhere = false;
    let mut trouble = String::new();
    loop {
        let event = match tokio::time::timeout_at(deadline, events.recv_async()).await {
            Ok(Ok(event)) => event,
            Ok(Err(_)) => return Announced::Silent(": the mDNS daemon stopped".into()),
            Err(_) if somewhere => return Announced::Yes,
            Err(_) => return Announced::Silent(trouble),
        };
        match event {
            // Where: "<host name>:<interface>".
            DaemonEvent::Announce(name, place) if name.eq_ignore_ascii_case(fullname) => {
                if let Some((_, interface)) = place.split_once(".local.:") {
                    pending.remove(interface);
                }
                if pending.is_empty() {
                    return Announced::Yes;
                }
                if !somewhere {
                    somewhere = true;
                    deadline = deadline.min(Instant::now() + ANNOUNCE_GRACE);
                }
            }
            // Probing found the name in use: mdns-sd would rename ours ("mp-7 (2)"), which
            // no receiver looks for.
            DaemonEvent::NameChange(change) if change.original.eq_ignore_ascii_case(fullname) => {
                return Announced::Taken
            }
            DaemonEvent::Error(err) => trouble = format!(": {err}"),
            _ => {}
        }
    }
}

/// The in-process `mp signal`: the server itself on loopback (where this side joins), and one
/// listener per allowed address, all on the same port, that pass connections through to it.
/// Dropping it stops the listeners at once and the rest within [`LINGER`].
struct Hosting {
    /// Where this side joins.
    url: String,
    /// The addresses it can be reached on (every allowed one it could listen on).
    addresses: Vec<IpAddr>,
    /// The port announced, the same on each of them.
    port: u16,
    serve: Option<JoinHandle<()>>,
    forwarders: Vec<JoinHandle<()>>,
    /// Dropped to tell the forwarders to stop taking connections.
    stop: Option<watch::Sender<()>>,
}

impl Hosting {
    async fn start(locals: &[Local]) -> Result<Hosting, Failure> {
        let failed = |e: std::io::Error| {
            Failure::new(
                Kind::Server,
                format!("cannot host the rendezvous on this machine: {e}"),
            )
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(failed)?;
        let server = listener.local_addr().map_err(failed)?;
        let config = crate::signal::server::Config {
            room_timeout: ROOM_LIFETIME,
            max_clients: MAX_CONNECTIONS,
            ..Default::default()
        };
        let serve = tokio::spawn(async move {
            let _ = crate::signal::server::serve(listener, config, std::future::pending()).await;
        });
        let (stop, stopped) = watch::channel(());
        let mut hosting = Hosting {
            url: format!("ws://{server}"),
            addresses: Vec::new(),
            port: 0,
            serve: Some(serve),
            forwarders: Vec::new(),
            stop: Some(stop),
        };
        for listener in listen_on_all(locals).await.map_err(failed)? {
            let address = listener.local_addr().map_err(failed)?;
            hosting.addresses.push(address.ip());
            hosting.port = address.port();
            let forwarder = forward(listener, server, stopped.clone());
            hosting.forwarders.push(tokio::spawn(forwarder));
        }
        Ok(hosting)
    }
}

impl Drop for Hosting {
    fn drop(&mut self) {
        drop(self.stop.take());
        let forwarders = std::mem::take(&mut self.forwarders);
        let serve = self.serve.take();
        let abort: Vec<_> = forwarders
            .iter()
            .map(JoinHandle::abort_handle)
            .chain(serve.iter().map(JoinHandle::abort_handle))
            .collect();
        let finish = async move {
            let drained = async {
                for forwarder in forwarders {
                    let _ = forwarder.await;
                }
            };
            let _ = tokio::time::timeout(LINGER + Duration::from_millis(100), drained).await;
            for task in abort {
                task.abort();
            }
        };
        // Without a runtime (it is shutting down) the tasks are going away anyway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(finish);
        }
    }
}

/// Listens on the addresses of `locals`, all on one port (picked by the first), leaving out
/// any address that cannot be listened on (one still being checked for duplicates, say); at
/// least one must work.
async fn listen_on_all(locals: &[Local]) -> std::io::Result<Vec<TcpListener>> {
    let mut last = None;
    for _ in 0..PORT_ATTEMPTS {
        let mut port = 0;
        let mut listeners = Vec::new();
        let mut clash = false;
        for local in locals {
            match TcpListener::bind((local.ip, port)).await {
                Ok(listener) => {
                    port = listener.local_addr()?.port();
                    listeners.push(listener);
                }
                // The port the first address got is taken on another: try another port.
                Err(e) if port != 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    last = Some(e);
                    clash = true;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if !clash && !listeners.is_empty() {
            return Ok(listeners);
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to listen on")))
}

/// Passes each connection on `listener` through to the server, until told to stop; then lets
/// the open ones finish, for [`LINGER`] at most.
async fn forward(listener: TcpListener, server: SocketAddr, mut stop: watch::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if connections.len() < MAX_CONNECTIONS => {
                    connections.spawn(pipe(stream, server));
                }
                Ok(_) => {}
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(LINGER, drained).await;
}

async fn pipe(mut outside: TcpStream, server: SocketAddr) {
    let _ = outside.set_nodelay(true);
    let Ok(mut inside) = TcpStream::connect(server).await else {
        return;
    };
    let _ = inside.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
}

// ---------------------------------------------------------------------------------------------
// The receiver: find, connect

async fn find(options: &Options, code: Code) -> Result<(Box<dyn Rendezvous>, Code), Failure> {
    let locals = locals(&options.bind, &interfaces()?)?;
    let mdns = Mdns::start(&locals)?;
    let events = mdns.daemon().browse(SERVICE_TYPE).map_err(mdns_failure)?;
    let fullname = format!("{}.{SERVICE_TYPE}", instance(&code));
    let deadline = Instant::now() + options.discovery;
    let mut unreachable = None;
    let found = loop {
        let event = match tokio::time::timeout_at(deadline, events.recv_async()).await {
            Ok(Ok(event)) => event,
            Ok(Err(_)) => break Err(mdns_failure("the mDNS daemon stopped")),
            Err(_) => {
                break Err(unreachable.unwrap_or_else(|| nobody(&code, options.discovery)));
            }
        };
        let ServiceEvent::ServiceResolved(service) = event else {
            continue;
        };
        if !service.fullname.eq_ignore_ascii_case(&fullname) {
            continue;
        }
        match connect(&service, &locals, &code).await {
            Ok(client) => break Ok(client),
            Err(why) if why.kind == Kind::RoomFull => break Err(why),
            // Perhaps a stale or false answer: keep looking until the deadline.
            Err(why) => unreachable = Some(why),
        }
    };
    mdns.stop().await;
    Ok((found?, code))
}

/// Joins the room at one of the addresses `service` advertises, IPv4 first; only addresses in
/// the subnet of an allowed local address are tried.
async fn connect(
    service: &ResolvedService,
    locals: &[Local],
    code: &Code,
) -> Result<Box<dyn Rendezvous>, Failure> {
    let mut addresses: Vec<IpAddr> = service
        .addresses
        .iter()
        .map(|scoped| scoped.to_ip_addr())
        .filter(|&ip| usable(ip) && locals.iter().any(|l| l.on_link(ip)))
        .collect();
    addresses.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    addresses.truncate(MAX_CANDIDATES);
    if addresses.is_empty() || service.port == 0 {
        return Err(Failure::new(
            Kind::Server,
            format!(
                "a sender announced code {} here, but not at an address of this network",
                code.room()
            ),
        ));
    }
    let mut last = None;
    for ip in addresses {
        let url = format!("ws://{}", SocketAddr::new(ip, service.port));
        let join = SignalClient::join(&url, code.room(), Side::Receiver);
        let why = match tokio::time::timeout(CANDIDATE_TIMEOUT, join).await {
            Ok(Ok(Join::Joined(client))) => return Ok(client),
            Ok(Ok(Join::Busy | Join::NoPeer | Join::Unsupported)) => {
                return Err(Failure::new(
                    Kind::RoomFull,
                    format!("the code {code} is already in use by another receiver or transfer"),
                ))
            }
            Ok(Err(err)) => Failure::from_any(err).message,
            Err(_) => "timed out".to_string(),
        };
        last = Some(Failure::new(
            Kind::Server,
            format!("the sender found on this network at {url} cannot be reached: {why}"),
        ));
    }
    Err(last.expect("one address was tried"))
}

/// The failure when nobody announced the code within `waited`.
fn nobody(code: &Code, waited: Duration) -> Failure {
    Failure::new(
        Kind::Timeout,
        format!(
            "nobody announced the code {code} on this network within {} s: check the code \
             and that the sender runs on the same network, or meet through a signaling server \
             (`mp signal` where both can reach it, then --signal ws://HOST:PORT on both sides)",
            waited.as_secs_f64()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// An address `text` with prefix length `prefix` on interface `eth0`.
    fn at(text: &str, prefix: u8) -> Local {
        Local {
            ip: ip(text),
            prefix,
            interface: "eth0".into(),
            multicast: true,
        }
    }

    #[test]
    fn options_travel_as_a_place() {
        for options in [
            Options {
                bind: vec![],
                discovery: DISCOVERY,
            },
            Options {
                bind: vec![ip("10.77.0.1"), ip("fd00::2")],
                discovery: Duration::from_millis(2500),
            },
        ] {
            let place = options.to_place();
            assert!(place.starts_with("lan:"), "{place}");
            assert_eq!(Options::from_place(&place).unwrap().unwrap(), options);
        }
        assert_eq!(
            Options::from_place("lan:").unwrap().unwrap().discovery,
            DISCOVERY
        );
        assert!(Options::from_place("ws://127.0.0.1:1").is_none());
        for bad in [
            "lan:?bind=x",
            "lan:?what=1",
            "lan:bind=1.2.3.4",
            "lan:?discovery-ms=-1",
        ] {
            let failure = Options::from_place(bad).unwrap().unwrap_err();
            assert_eq!(failure.kind, Kind::Internal, "{bad}");
        }
    }

    #[test]
    fn the_instance_names_only_the_room() {
        let code = Code::parse("7-guitar-ocean").unwrap();
        assert_eq!(instance(&code), "mp-7");
    }

    #[test]
    fn loopback_only_is_refused_before_anything() {
        let interfaces = [at("127.0.0.1", 8), at("10.77.0.1", 24)];
        for bind in [vec![ip("127.0.0.1")], vec![ip("127.0.0.1"), ip("::1")]] {
            let failure = locals(&bind, &interfaces).unwrap_err();
            assert_eq!(failure.kind, Kind::Usage);
            assert!(
                failure.message.contains("non-loopback"),
                "{}",
                failure.message
            );
            assert!(failure.message.contains("MP_SIGNAL"), "{}", failure.message);
        }
        let failure = locals(&[], &[at("127.0.0.1", 8), at("::1", 128)]).unwrap_err();
        assert_eq!(failure.kind, Kind::Usage);
    }

    #[test]
    fn allowed_addresses_follow_bind() {
        let interfaces = [
            at("127.0.0.1", 8),
            at("10.77.0.1", 24),
            at("192.168.1.5", 24),
            at("fe80::1", 64),
            at("fd00::5", 64),
        ];
        let all = locals(&[], &interfaces).unwrap();
        let ips: Vec<IpAddr> = all.iter().map(|l| l.ip).collect();
        assert_eq!(ips, [ip("10.77.0.1"), ip("192.168.1.5"), ip("fd00::5")]);
        // Loopback in --bind is for ICE: LAN mode uses the rest.
        let some = locals(&[ip("127.0.0.1"), ip("192.168.1.5")], &interfaces).unwrap();
        assert_eq!(some, [at("192.168.1.5", 24)]);
        let failure = locals(&[ip("10.9.9.9")], &interfaces).unwrap_err();
        assert_eq!(failure.kind, Kind::Usage);
        assert!(failure.message.contains("10.9.9.9"));
        assert!(locals(&[ip("fe80::1")], &interfaces).is_err());
    }

    #[test]
    fn only_addresses_on_an_allowed_subnet_are_tried() {
        let local = at("10.77.0.1", 24);
        assert!(local.on_link(ip("10.77.0.2")));
        assert!(!local.on_link(ip("10.77.1.2")));
        assert!(!local.on_link(ip("8.8.8.8")));
        assert!(!local.on_link(ip("fd00::2")));
        let odd = at("192.168.4.1", 22);
        assert!(odd.on_link(ip("192.168.7.255")));
        assert!(!odd.on_link(ip("192.168.8.1")));
        let v6 = at("fd00::5", 64);
        assert!(v6.on_link(ip("fd00::9")));
        assert!(!v6.on_link(ip("fd01::9")));
        assert!(!usable(ip("fe80::1")));
        assert!(!usable(ip("127.0.0.1")));
        assert!(usable(ip("10.77.0.1")));
    }

    /// No signaling server and only loopback allowed: both sides stop with a usage error and
    /// never start mDNS, so nothing is multicast anywhere.
    #[tokio::test]
    async fn loopback_only_starts_no_mdns() {
        let before = DAEMONS_STARTED.load(Ordering::SeqCst);
        let options = Options {
            bind: vec![ip("127.0.0.1")],
            discovery: DISCOVERY,
        };
        let code = Code::parse("7-guitar-ocean").unwrap();
        for (side, code) in [(Side::Sender, None), (Side::Receiver, Some(code))] {
            let place = options.to_place();
            let joined =
                crate::rendezvous::join(&place, code.as_ref().map(Code::as_str), side).await;
            let failure = joined.err().expect("refused");
            assert_eq!(failure.kind, Kind::Usage, "{}", failure.message);
            assert!(failure.message.contains("MP_SIGNAL"), "{}", failure.message);
        }
        assert_eq!(DAEMONS_STARTED.load(Ordering::SeqCst), before);
    }
}
