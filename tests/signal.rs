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
