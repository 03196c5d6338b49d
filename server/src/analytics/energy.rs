//! GPU energy over a time window, from raw samples: the first paper's measurement, made exact.
//!
//! Owns the maths only: callers fetch samples (raw blocks or rollups) and pass them in.
//!
//! Between two consecutive samples `a`, `b` of one GPU:
//! - if both carry the NVML energy counter and it moved forward by a plausible amount, the interval's
//!   energy is the counter delta (on Ampere and newer `power_usage` is a 1-second average; the counter is
//!   the truth);
//! - otherwise (no counter, a counter reset, or an implausible jump) the power is taken as linear between
//!   the two readings and integrated (a trapezoid). After a reset the counter restarts from its new value.
//!
//! An interval that straddles a window boundary contributes the part inside the window: counter energy in
//! proportion to time, trapezoids by integrating the line over the clipped part. Energy over adjacent
//! windows therefore adds up exactly to the energy over their union, which is what lets per-minute rollups
//! stand in for raw samples. Intervals are bridged up to the gap limit (power) or `MAX_COUNTER_GAP_MS`
//! (counter); longer ones count as lost coverage. The gap limit follows the GPU's own cadence:
//! max(`max_gap`, 3 x the median of the intervals around it), so a log written every second
//! (`nvidia-smi -l 1`) is not all gaps while a hole in a 100 ms stream still is one. The median is taken
//! over the intervals next to the one in question, never the window, so windows still add up.

use crate::codec::RawSample;
use std::collections::BTreeMap;
use wattlas_protocol::{EnergyMethod, PowerSource, MAX_GPU_POWER_W};

#[cfg(test)]
/// Default longest interval between two samples that is still integrated across (1 s).
pub(crate) const DEFAULT_MAX_GAP_MS: i64 = 1000;

/// Longest interval an energy-counter delta is trusted across (a stalled poller, a collector restart).
/// Longer, and a driver reload that left the counter higher than before could pass for energy.
pub(crate) const MAX_COUNTER_GAP_MS: i64 = 60_000;

/// Intervals on each side of one whose median is the GPU's cadence there.
const CADENCE_WINDOW: usize = 7;

/// The longest interval bridged between samples `i` and `i + 1` of `n` sorted sample times `t`:
/// max(`max_gap_ms`, 3 x the median of the up to 15 intervals around it), at most
/// `MAX_COUNTER_GAP_MS` (which bounds how far around a window samples are fetched).
pub(crate) fn gap_limit_ms(t: impl Fn(usize) -> i64, n: usize, i: usize, max_gap_ms: i64) -> i64 {
    let lo = i.saturating_sub(CADENCE_WINDOW);
    let hi = (i + CADENCE_WINDOW + 1).min(n.saturating_sub(1));
    let mut around: Vec<i64> = (lo..hi).map(|k| t(k + 1) - t(k)).collect();
    if around.is_empty() {
        return max_gap_ms;
    }
    let mid = around.len() / 2;
    let (_, median, _) = around.select_nth_unstable(mid);
    max_gap_ms.max((3 * *median).min(MAX_COUNTER_GAP_MS))
}

/// How far around a window samples must be fetched for its boundary intervals to count.
pub(crate) fn fetch_margin_ms(max_gap_ms: i64) -> i64 {
    max_gap_ms.max(MAX_COUNTER_GAP_MS)
}

/// Energy of one GPU (or of several, added) over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuEnergy {
    /// Energy in joules.
    pub energy_j: f64,
    /// Seconds of the window covered by bridged intervals.
    pub covered_s: f64,
    /// Seconds whose energy came from the counter.
    pub counter_s: f64,
    /// Samples inside the window.
    pub samples: u64,
    /// Enforced power limit (mW) -> number of samples in the window that reported it.
    pub limits: BTreeMap<i64, u64>,
    /// What the readings were and what they say beside the energy.
    pub readings: Readings,
}

/// How a GPU's power was read and two comparisons of the sensor with itself (issue 35, item 3). On
/// A100 and H100 the power readings sample about 25 % of each 100 ms (Yang et al., SC24): a workload
/// whose rhythm is faster than that, in step with it, is read too high or too low, while an energy
/// counter that integrates the whole time is not. Where the readings and the counter (or the instant
/// readings and the 1-s averages) disagree over the same intervals by more than the sensor's noise,
/// the job's rhythm aliases with the sensor's cycle ([`Readings::aliasing`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Readings {
    /// Seconds whose energy was integrated from readings that were the sensor's 1-s average.
    pub average_s: f64,
    /// Seconds whose energy was integrated from instant readings.
    pub instant_s: f64,
    /// Over the intervals the counter covered: its energy, J.
    pub counter_j: f64,
    /// Over the same intervals: the power readings integrated (trapezoids), J.
    pub counter_read_j: f64,
    /// Seconds of those counter intervals.
    pub counter_compared_s: f64,
    /// Over intervals with an instant reading at both ends: the instant readings integrated, J.
    pub instant_j: f64,
    /// Over the same intervals: the power readings integrated, J.
    pub instant_avg_j: f64,
    /// Seconds of those instant intervals.
    pub instant_compared_s: f64,
}

/// Readings that disagree by more than this share (over at least [`ALIASING_MIN_S`]) show aliasing:
/// 20 times the largest disagreement of the simulator's runs without it (0.15 %: readings sampling
/// 25 % of each 100 ms, ±1 W of noise, polls jittered by ±8 ms; `uncertainty`'s calibration test). A
/// real board's readings and counter may differ by a calibration offset of their own: not measured
/// here (no GPU), which is why the margin is wide.
pub(crate) const ALIASING_SHARE: f64 = 0.03;
/// Seconds of comparison below which no disagreement is called aliasing.
pub(crate) const ALIASING_MIN_S: f64 = 60.0;

impl Readings {
    fn add(&mut self, o: &Readings) {
        self.average_s += o.average_s;
        self.instant_s += o.instant_s;
        self.counter_j += o.counter_j;
        self.counter_read_j += o.counter_read_j;
        self.counter_compared_s += o.counter_compared_s;
        self.instant_j += o.instant_j;
        self.instant_avg_j += o.instant_avg_j;
        self.instant_compared_s += o.instant_compared_s;
    }

    /// `(readings / counter - 1, instant / average - 1)`, each where compared.
    pub(crate) fn disagreements(&self) -> (Option<f64>, Option<f64>) {
        let ratio = |a: f64, b: f64, s: f64| (s >= ALIASING_MIN_S && b > 0.0).then(|| a / b - 1.0);
        (
            ratio(self.counter_read_j, self.counter_j, self.counter_compared_s),
            ratio(self.instant_j, self.instant_avg_j, self.instant_compared_s),
        )
    }

    /// Where the readings disagree beyond noise (the rhythm aliases with the sensor's cycle): the
    /// larger of the two disagreements, signed; `None` where neither is beyond [`ALIASING_SHARE`].
    pub(crate) fn aliasing_share(&self) -> Option<f64> {
        let (a, b) = self.disagreements();
        [a, b]
            .into_iter()
            .flatten()
            .filter(|d| d.abs() > ALIASING_SHARE)
            .max_by(|x, y| x.abs().total_cmp(&y.abs()))
    }
}

/// Shares of the covered GPU time by how its energy was obtained, summed over `sensors`, in the
/// order: energy counter, 1-s averages, instant readings, readings of unknown kind; `None` where no
/// time was covered. The job page and the statements word them each their own way.
pub(crate) fn read_shares<'a>(
    sensors: impl IntoIterator<Item = &'a wattlas_protocol::SensorReadings>,
) -> Option<[f64; 4]> {
    let mut s = [0.0; 4];
    for r in sensors {
        for (sum, v) in s.iter_mut().zip([
            r.counter_gpu_s,
            r.average_gpu_s,
            r.instant_gpu_s,
            r.unknown_gpu_s,
        ]) {
            *sum += v;
        }
    }
    let total: f64 = s.iter().sum();
    (total > 0.0).then(|| s.map(|v| v / total))
}

impl GpuEnergy {
    /// Adds another GPU's or another window's energy to this one.
    pub(crate) fn add(&mut self, other: &GpuEnergy) {
        self.energy_j += other.energy_j;
        self.covered_s += other.covered_s;
        self.counter_s += other.counter_s;
        self.samples += other.samples;
        for (limit, n) in &other.limits {
            *self.limits.entry(*limit).or_default() += n;
        }
        self.readings.add(&other.readings);
    }

    /// The enforced limit most samples reported, in watts (ties: the higher limit).
    pub(crate) fn power_cap_w(&self) -> Option<f64> {
        self.limits
            .iter()
            .max_by_key(|(limit, n)| (**n, **limit))
            .map(|(limit, _)| *limit as f64 / 1000.0)
    }

    /// Mean power over the covered time, in watts.
    pub(crate) fn avg_power_w(&self) -> f64 {
        if self.covered_s > 0.0 {
            self.energy_j / self.covered_s
        } else {
            0.0
        }
    }

    /// How the energy was obtained.
    pub(crate) fn method(&self) -> EnergyMethod {
        const EPS: f64 = 1e-9;
        if self.covered_s <= EPS {
            EnergyMethod::None
        } else if self.counter_s >= self.covered_s - EPS {
            EnergyMethod::Counter
        } else if self.counter_s <= EPS {
            EnergyMethod::Integrated
        } else {
            EnergyMethod::Mixed
        }
    }
}

/// Energy of one GPU over `[from_ms, to_ms)`. `samples` are that GPU's, in any order, possibly with
/// duplicates; pass those within `fetch_margin_ms` of the window so boundary intervals count.
pub fn gpu_energy(samples: &[RawSample], from_ms: i64, to_ms: i64, max_gap_ms: i64) -> GpuEnergy {
    let mut sorted: Vec<&RawSample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.t_ms);
    sorted.dedup_by_key(|s| s.t_ms);
    energy_sorted(&sorted, from_ms, to_ms, max_gap_ms)
}

/// [`gpu_energy`] for samples already sorted by time without duplicate times.
pub(crate) fn energy_sorted(
    sorted: &[&RawSample],
    from_ms: i64,
    to_ms: i64,
    max_gap_ms: i64,
) -> GpuEnergy {
    let mut out = GpuEnergy::default();
    if to_ms <= from_ms {
        return out;
    }
    for s in sorted {
        if s.t_ms >= from_ms && s.t_ms < to_ms {
            out.samples += 1;
            if let Some(limit) = s.limit_mw {
                *out.limits.entry(limit).or_default() += 1;
            }
        }
    }
    for (i, pair) in sorted.windows(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        let dt_ms = b.t_ms - a.t_ms;
        if dt_ms <= 0 || b.t_ms <= from_ms || a.t_ms >= to_ms {
            continue;
        }
        let counter = counter_delta_mj(a, b, dt_ms);
        // The counter is cumulative, so its delta is exact across a longer gap (a stalled poller);
        // power readings are only trusted over the gap limit at the GPU's cadence.
        let limit = if counter.is_some() {
            max_gap_ms.max(MAX_COUNTER_GAP_MS)
        } else if dt_ms <= max_gap_ms {
            max_gap_ms
        } else {
            gap_limit_ms(|k| sorted[k].t_ms, sorted.len(), i, max_gap_ms)
        };
        if dt_ms > limit {
            continue;
        }
        let lo = a.t_ms.max(from_ms);
        let hi = b.t_ms.min(to_ms);
        if hi <= lo {
            continue;
        }
        let part_s = (hi - lo) as f64 / 1000.0;
        out.covered_s += part_s;
        let line = |pa: i64, pb: i64| {
            let at = |t: i64| {
                let f = (t - a.t_ms) as f64 / dt_ms as f64;
                (pa as f64 + (pb - pa) as f64 * f) / 1000.0
            };
            part_s * (at(lo) + at(hi)) / 2.0
        };
        let read_j = line(a.power_mw, b.power_mw);
        let r = &mut out.readings;
        match counter {
            Some(delta_mj) => {
                let counter_j = delta_mj as f64 / 1000.0 * (hi - lo) as f64 / dt_ms as f64;
                out.energy_j += counter_j;
                out.counter_s += part_s;
                r.counter_j += counter_j;
                r.counter_read_j += read_j;
                r.counter_compared_s += part_s;
            }
            None => {
                out.energy_j += read_j;
                match a.power_source {
                    Some(PowerSource::Average) => r.average_s += part_s,
                    Some(PowerSource::Instant) => r.instant_s += part_s,
                    None => {}
                }
            }
        }
        if let (Some(ia), Some(ib)) = (a.instant_mw, b.instant_mw) {
            r.instant_j += line(ia, ib);
            r.instant_avg_j += read_j;
            r.instant_compared_s += part_s;
        }
    }
    out
}

/// [`energy_sorted`] over `[from_ms, to_ms)` cut at multiples of `bucket_ms`: `(bucket start, its
/// energy)` for each bucket some sample reaches, in order. Walks the samples, never the empty buckets
/// between them (a job said to run for 8,000 years has as many buckets as it has samples: issue 33,
/// N1). Each bucket is computed over the samples that can reach it and the cadence window around
/// them, so it equals `energy_sorted` over all of `sorted`, bucket by bucket.
pub(crate) fn energy_buckets(
    sorted: &[&RawSample],
    from_ms: i64,
    to_ms: i64,
    max_gap_ms: i64,
    bucket_ms: i64,
) -> Vec<(i64, GpuEnergy)> {
    // No bridged interval is longer than this, so samples further from a bucket cannot reach it.
    let reach = fetch_margin_ms(max_gap_ms);
    let bucket_ms = bucket_ms.max(1);
    let mut out = Vec::new();
    let mut start = from_ms;
    while start < to_ms {
        let bucket = start.div_euclid(bucket_ms) * bucket_ms;
        let end = (bucket + bucket_ms).min(to_ms);
        let lo = sorted.partition_point(|s| s.t_ms < start - reach);
        let hi = sorted.partition_point(|s| s.t_ms <= end + reach);
        if lo == hi {
            // Nothing reaches this bucket: on to the bucket the next sample first reaches.
            let Some(next) = sorted.get(lo) else { break };
            start = ((next.t_ms - reach).div_euclid(bucket_ms) * bucket_ms).max(end);
            continue;
        }
        // The cadence of an interval is the median of up to CADENCE_WINDOW intervals on each side.
        let around = &sorted
            [lo.saturating_sub(CADENCE_WINDOW + 1)..(hi + CADENCE_WINDOW + 1).min(sorted.len())];
        out.push((bucket, energy_sorted(around, start, end, max_gap_ms)));
        start = end;
    }
    out
}

/// The counter's delta over an interval, when both ends carry it and it is plausible: not backwards (a
/// reset) and not faster than the largest power a GPU can draw.
fn counter_delta_mj(a: &RawSample, b: &RawSample, dt_ms: i64) -> Option<i64> {
    let delta = b.energy_mj? - a.energy_mj?;
    // mJ per ms is W.
    (delta >= 0 && (delta as f64) <= MAX_GPU_POWER_W * dt_ms as f64).then_some(delta)
}

/// One GPU's numbers over one minute, as kept forever after raw samples expire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MinuteRollup {
    /// Start of the minute, ms since the epoch.
    pub minute_ms: i64,
    /// Energy, seconds covered and counter seconds inside the minute, and limits reported.
    pub energy: GpuEnergy,
    /// Lowest and highest power reading in the minute, W.
    pub power_min_w: f64,
    /// Highest power reading in the minute, W.
    pub power_max_w: f64,
    /// Mean utilisation of the readings that carried it, %.
    pub util_avg_pct: Option<f64>,
    /// Highest memory use, MiB.
    pub mem_max_mib: Option<f64>,
    /// Highest temperature, degrees C.
    pub temp_max_c: Option<f64>,
    /// Mean SM clock, MHz.
    pub sm_avg_mhz: Option<f64>,
}

/// Per-minute rollups of one GPU over the minutes `[from_ms, to_ms)` (both on minute boundaries).
/// Minutes without any sample or covered time are left out.
pub(crate) fn minute_rollups(
    samples: &[RawSample],
    from_ms: i64,
    to_ms: i64,
    max_gap_ms: i64,
) -> Vec<MinuteRollup> {
    let mut sorted: Vec<&RawSample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.t_ms);
    sorted.dedup_by_key(|s| s.t_ms);
    let mut out = Vec::new();
    let mut minute = from_ms;
    while minute < to_ms {
        let end = minute + 60_000;
        let margin = fetch_margin_ms(max_gap_ms);
        let lo = sorted.partition_point(|s| s.t_ms < minute - margin);
        let hi = sorted.partition_point(|s| s.t_ms <= end + margin);
        if lo == hi {
            // No sample near this minute: on to the first minute the next sample reaches (a batch
            // stamped decades apart is rolled up in its samples' minutes, not the years between).
            let Some(next) = sorted.get(lo) else { break };
            let first =
                from_ms + (next.t_ms - margin - 60_000 - from_ms).div_euclid(60_000) * 60_000;
            minute = first.max(end);
            continue;
        }
        let window = &sorted[lo..hi];
        let energy = energy_sorted(window, minute, end, max_gap_ms);
        if energy.samples > 0 || energy.covered_s > 0.0 {
            let inside: Vec<&RawSample> = window
                .iter()
                .copied()
                .filter(|s| s.t_ms >= minute && s.t_ms < end)
                .collect();
            let mean = |f: fn(&RawSample) -> Option<i64>, scale: f64| {
                let vals: Vec<f64> = inside
                    .iter()
                    .filter_map(|s| f(s))
                    .map(|v| v as f64 / scale)
                    .collect();
                (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
            };
            let max = |f: fn(&RawSample) -> Option<i64>, scale: f64| {
                inside
                    .iter()
                    .filter_map(|s| f(s))
                    .max()
                    .map(|v| v as f64 / scale)
            };
            out.push(MinuteRollup {
                minute_ms: minute,
                power_min_w: inside.iter().map(|s| s.power_mw).min().unwrap_or(0) as f64 / 1000.0,
                power_max_w: inside.iter().map(|s| s.power_mw).max().unwrap_or(0) as f64 / 1000.0,
                util_avg_pct: mean(|s| s.util_dpct, 10.0),
                mem_max_mib: max(|s| s.mem_mib, 1.0),
                temp_max_c: max(|s| s.temp_dc, 10.0),
                sm_avg_mhz: mean(|s| s.sm_mhz, 1.0),
                energy,
            });
        }
        minute = end;
    }
    out
}

#[cfg(test)]
/// The parts of `[from_ms, to_ms)` that samples at `times_ms` (sorted) do not cover: before the first
/// sample, between samples more than `max_gap_ms` apart, and after the last, where longer than
/// `max_gap_ms`. No sample at all: the whole window.
pub(crate) fn gaps(times_ms: &[i64], from_ms: i64, to_ms: i64, max_gap_ms: i64) -> Vec<(i64, i64)> {
    let runs: Vec<(i64, i64)> = times_ms.iter().map(|t| (*t, *t)).collect();
    gaps_between_runs(&runs, from_ms, to_ms, max_gap_ms)
}

/// Runs (first, last) of sorted sample times whose intervals are bridged at the GPU's cadence (see
/// [`gap_limit_ms`]): what [`gaps_between_runs`] takes, so coverage gaps agree with the energy.
pub(crate) fn cadence_runs(times_ms: &[i64], max_gap_ms: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (i, t) in times_ms.iter().enumerate() {
        match out.last_mut() {
            Some(run)
                if t - run.1 <= max_gap_ms
                    || t - run.1
                        <= gap_limit_ms(|k| times_ms[k], times_ms.len(), i - 1, max_gap_ms) =>
            {
                run.1 = *t
            }
            _ => out.push((*t, *t)),
        }
    }
    out
}

/// `gaps` of runs of samples (first, last), each run's samples at most `max_gap_ms` apart: what a
/// database returns instead of every minute of a week-long job. Runs are sorted and clipped to the
/// window.
pub(crate) fn gaps_between_runs(
    runs: &[(i64, i64)],
    from_ms: i64,
    to_ms: i64,
    max_gap_ms: i64,
) -> Vec<(i64, i64)> {
    let inside: Vec<(i64, i64)> = runs
        .iter()
        .filter(|(a, b)| *b >= from_ms && *a < to_ms)
        .map(|(a, b)| ((*a).max(from_ms), (*b).min(to_ms - 1)))
        .collect();
    let (Some(&(first, _)), Some(&(_, last))) = (inside.first(), inside.last()) else {
        return if to_ms > from_ms {
            vec![(from_ms, to_ms)]
        } else {
            Vec::new()
        };
    };
    let mut out = Vec::new();
    if first - from_ms > max_gap_ms {
        out.push((from_ms, first));
    }
    for pair in inside.windows(2) {
        if pair[1].0 - pair[0].1 > max_gap_ms {
            out.push((pair[0].1, pair[1].0));
        }
    }
    if to_ms - last > max_gap_ms {
        out.push((last, to_ms));
    }
    out
}

#[cfg(test)]
mod tests;
