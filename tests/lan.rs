//! Meeting on the local network with nothing set up (no `--signal`, no `MP_SIGNAL`): real `mp`
//! processes in two network namespaces joined by a veth pair, finding each other with mDNS.
//!
//! Every packet of these tests stays inside namespaces the test creates and removes (a
//! [`Lan`]): mDNS must never reach this machine's own interfaces. Creating namespaces needs
//! root and `ip` (iproute2); without them the tests fail and say so, rather than skip.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Three network namespaces: `a` and `b` joined by a veth pair (`lan0` in each) with the
/// addresses 10.77.0.1/24 and 10.77.0.2/24 (and fd77::1/64, fd77::2/64), and `c` joined to `a`
/// by another (`side0`: 10.78.0.1/24 in `a`, 10.78.0.2/24 in `c`). Each has its loopback up.
/// Removed on drop.
struct Lan {
    a: String,
    b: String,
    c: String,
}

static NEXT_LAN: AtomicU32 = AtomicU32::new(1);

const A4: &str = "10.77.0.1";
const B4: &str = "10.77.0.2";
const A6: &str = "fd77::1";
const B6: &str = "fd77::2";

/// Runs `ip ARGS`, failing the test with its output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fails the test, saying why, when namespaces cannot be made here.
fn require_namespaces() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "the LAN tests create network namespaces, which needs root: run them as root"
    );
    let found = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "the LAN tests need `ip` (iproute2) to create network namespaces: install iproute2"
    );
}

/// Joins namespaces `one` and `two` with a veth pair named `name` in both, giving each end
/// its addresses (with prefix length), and brings both ends up.
fn link(name: &str, one: (&str, &[&str]), two: (&str, &[&str])) {
    // Both ends are made inside the namespaces: nothing appears in this machine's own.
    ip(&[
        "-n", one.0, "link", "add", name, "type", "veth", "peer", "name", name, "netns", two.0,
    ]);
    for (ns, addresses) in [one, two] {
        for address in addresses {
            ip(&["-n", ns, "addr", "add", address, "dev", name]);
        }
        ip(&["-n", ns, "link", "set", name, "up"]);
    }
}

/// Waits until the link `name` in `ns` is settled: operationally up (a fresh veth is only
/// after the kernel's next link check, up to a second later) with its IPv6 link-local address
/// in place. mDNS leaves out a link that is not up and probes its names again when an address
/// appears, so the tests start on a plugged-in cable, ready.
fn settled(ns: &str, name: &str) {
    let show = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let up = show(&["-n", ns, "-o", "link", "show", name]).contains("state UP");
        let tentative = show(&["-n", ns, "-6", "addr", "show", "dev", name, "tentative"]);
        let link_local = show(&["-n", ns, "-6", "addr", "show", "dev", name, "scope", "link"]);
        if up && tentative.trim().is_empty() && !link_local.trim().is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} in {ns} never settled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Lan {
    fn new() -> Lan {
        require_namespaces();
        let n = NEXT_LAN.fetch_add(1, Ordering::Relaxed);
        let name = |side: &str| format!("mplan-{}-{n}-{side}", std::process::id());
        let lan = Lan {
            a: name("a"),
            b: name("b"),
            c: name("c"),
        };
        // From here on, Drop removes whatever was made.
        for ns in [&lan.a, &lan.b, &lan.c] {
            // One left by a killed test process that had the same pid: no live process owns it.
            if Path::new("/run/netns").join(ns).exists() {
                ip(&["netns", "del", ns]);
            }
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            // No duplicate address detection on these private links: their IPv6 addresses
            // are usable at once instead of a second or two later.
            let no_dad = "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad";
            ip(&["netns", "exec", ns, "sh", "-c", no_dad]);
        }
        let (a4, a6) = (format!("{A4}/24"), format!("{A6}/64"));
        let (b4, b6) = (format!("{B4}/24"), format!("{B6}/64"));
        link("lan0", (&lan.a, &[&a4, &a6]), (&lan.b, &[&b4, &b6]));
        link(
            "side0",
            (&lan.a, &["10.78.0.1/24"]),
            (&lan.c, &["10.78.0.2/24"]),
        );
        for (ns, name) in [
            (&lan.a, "lan0"),
            (&lan.b, "lan0"),
            (&lan.a, "side0"),
            (&lan.c, "side0"),
        ] {
            settled(ns, name);
        }
        lan
    }

    /// `mp` in namespace `ns`, with no signaling server and no bind address from the
    /// environment (add `MP_BIND` yourself), no colour, no stdin, output piped.
    fn mp(&self, ns: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(mp_bin())
            .env_remove("MP_SIGNAL")
            .env_remove("MP_BIND")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so the pair.
        for ns in [&self.a, &self.b, &self.c] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The `t` (seconds since that `mp` started) of an event.
fn t(event: &Value) -> f64 {
    event["t"].as_f64().expect("events carry t")
}

/// Sends `content` from namespace `a` to `b`, each side binding `bind_a` / `bind_b` when
/// given; checks the bytes and both exit codes and returns the receiver's events.
fn transfer(lan: &Lan, bind_a: Option<&str>, bind_b: Option<&str>, content: &[u8]) -> Value {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("lan.bin");
    std::fs::write(&path, content).unwrap();

    let mut send = lan.mp(&lan.a);
    send.args(["--json", "send"]).arg(&path);
    if let Some(bind) = bind_a {
        send.env("MP_BIND", bind);
    }
    let sender = spawn(&mut send);
    // The code is printed once mDNS has announced it.
    let code = sender.wait_event("code", STEP);
    let code = code["code"].as_str().unwrap().to_string();

    let mut receive = lan.mp(&lan.b);
    receive
        .args(["--json", "receive", &code, "--yes", "-o"])
        .arg(dst.path());
    if let Some(bind) = bind_b {
        receive.env("MP_BIND", bind);
    }
    let receiver = spawn(&mut receive);
    let received = receiver.wait(LIMIT);
    let sent = sender.wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    sent.assert_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read(dst.path().join("lan.bin")).unwrap(),
        content,
        "the received bytes differ"
    );

    let receiver_events = events(&received.stdout);
    let sender_events = events(&sent.stdout);
    let find = |events: &[Value], name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name} event in {events:?}"))
            .clone()
    };
    // The shutdown of the hosted rendezvous and of mDNS is bounded: the sender exits promptly.
    let finished = t(&find(&sender_events, "finished"));
    let lingered = sent.elapsed.as_secs_f64() - finished;
    assert!(lingered < 2.0, "the sender took {lingered:.2} s to exit");
    let first_byte = find(&receiver_events, "first-byte");
    eprintln!(
        "LAN transfer of {} bytes: code announced after {:.3} s; receiver: paired after {:.3} s, \
         first byte after {:.3} s, done in {:.3} s; sender exited {lingered:.3} s after finishing",
        content.len(),
        t(&find(&sender_events, "code")),
        t(&find(&receiver_events, "paired")),
        t(&first_byte),
        received.elapsed.as_secs_f64(),
    );
    first_byte
}

/// No server anywhere: the sender (every non-loopback address, a generated code) hosts and
/// announces; the receiver (bound to its LAN address) finds it, and ICE connects the two
/// namespaces directly.
#[test]
fn a_transfer_between_two_machines_needs_nothing_set_up() {
    let lan = Lan::new();
    transfer(&lan, None, Some(B4), &random_bytes(1 << 20, 77));
}

/// The same over IPv6 only: mDNS, the hosted rendezvous and ICE on fd77::/64.
#[test]
fn a_lan_transfer_works_over_ipv6_alone() {
    let lan = Lan::new();
    transfer(&lan, Some(A6), Some(B6), b"over IPv6");
}

/// A code nobody announces: the receiver gives up after `--timeout` with exit 5 (timeout) and
/// says how to meet through a signaling server instead.
#[test]
fn a_code_nobody_announces_times_out_with_advice() {
    let lan = Lan::new();
    let dst = tempfile::tempdir().unwrap();
    let mut receive = lan.mp(&lan.b);
    receive
        .args(["receive", "42-nobody-here", "--yes", "--timeout", "2", "-o"])
        .arg(dst.path());
    let out = spawn(&mut receive).wait(LIMIT);
    out.assert_code(exit::TIMEOUT);
    let line = out.last_line();
    assert!(
        line.contains("nobody announced the code 42-nobody-here"),
        "{line}"
    );
    assert!(line.contains("--signal ws://HOST:PORT"), "{line}");
    assert!(line.contains("mp signal"), "{line}");
    assert!(
        out.elapsed < Duration::from_secs(6),
        "gave up after {:?}",
        out.elapsed
    );
    assert!(common::list(dst.path()).is_empty());
}

/// Two senders may not announce the same room: the second is told the code is in use (exit
/// 8), and the first still waits for its receiver.
#[test]
fn a_room_another_sender_announces_is_refused() {
    let lan = Lan::new();
    let mut first = lan.mp(&lan.a);
    first.args(["--json", "send", "--code", "6-first-one", "--text", "one"]);
    let first = spawn(&mut first);
    first.wait_event("code", STEP);

    let mut second = lan.mp(&lan.b);
    second.args(["send", "--code", "6-second-one", "--text", "two"]);
    let out = spawn(&mut second).wait(LIMIT);
    out.assert_code(exit::ROOM_FULL);
    assert!(
        out.last_line()
            .contains("already announces a code starting with 6-"),
        "{}",
        out.stderr
    );

    // The first one's announcement still stands: a receiver finds it and gets the text.
    let mut receive = lan.mp(&lan.b);
    receive.args(["receive", "6-first-one", "--yes"]);
    let received = spawn(&mut receive).wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    assert_eq!(received.stdout, b"one\n");
    first.wait(LIMIT).assert_code(exit::SUCCESS);
}

/// Listens for mDNS (224.0.0.251:5353) inside namespace `ns`, on the interface that has
/// `local`, from a thread of this test moved into that namespace; returns the sources of the
/// packets heard until `stop` is set.
fn hear_mdns(
    ns: &str,
    local: Ipv4Addr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let path = format!("/run/netns/{ns}");
    let (ready, listening) = std::sync::mpsc::channel();
    let listener = std::thread::spawn(move || {
        let netns = std::fs::File::open(&path).unwrap();
        // SAFETY: setns(2) on a namespace file we hold open; it moves this thread only.
        let moved = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(moved, 0, "setns: {}", std::io::Error::last_os_error());
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 5353)).unwrap();
        socket
            .join_multicast_v4(&Ipv4Addr::new(224, 0, 0, 251), &local)
            .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        ready.send(()).unwrap();
        let mut heard = Vec::new();
        let mut packet = [0; 9000];
        while !stop.load(Ordering::SeqCst) {
            if let Ok((_, from)) = socket.recv_from(&mut packet) {
                heard.push(from);
            }
        }
        heard
    });
    listening.recv_timeout(STEP).expect("the listener started");
    listener
}

/// mDNS stays on the interfaces `--bind` allows: a sender bound to its `lan0` address sends
/// nothing on its other interface (`side0`, to `c`), from start to goodbye, and is found from
/// `b`. Without `--bind` it does announce on `side0`, so the listener would have heard a leak.
#[test]
fn mdns_stays_on_the_interfaces_bind_allows() {
    let lan = Lan::new();
    let (side_a, side_c) = (Ipv4Addr::new(10, 78, 0, 1), Ipv4Addr::new(10, 78, 0, 2));

    let stop = Arc::new(AtomicBool::new(false));
    let listener = hear_mdns(&lan.c, side_c, stop.clone());
    let mut send = lan.mp(&lan.a);
    send.args(["--json", "send", "--code", "9-only-lan0", "--text", "hi"])
        .env("MP_BIND", A4);
    let sender = spawn(&mut send);
    sender.wait_event("code", STEP);
    let mut receive = lan.mp(&lan.b);
    receive.args(["receive", "9-only-lan0"]);
    let received = spawn(&mut receive).wait(LIMIT);
    received.assert_code(exit::SUCCESS);
    assert_eq!(received.stdout, b"hi\n");
    sender.wait(LIMIT).assert_code(exit::SUCCESS);
    stop.store(true, Ordering::SeqCst);
    let heard = listener.join().unwrap();
    assert!(
        heard.iter().all(|from| from.ip() != side_a),
        "mDNS from {side_a} on side0, which --bind does not allow: {heard:?}"
    );

    // The same sender without --bind: every interface, side0 included.
    let stop = Arc::new(AtomicBool::new(false));
    let listener = hear_mdns(&lan.c, side_c, stop.clone());
    let mut send = lan.mp(&lan.a);
    send.args(["--json", "send", "--code", "10-everywhere", "--text", "hi"]);
    let sender = spawn(&mut send);
    sender.wait_event("code", STEP);
    drop(sender);
    stop.store(true, Ordering::SeqCst);
    let heard = listener.join().unwrap();
    assert!(
        heard.iter().any(|from| from.ip() == side_a),
        "the listener heard nothing from {side_a}: {heard:?}"
    );
}

/// With only loopback allowed there is nowhere to announce: both commands stop at once with
/// a usage error that names the way out. (Run inside a namespace of its own all the same.)
#[test]
fn loopback_only_is_refused_without_multicasting() {
    let lan = Lan::new();
    for args in [
        &["receive", "7-guitar-ocean"][..],
        &["send", "--text", "hello"][..],
    ] {
        let mut cmd = lan.mp(&lan.a);
        cmd.args(args).env("MP_BIND", "127.0.0.1");
        let out = spawn(&mut cmd).wait(STEP);
        out.assert_code(exit::USAGE);
        let line = out.last_line();
        assert!(line.contains("non-loopback"), "{line}");
        assert!(line.contains("--signal ws://HOST:PORT"), "{line}");
    }
}

/// The namespaces a [`Lan`] made are gone once it is dropped.
#[test]
fn the_namespaces_are_removed() {
    let lan = Lan::new();
    let names = [lan.a.clone(), lan.b.clone(), lan.c.clone()];
    drop(lan);
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in names {
        assert!(!Path::new("/run/netns").join(&name).exists(), "{name} left");
        assert!(!listed.contains(&name), "{name} still listed");
    }
}
