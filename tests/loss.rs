//! A transfer across a lossy link: two network namespaces joined by a veth (MTU 1500), 1% of
//! the packets entering the receiver's namespace dropped at random (iptables `statistic`), and
//! real `mp signal` / `mp send` / `mp receive` processes inside them.
//!
//! Before the rtc-sctp loss-recovery fixes (vendor/rtc-sctp/README.mp.md) this link gave
//! ~2 MB/s (release build), with whole seconds spent in T3-rtx timeouts; after, 20-40 MB/s.
//! The bound here is generous for a loaded CI machine: the test guards that the transfer
//! completes intact under loss; the rate it prints is for a person to read, and
//! `bench/run --only loss` measures it properly.
//!
//! The rule drops only packets of 1000 bytes or more, i.e. the full-size DATA packets that
//! carry the file (~1,250 bytes on the wire): loss during set-up (a lost ICE check, DTLS
//! flight or SCTP INIT) costs whole seconds of retransmission timers and, rarely, a failed
//! set-up, which is a separate matter from the SCTP loss recovery this test guards and would
//! make it flaky. The test checks that the rule did drop packets.
//!
//! Needs root, `ip` (iproute2) and `iptables`: without them the test fails and says so, since
//! a skipped loss test would hide exactly the regression it is for. `ethtool` is used when
//! present to turn off GRO/GSO (including UDP segmentation offload, which mp's UDP GSO
//! would otherwise use across the veth) so that a drop is one packet and not a coalesced run
//! of them. Traffic stays inside the two namespaces, which are removed on drop.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{exit, random_bytes, spawn, Running, STEP};

/// 1% loss: the rate the issue measured at 7.5 MB/s (and 5% never finished).
const LOSS: &str = "0.01";
const SIZE: usize = 20 << 20;
/// Generous for a loaded 2-core machine: a healthy run takes a few seconds.
const LIMIT: Duration = Duration::from_secs(120);

const SENDER_IP: &str = "10.201.0.1";
const RECEIVER_IP: &str = "10.201.0.2";

/// Runs a setup command, failing the test with its output when it does not succeed.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two namespaces joined by a veth; both are deleted on drop, after every process left in
/// them is killed.
struct Link {
    sender: String,
    receiver: String,
}

impl Link {
    fn new() -> Link {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "tests/loss.rs needs root to create network namespaces (run as root, as CI does)"
        );
        for tool in ["ip", "iptables"] {
            assert!(
                have(tool),
                "tests/loss.rs needs `{tool}` (Debian: apt-get install iproute2 iptables)"
            );
        }
        let id = std::process::id();
        let link = Link {
            sender: format!("mploss-{id}-s"),
            receiver: format!("mploss-{id}-r"),
        };
        run("ip", &["netns", "add", &link.sender]);
        run("ip", &["netns", "add", &link.receiver]);
        run(
            "ip",
            &[
                "link",
                "add",
                "veth-s",
                "netns",
                &link.sender,
                "type",
                "veth",
                "peer",
                "name",
                "veth-r",
                "netns",
                &link.receiver,
            ],
        );
        for (ns, dev, ip) in [
            (&link.sender, "veth-s", SENDER_IP),
            (&link.receiver, "veth-r", RECEIVER_IP),
        ] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            );
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
            run("ip", &["-n", ns, "link", "set", dev, "mtu", "1500", "up"]);
            if have("ethtool") {
                // Best effort: some kernels refuse one flag or another.
                let _ = Command::new("ip")
                    .args(["netns", "exec", ns, "ethtool", "-K", dev])
                    .args(["gro", "off", "gso", "off", "tso", "off"])
                    .args(["tx-udp-segmentation", "off"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        link
    }

    /// Drops LOSS of the full-size packets entering the receiver's namespace.
    fn add_loss(&self) {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.receiver,
                "iptables",
                "-A",
                "INPUT",
                "-m",
                "length",
                "--length",
                "1000:65535",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                LOSS,
                "-j",
                "DROP",
            ],
        );
    }

    /// How many packets the drop rule has dropped.
    fn dropped(&self) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.receiver])
            .args(["iptables", "-L", "INPUT", "-v", "-x", "-n"])
            .output()
            .expect("cannot run iptables -L");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|line| line.contains("DROP"))
            .and_then(|line| line.split_whitespace().next())
            .and_then(|pkts| pkts.parse().ok())
            .unwrap_or_else(|| panic!("no DROP rule counter in:\n{text}"))
    }

    /// `mp ARGS` inside namespace `ns`, ICE bound to `ip`, with a clean environment.
    fn mp(&self, ns: &str, ip: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(common::mp_bin())
            .env_remove("MP_SIGNAL")
            .env_remove("MP_SCTP_MTU")
            .env("MP_BIND", ip)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.sender, &self.receiver] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill has no memory-safety preconditions; the pid is one
                        // the kernel just listed inside our own namespace.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn signal(link: &Link) -> (Running, String) {
    let server = spawn(link.mp(&link.sender, SENDER_IP).args([
        "signal",
        "--listen",
        &format!("{SENDER_IP}:0"),
    ]));
    let url = server.wait_line("mp signal: listening on ", STEP);
    (server, url)
}

#[test]
fn transfer_completes_intact_at_one_percent_loss() {
    let link = Link::new();
    link.add_loss();
    let (_server, url) = signal(&link);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("payload.bin");
    let data = random_bytes(SIZE, 0x1055);
    std::fs::write(&src, &data).unwrap();
    let dst = dir.path().join("out");
    std::fs::create_dir(&dst).unwrap();

    // The receiver first, in its room, then the sender (the order tests/common/mod.rs
    // documents as race-free).
    let code = common::fresh_code();
    let receiver = spawn(
        link.mp(&link.receiver, RECEIVER_IP)
            .args(["receive", "--signal", &url, &code, "--yes", "--json", "-o"])
            .arg(&dst),
    );
    receiver.wait_event("waiting", STEP);
    let started = Instant::now();
    let sender = spawn(
        link.mp(&link.sender, SENDER_IP)
            .args(["send", "--signal", &url, "--code", &code])
            .arg(&src),
    );
    receiver.wait(LIMIT).assert_code(exit::SUCCESS);
    let elapsed = started.elapsed();
    sender.wait(STEP).assert_code(exit::SUCCESS);

    let got = std::fs::read(dst.join("payload.bin")).unwrap();
    assert!(got == data, "the received file differs from the one sent");
    // ~17,500 packets at 1%: expect ~170 drops; far fewer means the loss was not exercised.
    let dropped = link.dropped();
    assert!(dropped >= 20, "only {dropped} packets dropped");
    eprintln!(
        "{} MiB at {LOSS} loss ({dropped} packets dropped) in {:.2} s ({:.1} MB/s)",
        SIZE >> 20,
        elapsed.as_secs_f64(),
        SIZE as f64 / elapsed.as_secs_f64() / 1e6
    );
}
