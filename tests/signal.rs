//! The signaling server's rules, and what a malicious server can and cannot do.
//!
//! The "evil relay" below speaks the server's protocol but reads, records, alters, replays or
//! drops the peers' messages. Real `mp send` / `mp receive` processes must detect every
//! alteration, and nothing it records may reveal the file, the SDP or an address.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rtc::stun;
use tokio_tungstenite::tungstenite::Message as Ws;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(url: &str, room: &str, side: &str) -> Client {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let join = format!(r#"{{"type":"join","room":"{room}","side":"{side}"}}"#);
    ws.send(Ws::text(join)).await.unwrap();
    ws
}

/// Whether `text` is a `joined` message (which may name ICE servers).
fn is_joined(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v["type"] == "joined")
}

async fn next_text(ws: &mut Client) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Ws::Text(text)))) => return text.to_string(),
            Ok(Some(Ok(Ws::Ping(_) | Ws::Pong(_)))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

#[test]
fn a_third_client_in_a_full_room_is_refused() {
    let signal = Signal::start();
    runtime().block_on(async {
        let mut a = join(&signal.url, "77", "send").await;
        assert!(is_joined(&next_text(&mut a).await));
        let mut b = join(&signal.url, "77", "receive").await;
        assert!(is_joined(&next_text(&mut b).await));
        assert_eq!(next_text(&mut b).await, r#"{"type":"paired"}"#);
        assert_eq!(next_text(&mut a).await, r#"{"type":"paired"}"#);

        let mut c = join(&signal.url, "77", "receive").await;
        assert!(next_text(&mut c).await.contains(r#""kind":"room-full""#));

        // The real binary says so with its own exit code.
        let signal_url = signal.url.clone();
        let out = tokio::task::spawn_blocking(move || {
            spawn(mp().args(["receive", "--signal", &signal_url, "77-x", "--yes"])).wait(LIMIT)
        })
        .await
        .unwrap();
        out.assert_code(exit::ROOM_FULL);

        // Messages flow between the pair only.
        a.send(Ws::binary(b"opaque".to_vec())).await.unwrap();
        match b.next().await {
            Some(Ok(Ws::Binary(bytes))) => assert_eq!(&bytes[..], b"opaque"),
            other => panic!("relay failed: {other:?}"),
        }
    });
}

#[test]
fn the_room_is_forgotten_when_either_side_leaves() {
    let signal = Signal::start();
    runtime().block_on(async {
        let mut a = join(&signal.url, "78", "send").await;
        next_text(&mut a).await;
        let mut b = join(&signal.url, "78", "receive").await;
        next_text(&mut b).await;
        next_text(&mut b).await;
        next_text(&mut a).await;
        drop(a);
        assert_eq!(next_text(&mut b).await, r#"{"type":"peer-left"}"#);
        // The number is free again.
        let mut c = join(&signal.url, "78", "send").await;
        assert!(is_joined(&next_text(&mut c).await));
    });
}

#[test]
fn a_client_that_never_joins_is_dropped_and_garbage_is_refused() {
    let signal = Signal::start();
    runtime().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&signal.url).await.unwrap();
        ws.send(Ws::text(
            "{\"type\":\"join\",\"room\":\"../etc\",\"side\":\"send\"}",
        ))
        .await
        .unwrap();
        assert!(next_text(&mut ws).await.contains("bad-request"));
    });
}

#[test]
fn rooms_time_out() {
    let signal = Signal::start_with(&["--room-timeout", "1"]);
    runtime().block_on(async {
        let mut a = join(&signal.url, "79", "send").await;
        next_text(&mut a).await;
        assert!(next_text(&mut a).await.contains(r#""kind":"timeout""#));
    });
}

#[test]
fn a_room_times_out_from_its_first_client_not_its_last() {
    let signal = Signal::start_with(&["--room-timeout", "2"]);
    // The clock: a server whose rooms close 1 s after they open. Its timeout tells the test
    // that the first client has spent half of its room's time alone.
    let clock = Signal::start_with(&["--room-timeout", "1"]);
    runtime().block_on(async {
        let mut a = join(&signal.url, "80", "send").await;
        next_text(&mut a).await;
        let mut tick = join(&clock.url, "1", "send").await;
        next_text(&mut tick).await; // joined
        assert!(next_text(&mut tick).await.contains(r#""kind":"timeout""#));
        let joined_late = std::time::Instant::now();
        let mut b = join(&signal.url, "80", "receive").await;
        next_text(&mut b).await; // joined
        next_text(&mut b).await; // paired
        next_text(&mut a).await; // paired

        // The room closes for both: the late member hears of its timeout or of its peer's.
        let closing = next_text(&mut b).await;
        assert!(
            closing.contains("timeout") || closing.contains("peer-left"),
            "{closing}"
        );
        assert!(
            joined_late.elapsed() < Duration::from_millis(1600),
            "the late member got the room's remaining time, not a fresh one"
        );
    });
}

/// The port of a `ws://127.0.0.1:PORT` URL.
fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// A STUN Binding request (built with the same codec as the server, webrtc-rs's).
fn binding_request() -> stun::message::Message {
    use stun::message::{Message, TransactionId, BINDING_REQUEST};
    let mut request = Message::new();
    request
        .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .unwrap();
    request
}

#[test]
fn the_server_answers_stun_binding_requests_on_its_own_port() {
    use stun::message::{Getter, Message, BINDING_SUCCESS};
    use stun::xoraddr::XorMappedAddress;

    let signal = Signal::start();
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], port_of(&signal.url)));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    // Something that is not a Binding request first: it must get no answer, so the first
    // datagram back is the answer to the request.
    socket.send_to(b"GET / HTTP/1.1\r\n\r\n", server).unwrap();
    let request = binding_request();
    socket.send_to(&request.raw, server).unwrap();

    let mut buffer = [0u8; 1500];
    let (len, from) = socket.recv_from(&mut buffer).expect("a STUN answer");
    assert_eq!(from, server);
    let mut response = Message::new();
    response.raw = buffer[..len].to_vec();
    response.decode().unwrap();
    assert_eq!(response.typ, BINDING_SUCCESS);
    assert_eq!(response.transaction_id, request.transaction_id);
    let mut mapped = XorMappedAddress::default();
    mapped.get_from(&response).unwrap();
    assert_eq!(
        std::net::SocketAddr::new(mapped.ip, mapped.port),
        socket.local_addr().unwrap()
    );
}

#[test]
fn no_stun_means_no_answer_and_no_stun_port() {
    let signal = Signal::start_with(&["--no-stun"]);
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], port_of(&signal.url)));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Asserting an absence: a short wait is all there is (a STUN answer on loopback takes
    // well under a millisecond).
    socket
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    socket.send_to(&binding_request().raw, server).unwrap();
    let mut buffer = [0u8; 1500];
    // Either nothing comes, or the port-unreachable error of a closed UDP port.
    assert!(socket.recv_from(&mut buffer).is_err());

    runtime().block_on(async {
        let mut a = join(&signal.url, "81", "send").await;
        assert_eq!(next_text(&mut a).await, r#"{"type":"joined"}"#);
    });
}

/// `mp signal` handing out TURN credentials for `turn:127.0.0.1:3478`, its secret given in
/// the environment (so `ps` does not show it).
struct TurnSignal {
    url: String,
    _server: Running,
}

const TURN_SECRET: &str = "north-wind";

impl TurnSignal {
    fn start() -> TurnSignal {
        let server = spawn(
            mp().args(["signal", "--listen", "127.0.0.1:0"])
                .args(["--turn", "turn:127.0.0.1:3478", "--turn-ttl", "600"])
                .env("MP_TURN_SECRET", TURN_SECRET),
        );
        let url = server.wait_line("mp signal: listening on ", STEP);
        TurnSignal {
            url,
            _server: server,
        }
    }
}

/// base64(HMAC-SHA1(secret, username)), computed here without mp's own code.
fn turn_credential(username: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(TURN_SECRET.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[test]
fn joined_names_the_stun_port_and_a_turn_credential_that_verifies() {
    let signal = TurnSignal::start();
    runtime().block_on(async {
        let mut usernames = Vec::new();
        for room in ["82", "83"] {
            let mut ws = join(&signal.url, room, "send").await;
            let joined: serde_json::Value =
                serde_json::from_str(&next_text(&mut ws).await).unwrap();
            assert_eq!(joined["type"], "joined");
            assert_eq!(joined["stun_port"], port_of(&signal.url));
            let turn = &joined["turn"];
            assert_eq!(turn["urls"], serde_json::json!(["turn:127.0.0.1:3478"]));
            let username = turn["username"].as_str().unwrap().to_string();
            let (expiry, tag) = username.split_once(':').unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let expiry: u64 = expiry.parse().unwrap();
            assert!(
                (now + 600 - 60..=now + 600).contains(&expiry),
                "{expiry} vs {now}"
            );
            assert!(!tag.is_empty());
            assert_eq!(turn["credential"], turn_credential(&username));
            usernames.push(username);
        }
        assert_ne!(usernames[0], usernames[1], "each client has its own");
    });
}

#[test]
fn the_client_offers_what_the_server_announced_as_ice_servers() {
    use mp::rendezvous::{IceServer, Rendezvous};
    use mp::signal::client::{Join, SignalClient};

    let signal = TurnSignal::start();
    runtime().block_on(async {
        let Join::Joined(client) =
            SignalClient::join(&signal.url, "84", mp::protocol::pake::Side::Sender)
                .await
                .unwrap()
        else {
            panic!("the room is free");
        };
        let servers = client.ice_servers();
        assert_eq!(servers.len(), 2, "{servers:?}");
        assert_eq!(
            servers[0],
            IceServer {
                urls: vec![format!("stun:127.0.0.1:{}", port_of(&signal.url))],
                ..Default::default()
            }
        );
        assert_eq!(servers[1].urls, vec!["turn:127.0.0.1:3478".to_string()]);
        assert_eq!(servers[1].credential, turn_credential(&servers[1].username));
    });
}

/// What the evil relay does to one message: the side that sent it, its index in that
/// direction, and its bytes; returns the messages to forward instead.
type Tamper = dyn Fn(&str, usize, Vec<u8>) -> Vec<Vec<u8>> + Send + Sync;

/// A signaling server run by an attacker: pairs one sender and one receiver like `mp signal`,
/// records every relayed message, and lets `tamper` rewrite them.
struct EvilRelay {
    url: String,
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl EvilRelay {
    fn start(tamper: Box<Tamper>) -> EvilRelay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let log = recorded.clone();
        let tamper: Arc<Tamper> = Arc::from(tamper);
        let thread = std::thread::spawn(move || {
            runtime().block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let mut peers = Vec::new();
                while peers.len() < 2 {
                    let (stream, _) = listener.accept().await.unwrap();
                    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                    let join = match ws.next().await {
                        Some(Ok(Ws::Text(text))) => text.to_string(),
                        _ => continue,
                    };
                    let side = if join.contains(r#""side":"send""#) {
                        "send"
                    } else {
                        "receive"
                    };
                    ws.send(Ws::text(r#"{"type":"joined"}"#)).await.unwrap();
                    peers.push((side, ws));
                }
                for (_, ws) in &mut peers {
                    ws.send(Ws::text(r#"{"type":"paired"}"#)).await.unwrap();
                }
                let (side_b, b) = peers.pop().unwrap();
                let (side_a, a) = peers.pop().unwrap();
                let (a_tx, a_rx) = a.split();
                let (b_tx, b_rx) = b.split();
                let one = relay(side_a, a_rx, b_tx, tamper.clone(), log.clone());
                let two = relay(side_b, b_rx, a_tx, tamper, log);
                tokio::join!(one, two);
            })
        });
        EvilRelay {
            url,
            recorded,
            _thread: thread,
        }
    }
}

async fn relay(
    side: &'static str,
    mut from: futures_util::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    >,
    mut to: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        Ws,
    >,
    tamper: Arc<Tamper>,
    log: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let mut index = 0;
    while let Some(Ok(message)) = from.next().await {
        if let Ws::Binary(bytes) = message {
            log.lock().unwrap().push(bytes.to_vec());
            for out in tamper(side, index, bytes.to_vec()) {
                if to.send(Ws::binary(out)).await.is_err() {
                    return;
                }
            }
            index += 1;
        }
    }
    let _ = to.send(Ws::text(r#"{"type":"peer-left"}"#)).await;
}

/// Runs one transfer through an evil relay; returns (sender, receiver) outcomes.
fn transfer_through(relay: &EvilRelay, name: &str) -> (Outcome, Outcome, tempfile::TempDir) {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join(name);
    std::fs::write(&path, b"attack at dawn").unwrap();
    let mut sender = mp();
    sender
        .args(["send", "--signal", &relay.url, "--code", "5-purple-otter"])
        // A failed key exchange makes the sender wait for another receiver: not for long here.
        .args(["--timeout", "5"])
        .arg(&path);
    let mut receiver = mp();
    receiver
        .args([
            "receive",
            "--signal",
            &relay.url,
            "5-purple-otter",
            "--yes",
            "-o",
        ])
        .arg(dst.path());
    let sender = spawn(&mut sender);
    let receiver = spawn(&mut receiver);
    let received = receiver.wait(Duration::from_secs(60));
    let sent = sender.wait(Duration::from_secs(60));
    (sent, received, dst)
}

#[test]
fn an_honest_relay_learns_neither_file_name_nor_sdp_nor_address() {
    let relay = EvilRelay::start(Box::new(|_, _, bytes| vec![bytes]));
    let (sent, received, dst) = transfer_through(&relay, "merger-plans.txt");
    sent.assert_code(exit::SUCCESS);
    received.assert_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read(dst.path().join("merger-plans.txt")).unwrap(),
        b"attack at dawn"
    );
    let recorded = relay.recorded.lock().unwrap();
    assert!(recorded.len() >= 8, "pake, hello, offer, accept, two SDPs");
    let everything: Vec<u8> = recorded.concat();
    for secret in [
        &b"merger"[..],
        b"attack",
        b"v=0",
        b"fingerprint",
        b"candidate",
        b"127.0.0.1",
        b"purple",
    ] {
        assert!(
            !everything.windows(secret.len()).any(|w| w == secret),
            "the relay saw {:?} in clear",
            String::from_utf8_lossy(secret)
        );
    }
}

/// Flips one bit of the message `index` sent by `side`.
fn flip(target_side: &'static str, target: usize) -> Box<Tamper> {
    Box::new(move |side, index, mut bytes| {
        if side == target_side && index == target {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
        }
        vec![bytes]
    })
}

fn assert_tamper_detected(sent: &Outcome, received: &Outcome, detector: &Outcome) {
    assert_ne!(sent.code(), 0, "sender must fail: {}", sent.stderr);
    assert_ne!(
        received.code(),
        0,
        "receiver must fail: {}",
        received.stderr
    );
    detector.assert_code(exit::WRONG_CODE);
    assert!(
        detector.last_line().contains("tampered"),
        "{}",
        detector.stderr
    );
}

#[test]
fn a_relay_that_alters_a_key_exchange_message_is_detected() {
    let relay = EvilRelay::start(flip("send", 0));
    let (sent, received, dst) = transfer_through(&relay, "a.txt");
    // The receiver sees a key exchange that does not confirm; the sender sees that, or the
    // receiver leaving first.
    received.assert_code(exit::WRONG_CODE);
    assert_ne!(sent.code(), 0);
    assert!(list(dst.path()).is_empty());
}

#[test]
fn a_relay_that_alters_the_sealed_offer_is_detected() {
    let relay = EvilRelay::start(flip("send", 2));
    let (sent, received, dst) = transfer_through(&relay, "a.txt");
    assert_tamper_detected(&sent, &received, &received);
    assert!(list(dst.path()).is_empty());
}

#[test]
fn a_relay_that_swaps_bytes_in_the_sealed_sdp_cannot_sit_in_the_middle() {
    // Message 3 from the sender is its SDP offer, which carries its DTLS fingerprint;
    // message 3 from the receiver is the SDP answer. Altering either is detected.
    let relay = EvilRelay::start(flip("send", 3));
    let (sent, received, dst) = transfer_through(&relay, "a.txt");
    assert_tamper_detected(&sent, &received, &received);
    assert!(list(dst.path()).is_empty());

    let relay = EvilRelay::start(flip("receive", 3));
    let (sent, received, _) = transfer_through(&relay, "a.txt");
    assert_tamper_detected(&sent, &received, &sent);
}

#[test]
fn a_relay_that_substitutes_an_sdp_from_another_session_is_detected() {
    // The attacker's own SDP, sealed under another session's key, in place of the real one.
    let stolen: Arc<Mutex<Option<Vec<u8>>>> = Arc::new(Mutex::new(None));
    let first = {
        let stolen = stolen.clone();
        EvilRelay::start(Box::new(move |side, index, bytes| {
            if side == "send" && index == 3 {
                *stolen.lock().unwrap() = Some(bytes.clone());
            }
            vec![bytes]
        }))
    };
    let (sent, _, _) = transfer_through(&first, "a.txt");
    sent.assert_code(exit::SUCCESS);
    let stolen = stolen.lock().unwrap().clone().expect("an SDP was relayed");
    let second = EvilRelay::start(Box::new(move |side, index, bytes| {
        if side == "send" && index == 3 {
            vec![stolen.clone()]
        } else {
            vec![bytes]
        }
    }));
    let (sent, received, _) = transfer_through(&second, "a.txt");
    assert_tamper_detected(&sent, &received, &received);
}

#[test]
fn a_relay_that_replays_a_message_is_detected() {
    // Replay: the sealed offer twice.
    let relay = EvilRelay::start(Box::new(|side, index, bytes| {
        if side == "send" && index == 2 {
            vec![bytes.clone(), bytes]
        } else {
            vec![bytes]
        }
    }));
    let (sent, received, _) = transfer_through(&relay, "a.txt");
    // The duplicate arrives where the SDP offer is expected.
    assert_tamper_detected(&sent, &received, &received);
}

// ---- The attacks of the security review (issue 11), each reproduced at its size. ----

/// A message asking the server for a room.
async fn allocate(url: &str, side: &str) -> Client {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let allocate = format!(r#"{{"type":"allocate","side":"{side}"}}"#);
    ws.send(Ws::text(allocate)).await.unwrap();
    ws
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn ninety_nine_squatters_no_longer_deny_generated_codes() {
    // Before: 99 idle clients in rooms 1..99 made `mp send` fail in 9 ms ("every room tried
    // is busy"), and squatters on the receive side took each new sender's SPAKE2 message.
    // Now the server allocates the lowest free room, so a squatter is never paired with a
    // sender that did not choose its room. (Per-address limits are raised here: one address
    // plays 99 attackers.)
    let signal = Signal::start_with(&[
        "--max-waiting-per-addr",
        "1000",
        "--joins-per-minute",
        "1000",
    ]);
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("a.txt");
    std::fs::write(&file, b"not for squatters").unwrap();
    runtime().block_on(async {
        let mut squatters = Vec::new();
        for room in 1..=99 {
            let side = if room % 2 == 0 { "send" } else { "receive" };
            let mut ws = join(&signal.url, &room.to_string(), side).await;
            assert!(is_joined(&next_text(&mut ws).await));
            squatters.push(ws);
        }
        // The server picks the lowest free number: 100.
        let mut first = allocate(&signal.url, "send").await;
        let joined = json(&next_text(&mut first).await);
        assert_eq!(joined["type"], "joined");
        assert_eq!(joined["room"], "100");
        drop(first);

        let signal_url = signal.url.clone();
        let started = std::time::Instant::now();
        let (sent, received) = tokio::task::spawn_blocking(move || {
            let sender = spawn(
                mp().args(["send", "--json", "--signal", &signal_url])
                    .arg(&file),
            );
            let code = sender.wait_event("code", STEP)["code"]
                .as_str()
                .unwrap()
                .to_string();
            let receiver = spawn(
                mp().args(["receive", "--signal", &signal_url, &code, "--yes", "-o"])
                    .arg(dst.path()),
            );
            let received = receiver.wait(LIMIT);
            (sender.wait(LIMIT), (received, code, dst))
        })
        .await
        .unwrap();
        let (received, code, dst) = received;
        sent.assert_code(exit::SUCCESS);
        received.assert_code(exit::SUCCESS);
        let room: u32 = code.split('-').next().unwrap().parse().unwrap();
        assert!(room >= 100, "{code}: a squatted room");
        assert_eq!(
            std::fs::read(dst.path().join("a.txt")).unwrap(),
            b"not for squatters"
        );
        eprintln!("transfer with 99 squatters: {:?}", started.elapsed());
        // No squatter heard of anyone.
        for ws in &mut squatters {
            let heard = tokio::time::timeout(Duration::from_millis(1), ws.next()).await;
            assert!(heard.is_err(), "a squatter got {heard:?}");
        }
    });
}

#[test]
fn allocated_rooms_are_the_lowest_free_and_reused() {
    let signal = Signal::start();
    runtime().block_on(async {
        let mut a = allocate(&signal.url, "send").await;
        assert_eq!(json(&next_text(&mut a).await)["room"], "1");
        let mut b = allocate(&signal.url, "send").await;
        assert_eq!(json(&next_text(&mut b).await)["room"], "2");
        // A custom code's room counts as taken too.
        let mut c = join(&signal.url, "3", "receive").await;
        let joined = json(&next_text(&mut c).await);
        assert_eq!(joined["type"], "joined");
        assert!(
            joined.get("room").is_none(),
            "only allocate is told its room"
        );
        let mut d = allocate(&signal.url, "send").await;
        assert_eq!(json(&next_text(&mut d).await)["room"], "4");
        // The receiver of an allocated room joins it by number and pairs.
        let mut r = join(&signal.url, "2", "receive").await;
        next_text(&mut r).await;
        assert_eq!(next_text(&mut r).await, r#"{"type":"paired"}"#);
        assert_eq!(next_text(&mut b).await, r#"{"type":"paired"}"#);
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut e = allocate(&signal.url, "send").await;
        assert_eq!(
            json(&next_text(&mut e).await)["room"],
            "1",
            "1 is free again"
        );
    });
}

#[test]
fn one_address_may_keep_only_so_many_rooms_waiting_and_join_only_so_often() {
    let signal = Signal::start_with(&["--max-waiting-per-addr", "5"]);
    runtime().block_on(async {
        let mut waiting = Vec::new();
        for _ in 0..5 {
            let mut ws = allocate(&signal.url, "send").await;
            assert!(is_joined(&next_text(&mut ws).await));
            waiting.push(ws);
        }
        let mut refused = allocate(&signal.url, "send").await;
        let error = json(&next_text(&mut refused).await);
        assert_eq!(error["kind"], "busy", "{error}");
        // Joining a waiting room does not open one: it pairs, and frees a place.
        let mut r = join(&signal.url, "1", "receive").await;
        assert!(is_joined(&next_text(&mut r).await));
        let mut again = allocate(&signal.url, "send").await;
        assert!(is_joined(&next_text(&mut again).await));
    });

    let signal = Signal::start_with(&["--joins-per-minute", "10"]);
    runtime().block_on(async {
        for i in 0..10 {
            let mut ws = join(&signal.url, &(500 + i).to_string(), "send").await;
            assert!(is_joined(&next_text(&mut ws).await));
        }
        let mut ws = join(&signal.url, "600", "send").await;
        let error = json(&next_text(&mut ws).await);
        assert_eq!(error["kind"], "busy", "{error}");
    });
}

#[test]
fn a_room_nobody_joins_lives_briefly() {
    let signal = Signal::start_with(&["--wait-timeout", "1"]);
    runtime().block_on(async {
        let started = std::time::Instant::now();
        let mut a = allocate(&signal.url, "send").await;
        next_text(&mut a).await;
        let error = json(&next_text(&mut a).await);
        assert_eq!(error["kind"], "timeout");
        assert_eq!(error["message"], "nobody joined the room in time");
        assert!(started.elapsed() < Duration::from_secs(5));
        // A paired room has the whole --room-timeout (600 s).
        let mut s = join(&signal.url, "9", "send").await;
        next_text(&mut s).await;
        let mut r = join(&signal.url, "9", "receive").await;
        next_text(&mut r).await;
        next_text(&mut r).await;
        next_text(&mut s).await;
        let quiet = tokio::time::timeout(Duration::from_millis(1500), s.next()).await;
        assert!(quiet.is_err(), "the paired room closed: {quiet:?}");
    });
}

/// `mp signal` started with its open-file limit set to `soft`/`hard` (as `ulimit -n` would).
fn signal_with_open_files(soft: u64, hard: u64, extra: &[&str]) -> (Signal, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = mp();
    cmd.args(["signal", "--listen", "127.0.0.1:0"]).args(extra);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let server = spawn(&mut cmd);
    let url = server.wait_line("mp signal: listening on ", STEP);
    server.wait_line("mp signal: serving at most ", STEP);
    let said = server.stderr_so_far();
    (Signal::from_running(url, server), said)
}

#[test]
fn the_open_file_limit_is_raised_and_max_clients_capped_to_it() {
    // Before: under `ulimit -n 1024`, ~1,012 idle clients exhausted the descriptors and the
    // next clients timed out unanswered. Now the soft limit is raised to the hard one, and
    // --max-clients is capped to what the descriptors allow, so extra clients hear `busy`.
    let (_raised, said) = signal_with_open_files(100, 400, &[]);
    assert!(said.contains("open-file limit is 400"), "{said}");

    let (signal, said) = signal_with_open_files(
        200,
        200,
        &[
            "--max-waiting-per-addr",
            "1000",
            "--joins-per-minute",
            "1000",
        ],
    );
    let capacity: usize = said
        .split("serving at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no capacity said: {said}"));
    assert!((50..200).contains(&capacity), "{said}");
    runtime().block_on(async {
        let mut idle = Vec::new();
        for room in 0..capacity {
            let mut ws = join(&signal.url, &(1000 + room).to_string(), "send").await;
            assert!(is_joined(&next_text(&mut ws).await), "client {room}");
            idle.push(ws);
        }
        for _ in 0..10 {
            let started = std::time::Instant::now();
            let mut ws = join(&signal.url, "7", "send").await;
            let error = json(&next_text(&mut ws).await);
            assert_eq!(error["kind"], "busy", "{error}");
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        // Room again once one leaves.
        drop(idle.pop());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut ws = join(&signal.url, "7", "send").await;
        assert!(is_joined(&next_text(&mut ws).await));
    });
}

/// The resident memory of process `pid`, in bytes (VmRSS of /proc/PID/status).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_message_larger_than_the_largest_envelope_ends_the_session() {
    let signal = Signal::start();
    runtime().block_on(async {
        let mut a = join(&signal.url, "90", "send").await;
        next_text(&mut a).await;
        let mut b = join(&signal.url, "90", "receive").await;
        next_text(&mut b).await;
        next_text(&mut b).await;
        next_text(&mut a).await;
        // The largest sealed envelope passes.
        let largest = vec![7u8; mp::protocol::seal::MAX_ENVELOPE];
        a.send(Ws::binary(largest.clone())).await.unwrap();
        match tokio::time::timeout(STEP, b.next()).await {
            Ok(Some(Ok(Ws::Binary(bytes)))) => assert_eq!(bytes.len(), largest.len()),
            other => panic!("relay failed: {other:?}"),
        }
        // 40 KiB is no mp message: the sender is dropped, and its peer told.
        let _ = a.send(Ws::binary(vec![7u8; 40 * 1024])).await;
        assert_eq!(next_text(&mut b).await, r#"{"type":"peer-left"}"#);
    });
}

#[test]
fn pumping_pairs_that_read_slowly_do_not_grow_the_server() {
    // Before: each member could have 64 messages of 64 KiB queued; 100 attacker pairs pumping
    // while not reading took the server from 6 to 430 MiB. Now queues are bounded in bytes
    // (per member and in total) and messages to the largest envelope.
    const PAIRS: usize = 100;
    const PUMP_FOR: Duration = Duration::from_secs(4);
    const BOUND: u64 = 160 << 20;
    let signal = Signal::start_with(&["--joins-per-minute", "1000"]);
    let pid = signal.process().pid();
    let before = rss(pid);
    let peak = runtime().block_on(async {
        let mut members = Vec::new();
        for pair in 0..PAIRS {
            let room = (2000 + pair).to_string();
            let mut a = join(&signal.url, &room, "send").await;
            next_text(&mut a).await;
            let mut b = join(&signal.url, &room, "receive").await;
            next_text(&mut b).await;
            next_text(&mut b).await;
            next_text(&mut a).await;
            members.push(a);
            members.push(b);
        }
        let deadline = tokio::time::Instant::now() + PUMP_FOR;
        let mut pumps = Vec::new();
        for mut ws in members {
            pumps.push(tokio::spawn(async move {
                // Write as fast as the server takes it, never read; bounded in count and time.
                let frame = vec![0x5a; mp::protocol::seal::MAX_ENVELOPE];
                for _ in 0..400 {
                    let send = ws.send(Ws::binary(frame.clone()));
                    match tokio::time::timeout_at(deadline, send).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                }
                ws
            }));
        }
        let mut peak = 0;
        while tokio::time::Instant::now() < deadline {
            peak = peak.max(rss(pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for pump in pumps {
            drop(pump.await);
        }
        peak.max(rss(pid))
    });
    eprintln!(
        "server RSS: {} MiB before, {} MiB at peak with {PAIRS} pumping pairs",
        before >> 20,
        peak >> 20
    );
    assert!(peak < BOUND, "the server grew to {} MiB", peak >> 20);
}

/// Raises this test process's open-file soft limit to its hard limit.
fn raise_own_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Whether the server still holds `socket` open (nothing to read yet, no end of stream).
fn held_open(socket: &std::net::TcpStream) -> bool {
    use std::io::Read;
    socket.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let mut reader = socket;
    matches!(reader.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn slowloris_takes_no_client_place_and_is_cut_short() {
    // Before: the client's place was taken before the WebSocket handshake, and 1,100
    // half-open sockets delayed a legitimate transfer by 8.7 s. Now handshakes have their own
    // places (8 per address, the oldest giving way; 256 in all), none of a client's, and a
    // short timeout.
    const HALF_OPEN: usize = 1_100;
    assert!(raise_own_open_files() > HALF_OPEN as u64 + 100);
    let signal = Signal::start_with(&["--max-clients", "50", "--handshake-timeout", "2"]);
    let addr: std::net::SocketAddr = signal.url.trim_start_matches("ws://").parse().unwrap();
    let started = std::time::Instant::now();
    let mut attackers = Vec::new();
    for _ in 0..HALF_OPEN {
        use std::io::Write;
        let mut socket = std::net::TcpStream::connect_timeout(&addr, STEP).unwrap();
        // The request head, never finished.
        let _ = socket.write_all(b"GET / HTTP/1.1\r\nHost: mp\r\nUpgrade: websocket\r\n");
        attackers.push(socket);
    }
    let opened = started.elapsed();
    // A legitimate pair, from the same address even, meets and relays at once.
    let legit = std::time::Instant::now();
    runtime().block_on(async {
        let mut a = join(&signal.url, "31", "send").await;
        assert!(is_joined(&next_text(&mut a).await));
        let mut b = join(&signal.url, "31", "receive").await;
        assert!(is_joined(&next_text(&mut b).await));
        assert_eq!(next_text(&mut b).await, r#"{"type":"paired"}"#);
        assert_eq!(next_text(&mut a).await, r#"{"type":"paired"}"#);
        a.send(Ws::binary(b"hi".to_vec())).await.unwrap();
        assert!(matches!(b.next().await, Some(Ok(Ws::Binary(_)))));
    });
    let legit = legit.elapsed();
    eprintln!("{HALF_OPEN} half-open sockets opened in {opened:?}; a pair met in {legit:?}");
    assert!(legit < Duration::from_secs(2), "{legit:?}");
    std::thread::sleep(Duration::from_millis(300));
    let held = attackers.iter().filter(|s| held_open(s)).count();
    assert!(held <= 8, "{held} half-open sockets still held");
    // And those few for at most the handshake timeout.
    std::thread::sleep(Duration::from_secs(3));
    let held = attackers.iter().filter(|s| held_open(s)).count();
    assert_eq!(held, 0, "half-open sockets outlived the handshake timeout");
}

/// `GET path` on the server's port, over plain HTTP: the whole response.
fn http_get(url: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("ws://");
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    write!(socket, "GET {path} HTTP/1.1\r\nHost: mp\r\n\r\n").unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    response
}

/// The value of an unlabelled (or exactly labelled) sample in Prometheus text.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn health_and_aggregate_metrics_are_served_on_the_same_port() {
    let signal = Signal::start_with(&["--joins-per-minute", "3"]);
    let health = http_get(&signal.url, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    runtime().block_on(async {
        let mut a = allocate(&signal.url, "send").await;
        next_text(&mut a).await;
        let mut b = join(&signal.url, "1", "receive").await;
        next_text(&mut b).await;
        next_text(&mut b).await;
        next_text(&mut a).await;
        a.send(Ws::binary(vec![1u8; 1000])).await.unwrap();
        b.next().await.unwrap().unwrap();
        let mut c = join(&signal.url, "5", "send").await;
        next_text(&mut c).await;
        let mut refused = join(&signal.url, "6", "send").await;
        assert!(next_text(&mut refused).await.contains("busy"));

        let metrics = http_get(&signal.url, "/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("Content-Type: text/plain; version=0.0.4"));
        assert_eq!(sample(&metrics, "mp_signal_rooms"), 2);
        assert_eq!(sample(&metrics, "mp_signal_rooms_waiting"), 1);
        assert_eq!(sample(&metrics, "mp_signal_clients"), 3);
        assert_eq!(sample(&metrics, "mp_signal_pairings_total"), 1);
        assert_eq!(sample(&metrics, "mp_signal_rooms_allocated_total"), 1);
        assert_eq!(sample(&metrics, "mp_signal_relayed_messages_total"), 1);
        assert_eq!(sample(&metrics, "mp_signal_relayed_bytes_total"), 1000);
        assert_eq!(
            sample(
                &metrics,
                "mp_signal_limit_hits_total{limit=\"joins_per_addr\"}"
            ),
            1
        );
        // Nothing in it names a client, a room or a code.
        assert!(!metrics.contains("127.0.0.1"));
        for line in metrics.lines().filter(|l| l.starts_with("mp_signal")) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(!line.contains("room=") && !line.contains("addr="), "{name}");
        }
    });
    // And the server said nothing about any of it.
    let said = signal.process().stderr_so_far();
    let startup = ["listening on", "answering STUN", "serving at most"];
    for line in said.lines() {
        assert!(
            startup
                .iter()
                .any(|s| line.starts_with(&format!("mp signal: {s}"))),
            "the server said {line:?}"
        );
    }
}

#[test]
fn sigterm_lets_paired_rooms_finish_and_ends_waiting_ones() {
    let signal = Signal::start();
    runtime().block_on(async {
        let mut a = join(&signal.url, "40", "send").await;
        next_text(&mut a).await;
        let mut b = join(&signal.url, "40", "receive").await;
        next_text(&mut b).await;
        next_text(&mut b).await;
        next_text(&mut a).await;
        let mut alone = join(&signal.url, "41", "send").await;
        next_text(&mut alone).await;

        let pid = signal.process().pid() as i32;
        // SAFETY: a signal to the server this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let error = json(&next_text(&mut alone).await);
        assert_eq!(error["kind"], "busy", "{error}");
        // No new client.
        let addr = signal.url.trim_start_matches("ws://").to_string();
        let refused = tokio::net::TcpStream::connect(&addr).await;
        assert!(refused.is_err(), "still listening");
        // The pair goes on.
        a.send(Ws::binary(b"sdp".to_vec())).await.unwrap();
        match tokio::time::timeout(STEP, b.next()).await {
            Ok(Some(Ok(Ws::Binary(bytes)))) => assert_eq!(&bytes[..], b"sdp"),
            other => panic!("relay failed after SIGTERM: {other:?}"),
        }
        drop(a);
        drop(b);
    });
    let stopped = std::time::Instant::now();
    let out = signal.into_process().wait(LIMIT);
    out.assert_code(0);
    assert!(stopped.elapsed() < Duration::from_secs(10));
    assert!(out.stderr.contains("mp signal: stopped"), "{}", out.stderr);
}

// ---- TLS: `mp signal --tls-cert/--tls-key` serves wss:// and https:// itself. ----

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files in a new folder:
/// (folder, certificate, key).
fn self_signed() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    certificate(false)
}

/// The same, marked as a CA if `ca`, as `openssl req -x509` makes them.
fn certificate(ca: bool) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let made = params.self_signed(&key_pair).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.pem()).unwrap();
    std::fs::write(&key, key_pair.serialize_pem()).unwrap();
    (dir, cert, key)
}

fn tls_signal(cert: &std::path::Path, key: &std::path::Path) -> Signal {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let signal = Signal::start_with(&["--tls-cert", cert, "--tls-key", key]);
    assert!(signal.url.starts_with("wss://127.0.0.1:"), "{}", signal.url);
    signal
}

#[test]
fn a_transfer_goes_through_wss_with_a_self_signed_certificate() {
    // Marked as a CA, as `openssl req -x509` makes them: no valid end certificate for webpki,
    // so only the pin of --signal-ca lets it through.
    let (_certs, cert, key) = certificate(true);
    let signal = tls_signal(&cert, &key);
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let file = src.path().join("over-tls.bin");
    let content = random_bytes(200_000, 11);
    std::fs::write(&file, &content).unwrap();

    // Without the certificate, the client refuses the server, and says why.
    let code = fresh_code();
    let untrusted = spawn(&mut send(&signal, &code, &file)).wait(LIMIT);
    untrusted.assert_code(exit::SERVER);
    assert!(
        untrusted
            .last_line()
            .contains("cannot reach the signaling server")
            && untrusted.last_line().contains("--signal-ca"),
        "{}",
        untrusted.last_line()
    );

    // With it (MP_SIGNAL_CA on one side, --signal-ca on the other), it works.
    let code = fresh_code();
    let sender = spawn(send(&signal, &code, &file).env("MP_SIGNAL_CA", &cert));
    let receiver = spawn(
        receive(&signal, &code, dst.path())
            .arg("--yes")
            .arg("--signal-ca")
            .arg(&cert),
    );
    receiver.wait(LIMIT).assert_code(exit::SUCCESS);
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    assert!(std::fs::read(dst.path().join("over-tls.bin")).unwrap() == content);
}

#[test]
fn a_plain_client_on_the_tls_port_is_told_to_use_wss() {
    let (_certs, cert, key) = self_signed();
    let signal = tls_signal(&cert, &key);
    let plain = signal.url.replace("wss://", "ws://");
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.txt");
    std::fs::write(&file, b"x").unwrap();
    let out = spawn(
        mp().args(["send", "--signal", &plain, "--code", &fresh_code()])
            .arg(&file),
    )
    .wait(LIMIT);
    out.assert_code(exit::SERVER);
    assert!(
        out.last_line().contains("use wss://"),
        "{}",
        out.last_line()
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);

    // And a wss:// client on a plain server hears that TLS is not spoken there, at once.
    let plain_server = Signal::start();
    let tls_url = plain_server.url.replace("ws://", "wss://");
    let started = std::time::Instant::now();
    let out = spawn(
        mp().args(["send", "--signal", &tls_url, "--code", &fresh_code()])
            .arg(&file),
    )
    .wait(LIMIT);
    out.assert_code(exit::SERVER);
    assert!(
        out.last_line().contains("speaks TLS"),
        "{}",
        out.last_line()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "waited for a timeout"
    );
}

/// `GET path` over TLS, trusting `ca`: the whole response.
async fn https_get(url: &str, ca: &std::path::Path, path: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let addr = url.trim_start_matches("wss://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = tls.read_to_end(&mut response);
    tokio::time::timeout(STEP, read).await.unwrap().unwrap();
    String::from_utf8(response).unwrap()
}

#[test]
fn the_web_page_and_health_are_served_over_https() {
    let (_certs, cert, key) = self_signed();
    let signal = tls_signal(&cert, &key);
    runtime().block_on(async {
        let page = https_get(&signal.url, &cert, "/").await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("Content-Security-Policy: default-src 'none'"));
        assert!(page.contains("<script type=\"module\" src=\"app.js\">"));
        let health = https_get(&signal.url, &cert, "/healthz").await;
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    });
}

#[test]
fn missing_or_wrong_tls_files_are_one_line_and_an_exit_code() {
    let (certs, cert, key) = self_signed();
    let missing = certs.path().join("missing.pem");
    let run = |cert: &std::path::Path, key: &std::path::Path| {
        spawn(
            mp().args(["signal", "--listen", "127.0.0.1:0", "--tls-cert"])
                .arg(cert)
                .arg("--tls-key")
                .arg(key),
        )
        .wait(LIMIT)
    };
    let out = run(&missing, &key);
    out.assert_code(exit::LOCAL_IO);
    assert!(out.last_line().contains("cannot read the TLS certificate"));
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    // A key where the certificate should be, and the reverse.
    let out = run(&key, &cert);
    out.assert_code(exit::USAGE);
    assert!(
        out.last_line().contains("holds no certificate"),
        "{}",
        out.stderr
    );
    let out = run(&cert, &cert);
    out.assert_code(exit::USAGE);
    assert!(
        out.last_line().contains("holds no private key"),
        "{}",
        out.stderr
    );
    // A key of another certificate.
    let (_other, _, other_key) = self_signed();
    let out = run(&cert, &other_key);
    out.assert_code(exit::USAGE);
    assert!(out.last_line().contains("does not fit"), "{}", out.stderr);
    // And the client's --signal-ca likewise.
    let out = spawn(
        mp().args([
            "receive",
            "--signal",
            "wss://127.0.0.1:9",
            "7-a-b",
            "--signal-ca",
        ])
        .arg(&missing),
    )
    .wait(LIMIT);
    out.assert_code(exit::LOCAL_IO);
    assert!(
        out.last_line().contains("cannot read the CA file"),
        "{}",
        out.stderr
    );
}

// ---- Behind a reverse proxy: --trust-proxy. ----

/// Joins `room` with `header: value` in the WebSocket request, as a proxy would forward it.
async fn join_via(url: &str, header: &str, value: &str, room: &str) -> Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let join = format!(r#"{{"type":"join","room":"{room}","side":"send"}}"#);
    ws.send(Ws::text(join)).await.unwrap();
    ws
}

#[test]
fn behind_a_trusted_proxy_limits_count_the_forwarded_address() {
    let xff = "x-forwarded-for";
    // Trusted: the rightmost entry is the client; what the client wrote before it is not.
    let signal = Signal::start_with(&["--trust-proxy", "--max-waiting-per-addr", "1"]);
    runtime().block_on(async {
        let mut a = join_via(&signal.url, xff, "192.0.2.1", "5").await;
        assert!(is_joined(&next_text(&mut a).await));
        let mut again = join_via(&signal.url, xff, "198.51.100.7, 192.0.2.1", "6").await;
        assert!(next_text(&mut again).await.contains("busy"));
        let mut spoof = join_via(&signal.url, xff, "192.0.2.2, 192.0.2.1", "7").await;
        assert!(next_text(&mut spoof).await.contains("busy"));
        let mut other = join_via(&signal.url, xff, "192.0.2.2", "8").await;
        assert!(is_joined(&next_text(&mut other).await));
        // A proxy that names the address with a port, or none at all (the proxy's own).
        let mut port = join_via(&signal.url, xff, "192.0.2.3:4711", "9").await;
        assert!(is_joined(&next_text(&mut port).await));
        let mut direct = join(&signal.url, "10", "send").await;
        assert!(is_joined(&next_text(&mut direct).await));
    });
    // RFC 7239, when the proxy writes that one instead.
    let signal = Signal::start_with(&["--trust-proxy=forwarded", "--max-waiting-per-addr", "1"]);
    runtime().block_on(async {
        let fwd = "forwarded";
        let mut a = join_via(&signal.url, fwd, r#"for="[2001:db8:1:2::1]:4711""#, "5").await;
        assert!(is_joined(&next_text(&mut a).await));
        // The same /64.
        let same = "for=192.0.2.9, for=\"[2001:db8:1:2::99]\";proto=https";
        let mut b = join_via(&signal.url, fwd, same, "6").await;
        assert!(next_text(&mut b).await.contains("busy"));
        // X-Forwarded-For is not the header it was told to trust.
        let mut c = join_via(&signal.url, xff, "192.0.2.1", "7").await;
        assert!(is_joined(&next_text(&mut c).await));
        let mut d = join_via(&signal.url, xff, "192.0.2.2", "8").await;
        assert!(next_text(&mut d).await.contains("busy"));
    });
    // Not trusted (the default): the header changes nothing.
    let signal = Signal::start_with(&["--max-waiting-per-addr", "1"]);
    runtime().block_on(async {
        let mut a = join_via(&signal.url, xff, "192.0.2.1", "5").await;
        assert!(is_joined(&next_text(&mut a).await));
        let mut b = join_via(&signal.url, xff, "192.0.2.2", "6").await;
        assert!(next_text(&mut b).await.contains("busy"));
    });
}

#[test]
fn handshake_timeouts_and_broken_requests_are_counted() {
    use std::io::Write;
    let signal = Signal::start_with(&["--handshake-timeout", "1"]);
    let addr = signal.url.trim_start_matches("ws://").to_string();
    // One connection that never finishes its request, one that sends no HTTP at all.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let mut broken = std::net::TcpStream::connect(&addr).unwrap();
    broken.write_all(b"\x00\x01 not http\r\n\r\n").unwrap();
    let deadline = std::time::Instant::now() + STEP;
    let timeout = "mp_signal_limit_hits_total{limit=\"handshake_timeout\"}";
    let metrics = loop {
        let metrics = http_get(&signal.url, "/metrics");
        if sample(&metrics, timeout) == 1 || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sample(&metrics, timeout), 1, "{metrics}");
    assert_eq!(sample(&metrics, "mp_signal_broken_requests_total"), 1);
    // The /metrics requests before this one.
    assert!(sample(&metrics, "mp_signal_http_requests_total") >= 1);
    assert_eq!(sample(&metrics, "mp_signal_tls_failures_total"), 0);
    assert!(sample(&metrics, "mp_signal_max_clients") > 0);
    assert_eq!(sample(&metrics, "mp_signal_relay_queued_bytes"), 0);
    assert!(sample(&metrics, "process_open_fds") >= 3);
    assert!(sample(&metrics, "process_max_fds") >= sample(&metrics, "process_open_fds"));
    assert!(sample(&metrics, "process_resident_memory_bytes") > 1 << 20);
}
