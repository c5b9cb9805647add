//! Packetization-layer path MTU discovery (DPLPMTUD, RFC 8899; §6.2 for SCTP).
//!
//! The association starts at a packet size that any path carries (its configured MTU rounded
//! down to SCTP's 4-byte unit: mp's 1191 bytes, which fit a TURN-relayed IPv6 path of the
//! 1280-byte minimum MTU, make 1188). Most paths
//! carry more: on an Ethernet path with IPv4 an SCTP packet can be 1435 bytes inside its DTLS
//! record, 20% more payload per packet and so 17% fewer packets for each layer to handle.
//! This module finds out, by sending probes: a HEARTBEAT chunk padded with a PAD chunk
//! (RFC 4820) to the size to test. The peer answers a HEARTBEAT with a small HEARTBEAT ACK
//! that echoes the heartbeat information, so an answer proves that a packet of that size got
//! through. The UDP socket must not let the network (or the local stack) fragment it: the
//! probe has to be dropped where it does not fit, which is what the don't-fragment bit does
//! (quinn-udp sets `IP_PMTUDISC_PROBE` on Linux).
//!
//! The search, a pure state machine fed time and answers:
//! - the first probe tries the ceiling (`max`); on a typical path it succeeds at once;
//! - a probe is sent again when it has no answer after two round trips (at least
//!   [`PROBE_TIMEOUT_MIN`], at most an RTO), and a size fails after [`MAX_PROBES`] unanswered
//!   probes;
//! - after a failure the search halves the gap between the largest size that passed and the
//!   smallest that failed, until the gap is under [`GRANULARITY`];
//! - once done it rests for [`RAISE_INTERVAL`] and then searches again from the ceiling,
//!   since paths change.
//!
//! Probes are not DATA: they are not counted in cwnd, carry no TSN and are never
//! retransmitted as such; losing one costs nothing but the probe. A black hole (a path that
//! stopped carrying the confirmed size) shows as consecutive T3-rtx timeouts:
//! [`PathMtu::on_black_hole`] then returns the association to its base size at once and
//! searches again below the size that stopped passing. DATA chunks already cut for the
//! larger size cannot be cut again (their TSNs are fixed), so they still need the larger
//! packets; this helps what is sent after.

use std::time::{Duration, Instant};

/// Unanswered probes of one size before that size counts as failed (RFC 8899 MAX_PROBES).
pub(crate) const MAX_PROBES: u32 = 3;
/// The search ends when the largest passing and smallest failing sizes are closer than this.
pub(crate) const GRANULARITY: u32 = 16;
/// The largest probe, well within what the 16-bit length of its PAD chunk can describe.
pub(crate) const MAX_PROBE_SIZE: u32 = 65_532;
/// The shortest wait, in milliseconds, for a probe's answer before it counts as lost.
pub(crate) const PROBE_TIMEOUT_MIN: u64 = 50;
/// How long a finished search rests before it tries the ceiling again (RFC 8899
/// PMTU_RAISE_TIMER).
pub(crate) const RAISE_INTERVAL: Duration = Duration::from_secs(600);

/// An outstanding probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probe {
    size: u32,
    id: u64,
    /// How many times it has been sent.
    sent: u32,
    /// When it is given up for lost.
    deadline: Instant,
}

/// What the association should put on the wire: a probe packet of `size` bytes (the SCTP
/// packet, as `mtu` counts it) whose heartbeat information carries `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeRequest {
    pub(crate) size: u32,
    pub(crate) id: u64,
}

/// The path-MTU search of one association. Sizes are SCTP packet sizes, in bytes, multiples
/// of 4 (SCTP pads every chunk to 4 bytes).
#[derive(Debug, Clone)]
pub(crate) struct PathMtu {
    base: u32,
    max: u32,
    current: u32,
    /// The smallest size known not to pass (`max + 4` until one fails).
    failed: u32,
    probe: Option<Probe>,
    /// When the next probe may go out; `None` before the association is established and
    /// while a probe is outstanding.
    next_at: Option<Instant>,
    started: bool,
    next_id: u64,
}

impl PathMtu {
    /// A search between `base` (the size in use, known to pass) and `max`. With `max` less
    /// than [`GRANULARITY`] above `base` there is nothing to search and no probe is ever sent.
    pub(crate) fn new(base: u32, max: u32, first_id: u64) -> Self {
        // A PAD chunk's length is 16 bits: no probe beyond what one can fill.
        let max = max.min(MAX_PROBE_SIZE) & !3;
        PathMtu {
            base,
            max,
            current: base,
            failed: max.saturating_add(4),
            probe: None,
            next_at: None,
            started: max < base.saturating_add(GRANULARITY),
            next_id: first_id,
        }
    }

    /// The packet size confirmed for the path.
    pub(crate) fn current(&self) -> u32 {
        self.current
    }

    /// When [`Self::poll_probe`] next has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.probe {
            Some(probe) => Some(probe.deadline),
            None => self.next_at,
        }
    }

    /// The probe to send at `now`, if any: the first one once the association is established
    /// (the first call), a repeat of an unanswered one after `rto`, or the next size of the
    /// search.
    pub(crate) fn poll_probe(&mut self, now: Instant, rto: Duration) -> Option<ProbeRequest> {
        if !self.started {
            self.started = true;
            self.next_at = Some(now);
        }
        if let Some(probe) = &mut self.probe {
            if now < probe.deadline {
                return None;
            }
            if probe.sent < MAX_PROBES {
                probe.sent += 1;
                probe.deadline = now + rto;
                return Some(ProbeRequest {
                    size: probe.size,
                    id: probe.id,
                });
            }
            // This size does not pass: search below it.
            self.failed = probe.size;
            self.probe = None;
            self.next_at = Some(now);
        }
        if self.next_at.is_none_or(|at| now < at) {
            return None;
        }
        self.next_at = None;
        let Some(size) = self.next_size() else {
            // Done: rest, then try the ceiling again.
            self.failed = self.max.saturating_add(4);
            self.next_at = Some(now + RAISE_INTERVAL);
            return None;
        };
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.probe = Some(Probe {
            size,
            id,
            sent: 1,
            deadline: now + rto,
        });
        Some(ProbeRequest { size, id })
    }

    /// The next size to try: the ceiling while nothing has failed, then the middle of the gap.
    fn next_size(&self) -> Option<u32> {
        if self.failed > self.max {
            return (self.max >= self.current.saturating_add(GRANULARITY)).then_some(self.max);
        }
        if self.failed <= self.current || self.failed - self.current < GRANULARITY {
            return None;
        }
        let middle = (self.current + (self.failed - self.current) / 2) & !3;
        (middle > self.current).then_some(middle)
    }

    /// A HEARTBEAT ACK came back with heartbeat information `id`. Returns the new packet size
    /// when it answers the outstanding probe.
    pub(crate) fn on_probe_acked(&mut self, id: u64, now: Instant) -> Option<u32> {
        let probe = self.probe.filter(|probe| probe.id == id)?;
        self.probe = None;
        self.current = probe.size;
        self.next_at = Some(now);
        Some(probe.size)
    }

    /// Consecutive retransmission timeouts at a size above the base: the path may have
    /// stopped carrying it. Returns the base size to fall back to, when above it; the search
    /// starts again at once, below the size that stopped passing.
    pub(crate) fn on_black_hole(&mut self, now: Instant) -> Option<u32> {
        if self.current <= self.base {
            return None;
        }
        self.failed = self.current;
        self.current = self.base;
        self.probe = None;
        self.next_at = Some(now);
        Some(self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTO: Duration = Duration::from_millis(200);

    /// Runs the search against a path that carries packets up to `path` bytes, answering each
    /// probe that fits at once and letting the others time out. Returns the sizes probed (each
    /// send) and the time the search took.
    fn search(pmtu: &mut PathMtu, path: u32, start: Instant) -> (Vec<u32>, Duration) {
        let mut now = start;
        let mut sent = vec![];
        for _ in 0..100 {
            match pmtu.poll_probe(now, RTO) {
                Some(probe) => {
                    sent.push(probe.size);
                    if probe.size <= path {
                        assert_eq!(pmtu.on_probe_acked(probe.id, now), Some(probe.size));
                    }
                }
                None => match pmtu.poll_timeout() {
                    Some(at) if at < start + RAISE_INTERVAL => now = now.max(at),
                    _ => return (sent, now - start),
                },
            }
        }
        panic!("the search did not end: {sent:?}");
    }

    #[test]
    fn nothing_to_search_sends_no_probe() {
        let now = Instant::now();
        for max in [0, 1000, 1191, 1206] {
            let mut pmtu = PathMtu::new(1191, max, 0);
            assert_eq!(pmtu.poll_probe(now, RTO), None, "max {max}");
            assert_eq!(pmtu.poll_timeout(), None, "max {max}");
            assert_eq!(pmtu.current(), 1191);
        }
    }

    #[test]
    fn a_path_that_carries_the_ceiling_takes_one_probe() {
        let now = Instant::now();
        let mut pmtu = PathMtu::new(1191, 1435, 7);
        let (sent, took) = search(&mut pmtu, 1500, now);
        assert_eq!(sent, [1432]);
        assert_eq!(took, Duration::ZERO);
        assert_eq!(pmtu.current(), 1432);
        // Then it rests.
        assert_eq!(pmtu.poll_timeout(), Some(now + RAISE_INTERVAL));
    }

    #[test]
    fn a_smaller_path_is_found_within_the_granularity() {
        for path in [1191, 1200, 1280, 1300, 1371, 1415, 1431] {
            let now = Instant::now();
            let mut pmtu = PathMtu::new(1191, 1435, 0);
            let (sent, took) = search(&mut pmtu, path, now);
            let found = pmtu.current();
            assert!(found <= path, "path {path}: {found} ({sent:?})");
            assert!(
                path < found + GRANULARITY || (path == 1191 && found == 1191),
                "path {path}: only {found} ({sent:?})"
            );
            // Each size that fails costs MAX_PROBES sends, and halving the 241-byte gap down
            // to the granularity fails at most 6 sizes.
            assert!(
                sent.len() <= 6 * MAX_PROBES as usize + 6,
                "path {path}: {sent:?}"
            );
            assert!(took <= RTO * 6 * MAX_PROBES, "path {path}: {took:?}");
            assert!(sent.iter().all(|size| size % 4 == 0 && *size <= 1432));
        }
    }

    #[test]
    fn a_lost_probe_is_repeated_before_its_size_fails() {
        let now = Instant::now();
        let mut pmtu = PathMtu::new(1191, 1435, 0);
        let first = pmtu.poll_probe(now, RTO).unwrap();
        assert_eq!(pmtu.poll_probe(now + RTO / 2, RTO), None);
        // Lost once: the same probe again; its answer still counts.
        assert_eq!(pmtu.poll_probe(now + RTO, RTO), Some(first));
        assert_eq!(pmtu.on_probe_acked(first.id, now + RTO), Some(1432));
    }

    #[test]
    fn only_the_outstanding_probe_answer_counts() {
        let now = Instant::now();
        let mut pmtu = PathMtu::new(1191, 1435, 40);
        let probe = pmtu.poll_probe(now, RTO).unwrap();
        assert_eq!(pmtu.on_probe_acked(probe.id + 1, now), None);
        assert_eq!(pmtu.on_probe_acked(probe.id, now), Some(1432));
        // A duplicate answer changes nothing.
        assert_eq!(pmtu.on_probe_acked(probe.id, now), None);
        assert_eq!(pmtu.current(), 1432);
    }

    #[test]
    fn a_black_hole_falls_back_to_the_base_and_searches_below_it() {
        let now = Instant::now();
        let mut pmtu = PathMtu::new(1191, 1435, 0);
        search(&mut pmtu, 1500, now);
        assert_eq!(pmtu.current(), 1432);
        // The path shrinks to 1300.
        assert_eq!(pmtu.on_black_hole(now), Some(1191));
        assert_eq!(pmtu.current(), 1191);
        let (sent, _) = search(&mut pmtu, 1300, now);
        assert!(sent.iter().all(|size| *size < 1432), "{sent:?}");
        assert!((1300 - GRANULARITY..=1300).contains(&pmtu.current()));
        // At the base there is nothing to fall back from.
        let mut base = PathMtu::new(1191, 1435, 0);
        assert_eq!(base.on_black_hole(now), None);
    }

    #[test]
    fn after_resting_it_tries_the_ceiling_again() {
        let now = Instant::now();
        let mut pmtu = PathMtu::new(1191, 1435, 0);
        search(&mut pmtu, 1300, now);
        let rested = pmtu.poll_timeout().unwrap();
        assert!(rested >= now + RAISE_INTERVAL);
        let probe = pmtu.poll_probe(rested, RTO).unwrap();
        assert_eq!(probe.size, 1432);
    }
}
