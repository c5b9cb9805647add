//! Load for `mp signal`, used by `bench/run` (loopback only, bounded in count and time).
//!
//! ```text
//! signal_load URLS hold N SECONDS    open N waiting clients (one per room), hold them SECONDS;
//!                                    print "connected N" once all are joined
//! signal_load URLS pair N [C]        pair N sender/receiver couples, C at a time (default 32):
//!                                    the sender allocates, the receiver joins its room, one
//!                                    message is relayed; print rate and latency
//! signal_load URLS attack KIND SECONDS
//!                                    mount one attack of issue 11, then pair legitimate
//!                                    couples (8 at a time) for SECONDS while it goes on;
//!                                    print what the attack holds and how the pairs fared
//! ```
//!
//! KIND is one of:
//! - `squat`: 99 clients waiting on the send side (rooms 1..99) and 99 on the receive side
//!   (rooms 100..198), each from an address of its own;
//! - `idle`: 1,100 clients waiting in rooms, each from an address of its own (run the server
//!   under a soft open-file limit of 1,024 to see whether it raises it);
//! - `pump`: 100 pairs whose senders send the largest messages as fast as they can while their
//!   receivers read one every 100 ms;
//! - `slowloris`: 1,100 connections from one address that send half a request and wait,
//!   opened again whenever the server closes them.
//!
//! URLS is one URL, or two separated by a comma (two instances sharing a backplane): the
//! sender of pair i then uses URLS[i % 2] and its receiver the other one.
//!
//! Each legitimate pair comes from an address of its own (127.1.x.y), so the server's
//! per-address limits can stay at their defaults; the pairing latency is from the sender's
//! TCP connect to the receiver holding the relayed message. Only loopback URLs are accepted,
//! and only 127.0.0.0/8 source addresses are used.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Everything this tool does must end within this time.
const DEADLINE: Duration = Duration::from_secs(300);
/// How long one step (connect, a reply) may take before it counts as failed.
const STEP: Duration = Duration::from_secs(20);
/// The server's largest message (src/signal/wire.rs MAX_MESSAGE).
const MAX_MESSAGE: usize = 34 * 1024;

/// A loopback source address of its own for connection `i` of group `group` (1: legitimate
/// pairs, 2: attackers): 127.group.x.y, y never 0 or 255.
fn source(group: u8, i: u64) -> Ipv4Addr {
    let i = i % (254 * 256);
    Ipv4Addr::new(127, group, (i / 254) as u8, (i % 254) as u8 + 1)
}

/// A server: its address and the URL path.
#[derive(Clone)]
struct Server {
    addr: SocketAddr,
    url: String,
}

fn server(url: &str) -> anyhow::Result<Server> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow::anyhow!("only ws:// URLs: {url}"))?;
    let authority = rest.split('/').next().unwrap_or("");
    let addr: SocketAddr = authority
        .parse()
        .map_err(|_| anyhow::anyhow!("expected ws://IP:PORT, got {url}"))?;
    anyhow::ensure!(addr.ip().is_loopback(), "only loopback URLs: {url}");
    Ok(Server {
        addr,
        url: url.to_string(),
    })
}

async fn tcp(server: &Server, from: Ipv4Addr) -> anyhow::Result<TcpStream> {
    let socket = match server.addr {
        SocketAddr::V4(_) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::V4(SocketAddrV4::new(from, 0)))?;
            socket
        }
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    let stream = socket.connect(server.addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn connect(server: &Server, from: Ipv4Addr) -> anyhow::Result<Ws> {
    let stream = tcp(server, from).await?;
    let (ws, _) = tokio_tungstenite::client_async(server.url.as_str(), stream).await?;
    Ok(ws)
}

/// The next text message, which must be `what` (`joined`, `paired`); returns it.
async fn expect(ws: &mut Ws, what: &str) -> anyhow::Result<String> {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains(&format!(r#""{what}""#)) => {
                return Ok(text.to_string())
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => anyhow::bail!("expected {what}, got {other:?}"),
            Err(_) => anyhow::bail!("expected {what}, got nothing in {STEP:?}"),
        }
    }
}

async fn join(server: &Server, from: Ipv4Addr, room: u64, side: &str) -> anyhow::Result<Ws> {
    let mut ws = connect(server, from).await?;
    let join = format!(r#"{{"type":"join","room":"{room}","side":"{side}"}}"#);
    ws.send(Message::text(join)).await?;
    expect(&mut ws, "joined").await?;
    Ok(ws)
}

/// One legitimate pairing, as mp does it: allocate, join that room, relay one message.
/// Returns how long it took.
async fn pair_once(servers: &[Server], i: u64) -> anyhow::Result<Duration> {
    let from = source(1, i);
    let (a, b) = (
        &servers[i as usize % servers.len()],
        &servers[(i as usize + 1) % servers.len()],
    );
    let start = Instant::now();
    let mut sender = connect(a, from).await?;
    sender
        .send(Message::text(r#"{"type":"allocate","side":"send"}"#))
        .await?;
    let joined: serde_json::Value = serde_json::from_str(&expect(&mut sender, "joined").await?)?;
    let room: u64 = joined["room"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no room in {joined}"))?
        .parse()?;
    let mut receiver = join(b, from, room, "receive").await?;
    expect(&mut sender, "paired").await?;
    expect(&mut receiver, "paired").await?;
    sender.send(Message::binary(vec![1u8; 64])).await?;
    match tokio::time::timeout(STEP, receiver.next()).await {
        Ok(Some(Ok(Message::Binary(_)))) => {}
        other => anyhow::bail!("relay failed: {other:?}"),
    }
    let took = start.elapsed();
    let _ = sender.close(None).await;
    let _ = receiver.close(None).await;
    Ok(took)
}

/// How legitimate pairs fared.
#[derive(Default)]
struct Pairs {
    ok: u64,
    failed: u64,
    first_error: Option<String>,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Pairs {
    fn print(&mut self, label: &str) {
        self.latencies.sort();
        let at = |q: f64| -> f64 {
            if self.latencies.is_empty() {
                return f64::NAN;
            }
            let i =
                ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
            self.latencies[i - 1].as_secs_f64() * 1000.0
        };
        println!(
            "{label} ok {} failed {} per_second {:.0} p50_ms {:.1} p99_ms {:.1} max_ms {:.1}",
            self.ok,
            self.failed,
            self.ok as f64 / self.elapsed.as_secs_f64(),
            at(0.50),
            at(0.99),
            at(1.0),
        );
        if let Some(error) = &self.first_error {
            println!("{label} first_error {error}");
        }
    }
}

/// Pairs up to `count` couples, `concurrency` at a time, until `count` or `until`.
async fn pairs(
    servers: Arc<Vec<Server>>,
    count: u64,
    concurrency: u64,
    until: Option<Instant>,
) -> Pairs {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers = (0..concurrency.max(1)).map(|_| {
        let (servers, next) = (servers.clone(), next.clone());
        tokio::spawn(async move {
            let mut mine = Pairs::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || until.is_some_and(|u| Instant::now() >= u) {
                    return mine;
                }
                match pair_once(&servers, i).await {
                    Ok(took) => {
                        mine.ok += 1;
                        mine.latencies.push(took);
                    }
                    Err(err) => {
                        mine.failed += 1;
                        mine.first_error.get_or_insert(err.to_string());
                    }
                }
            }
        })
    });
    let mut all = Pairs::default();
    for worker in futures_util::future::join_all(workers).await {
        let mine = worker.expect("a pairing worker");
        all.ok += mine.ok;
        all.failed += mine.failed;
        all.latencies.extend(mine.latencies);
        if all.first_error.is_none() {
            all.first_error = mine.first_error;
        }
    }
    all.elapsed = start.elapsed();
    all
}

async fn hold(servers: Arc<Vec<Server>>, clients: u64, seconds: u64) -> anyhow::Result<()> {
    let mut open = Vec::with_capacity(clients as usize);
    // Join in batches so the listen backlog is not overrun.
    for batch in (0..clients).collect::<Vec<_>>().chunks(256) {
        let joins = batch.iter().map(|&i| {
            let server = &servers[i as usize % servers.len()];
            join(server, source(2, i), 100_000 + i, "send")
        });
        for ws in futures_util::future::join_all(joins).await {
            open.push(ws?);
        }
    }
    println!("connected {}", open.len());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Ok(())
}

/// Waiting clients in `rooms`, on `side`, each from an address of its own.
async fn squatters(
    server: &Server,
    rooms: std::ops::Range<u64>,
    side: &str,
    first: u64,
) -> anyhow::Result<Vec<Ws>> {
    let joins = rooms
        .clone()
        .map(|room| join(server, source(2, first + room), room, side));
    futures_util::future::join_all(joins)
        .await
        .into_iter()
        .collect()
}

/// Sends the largest messages as fast as the server takes them, and reads one every 100 ms
/// on the other side, joining again whenever the server ends the pair, until `until`.
async fn pump_pair(server: Server, i: u64, until: Instant, sent: Arc<AtomicU64>) {
    while Instant::now() < until {
        let room = 500_000 + i;
        let from = source(2, 10_000 + i);
        let (Ok(mut a), Ok(mut b)) = (
            join(&server, from, room, "send").await,
            join(&server, from, room, "receive").await,
        ) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = expect(&mut a, "paired").await;
        let reader = tokio::spawn(async move {
            while Instant::now() < until {
                match tokio::time::timeout(Duration::from_secs(1), b.next()).await {
                    Ok(Some(Ok(_))) | Err(_) => {}
                    Ok(_) => return,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let frame = vec![0x55u8; MAX_MESSAGE];
        while Instant::now() < until {
            let send = a.send(Message::binary(frame.clone()));
            match tokio::time::timeout_at(until.into(), send).await {
                Ok(Ok(())) => {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                _ => break,
            }
        }
        reader.abort();
    }
}

/// Holds half-open connections (half a request head) from one address, opening each again
/// when the server closes it, at most every 100 ms, until `until`.
async fn slowloris_socket(server: Server, until: Instant, opened: Arc<AtomicU64>) {
    let from = Ipv4Addr::new(127, 3, 0, 1);
    while Instant::now() < until {
        let started = Instant::now();
        if let Ok(mut stream) = tcp(&server, from).await {
            opened.fetch_add(1, Ordering::Relaxed);
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: mp\r\n").await;
            let mut byte = [0u8; 1];
            // Wait until the server closes it (or the attack ends).
            let _ = tokio::time::timeout_at(until.into(), stream.peek(&mut byte)).await;
        }
        tokio::time::sleep_until((started + Duration::from_millis(100)).into()).await;
    }
}

async fn attack(servers: Arc<Vec<Server>>, kind: &str, seconds: u64) -> anyhow::Result<()> {
    let server = servers[0].clone();
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut held: Vec<Ws> = Vec::new();
    let mut background = Vec::new();
    let sent = Arc::new(AtomicU64::new(0));
    match kind {
        "squat" => {
            held.extend(squatters(&server, 1..100, "send", 0).await?);
            held.extend(squatters(&server, 100..199, "receive", 0).await?);
            println!("attackers {}", held.len());
        }
        "idle" => {
            for batch in (0..1100u64).collect::<Vec<_>>().chunks(100) {
                let joins = batch
                    .iter()
                    .map(|&i| join(&server, source(2, 20_000 + i), 300_000 + i, "send"));
                for ws in futures_util::future::join_all(joins).await {
                    match ws {
                        Ok(ws) => held.push(ws),
                        Err(err) => println!("idle_refused {err}"),
                    }
                }
            }
            println!("attackers {}", held.len());
        }
        "pump" => {
            for i in 0..100 {
                background.push(tokio::spawn(pump_pair(
                    server.clone(),
                    i,
                    until,
                    sent.clone(),
                )));
            }
            println!("attackers 200");
        }
        "slowloris" => {
            for _ in 0..1100 {
                background.push(tokio::spawn(slowloris_socket(
                    server.clone(),
                    until,
                    sent.clone(),
                )));
            }
            println!("attackers 1100");
        }
        _ => anyhow::bail!("unknown attack {kind}"),
    }
    // Let the attack reach its size before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut legit = pairs(servers.clone(), 1_000_000, 8, Some(until)).await;
    legit.print("legit");
    match kind {
        "squat" => {
            // No squatter heard of anyone.
            let mut heard = 0;
            for ws in &mut held {
                if tokio::time::timeout(Duration::from_millis(1), ws.next())
                    .await
                    .is_ok()
                {
                    heard += 1;
                }
            }
            println!("squatters_paired {heard}");
        }
        "pump" => println!("frames_sent_by_attackers {}", sent.load(Ordering::Relaxed)),
        "slowloris" => println!("half_open_opened {}", sent.load(Ordering::Relaxed)),
        _ => {}
    }
    for task in background {
        let _ = task.await;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: signal_load URL[,URL] (hold N SECONDS | pair N [CONCURRENCY] | \
                 attack squat|idle|pump|slowloris SECONDS)";
    let urls = args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?;
    let servers: Vec<Server> = urls.split(',').map(server).collect::<anyhow::Result<_>>()?;
    anyhow::ensure!((1..=2).contains(&servers.len()), "one or two URLs");
    let servers = Arc::new(servers);
    let number = |i: usize| -> anyhow::Result<u64> {
        Ok(args.get(i).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?)
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let work = async {
            match args.get(2).map(String::as_str) {
                Some("hold") => hold(servers, number(3)?.min(50_000), number(4)?.min(120)).await,
                Some("pair") => {
                    let concurrency = number(4).unwrap_or(32).clamp(1, 256);
                    let mut done = pairs(servers, number(3)?.min(100_000), concurrency, None).await;
                    done.print("pairs");
                    anyhow::ensure!(done.failed == 0, "some pairings failed");
                    Ok(())
                }
                Some("attack") => {
                    let kind = args.get(3).ok_or_else(|| anyhow::anyhow!(usage))?;
                    attack(servers, kind, number(4)?.min(120)).await
                }
                _ => anyhow::bail!(usage),
            }
        };
        tokio::time::timeout(DEADLINE, work)
            .await
            .map_err(|_| anyhow::anyhow!("gave up after {DEADLINE:?}"))?
    })
}
