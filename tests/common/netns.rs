//! Small networks made of Linux network namespaces, for tests of how `mp` reaches a peer
//! through NATs, relays, loss and IPv6.
//!
//! Nothing here touches the machine's own network: every namespace, link, bridge, address and
//! firewall rule lives inside namespaces that the test creates and removes, and every process
//! (`mp`, `turnserver`) runs inside one of them, so ICE only ever sees the test's interfaces.
//! The addresses come from ranges reserved for documentation and benchmarks (203.0.113.0/24
//! for the "Internet", 198.18.0.0/15 for the home networks behind NATs, fd00::/64 for IPv6),
//! and exist only inside the namespaces.
//!
//! # Pieces
//!
//! - [`Netns`]: one namespace, named after the test process (`mpreach-<pid>-<n>-<role>`) and
//!   removed on drop, even when the test panics: its processes are killed first. Methods add
//!   addresses ([`Netns::addr`]), routes, bridges, iptables rules ([`Netns::nat`] for a cone or
//!   symmetric NAT, [`Netns::lose_udp`] for random loss) and run commands inside it
//!   ([`Netns::command`], [`Netns::mp`]).
//! - [`veth`]: a cable between two namespaces.
//! - [`Internet`]: a "public" namespace holding a bridge at [`PUBLIC_IP`], onto which a test
//!   plugs open hosts ([`Internet::host`]) or homes behind a NAT router ([`Internet::home`]),
//!   and where it runs `mp signal` ([`Internet::signal`]) and coturn ([`Internet::coturn`]).
//! - [`Link6`]: two namespaces on one IPv6-only link.
//!
//! Worlds are built one at a time ([`Internet::new`] and [`Link6::new`] take a process-wide
//! lock), so the two cores are not shared between transfers and timings mean something.
//!
//! These tests need root (namespaces, iptables), `ip` and `ss` (iproute2), `iptables`, and
//! `turnserver` (coturn) for the relayed ones. When something is missing the test fails and
//! says what; it is never skipped.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{mp_bin, spawn, tail, Running, STEP};

/// The "public" address: `mp signal` and coturn listen here, inside [`Internet::public`].
pub const PUBLIC_IP: &str = "203.0.113.1";

/// A second address of the public namespace, on which coturn also listens: with two addresses
/// it answers RFC 5780 NAT behaviour discovery (`turnutils_natdiscovery`).
pub const ALT_PUBLIC_IP: &str = "203.0.113.2";

/// The public namespace's default gateway, which drops everything.
const UPSTREAM: &str = "192.0.2.1";

/// Every namespace this kit creates starts with this, followed by the test process's id.
const PREFIX: &str = "mpreach-";

/// Fails the test unless it runs as root: namespaces and iptables need it.
pub fn require_root() {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root (it creates network namespaces and iptables rules), and runs as \
         uid {euid}: run it as root, e.g. `sudo -E cargo test --test reach`"
    );
}

/// The path of `tool`, found on `PATH` or in the sbin folders (where Debian puts `ip` and
/// `iptables`); fails the test, naming the Debian `package` to install, when it is missing.
pub fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test needs `{tool}`, which is not installed: install the Debian package \
                 `{package}` (`apt-get install {package}`; .ci/run does it)"
            )
        })
}

/// Runs `cmd` to its end (at most [`STEP`]) and returns its stdout; fails the test with its
/// output when it fails.
fn run(cmd: &mut Command) -> String {
    let outcome = spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .wait(STEP);
    assert!(
        outcome.status.success(),
        "`{cmd:?}` failed ({}):\n{}",
        outcome.status,
        outcome.stderr
    );
    String::from_utf8_lossy(&outcome.stdout).into_owned()
}

/// The binary under test, pinned for this test process: a hard link (else a copy) made at first
/// use, in the target's folder for test files. A build of another checkout into a shared
/// target folder then cannot swap the binary between two tests of one run.
fn pinned_mp() -> &'static Path {
    static PINNED: OnceLock<PathBuf> = OnceLock::new();
    PINNED.get_or_init(|| {
        // Integration tests get the target's folder for test files; a program that borrows
        // this harness (bench/web.rs) the system's.
        let dir = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = dir.as_path();
        // Pins of test processes that are gone.
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.strip_suffix("-mp"))
            {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let pin = dir.join(format!("{PREFIX}{}-mp", std::process::id()));
        let _ = std::fs::remove_file(&pin);
        std::fs::hard_link(mp_bin(), &pin)
            .or_else(|_| std::fs::copy(mp_bin(), &pin).map(drop))
            .unwrap_or_else(|e| panic!("cannot pin {}: {e}", mp_bin().display()));
        pin
    })
}

static NEXT_NETNS: AtomicU32 = AtomicU32::new(1);

/// One network namespace, removed (with whatever runs in it) when dropped.
pub struct Netns {
    name: String,
    ip: PathBuf,
}

impl Netns {
    /// A new namespace whose loopback interface is up. `role` ends its name, for messages and
    /// for `ip netns list` while a test runs (e.g. `"router-a"`).
    pub fn new(role: &str) -> Netns {
        require_root();
        let ip = require("ip", "iproute2");
        remove_stale(&ip);
        let n = NEXT_NETNS.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        run(Command::new(&ip).args(["netns", "add", &name]));
        let netns = Netns { name, ip };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS…`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        run(Command::new(&self.ip).args(["-n", &self.name]).args(args));
    }

    /// `program` to be run inside the namespace (`ip netns exec NAME program`), with no stdin
    /// and its output piped (for [`spawn`] to collect). The environment is passed through;
    /// `ip netns exec` replaces itself with `program`, so the process's id is the program's
    /// (to kill or interrupt it).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `program ARGS…` inside the namespace to its end; it must succeed. Returns stdout.
    pub fn run(&self, program: impl AsRef<OsStr>, args: &[&str]) -> String {
        run(self.command(program).args(args))
    }

    /// The `mp` under test, inside the namespace, as `common::mp` makes it but with ICE free
    /// to use every interface of the namespace: no `MP_BIND`, and none of the other `MP_*`
    /// variables of the caller's environment (signal, STUN, TURN, relay, tuning).
    pub fn mp(&self) -> Command {
        let mut cmd = self.command(pinned_mp());
        for var in [
            "MP_SIGNAL",
            "MP_BIND",
            "MP_STUN",
            "MP_TURN",
            "MP_TURN_USER",
            "MP_TURN_PASSWORD",
            "MP_RELAY",
            "MP_SCTP_MTU",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("NO_COLOR", "1");
        cmd
    }

    /// Sets a sysctl of this namespace's network stack, e.g. `net/ipv4/ip_forward`.
    pub fn sysctl(&self, key: &str, value: &str) {
        let file = format!("/proc/sys/{key}");
        self.run(
            "sh",
            &["-c", "printf '%s\\n' \"$1\" > \"$2\"", "sh", value, &file],
        );
    }

    /// No IPv6 at all, on the interfaces there are and those to come: an IPv4 world where
    /// ICE cannot slip through link-local IPv6 addresses past an IPv4 NAT or firewall rule.
    /// Call before adding interfaces.
    pub fn disable_ipv6(&self) {
        self.sysctl("net/ipv6/conf/default/disable_ipv6", "1");
        self.sysctl("net/ipv6/conf/all/disable_ipv6", "1");
    }

    /// Forward packets between interfaces (a router).
    pub fn forward(&self) {
        self.sysctl("net/ipv4/ip_forward", "1");
    }

    /// Adds `cidr` (`203.0.113.1/24`, `fd00::1/64`) to `dev`. IPv6 addresses are usable at
    /// once (no duplicate address detection to wait for).
    pub fn addr(&self, dev: &str, cidr: &str) {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", dev, "nodad"]);
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev]);
        }
    }

    /// Sets `dev` up.
    pub fn up(&self, dev: &str) {
        self.ip(&["link", "set", dev, "up"]);
    }

    /// A default route through `gateway`.
    pub fn default_route(&self, gateway: &str) {
        self.ip(&["route", "add", "default", "via", gateway]);
    }

    /// A new bridge `name`, up, with no spanning tree (ports forward at once).
    pub fn bridge(&self, name: &str) {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        self.up(name);
    }

    /// Plugs `dev` into the bridge `bridge`.
    pub fn attach(&self, dev: &str, bridge: &str) {
        self.ip(&["link", "set", dev, "master", bridge]);
    }

    /// `iptables ARGS…` in this namespace.
    pub fn iptables(&self, args: &[&str]) {
        let iptables = require("iptables", "iptables");
        self.run(&iptables, args);
    }

    /// Makes this namespace a home router: it forwards, and rewrites what leaves through `wan`
    /// to its own address there, the way `nat` says. Like any home router it drops what
    /// arrives on `wan` unasked: besides being realistic, this keeps an early packet from a
    /// peer from leaving a conntrack entry that would make the router pick another port for
    /// the host's own packet to that peer, breaking the cone behaviour.
    pub fn nat(&self, wan: &str, nat: Nat) {
        self.forward();
        let mut masquerade = vec!["-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j"];
        masquerade.push("MASQUERADE");
        if nat == Nat::Symmetric {
            masquerade.push("--random-fully");
        }
        self.iptables(&masquerade);
        for chain in ["INPUT", "FORWARD"] {
            self.iptables(&[
                "-A",
                chain,
                "-i",
                wan,
                "-m",
                "conntrack",
                "--ctstate",
                "NEW,INVALID",
                "-j",
                "DROP",
            ]);
        }
    }

    /// Drops each UDP packet arriving in this namespace with the given probability (there is
    /// no netem here: iptables' `statistic` match does it).
    pub fn lose_udp(&self, probability: f64) {
        let p = probability.to_string();
        self.iptables(&[
            "-A",
            "INPUT",
            "-p",
            "udp",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &p,
            "-j",
            "DROP",
        ]);
    }

    /// Whether something listens on UDP `port` in this namespace.
    pub fn listens_udp(&self, port: u16) -> bool {
        let ss = require("ss", "iproute2");
        let filter = format!("sport = :{port}");
        !self.run(&ss, &["-Hlnu", &filter]).trim().is_empty()
    }

    /// UDP packets this namespace's stack dropped because a socket's receive buffer was full
    /// (`RcvbufErrors` in /proc/net/snmp): loss that no rule made.
    pub fn udp_receive_drops(&self) -> u64 {
        let snmp = self.run("cat", &["/proc/net/snmp"]);
        let mut udp = snmp.lines().filter(|line| line.starts_with("Udp: "));
        let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "RcvbufErrors")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or_else(|| panic!("no RcvbufErrors in /proc/net/snmp:\n{snmp}"))
    }

    /// Ids of the processes in this namespace.
    fn pids(&self) -> Vec<i32> {
        pids_in(&self.ip, &self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove(&self.ip, &self.name);
    }
}

fn pids_in(ip: &Path, name: &str) -> Vec<i32> {
    Command::new(ip)
        .args(["netns", "pids", name])
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills what still runs in the namespace `name` (only this kit starts processes there) and
/// removes it; never panics, as it runs in `Drop`, maybe while a test is failing.
fn remove(ip: &Path, name: &str) {
    for pid in pids_in(ip, name) {
        // SAFETY: kill(2) on a process inside a namespace this kit created for the test.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = Command::new(ip)
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// Removes, once per test process, the namespaces that earlier test processes of this kit
/// left behind when they were killed before their `Drop` ran (their pid no longer exists).
fn remove_stale(ip: &Path) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(out) = Command::new(ip).args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(pid) = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                remove(ip, name);
            }
        }
    });
}

/// A cable: a veth pair, `a_dev` in `a` and `b_dev` in `b`, both up. It is created directly
/// inside the namespaces, so no interface ever appears on the machine's own network.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) {
    a.ip(&[
        "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
    ]);
    a.up(a_dev);
    b.up(b_dev);
}

/// How a home router rewrites its hosts' addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// `MASQUERADE`: Linux keeps the host's port where it can, so a host keeps one public
    /// address and port whatever the destination (endpoint-independent mapping, a "cone");
    /// STUN's answer is then valid for the peer too, and hole punching works.
    Cone,
    /// `MASQUERADE --random-fully`: a new random port for each destination (a "symmetric"
    /// NAT); what STUN sees is useless to the peer, and only a relay connects two of them.
    Symmetric,
}

/// One test world at a time in this process (see the module's documentation).
fn one_world_at_a_time() -> MutexGuard<'static, ()> {
    static WORLD: Mutex<()> = Mutex::new(());
    WORLD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A small IPv4 Internet: the namespace `public` holds the bridge `br0` at [`PUBLIC_IP`]/24,
/// where `mp signal` and coturn run; hosts and home routers plug into that bridge.
pub struct Internet {
    pub public: Netns,
    /// Last byte of the next address on the bridge.
    next: std::cell::Cell<u8>,
    _one: MutexGuard<'static, ()>,
}

/// A namespace with one interface, `eth0`, and its IPv4 address.
pub struct Host {
    pub netns: Netns,
    pub ip: Ipv4Addr,
}

/// A host behind a home router that NATs it onto the Internet.
pub struct Home {
    /// The host, on the home network 198.18.N.0/24 (at .2, the router at .1).
    pub host: Host,
    /// The router: `lan` towards the host, `wan` on the Internet's bridge.
    pub router: Netns,
    /// The router's address on the Internet: what the peer sees of the host.
    pub public_ip: Ipv4Addr,
}

impl Internet {
    pub fn new() -> Internet {
        let one = one_world_at_a_time();
        let public = Netns::new("public");
        public.disable_ipv6();
        public.bridge("br0");
        public.addr("br0", &format!("{PUBLIC_IP}/24"));
        public.addr("br0", &format!("{ALT_PUBLIC_IP}/24"));
        // The rest of the Internet: a default route to a gateway that swallows everything (a
        // veth whose other end accepts nothing). Without it a packet to an address that is not
        // here, such as a host's private address, fails at once with "network unreachable",
        // which nothing out there would say, and which makes coturn close the allocation.
        public.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        public.up("up0");
        public.up("up1");
        public.ip(&[
            "route", "add", "default", "via", UPSTREAM, "dev", "up0", "onlink",
        ]);
        public.ip(&[
            "neigh",
            "add",
            UPSTREAM,
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            "up0",
            "nud",
            "permanent",
        ]);
        Internet {
            public,
            next: std::cell::Cell::new(10),
            _one: one,
        }
    }

    /// Plugs a namespace into the bridge through a new cable; its end there is `dev`, and it
    /// gets the next free address of 203.0.113.0/24.
    fn plug(&self, netns: &Netns, dev: &str) -> Ipv4Addr {
        let n = self.next.get();
        self.next.set(n + 1);
        let port = format!("p{n}");
        veth(&self.public, &port, netns, dev);
        self.public.attach(&port, "br0");
        let ip = Ipv4Addr::new(203, 0, 113, n);
        netns.addr(dev, &format!("{ip}/24"));
        ip
    }

    /// A host with a public address, directly on the Internet (no NAT, no firewall).
    pub fn host(&self, role: &str) -> Host {
        let netns = Netns::new(role);
        netns.disable_ipv6();
        let ip = self.plug(&netns, "eth0");
        netns.default_route(PUBLIC_IP);
        Host { netns, ip }
    }

    /// A host at home, behind its own router doing `nat`.
    pub fn home(&self, role: &str, nat: Nat) -> Home {
        let router = Netns::new(&format!("{role}-router"));
        router.disable_ipv6();
        let public_ip = self.plug(&router, "wan");
        router.default_route(PUBLIC_IP);
        let net = public_ip.octets()[3];
        let host = Netns::new(role);
        host.disable_ipv6();
        veth(&router, "lan", &host, "eth0");
        router.addr("lan", &format!("198.18.{net}.1/24"));
        let ip = Ipv4Addr::new(198, 18, net, 2);
        host.addr("eth0", &format!("{ip}/24"));
        host.default_route(&format!("198.18.{net}.1"));
        router.nat("wan", nat);
        Home {
            host: Host { netns: host, ip },
            router,
            public_ip,
        }
    }

    /// `mp signal --listen 203.0.113.1:0 EXTRA…` in the public namespace.
    pub fn signal(&self, extra: &[&str]) -> Server {
        Server::start(&self.public, &format!("{PUBLIC_IP}:0"), extra)
    }

    /// coturn in the public namespace, relaying on [`PUBLIC_IP`] and listening there and on
    /// [`ALT_PUBLIC_IP`] (port 3478), taking credentials made from `secret` (see
    /// [`turn_credentials`]).
    pub fn coturn(&self, secret: &str) -> Coturn {
        Coturn::start(&self.public, &[PUBLIC_IP, ALT_PUBLIC_IP], secret)
    }
}

/// Two namespaces on one IPv6-only link: `a` at `fd00::1`, `b` at `fd00::2` (fd00::/64), no
/// IPv4 address but loopback.
pub struct Link6 {
    pub a: Netns,
    pub b: Netns,
    _one: MutexGuard<'static, ()>,
}

impl Link6 {
    pub const A: &'static str = "fd00::1";
    pub const B: &'static str = "fd00::2";

    pub fn new() -> Link6 {
        let one = one_world_at_a_time();
        let a = Netns::new("v6-a");
        let b = Netns::new("v6-b");
        veth(&a, "eth0", &b, "eth0");
        a.addr("eth0", &format!("{}/64", Self::A));
        b.addr("eth0", &format!("{}/64", Self::B));
        Link6 { a, b, _one: one }
    }
}

/// A running `mp signal` inside a namespace; killed on drop.
pub struct Server {
    /// Where it listens, e.g. `ws://203.0.113.1:40123`, read from its first line.
    pub url: String,
    pub process: Running,
}

impl Server {
    /// `mp signal --listen LISTEN EXTRA…` in `netns`, once it said where it listens.
    pub fn start(netns: &Netns, listen: &str, extra: &[&str]) -> Server {
        let process = spawn(netns.mp().args(["signal", "--listen", listen]).args(extra));
        let url = process.wait_line("mp signal: listening on ", STEP);
        Server { url, process }
    }
}

/// The TURN port coturn listens on.
pub const TURN_PORT: u16 = 3478;

/// A running coturn (`turnserver`) with the TURN REST API's shared-secret credentials;
/// killed on drop.
pub struct Coturn {
    /// `turn:IP:3478`.
    pub url: String,
    pub secret: String,
    _process: Running,
    dir: tempfile::TempDir,
}

impl Coturn {
    /// Starts coturn in `netns`, listening on each of `ips` (UDP and TCP 3478) and relaying on
    /// the first (ports 49152 to 49252), and waits (at most [`STEP`]) until it listens. The
    /// TURN URL is the first address's.
    pub fn start(netns: &Netns, ips: &[&str], secret: &str) -> Coturn {
        let ip = ips[0];
        let turnserver = require("turnserver", "coturn");
        // Its own empty configuration, database and pid file, so that nothing of the
        // machine's /etc/turnserver.conf or /var/lib/turn applies, and two never share one.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("turnserver.conf");
        std::fs::write(&config, "").unwrap();
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let mut cmd = netns.command(turnserver);
        cmd.args(["-c", &path("turnserver.conf")])
            .args(["--db", &path("turndb")])
            .args(["--pidfile", &path("turnserver.pid")])
            .arg("--use-auth-secret")
            .arg(format!("--static-auth-secret={secret}"))
            .args(["--realm", "mp"])
            .args(ips.iter().flat_map(|ip| ["--listening-ip", ip]))
            .args(["--relay-ip", ip])
            .args(["--listening-port", &TURN_PORT.to_string()])
            .args(["--min-port", "49152", "--max-port", "49252"])
            .args(["--no-cli", "--no-tls", "--no-dtls"])
            .args(["--log-file", &path("turn.log"), "--simple-log", "-v"]);
        let mut process = spawn(&mut cmd);
        let deadline = Instant::now() + STEP;
        while !netns.listens_udp(TURN_PORT) {
            let exited = process.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let why = match exited {
                    Some(status) => format!("it exited ({status})"),
                    None => format!("{STEP:?} passed"),
                };
                panic!(
                    "coturn never listened on {ip}:{TURN_PORT}: {why}\n{}",
                    process.output.lock().show()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let url = if ip.contains(':') {
            format!("turn:[{ip}]:{TURN_PORT}")
        } else {
            format!("turn:{ip}:{TURN_PORT}")
        };
        Coturn {
            url,
            secret: secret.to_string(),
            _process: process,
            dir,
        }
    }

    /// A user name and password that coturn accepts for `ttl` from now.
    pub fn credentials(&self, tag: &str, ttl: Duration) -> (String, String) {
        turn_credentials(&self.secret, tag, ttl)
    }

    /// What coturn logged so far (the last 4000 bytes; sessions are logged, `-v`).
    pub fn log(&self) -> String {
        tail(&std::fs::read(self.dir.path().join("turn.log")).unwrap_or_default())
    }
}

impl Drop for Coturn {
    /// Shows coturn's log when the test fails: what it relayed, and why a session closed.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- coturn's log:\n{}", self.log());
        }
    }
}

/// TURN REST API credentials, as coturn's `--use-auth-secret` expects them: the user name is
/// `<expiry>:<tag>` (expiry in Unix seconds) and the password base64(HMAC-SHA1(secret, user)).
pub fn turn_credentials(secret: &str, tag: &str, ttl: Duration) -> (String, String) {
    use base64::Engine as _;
    use hmac::Mac as _;
    let expiry = (SystemTime::now() + ttl)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let user = format!("{expiry}:{tag}");
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(user.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (user, password)
}
