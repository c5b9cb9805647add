//! Several `mp signal` instances sharing their rooms through a real Redis (`--redis`), as
//! behind a load balancer: a peer on each instance, allocation across instances, and an
//! instance that dies.
//!
//! Each test starts its own `redis-server` (Debian package `redis-server`) on a free loopback
//! port, with no persistence, and kills it at the end.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Ws;

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
struct Redis {
    url: String,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        // A free port: the system's pick for a socket we close at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (Debian: redis-server): {e}"));
        let redis = Redis {
            url: format!("redis://127.0.0.1:{port}"),
            child,
        };
        let started = Instant::now();
        while redis.try_connection().is_none() {
            assert!(started.elapsed() < STEP, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn try_connection(&self) -> Option<redis::Connection> {
        let mut conn = redis::Client::open(self.url.as_str())
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()?;
        Some(conn)
    }

    /// Every key Redis holds.
    fn keys(&self) -> Vec<String> {
        let mut conn = self.try_connection().expect("redis is up");
        let keys: redis::Iter<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut conn)
            .unwrap();
        keys.map(|k| k.unwrap()).collect()
    }

    /// Waits, polling, until Redis holds no key; fails after `limit` with what is left.
    fn wait_empty(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let keys = self.keys();
            if keys.is_empty() {
                return;
            }
            assert!(started.elapsed() < limit, "keys left in Redis: {keys:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An instance of `mp signal` keeping its rooms in this Redis.
    fn signal(&self) -> Signal {
        Signal::start_with(&["--redis", &self.url])
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn request(url: &str, message: String) -> Client {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Ws::text(message)).await.unwrap();
    ws
}

async fn join(url: &str, room: &str, side: &str) -> Client {
    request(
        url,
        format!(r#"{{"type":"join","room":"{room}","side":"{side}"}}"#),
    )
    .await
}

async fn allocate(url: &str) -> Client {
    request(url, r#"{"type":"allocate","side":"send"}"#.to_string()).await
}

/// The next control message, within `limit`.
async fn next_json(ws: &mut Client, limit: Duration) -> serde_json::Value {
    loop {
        match tokio::time::timeout(limit, ws.next()).await {
            Ok(Some(Ok(Ws::Text(text)))) => return serde_json::from_str(&text).unwrap(),
            Ok(Some(Ok(Ws::Ping(_) | Ws::Pong(_)))) => continue,
            other => panic!("expected a control message, got {other:?}"),
        }
    }
}

async fn next_binary(ws: &mut Client) -> Vec<u8> {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Ok(Some(Ok(Ws::Binary(bytes)))) => return bytes.to_vec(),
            Ok(Some(Ok(Ws::Ping(_) | Ws::Pong(_)))) => continue,
            other => panic!("expected a relayed message, got {other:?}"),
        }
    }
}

#[test]
fn a_sender_on_one_instance_and_a_receiver_on_another_transfer_a_file() {
    let redis = Redis::start();
    let (a, b) = (redis.signal(), redis.signal());
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let content = random_bytes(300_000, 11);
    let path = src.path().join("across.bin");
    std::fs::write(&path, &content).unwrap();

    // A generated code: instance A allocates the room, the receiver comes through B.
    let sender = spawn(mp().args(["send", "--signal", &a.url, "--json"]).arg(&path));
    let code = sender.wait_event("code", STEP)["code"]
        .as_str()
        .unwrap()
        .to_string();
    let received = spawn(receive(&b, &code, dst.path()).arg("--yes")).wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read(dst.path().join("across.bin")).unwrap(),
        content
    );
    // The room is gone from Redis once both left, and the code cannot be used again.
    redis.wait_empty(STEP);
    let again = spawn(receive(&b, &code, dst.path()).arg("--yes")).wait(STEP);
    again.assert_code(exit::NO_SENDER);
}

#[test]
fn rooms_are_allocated_once_across_instances_and_messages_keep_their_order() {
    let redis = Redis::start();
    let (a, b) = (redis.signal(), redis.signal());
    runtime().block_on(async {
        // Allocations alternate between the instances, some at the same time: all distinct,
        // and the lowest free numbers.
        let mut clients = Vec::new();
        let mut rooms = Vec::new();
        for round in 0..3 {
            let (x, y) = tokio::join!(allocate(&a.url), allocate(&b.url));
            for mut ws in [x, y] {
                let joined = next_json(&mut ws, STEP).await;
                assert_eq!(joined["type"], "joined", "round {round}: {joined}");
                rooms.push(joined["room"].as_str().unwrap().parse::<u32>().unwrap());
                clients.push(ws);
            }
        }
        let mut sorted = rooms.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 2, 3, 4, 5, 6]);

        // A custom code's room on A is busy on B too.
        let mut squatter = join(&a.url, "3", "send").await;
        let refused = next_json(&mut squatter, STEP).await;
        assert_eq!(refused["kind"], "side-taken", "{refused}");

        // Whoever waits in room 2 is joined from the other instance...
        let waiting = rooms.iter().position(|&r| r == 2).unwrap();
        let mut sender = clients.remove(waiting);
        let mut receiver = request(
            &a.url,
            r#"{"type":"join","room":"2","side":"receive","if_waiting":true}"#.into(),
        )
        .await;
        assert_eq!(next_json(&mut receiver, STEP).await["type"], "joined");
        assert_eq!(next_json(&mut receiver, STEP).await["type"], "paired");
        assert_eq!(next_json(&mut sender, STEP).await["type"], "paired");
        // ...and many messages, more than the credit of one queue, arrive whole and in order.
        let sending = async {
            for i in 0u32..300 {
                let mut message = vec![0u8; 1 + (i as usize * 97) % 3000];
                let n = 4.min(message.len());
                message[..n].copy_from_slice(&i.to_be_bytes()[..n]);
                sender.send(Ws::binary(message)).await.unwrap();
            }
            sender
        };
        let receiving = async {
            for i in 0u32..300 {
                let message = next_binary(&mut receiver).await;
                assert_eq!(message.len(), 1 + (i as usize * 97) % 3000, "message {i}");
                let n = 4.min(message.len());
                assert_eq!(message[..n], i.to_be_bytes()[..n], "message {i}");
            }
            receiver
        };
        let (sender, mut receiver) = tokio::join!(sending, receiving);
        // The sender leaves: its peer on the other instance is told, and room 2 is free again.
        drop(sender);
        assert_eq!(next_json(&mut receiver, STEP).await["type"], "peer-left");
        let mut again = allocate(&b.url).await;
        assert_eq!(next_json(&mut again, STEP).await["room"], "2");

        // Nobody waits in room 9: a receiver asking only for a waiting sender hears so at once.
        let mut nobody = request(
            &b.url,
            r#"{"type":"join","room":"9","side":"receive","if_waiting":true}"#.into(),
        )
        .await;
        let refused = next_json(&mut nobody, STEP).await;
        assert_eq!(refused["kind"], "no-peer", "{refused}");
    });
}

#[test]
fn an_instance_that_dies_mid_pairing_leaves_clear_errors_and_no_rooms() {
    let redis = Redis::start();
    let (a, b) = (redis.signal(), redis.signal());
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("never.txt");
    std::fs::write(&path, b"never sent").unwrap();

    // A sender waits on A with a generated code, and a client with a custom one.
    let sender = spawn(mp().args(["send", "--signal", &a.url, "--json"]).arg(&path));
    let code = sender.wait_event("code", STEP)["code"]
        .as_str()
        .unwrap()
        .to_string();
    sender.wait_event("waiting", STEP);
    let rt = runtime();
    let mut lonely = rt.block_on(async {
        let mut ws = join(&a.url, "700", "send").await;
        assert_eq!(next_json(&mut ws, STEP).await["type"], "joined");
        ws
    });
    // Two clients paired across the instances.
    let (mut on_a, mut on_b) = rt.block_on(async {
        let mut on_a = join(&a.url, "800", "send").await;
        assert_eq!(next_json(&mut on_a, STEP).await["type"], "joined");
        let mut on_b = join(&b.url, "800", "receive").await;
        assert_eq!(next_json(&mut on_b, STEP).await["type"], "joined");
        assert_eq!(next_json(&mut on_b, STEP).await["type"], "paired");
        assert_eq!(next_json(&mut on_a, STEP).await["type"], "paired");
        (on_a, on_b)
    });
    assert_eq!(redis.keys().len(), 3, "{:?}", redis.keys());

    // A dies.
    let mut a_process = a.into_process();
    a_process.kill();

    // Its sender says so in one line (an error event, with --json), with exit code 6.
    let sent = sender.wait(STEP);
    sent.assert_code(exit::PEER_GONE);
    let error = events(&sent.stdout).pop().unwrap();
    assert_eq!(error["event"], "error", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("lost the connection to the signaling server"),
        "{message}"
    );
    // The receiver, on B, learns at once that nobody waits with the code.
    let received = spawn(receive(&b, &code, dst.path()).arg("--yes")).wait(STEP);
    received.assert_code(exit::NO_SENDER);
    assert!(
        received
            .last_line()
            .contains(&format!("no sender is waiting with the code {code}")),
        "{}",
        received.stderr
    );
    assert!(received.elapsed < Duration::from_secs(10), "{received:?}");
    rt.block_on(async {
        // The client paired across is told its peer left, by B's heartbeat.
        let left = next_json(&mut on_b, STEP).await;
        assert_eq!(left["type"], "peer-left", "{left}");
        // Room 700's client on A is cut off; nobody joins it, and its lease runs out.
        assert!(matches!(
            tokio::time::timeout(STEP, lonely.next()).await,
            Ok(None | Some(Err(_)))
        ));
        let _ = tokio::time::timeout(STEP, on_a.next()).await;
    });
    // No room is left in Redis: the stale ones were removed or expired.
    redis.wait_empty(Duration::from_secs(40));
}

#[test]
fn an_unreachable_redis_stops_the_server_at_start() {
    // A port nobody listens on: the system's pick for a socket we close at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let out = spawn(mp().args(["signal", "--listen", "127.0.0.1:0", "--redis", &url])).wait(STEP);
    out.assert_code(exit::SERVER);
    assert!(
        out.last_line().contains("cannot use Redis"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
}

/// `GET /metrics` of an instance: the value of one unlabelled or exactly labelled sample.
fn metric(url: &str, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(url.trim_start_matches("ws://")).unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    write!(socket, "GET /metrics HTTP/1.1\r\nHost: mp\r\n\r\n").unwrap();
    let mut text = String::new();
    socket.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_peer_that_does_not_read_stalls_its_sender_on_the_other_instance() {
    let redis = Redis::start();
    let (a, b) = (redis.signal(), redis.signal());
    let rt = runtime();
    let (mut sender, receiver) = rt.block_on(async {
        let mut sender = join(&a.url, "900", "send").await;
        assert_eq!(next_json(&mut sender, STEP).await["type"], "joined");
        let mut receiver = join(&b.url, "900", "receive").await;
        assert_eq!(next_json(&mut receiver, STEP).await["type"], "joined");
        assert_eq!(next_json(&mut receiver, STEP).await["type"], "paired");
        assert_eq!(next_json(&mut sender, STEP).await["type"], "paired");
        (sender, receiver)
    });
    // The receiver reads nothing more. The sender pumps 1,000 messages of 32 KiB (32 MiB):
    // the credit stops instance A from relaying more than B has written out, A stops reading,
    // and after 10 s of no credit it ends the sender's session.
    let accepted = rt.block_on(async {
        let message = vec![7u8; 32 * 1024];
        let pump = async {
            for i in 0..1000 {
                if sender.send(Ws::binary(message.clone())).await.is_err() {
                    return i;
                }
            }
            1000
        };
        tokio::time::timeout(Duration::from_secs(90), pump)
            .await
            .expect("the sender was never stopped")
    });
    assert!(accepted < 1000, "the whole 32 MiB went through");
    let relayed = metric(&a.url, "mp_signal_relayed_bytes_total");
    // What B could write into the idle receiver's socket buffers, plus one window of credit.
    assert!(
        relayed < 16 << 20,
        "{relayed} bytes relayed to a peer that reads nothing"
    );
    assert!(metric(&a.url, "mp_signal_limit_hits_total{limit=\"relay_stall\"}") >= 1);
    drop(receiver);
    redis.wait_empty(STEP);
}
