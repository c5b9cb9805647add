//! What `mp signal` counts, for `/metrics` (Prometheus text format 0.0.4).
//!
//! Aggregates only: counters and gauges for the whole server, never a label that names a
//! client, an address, a room or a code.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The limits whose hits are counted, as `/metrics` labels them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `--max-clients`: a WebSocket refused `busy`.
    Clients,
    /// `--max-handshakes`: a connection closed at once.
    Handshakes,
    /// `--max-handshakes-per-addr`: an address's oldest handshake closed.
    HandshakesPerAddr,
    /// `--handshake-timeout`: a connection whose TLS handshake, HTTP request or WebSocket
    /// handshake did not finish in time, or a WebSocket whose first message came too late.
    HandshakeTimeout,
    /// `--max-waiting-per-addr`.
    WaitingPerAddr,
    /// `--joins-per-minute`.
    JoinsPerAddr,
    /// A relayed message that found no room in its receiver's queue for 10 s.
    RelayStall,
}

impl Limit {
    const ALL: [Limit; 7] = [
        Limit::Clients,
        Limit::Handshakes,
        Limit::HandshakesPerAddr,
        Limit::HandshakeTimeout,
        Limit::WaitingPerAddr,
        Limit::JoinsPerAddr,
        Limit::RelayStall,
    ];

    fn label(self) -> &'static str {
        match self {
            Limit::Clients => "clients",
            Limit::Handshakes => "handshakes",
            Limit::HandshakesPerAddr => "handshakes_per_addr",
            Limit::HandshakeTimeout => "handshake_timeout",
            Limit::WaitingPerAddr => "waiting_per_addr",
            Limit::JoinsPerAddr => "joins_per_addr",
            Limit::RelayStall => "relay_stall",
        }
    }
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    pub connections_total: AtomicU64,
    pub rooms_total: AtomicU64,
    pub rooms_allocated_total: AtomicU64,
    pub pairings_total: AtomicU64,
    pub room_timeouts_total: AtomicU64,
    pub relayed_messages_total: AtomicU64,
    pub relayed_bytes_total: AtomicU64,
    /// Redis commands that failed (with `--redis`).
    pub redis_errors_total: AtomicU64,
    pub http_requests_total: AtomicU64,
    pub tls_failures_total: AtomicU64,
    pub broken_requests_total: AtomicU64,
    limit_hits: [AtomicU64; Limit::ALL.len()],
}

/// The gauges, read when `/metrics` is asked for.
pub struct Gauges {
    pub clients: u64,
    pub handshakes: u64,
    pub rooms: u64,
    pub rooms_waiting: u64,
    pub shutting_down: bool,
    /// Bytes of relayed messages waiting to be written to their receivers.
    pub relay_queued_bytes: u64,
    /// Most clients served at once (`--max-clients`, as capped by the open-file limit).
    pub max_clients: u64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn hit(&self, limit: Limit) {
        let at = Limit::ALL.iter().position(|l| *l == limit).expect("listed");
        self.limit_hits[at].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of the counters and `gauges`.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        one(
            "mp_signal_clients",
            "gauge",
            "WebSocket clients connected.",
            gauges.clients,
        );
        one(
            "mp_signal_handshakes",
            "gauge",
            "Connections still in their handshake.",
            gauges.handshakes,
        );
        one("mp_signal_rooms", "gauge", "Rooms open.", gauges.rooms);
        one(
            "mp_signal_rooms_waiting",
            "gauge",
            "Rooms waiting for their second member.",
            gauges.rooms_waiting,
        );
        one(
            "mp_signal_shutting_down",
            "gauge",
            "1 while draining after SIGTERM.",
            gauges.shutting_down as u64,
        );
        one(
            "mp_signal_relay_queued_bytes",
            "gauge",
            "Bytes of relayed messages waiting to be written to their receivers.",
            gauges.relay_queued_bytes,
        );
        one(
            "mp_signal_max_clients",
            "gauge",
            "Most clients served at once (--max-clients, capped by the open-file limit).",
            gauges.max_clients,
        );
        one(
            "mp_signal_connections_total",
            "counter",
            "TCP connections accepted.",
            get(&self.connections_total),
        );
        one(
            "mp_signal_rooms_total",
            "counter",
            "Rooms opened.",
            get(&self.rooms_total),
        );
        one(
            "mp_signal_rooms_allocated_total",
            "counter",
            "Rooms opened by allocate (generated codes).",
            get(&self.rooms_allocated_total),
        );
        one(
            "mp_signal_pairings_total",
            "counter",
            "Rooms that got their second member.",
            get(&self.pairings_total),
        );
        one(
            "mp_signal_room_timeouts_total",
            "counter",
            "Sessions ended by a room's timeout.",
            get(&self.room_timeouts_total),
        );
        one(
            "mp_signal_relayed_messages_total",
            "counter",
            "Binary messages relayed.",
            get(&self.relayed_messages_total),
        );
        one(
            "mp_signal_relayed_bytes_total",
            "counter",
            "Bytes of binary messages relayed.",
            get(&self.relayed_bytes_total),
        );
        one(
            "mp_signal_redis_errors_total",
            "counter",
            "Redis commands that failed (with --redis).",
            get(&self.redis_errors_total),
        );
        one(
            "mp_signal_http_requests_total",
            "counter",
            "Plain HTTP requests answered (the web page, /healthz, /metrics, errors).",
            get(&self.http_requests_total),
        );
        one(
            "mp_signal_tls_failures_total",
            "counter",
            "TLS handshakes that failed, and plain HTTP sent to a TLS port.",
            get(&self.tls_failures_total),
        );
        one(
            "mp_signal_broken_requests_total",
            "counter",
            "Connections closed, or not speaking HTTP, before their request was complete.",
            get(&self.broken_requests_total),
        );
        let name = "mp_signal_limit_hits_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests refused or cut short by a limit."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for (limit, count) in Limit::ALL.iter().zip(&self.limit_hits) {
            let _ = writeln!(out, "{name}{{limit=\"{}\"}} {}", limit.label(), get(count));
        }
        process(&mut out);
        out
    }
}

/// The standard process metrics an operator compares with the limits: resident memory, open
/// files and the open-file limit (Linux, from /proc/self; nothing elsewhere).
fn process(out: &mut String) {
    let mut one = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {value}");
    };
    // SAFETY: sysconf reads a constant of the system.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok());
    if let Some(pages) = resident {
        one(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            pages * page,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        one(
            "process_open_fds",
            "Number of open file descriptors.",
            dir.count() as u64,
        );
    }
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<u64>().ok()
        });
    if let Some(limit) = limit {
        one(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            limit,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        Metrics::add(&metrics.pairings_total, 2);
        metrics.hit(Limit::JoinsPerAddr);
        let text = metrics.render(&Gauges {
            clients: 3,
            handshakes: 0,
            rooms: 1,
            rooms_waiting: 1,
            shutting_down: false,
            relay_queued_bytes: 0,
            max_clients: 10,
        });
        assert!(
            text.contains("# TYPE mp_signal_pairings_total counter\nmp_signal_pairings_total 2\n")
        );
        assert!(text.contains("mp_signal_clients 3\n"));
        assert!(text.contains("mp_signal_limit_hits_total{limit=\"joins_per_addr\"} 1\n"));
        assert!(text.contains("mp_signal_limit_hits_total{limit=\"clients\"} 0\n"));
        #[cfg(target_os = "linux")]
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "{name}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(
                name.starts_with("mp_signal_") || name.starts_with("process_"),
                "{line}"
            );
            value.parse::<u64>().unwrap();
        }
    }
}
