//! The path's bandwidth-delay product as the sender measures it, so that a loss the path's
//! queue did not cause costs less of the window (mp change 17).
//!
//! CUBIC (change 11) takes every loss for congestion and cuts the window to 0.7 of itself.
//! On a path that drops packets at random (a radio link, a busy Wi-Fi; here `iptables -m
//! statistic`) that caps the window at a few dozen packets whatever the bandwidth: at 0.1%
//! loss and a 50 ms round trip, a 64 MiB transfer held cwnd at 150-250 kB, about 3 MB/s, where
//! the link carried 40. Westwood+ (Mascolo et al., 2001; Linux's `tcp_westwood`) keeps a
//! bandwidth estimate and, on a loss, sets the window to what the path delivers in its
//! shortest round trip: a random loss on a path without a queue then costs little, while a
//! loss at a full bottleneck queue still brings the window down to the path's
//! bandwidth-delay product, which drains the queue it built (the round trip has grown by the
//! queue's delay, the least round trip has not).
//!
//! The estimate: bytes newly acknowledged (cumulatively or in gap blocks) over intervals of
//! one smoothed round trip and never under 50 ms; the highest rate of the last ten intervals
//! (the bandwidth filter of BBR, draft-ietf-ccwg-bbr, where Westwood+ averages: an
//! average lags a window that grows, and a loss then cut the window back to the lagging
//! average, so it never grew; a path cannot deliver faster than its bottleneck, so the
//! highest recent rate is the bottleneck's when the window is large enough to fill it);
//! times the least round-trip sample of the last ten seconds. The association uses it
//! (`loss_floor()`) as a floor under CUBIC's cut, never above the window it had, on paths of
//! 10 ms or more. Below that a cut window is regained in a few milliseconds anyway, and on
//! the LAN shape at 5% loss the floor cost 12% (32 MiB, 5 interleaved rounds: 121.9 against
//! 138.0 MB/s; a window that stays larger under heavy loss holds more holes, and the CPU that
//! sets the pace there spends more per SACK), with no gain at 0.1% or 1%.

use std::time::{Duration, Instant};

/// Shortest interval a delivery-rate sample covers (Westwood+'s, below which a sample is
/// mostly the SACK rhythm).
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// How long the least round trip holds before a new sample may replace it with a larger one
/// (a path that changed, as BBR's 10 s window).
const MIN_RTT_HOLD: Duration = Duration::from_secs(10);
/// How many delivery-rate samples the maximum is taken over.
const RATE_SAMPLES: usize = 10;
/// The least round trip from which a loss is floored at the product.
const FLOOR_MIN_RTT: Duration = Duration::from_millis(10);

#[derive(Debug, Default, Clone)]
pub(crate) struct BdpEstimate {
    min_rtt: Option<(Duration, Instant)>,
    interval_start: Option<Instant>,
    interval_bytes: u64,
    /// The last [`RATE_SAMPLES`] delivery rates, bytes per second, oldest overwritten first.
    rates: [f64; RATE_SAMPLES],
    next: usize,
}

impl BdpEstimate {
    /// A round-trip sample (one chunk sent once, acknowledged now).
    pub(crate) fn on_rtt(&mut self, rtt: Duration, now: Instant) {
        let keep = self.min_rtt.is_some_and(|(min, at)| {
            min <= rtt && now.saturating_duration_since(at) < MIN_RTT_HOLD
        });
        if !keep {
            self.min_rtt = Some((rtt, now));
        }
    }

    /// `bytes` newly acknowledged by a SACK that arrived `now`; `srtt` is the smoothed
    /// round trip.
    pub(crate) fn on_delivered(&mut self, bytes: u64, srtt: Duration, now: Instant) {
        let Some(start) = self.interval_start else {
            // The first SACK opens the first interval: what it acknowledges was sent before.
            self.interval_start = Some(now);
            return;
        };
        self.interval_bytes += bytes;
        let elapsed = now.saturating_duration_since(start);
        if elapsed < srtt.max(MIN_INTERVAL) {
            return;
        }
        self.rates[self.next] = self.interval_bytes as f64 / elapsed.as_secs_f64();
        self.next = (self.next + 1) % RATE_SAMPLES;
        self.interval_start = Some(now);
        self.interval_bytes = 0;
    }

    /// [`Self::bdp`] on a path whose least round trip is [`FLOOR_MIN_RTT`] or more.
    pub(crate) fn loss_floor(&self) -> Option<u32> {
        let (min_rtt, _) = self.min_rtt?;
        if min_rtt < FLOOR_MIN_RTT {
            return None;
        }
        self.bdp()
    }

    /// Highest recent delivery rate × least round trip, in bytes; `None` before both are
    /// measured.
    pub(crate) fn bdp(&self) -> Option<u32> {
        let (min_rtt, _) = self.min_rtt?;
        let rate = self.rates.iter().copied().fold(0.0, f64::max);
        if rate == 0.0 {
            return None;
        }
        // `as` saturates: a product beyond u32::MAX bytes is u32::MAX.
        Some((rate * min_rtt.as_secs_f64()) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delivers `rate` bytes per second in SACKs every `step` for `time`.
    fn deliver(
        est: &mut BdpEstimate,
        rate: u64,
        step: Duration,
        time: Duration,
        now: &mut Instant,
        srtt: Duration,
    ) {
        let per_sack = rate * step.as_micros() as u64 / 1_000_000;
        let end = *now + time;
        while *now < end {
            *now += step;
            est.on_delivered(per_sack, srtt, *now);
        }
    }

    #[test]
    fn nothing_is_known_before_a_round_trip_and_a_rate_are_measured() {
        let mut est = BdpEstimate::default();
        let mut now = Instant::now();
        assert_eq!(est.bdp(), None);
        est.on_rtt(Duration::from_millis(50), now);
        assert_eq!(est.bdp(), None, "a round trip alone");
        let mut other = BdpEstimate::default();
        deliver(
            &mut other,
            10_000_000,
            Duration::from_millis(5),
            Duration::from_secs(1),
            &mut now,
            Duration::from_millis(50),
        );
        assert_eq!(other.bdp(), None, "a rate alone");
    }

    #[test]
    fn a_steady_rate_times_the_least_round_trip() {
        // 40 MB/s over a 50 ms path: 2 MB in flight.
        let mut est = BdpEstimate::default();
        let mut now = Instant::now();
        let srtt = Duration::from_millis(50);
        est.on_rtt(Duration::from_millis(60), now);
        est.on_rtt(srtt, now);
        est.on_rtt(Duration::from_millis(70), now);
        deliver(
            &mut est,
            40_000_000,
            Duration::from_millis(2),
            Duration::from_secs(5),
            &mut now,
            srtt,
        );
        let bdp = f64::from(est.bdp().unwrap());
        assert!((bdp - 2_000_000.0).abs() < 0.05 * 2_000_000.0, "{bdp}");
    }

    #[test]
    fn a_dip_leaves_the_estimate_and_a_lasting_fall_is_followed_within_ten_intervals() {
        let mut est = BdpEstimate::default();
        let mut now = Instant::now();
        let srtt = Duration::from_millis(50);
        est.on_rtt(srtt, now);
        let step = Duration::from_millis(5);
        deliver(
            &mut est,
            40_000_000,
            step,
            Duration::from_secs(5),
            &mut now,
            srtt,
        );
        // A short dip (a SACK round behind a loss) leaves the estimate.
        deliver(
            &mut est,
            0,
            step,
            Duration::from_millis(150),
            &mut now,
            srtt,
        );
        let after_dip = f64::from(est.bdp().unwrap());
        assert!(
            (after_dip - 2_000_000.0).abs() < 0.05 * 2_000_000.0,
            "{after_dip}"
        );
        // A lasting halving is followed once the older samples are out of the window.
        deliver(
            &mut est,
            20_000_000,
            step,
            Duration::from_millis(300),
            &mut now,
            srtt,
        );
        assert!(est.bdp().unwrap() > 1_900_000, "not after 6 intervals");
        deliver(
            &mut est,
            20_000_000,
            step,
            Duration::from_millis(600),
            &mut now,
            srtt,
        );
        let halved = f64::from(est.bdp().unwrap());
        assert!(
            (halved - 1_000_000.0).abs() < 0.05 * 1_000_000.0,
            "{halved}"
        );
    }

    #[test]
    fn a_path_under_ten_milliseconds_has_no_floor() {
        let mut est = BdpEstimate::default();
        let mut now = Instant::now();
        est.on_rtt(Duration::from_millis(9), now);
        deliver(
            &mut est,
            100_000_000,
            Duration::from_millis(1),
            Duration::from_secs(1),
            &mut now,
            Duration::from_millis(9),
        );
        assert!(est.bdp().is_some());
        assert_eq!(est.loss_floor(), None);
        now += MIN_RTT_HOLD;
        est.on_rtt(FLOOR_MIN_RTT, now);
        assert_eq!(est.loss_floor(), est.bdp());
    }

    #[test]
    fn the_least_round_trip_is_renewed_after_ten_seconds() {
        let mut est = BdpEstimate::default();
        let mut now = Instant::now();
        est.on_rtt(Duration::from_millis(10), now);
        deliver(
            &mut est,
            1_000_000,
            Duration::from_millis(5),
            Duration::from_secs(1),
            &mut now,
            Duration::from_millis(10),
        );
        est.on_rtt(Duration::from_millis(100), now);
        assert!(
            est.bdp().unwrap() < 11_000,
            "a longer sample does not replace a recent minimum"
        );
        now += MIN_RTT_HOLD;
        est.on_rtt(Duration::from_millis(100), now);
        assert!(est.bdp().unwrap() > 90_000, "the path now takes 100 ms");
    }
}
