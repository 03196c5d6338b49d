//! The GPUs' and CPUs' sensors against a meter that measures the same nodes (a PDU or rack meter;
//! issue 35, item 6). Hour by hour, where the meter covered the whole hour and every GPU of its nodes
//! reported throughout, the collectors' energy (GPU + CPU + DRAM) is compared with the meter's: their
//! ratio, per UTC day. The meter also sees what no collector measures (power supplies' losses, fans,
//! disks, network cards), so the ratio sits below 1; what matters is that it holds: a sensor drifting,
//! a firmware changing how the GPUs report, moves it. Drift is flagged where the median of the last
//! 7 compared days differs from the median of the 28 before by more than `DRIFT_PCT`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

/// An hour's two measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HourPair {
    /// Hour start, ms.
    pub hour_ms: i64,
    /// The meter's IT energy, J, and the seconds its readings covered.
    pub meter_j: f64,
    /// .
    pub meter_covered_s: f64,
    /// The collectors' energy (GPU + CPU + DRAM), J.
    pub collectors_j: f64,
    /// GPU-seconds the GPUs' samples covered.
    pub gpu_covered_s: f64,
}

/// A day of compared hours.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DayRatio {
    /// UTC day.
    pub date: NaiveDate,
    /// Hours compared (whole on both sides).
    pub hours: u32,
    /// The meter's energy over them, kWh.
    pub meter_kwh: f64,
    /// The collectors', kWh.
    pub collectors_kwh: f64,
    /// Collectors / meter.
    pub ratio: f64,
}

/// Drift of the ratio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Drift {
    /// Median ratio of the last 7 compared days.
    pub recent_median: f64,
    /// Median ratio of the 28 compared days before them.
    pub baseline_median: f64,
    /// Their difference, % of the baseline.
    pub change_pct: f64,
    /// Beyond `DRIFT_PCT`.
    pub flagged: bool,
}

/// A change of the ratio flagged as drift, %.
pub(crate) const DRIFT_PCT: f64 = 3.0;
/// Share of an hour both sides must cover for it to be compared.
const WHOLE: f64 = 0.95;

/// The compared hours per UTC day (`gpus`: how many GPUs the meter's nodes hold).
pub(crate) fn daily(pairs: &[HourPair], gpus: i64) -> Vec<DayRatio> {
    let mut days: BTreeMap<NaiveDate, (u32, f64, f64)> = BTreeMap::new();
    for p in pairs {
        let whole_meter = p.meter_covered_s >= WHOLE * 3600.0;
        let whole_gpus = gpus > 0 && p.gpu_covered_s >= WHOLE * 3600.0 * gpus as f64;
        if !(whole_meter && whole_gpus && p.meter_j > 0.0) {
            continue;
        }
        let Some(t) = DateTime::<Utc>::from_timestamp_millis(p.hour_ms) else {
            continue;
        };
        let d = days.entry(t.date_naive()).or_default();
        d.0 += 1;
        d.1 += p.meter_j;
        d.2 += p.collectors_j;
    }
    days.into_iter()
        .map(|(date, (hours, meter_j, collectors_j))| DayRatio {
            date,
            hours,
            meter_kwh: meter_j / 3.6e6,
            collectors_kwh: collectors_j / 3.6e6,
            ratio: collectors_j / meter_j,
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The drift of the ratio: none without 3 compared days in each window.
pub(crate) fn drift(days: &[DayRatio]) -> Option<Drift> {
    let n = days.len();
    let recent: Vec<f64> = days[n.saturating_sub(7)..]
        .iter()
        .map(|d| d.ratio)
        .collect();
    let baseline: Vec<f64> = days[n.saturating_sub(35)..n.saturating_sub(7)]
        .iter()
        .map(|d| d.ratio)
        .collect();
    if recent.len() < 3 || baseline.len() < 3 {
        return None;
    }
    let (r, b) = (median(recent), median(baseline));
    let change_pct = (r - b) / b * 100.0;
    Some(Drift {
        recent_median: r,
        baseline_median: b,
        change_pct,
        flagged: change_pct.abs() > DRIFT_PCT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn hour(k: i64, meter_w: f64, collectors_w: f64, gpus: f64) -> HourPair {
        HourPair {
            hour_ms: k * H,
            meter_j: meter_w * 3600.0,
            meter_covered_s: 3600.0,
            collectors_j: collectors_w * 3600.0,
            gpu_covered_s: 3600.0 * gpus,
        }
    }

    #[test]
    fn whole_hours_compared_per_day_and_a_drift_flagged() {
        // Day 0: two whole hours at 1000 W metered, 850 W collected; a third the GPUs half covered.
        let mut pairs = vec![hour(0, 1000.0, 850.0, 4.0), hour(1, 1000.0, 850.0, 4.0)];
        let mut half = hour(2, 1000.0, 400.0, 4.0);
        half.gpu_covered_s = 3600.0 * 2.0;
        pairs.push(half);
        let days = daily(&pairs, 4);
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].hours, 2);
        assert!((days[0].ratio - 0.85).abs() < 1e-12);
        assert!((days[0].meter_kwh - 2.0).abs() < 1e-12);
        // 28 days at 0.85, then 7 at 0.80: a 5.9 % drop, flagged; at 0.84, not.
        let series = |late: f64| -> Vec<DayRatio> {
            (0..35)
                .map(|d| {
                    let ratio = if d < 28 { 0.85 } else { late };
                    hour(d * 24, 1000.0, 1000.0 * ratio, 4.0)
                })
                .flat_map(|p| daily(&[p], 4))
                .collect()
        };
        let d = drift(&series(0.80)).expect("enough days");
        assert!(d.flagged && (d.change_pct - (-5.882)).abs() < 0.01, "{d:?}");
        let d = drift(&series(0.84)).expect("enough days");
        assert!(!d.flagged, "{d:?}");
        assert_eq!(drift(&series(0.80)[..5]), None, "too few days");
    }
}
