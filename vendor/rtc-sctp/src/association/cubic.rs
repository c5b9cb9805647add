//! CUBIC congestion avoidance (RFC 9438) for the sender's congestion window.
//!
//! RFC 9260 §7.2.2 grows cwnd by one MTU per round trip in congestion avoidance and halves it
//! on loss (Reno). On a long, fast path that is far too slow: at a 100 ms round trip, a 16 MiB
//! window halved by a single loss takes 8 MiB / 1191 B = 7,000 round trips, twelve minutes, to
//! grow back. CUBIC, the default of Linux TCP and of QUIC stacks, cuts cwnd to 0.7 of itself
//! and grows it back along a cubic function of the time since the loss, independent of the
//! round trip: concave up to the window where the loss happened, then convex to probe beyond.
//! A Reno-friendly estimate keeps it at least as fast as Reno on short paths. (usrsctp, the
//! SCTP of Chromium and Firefox, offers HS-TCP and H-TCP modules for the same reason.)
//!
//! This is a pure state machine: window sizes in bytes in, window sizes out, time given by the
//! caller. Slow start and the rules of when cwnd may grow at all (a SACK advances the
//! cumulative TSN, cwnd was fully used, not in fast recovery) stay with the association.

use std::time::{Duration, Instant};

/// CUBIC's multiplicative decrease: cwnd becomes `BETA` × cwnd on a loss (RFC 9438 §4.6).
const BETA: f64 = 0.7;
/// CUBIC's scaling constant C, in segments per second³ (RFC 9438 §5).
const C: f64 = 0.4;
/// The Reno-friendly additive increase per round trip, in segments, while the estimate is
/// below the window of the last loss: 3(1 - β)/(1 + β) (RFC 9438 §4.3).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// The state CUBIC keeps between congestion events.
#[derive(Debug, Default, Clone)]
pub(crate) struct Cubic {
    /// cwnd just before the last reduction, in bytes (W_max).
    w_max: f64,
    /// cwnd at the last reduction, in bytes (cwnd_prior), for the Reno-friendly estimate.
    prior: f64,
    /// Seconds from the start of the epoch until the cubic function reaches `w_max` (K).
    k: f64,
    /// When the current congestion-avoidance epoch began; none right after a reduction.
    epoch: Option<Instant>,
    /// The window Reno would have by now, in bytes (W_est).
    w_est: f64,
}

impl Cubic {
    /// A congestion event (fast retransmit, a lost retransmission, a T3-rtx timeout) with
    /// `cwnd` bytes: returns the new ssthresh, at least four MTUs as RFC 9260 §7.2.3 asks.
    pub(crate) fn on_congestion(&mut self, cwnd: u32, mtu: u32) -> u32 {
        let cwnd = f64::from(cwnd);
        // Fast convergence (RFC 9438 §4.7): a loss below the last W_max means the path's
        // share shrank, so release some of it to newer flows.
        self.w_max = if cwnd < self.w_max {
            cwnd * (1.0 + BETA) / 2.0
        } else {
            cwnd
        };
        self.prior = cwnd;
        self.epoch = None;
        // `as` saturates: a huge MTU (tests use u32::MAX) stays in range.
        ((cwnd * BETA) as u32).max(mtu.saturating_mul(4))
    }

    /// cwnd after a SACK acknowledged `acked` new bytes in congestion avoidance, with the
    /// window fully used: `cwnd` bytes now, smoothed round trip `srtt`, at `now`. Grows by at
    /// most half of cwnd per round trip (RFC 9438 §4.4) and never shrinks.
    pub(crate) fn grow(
        &mut self,
        cwnd: u32,
        acked: u32,
        mtu: u32,
        srtt: Duration,
        now: Instant,
    ) -> u32 {
        let (cwnd_b, mss, acked) = (f64::from(cwnd), f64::from(mtu.max(1)), f64::from(acked));
        let epoch = match self.epoch {
            Some(epoch) => epoch,
            None => {
                // A new epoch (RFC 9438 §4.2): K is how long the cubic takes from here back
                // to W_max; a window already above W_max starts probing at once.
                if cwnd_b < self.w_max {
                    self.k = ((self.w_max - cwnd_b) / mss / C).cbrt();
                } else {
                    self.k = 0.0;
                    self.w_max = cwnd_b;
                }
                self.w_est = cwnd_b;
                self.epoch = Some(now);
                now
            }
        };
        let t = now.saturating_duration_since(epoch).as_secs_f64();
        let cubic = |t: f64| (C * (t - self.k).powi(3)) * mss + self.w_max;

        // Reno-friendly region (RFC 9438 §4.3): α per round trip, 1 once past the old window.
        let alpha = if self.w_est >= self.prior { 1.0 } else { ALPHA };
        self.w_est += alpha * mss * acked / cwnd_b;
        let next = if cubic(t) < self.w_est {
            self.w_est
        } else {
            // Concave and convex regions (RFC 9438 §4.4, §4.5): approach the window the cubic
            // gives one round trip from now, spread over this round trip's acknowledgements.
            let target = cubic(t + srtt.as_secs_f64()).clamp(cwnd_b, 1.5 * cwnd_b);
            cwnd_b + (target - cwnd_b) * acked / cwnd_b
        };
        (next as u32).max(cwnd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTU: u32 = 1191;

    /// Feeds one round trip's worth of SACKs (one per two MTUs, as a receiver acknowledges)
    /// with the window fully used; returns cwnd after it.
    fn round_trip(cubic: &mut Cubic, cwnd: u32, rtt: Duration, now: &mut Instant) -> u32 {
        let sacks = (cwnd / (2 * MTU)).max(1);
        let step = rtt / sacks;
        let mut cwnd_now = cwnd;
        for _ in 0..sacks {
            *now += step;
            cwnd_now = cubic.grow(cwnd_now, 2 * MTU, MTU, rtt, *now);
        }
        cwnd_now
    }

    #[test]
    fn a_loss_cuts_the_window_to_seven_tenths_not_half() {
        let mut cubic = Cubic::default();
        assert_eq!(cubic.on_congestion(10_000_000, MTU), 7_000_000);
        // Never below four MTUs (RFC 9260 §7.2.3).
        assert_eq!(cubic.on_congestion(5 * MTU, MTU), 4 * MTU);
        // A huge MTU saturates rather than overflowing.
        assert_eq!(cubic.on_congestion(u32::MAX, u32::MAX), u32::MAX);
    }

    #[test]
    fn a_long_path_regains_most_of_its_window_within_seconds() {
        // 100 ms round trip, 16 MiB window, one loss. Reno regains one MTU per round trip:
        // after 5 s (50 round trips) it would stand at 0.5 of the old window plus 60 KB;
        // the cubic, with K = 22 s here, is past 0.85 of it.
        let rtt = Duration::from_millis(100);
        let before = 16 << 20;
        let mut cubic = Cubic::default();
        let mut cwnd = cubic.on_congestion(before, MTU);
        let mut now = Instant::now();
        for _ in 0..50 {
            cwnd = round_trip(&mut cubic, cwnd, rtt, &mut now);
        }
        assert!(
            f64::from(cwnd) > 0.85 * f64::from(before),
            "after 5 s cwnd is {cwnd} of {before}"
        );
        assert!(
            cwnd <= before + before / 20,
            "plateau near the old window: {cwnd}"
        );
    }

    #[test]
    fn growth_is_at_most_half_the_window_per_round_trip() {
        let rtt = Duration::from_millis(100);
        let mut cubic = Cubic::default();
        // Far above W_max, deep in the convex region, after a long quiet spell.
        let mut cwnd = cubic.on_congestion(100 * MTU, MTU);
        let mut now = Instant::now();
        cwnd = cubic.grow(cwnd, MTU, MTU, rtt, now);
        now += Duration::from_secs(60);
        for _ in 0..10 {
            let next = round_trip(&mut cubic, cwnd, rtt, &mut now);
            assert!(next <= cwnd + cwnd / 2 + MTU, "{cwnd} -> {next}");
            assert!(next >= cwnd);
            cwnd = next;
        }
    }

    #[test]
    fn a_short_path_grows_at_least_as_fast_as_reno() {
        // 1 ms round trip: the cubic term barely moves in 200 round trips, so the
        // Reno-friendly estimate decides, with α = 0.53 MTU per round trip and then 1.
        let rtt = Duration::from_millis(1);
        let mut cubic = Cubic::default();
        let start = cubic.on_congestion(200 * MTU, MTU);
        let mut cwnd = start;
        let mut now = Instant::now();
        for _ in 0..200 {
            cwnd = round_trip(&mut cubic, cwnd, rtt, &mut now);
        }
        let reno = 100 * MTU + 200 * MTU; // halved, then one MTU per round trip
        assert!(cwnd >= start + 100 * MTU, "{start} -> {cwnd}");
        assert!(
            f64::from(cwnd) >= 0.9 * f64::from(reno),
            "{cwnd} vs Reno {reno}"
        );
    }

    #[test]
    fn a_second_loss_below_the_last_peak_lowers_the_peak() {
        let mut cubic = Cubic::default();
        cubic.on_congestion(1000 * MTU, MTU);
        cubic.on_congestion(800 * MTU, MTU);
        assert!((cubic.w_max - f64::from(800 * MTU) * 0.85).abs() < 1.0);
    }
}
