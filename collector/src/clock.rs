//! Sample timestamps that never step (issue 32, item 4). A node's wall clock can jump: NTP steps it
//! when it is far off (ntpd beyond 128 ms at start, chrony's `makestep`), an admin sets it, a VM
//! resumes. Stamped with the wall clock, a backward step of 2 s gives 2 s of samples the times of
//! samples already sent (the server keeps one of each GPU and time: the others' energy is lost, and a
//! counter that seems to run backwards across the overlap reads as a reset) and a forward step opens a
//! gap. Stamps here follow the monotonic clock from an anchor on the wall clock and are slewed toward
//! the wall clock at most 1 % of the elapsed time (10 ms a second, as ntpd slews at 0.05 %), so they
//! stay strictly increasing and 100 ms apart within 1 %: a 2 s step is absorbed in 200 s, moving at most
//! 2 s of energy across a job's edge instead of losing or doubling it. A step is counted
//! (`clock_steps`, shown in the collector's metrics); an error beyond 10 minutes (a clock set wrong at
//! boot, then corrected) re-anchors at once, counted too.

/// Largest slew, as a share of the monotonic time elapsed.
pub const SLEW: f64 = 0.01;
/// A difference from the wall clock beyond this is a step of it, ms.
pub const STEP_MS: i64 = 1_000;
/// A difference beyond this re-anchors instead of slewing, ms.
pub const REANCHOR_MS: i64 = 600_000;

/// The clock samples are stamped with.
#[derive(Debug, Clone)]
pub struct StampClock {
    /// Monotonic and wall time of the anchor, ms.
    anchor: Option<(i64, i64)>,
    /// Correction applied to the anchored time so far, ms (fractions kept).
    correction: f64,
    /// Monotonic time of the last stamp, ms.
    last_mono: i64,
    /// The last stamp, ms since the epoch.
    last_stamp: i64,
    /// Whether the wall clock is off by a step now (a step is counted once, when it starts).
    stepped: bool,
    /// Steps seen.
    pub steps: u64,
}

impl Default for StampClock {
    fn default() -> Self {
        Self::new()
    }
}

impl StampClock {
    /// A clock anchored at its first stamp.
    pub fn new() -> Self {
        Self {
            anchor: None,
            correction: 0.0,
            last_mono: 0,
            last_stamp: i64::MIN,
            stepped: false,
            steps: 0,
        }
    }

    /// The stamp for a reading taken at monotonic time `mono_ms` when the wall clock read `wall_ms`.
    pub fn stamp(&mut self, mono_ms: i64, wall_ms: i64) -> i64 {
        let (am, aw) = *self.anchor.get_or_insert((mono_ms, wall_ms));
        if self.last_stamp == i64::MIN {
            self.last_mono = mono_ms;
        }
        let base = aw + (mono_ms - am);
        let error = wall_ms as f64 - (base as f64 + self.correction);
        let reanchor = error.abs() > REANCHOR_MS as f64;
        if reanchor {
            // Stamps that far off were wrong (a clock set hours off at boot): follow the wall clock
            // at once, backwards too.
            self.steps += 1;
            self.anchor = Some((mono_ms, wall_ms));
            self.correction = 0.0;
            self.stepped = false;
        } else {
            let off = error.abs() > STEP_MS as f64;
            if off && !self.stepped {
                self.steps += 1;
            }
            self.stepped = off;
            let room = SLEW * (mono_ms - self.last_mono).max(0) as f64;
            self.correction += error.clamp(-room, room);
        }
        let (am, aw) = self.anchor.unwrap_or((mono_ms, wall_ms));
        let stamp = (aw + (mono_ms - am)) as f64 + self.correction;
        let stamp = if reanchor {
            stamp.round() as i64
        } else {
            (stamp.round() as i64).max(self.last_stamp.saturating_add(1))
        };
        self.last_mono = mono_ms;
        self.last_stamp = stamp;
        stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 ms ticks of the monotonic clock; the wall clock from `wall(k)`.
    fn run(ticks: i64, wall: impl Fn(i64) -> i64) -> (Vec<i64>, StampClock) {
        let mut c = StampClock::new();
        let stamps = (0..ticks).map(|k| c.stamp(100 * k, wall(k))).collect();
        (stamps, c)
    }

    #[test]
    fn a_backward_step_of_two_seconds_is_slewed_never_repeated() {
        let t0 = 1_765_000_000_000;
        // The wall clock steps back 2 s at tick 600 (one minute in).
        let (stamps, c) = run(4000, |k| t0 + 100 * k - if k >= 600 { 2000 } else { 0 });
        assert_eq!(c.steps, 1);
        for w in stamps.windows(2) {
            let d = w[1] - w[0];
            assert!(
                (99..=101).contains(&d),
                "stamps 100 ms apart within 1 %: {d}"
            );
        }
        // Absorbed after 200 s of slewing, then on the wall clock.
        let last = *stamps.last().expect("stamps");
        assert!((last - (t0 + 100 * 3999 - 2000)).abs() <= 1, "{last}");
        assert!(
            stamps[2599] - (t0 + 100 * 2599 - 2000) <= 1,
            "{}",
            stamps[2599]
        );
        // Before: a wall-clock stamp would have repeated 2 s of times (20 samples of each GPU lost).
        let wall: Vec<i64> = (0..4000)
            .map(|k| t0 + 100 * k - if k >= 600 { 2000 } else { 0 })
            .collect();
        assert!(wall.windows(2).any(|w| w[1] <= w[0]));
    }

    #[test]
    fn a_forward_step_opens_no_gap_and_small_drift_is_followed() {
        let t0 = 1_765_000_000_000;
        let (stamps, c) = run(3000, |k| t0 + 100 * k + if k >= 100 { 2000 } else { 0 });
        assert_eq!(c.steps, 1);
        assert!(stamps
            .windows(2)
            .all(|w| (99..=101).contains(&(w[1] - w[0]))));
        assert!((stamps[2999] - (t0 + 299_900 + 2000)).abs() <= 1);
        // A wall clock running 200 ppm fast (NTP slewing it) is followed without a step.
        let (stamps, c) = run(3000, |k| t0 + 100 * k + k / 50);
        assert_eq!(c.steps, 0);
        assert!((stamps[2999] - (t0 + 299_900 + 59)).abs() <= 1);
    }

    #[test]
    fn a_clock_set_hours_off_at_boot_reanchors_once() {
        let t0 = 1_765_000_000_000;
        let (stamps, c) = run(200, |k| t0 + 100 * k + if k >= 50 { 3_600_000 } else { 0 });
        assert_eq!(c.steps, 1);
        assert_eq!(stamps[50], t0 + 5000 + 3_600_000);
        assert!(stamps.windows(2).all(|w| w[1] > w[0]));
    }
}
