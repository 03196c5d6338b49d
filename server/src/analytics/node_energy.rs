//! A job's share of its nodes' CPU and DRAM energy (the second paper's `p_c + p_r`): each counter's
//! energy between consecutive readings (unwrapped where it wrapped), the part of it inside the job, times
//! the job's share of the node's CPUs over that interval.
//!
//! Shares: a job that says how many CPUs it holds gets `cpus / node CPUs`; the jobs that do not share
//! what is left equally; a job alone on a node without a count gets the whole node. What no job holds is
//! the node's idle energy, charged to nobody.

use std::collections::BTreeMap;

use wattlas_protocol::NodeEnergyKind;

/// One reading of one counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    /// ms since the epoch.
    pub t_ms: i64,
    /// The counter, µJ.
    pub energy_uj: i64,
    /// Where it wraps, µJ.
    pub max_uj: i64,
}

/// A job on the node over some span, and the CPUs it said it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Occupant {
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms (`i64::MAX` while running).
    pub end_ms: i64,
    /// CPUs it holds on the node, if it said.
    pub cpus: Option<u32>,
}

/// The job's share of one node's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NodeShare {
    /// CPU package energy, J.
    pub cpu_j: f64,
    /// DRAM energy, J.
    pub dram_j: f64,
    /// CPU + DRAM per bucket (bucket start ms -> J).
    pub by_bucket: BTreeMap<i64, f64>,
    /// Whether any CPU or DRAM counter of the node was read during the job.
    pub measured: bool,
}

/// Energy between two readings of a counter, J: unwrapped once where it went down (RAPL counters wrap
/// to 0 after `max_uj`); `None` where that cannot be a wrap (a reset, a reading of another counter).
pub(crate) fn delta_j(a: &Reading, b: &Reading) -> Option<f64> {
    let d = if b.energy_uj >= a.energy_uj {
        b.energy_uj - a.energy_uj
    } else {
        let wrapped = a.max_uj - a.energy_uj + b.energy_uj;
        if wrapped < 0 || a.max_uj != b.max_uj {
            return None;
        }
        wrapped
    };
    Some(d as f64 / 1e6)
}

/// The intervals between consecutive readings of a counter that count over `[from_ms, to_ms)`: no
/// further apart than `max_gap_ms` (else the collector was away) and overlapping the window. Each is
/// `(lo, hi, dt, joules)`: its part inside the window, its whole length, and the energy over its whole
/// length (`None` where no wrap explains a decrease).
fn intervals(
    readings: &[Reading],
    from_ms: i64,
    to_ms: i64,
    max_gap_ms: i64,
) -> impl Iterator<Item = (i64, i64, i64, Option<f64>)> + '_ {
    readings.windows(2).filter_map(move |w| {
        let (a, b) = (&w[0], &w[1]);
        let dt = b.t_ms - a.t_ms;
        let (lo, hi) = (a.t_ms.max(from_ms), b.t_ms.min(to_ms));
        (dt > 0 && dt <= max_gap_ms && hi > lo).then(|| (lo, hi, dt, delta_j(a, b)))
    })
}

/// `[lo, hi)` cut at the boundaries of `step`-long buckets aligned to the epoch: (bucket, from, to).
fn cut(lo: i64, hi: i64, step: i64) -> impl Iterator<Item = (i64, i64, i64)> {
    let step = step.max(1);
    let mut t = lo;
    std::iter::from_fn(move || {
        (t < hi).then(|| {
            let bucket = t.div_euclid(step) * step;
            let (from, to) = (t, (bucket + step).min(hi));
            t = to;
            (bucket, from, to)
        })
    })
}

/// The share of the node `job` (an index into `occupants`) holds at `t_ms`, 0..1.
pub(crate) fn share_at(
    occupants: &[Occupant],
    job: usize,
    node_cpus: Option<u32>,
    t_ms: i64,
) -> f64 {
    let active: Vec<&Occupant> = occupants
        .iter()
        .filter(|o| o.start_ms <= t_ms && t_ms < o.end_ms)
        .collect();
    let me = &occupants[job];
    if !(me.start_ms <= t_ms && t_ms < me.end_ms) {
        return 0.0;
    }
    match node_cpus.filter(|c| *c > 0) {
        Some(total) => {
            let total = f64::from(total);
            let counted: f64 = active
                .iter()
                .filter_map(|o| o.cpus)
                .map(|c| f64::from(c) / total)
                .sum();
            match me.cpus {
                Some(c) => (f64::from(c) / total).min(1.0),
                None => {
                    let without = active.iter().filter(|o| o.cpus.is_none()).count().max(1);
                    (1.0 - counted).max(0.0) / without as f64
                }
            }
        }
        // Without the node's CPU count, counts cannot be shares: everyone on the node alike.
        None => 1.0 / active.len().max(1) as f64,
    }
}

/// The job `job` of `occupants` charged its share of the counters `zones` (each a kind and its readings
/// in time order) over `[from_ms, to_ms)`, in buckets of `bucket_ms`. Intervals between readings longer
/// than `max_gap_ms` are not counted (the collector was away).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attribute(
    zones: &[(NodeEnergyKind, Vec<Reading>)],
    occupants: &[Occupant],
    job: usize,
    node_cpus: Option<u32>,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    max_gap_ms: i64,
) -> NodeShare {
    let mut out = NodeShare::default();
    for (kind, readings) in zones {
        if *kind == NodeEnergyKind::Psys {
            continue;
        }
        for (lo, hi, dt, joules) in intervals(readings, from_ms, to_ms, max_gap_ms) {
            out.measured = true;
            let Some(joules) = joules else { continue };
            // Split at bucket boundaries so each bucket (an hour of PUE) gets exactly its part.
            for (bucket, t, end) in cut(lo, hi, bucket_ms) {
                let share = share_at(occupants, job, node_cpus, t + (end - t) / 2);
                let e = joules * (end - t) as f64 / dt as f64 * share;
                match kind {
                    NodeEnergyKind::Cpu => out.cpu_j += e,
                    NodeEnergyKind::Dram => out.dram_j += e,
                    NodeEnergyKind::Psys => {}
                }
                *out.by_bucket.entry(bucket).or_default() += e;
            }
        }
    }
    out
}

/// One counter's energy per minute over `[from_ms, to_ms)` (minute start ms -> J): each interval between
/// readings no further apart than `max_gap_ms`, unwrapped, cut at minute boundaries pro rata.
pub(crate) fn minutes(
    readings: &[Reading],
    from_ms: i64,
    to_ms: i64,
    max_gap_ms: i64,
) -> BTreeMap<i64, f64> {
    let mut out: BTreeMap<i64, f64> = BTreeMap::new();
    for (lo, hi, dt, joules) in intervals(readings, from_ms, to_ms, max_gap_ms) {
        let Some(joules) = joules else { continue };
        for (minute, t, end) in cut(lo, hi, 60_000) {
            *out.entry(minute).or_default() += joules * (end - t) as f64 / dt as f64;
        }
    }
    out
}

/// The job `job` charged its share of whole minutes of rolled-up energy (`zones`: kind and minute start
/// ms -> J), each at the share it held in the middle of the minute; for minutes where nobody came or
/// went (the caller reads the others raw).
pub(crate) fn attribute_minutes(
    zones: &[(NodeEnergyKind, BTreeMap<i64, f64>)],
    occupants: &[Occupant],
    job: usize,
    node_cpus: Option<u32>,
    minutes: &[i64],
    bucket_ms: i64,
) -> NodeShare {
    let mut out = NodeShare::default();
    let bucket_ms = bucket_ms.max(1);
    for (kind, by_minute) in zones {
        for m in minutes {
            let Some(e) = by_minute.get(m) else { continue };
            out.measured = true;
            let e = e * share_at(occupants, job, node_cpus, m + 30_000);
            match kind {
                NodeEnergyKind::Cpu => out.cpu_j += e,
                NodeEnergyKind::Dram => out.dram_j += e,
                NodeEnergyKind::Psys => continue,
            }
            *out.by_bucket
                .entry(m.div_euclid(bucket_ms) * bucket_ms)
                .or_default() += e;
        }
    }
    out
}

impl NodeShare {
    /// Adds another part of the same job's share.
    pub(crate) fn add(&mut self, other: NodeShare) {
        self.cpu_j += other.cpu_j;
        self.dram_j += other.dram_j;
        self.measured |= other.measured;
        for (b, j) in other.by_bucket {
            *self.by_bucket.entry(b).or_default() += j;
        }
    }
}

/// A node's CPU and DRAM energy over `[from_ms, to_ms)` and the part of it no job held (its idle
/// energy), J: at each instant, what the jobs' shares leave.
pub(crate) fn idle(
    zones: &[(NodeEnergyKind, Vec<Reading>)],
    occupants: &[Occupant],
    node_cpus: Option<u32>,
    from_ms: i64,
    to_ms: i64,
    max_gap_ms: i64,
) -> (f64, f64) {
    let (mut total, mut idle) = (0.0, 0.0);
    for (kind, readings) in zones {
        if *kind == NodeEnergyKind::Psys {
            continue;
        }
        for (lo, hi, dt, joules) in intervals(readings, from_ms, to_ms, max_gap_ms) {
            let Some(joules) = joules else { continue };
            let e = joules * (hi - lo) as f64 / dt as f64;
            let mid = lo + (hi - lo) / 2;
            let held: f64 = (0..occupants.len())
                .map(|j| share_at(occupants, j, node_cpus, mid))
                .sum();
            total += e;
            idle += e * (1.0 - held).clamp(0.0, 1.0);
        }
    }
    (total, idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: i64 = 262_143_328_850;

    fn r(t_s: i64, uj: i64) -> Reading {
        Reading {
            t_ms: t_s * 1000,
            energy_uj: uj,
            max_uj: MAX,
        }
    }

    #[test]
    fn a_wrapped_counter_is_unwrapped_once() {
        assert_eq!(delta_j(&r(0, 100), &r(1, 300)), Some(0.0002));
        let near = MAX - 1_000_000;
        assert_eq!(delta_j(&r(0, near), &r(1, 2_000_000)), Some(3.0));
        let other = Reading {
            max_uj: 7,
            ..r(1, 0)
        };
        assert_eq!(delta_j(&r(0, 5), &other), None, "another counter's range");
    }

    #[test]
    fn a_job_holding_16_of_64_cpus_gets_a_quarter_and_idle_stays_unattributed() {
        // Package: 200 W for 100 s; DRAM 20 W; readings every 5 s; the job holds 16 of 64 CPUs.
        let pkg: Vec<Reading> = (0..=20).map(|i| r(5 * i, 1_000 * i * 5 * 200)).collect();
        let dram: Vec<Reading> = (0..=20).map(|i| r(5 * i, 1_000 * i * 5 * 20)).collect();
        let zones = [(NodeEnergyKind::Cpu, pkg), (NodeEnergyKind::Dram, dram)];
        let occ = [Occupant {
            start_ms: 0,
            end_ms: 100_000,
            cpus: Some(16),
        }];
        let s = attribute(&zones, &occ, 0, Some(64), 0, 100_000, 3_600_000, 60_000);
        assert!(
            (s.cpu_j - 200.0 * 100.0 / 4.0 * 1e-3).abs() < 1e-9,
            "{}",
            s.cpu_j
        );
        assert!((s.dram_j - 20.0 * 100.0 / 4.0 * 1e-3).abs() < 1e-9);
        assert!(s.measured);
        // Alone and without a count: the whole node.
        let alone = [Occupant {
            cpus: None,
            ..occ[0]
        }];
        let s = attribute(&zones, &alone, 0, Some(64), 0, 100_000, 3_600_000, 60_000);
        assert!((s.cpu_j - 20.0).abs() < 1e-9, "{}", s.cpu_j);
    }

    #[test]
    fn jobs_without_counts_share_what_counted_jobs_leave() {
        let occ = [
            Occupant {
                start_ms: 0,
                end_ms: 100,
                cpus: Some(32),
            },
            Occupant {
                start_ms: 0,
                end_ms: 100,
                cpus: None,
            },
            Occupant {
                start_ms: 50,
                end_ms: 100,
                cpus: None,
            },
        ];
        assert_eq!(share_at(&occ, 0, Some(64), 10), 0.5);
        assert_eq!(share_at(&occ, 1, Some(64), 10), 0.5);
        assert_eq!(share_at(&occ, 1, Some(64), 60), 0.25);
        assert_eq!(share_at(&occ, 2, Some(64), 60), 0.25);
        assert_eq!(share_at(&occ, 2, Some(64), 10), 0.0, "not started");
        // Without the node's count, everyone alike.
        assert!((share_at(&occ, 0, None, 60) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn rolled_up_minutes_give_what_raw_readings_give() {
        // 3 W on package-0 read every 7 s for 5 minutes, the counter wrapping on the way.
        let pkg: Vec<Reading> = (0..=43)
            .map(|i| Reading {
                t_ms: 7_000 * i,
                energy_uj: (MAX - 100_000_000 + 21_000_000 * i) % MAX,
                max_uj: MAX,
            })
            .collect();
        let by_minute = minutes(&pkg, 0, 300_000, 60_000);
        assert_eq!(by_minute.len(), 5);
        for e in by_minute.values() {
            assert!((e - 180.0).abs() < 1e-9, "{e}");
        }
        let occ = [Occupant {
            start_ms: 0,
            end_ms: 300_000,
            cpus: Some(16),
        }];
        let raw = attribute(
            &[(NodeEnergyKind::Cpu, pkg)],
            &occ,
            0,
            Some(64),
            0,
            300_000,
            3_600_000,
            60_000,
        );
        let rolled = attribute_minutes(
            &[(NodeEnergyKind::Cpu, by_minute)],
            &occ,
            0,
            Some(64),
            &[0, 60_000, 120_000, 180_000, 240_000],
            3_600_000,
        );
        assert!(
            (raw.cpu_j - rolled.cpu_j).abs() < 1e-9,
            "{} vs {}",
            raw.cpu_j,
            rolled.cpu_j
        );
        assert!((rolled.cpu_j - 225.0).abs() < 1e-9);
    }

    #[test]
    fn what_no_job_holds_is_idle() {
        let pkg: Vec<Reading> = (0..=20)
            .map(|i| r(5 * i, 1_000_000 * i * 5 * 100))
            .collect();
        let zones = [(NodeEnergyKind::Cpu, pkg)];
        // 16 of 64 CPUs for the first half, nobody after.
        let occ = [Occupant {
            start_ms: 0,
            end_ms: 50_000,
            cpus: Some(16),
        }];
        let (total, idle_j) = idle(&zones, &occ, Some(64), 0, 100_000, 60_000);
        assert!((total - 10_000.0).abs() < 1e-9, "{total}");
        assert!(
            (idle_j - (5_000.0 * 0.75 + 5_000.0)).abs() < 1e-9,
            "{idle_j}"
        );
        let charged = attribute(&zones, &occ, 0, Some(64), 0, 100_000, 3_600_000, 60_000);
        assert!(
            (charged.cpu_j + idle_j - total).abs() < 1e-9,
            "charged + idle = all"
        );
    }

    #[test]
    fn buckets_add_up_to_the_total_and_gaps_count_nothing() {
        let pkg = vec![
            r(0, 0),
            r(3590, 3_590_000_000),
            r(3610, 3_610_000_000),
            r(9000, 0),
        ];
        let occ = [Occupant {
            start_ms: 0,
            end_ms: i64::MAX,
            cpus: None,
        }];
        let zones = [(NodeEnergyKind::Cpu, pkg)];
        let s = attribute(&zones, &occ, 0, None, 0, 10_000_000, 3_600_000, 60_000);
        // The 3590 s interval is a gap (over a minute); 3590..3610 is 20 J at 1 W, split 10/10 by hour.
        assert!((s.cpu_j - 20.0).abs() < 1e-9, "{}", s.cpu_j);
        assert!((s.by_bucket[&0] - 10.0).abs() < 1e-9);
        assert!((s.by_bucket[&3_600_000] - 10.0).abs() < 1e-9);
    }
}
