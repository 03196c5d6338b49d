//! Where a site's energy went: the IT energy its meters measured, split into what jobs drew (on their
//! GPUs, and their share of their nodes' CPU and DRAM), what idle GPUs and idle node shares drew, and
//! the remainder no collector measures (network, storage, nodes without collectors, fans and supplies
//! past the counters).
//!
//! Per hour, with every term measured:
//! - `gpu`: every GPU of the site, from its own samples (rolled-up hours);
//! - `cpu_dram`: every node's CPU package and DRAM counters (RAPL, rolled-up minutes);
//! - `jobs_gpu`, `jobs_it`: the jobs' stored energy per hour (GPU, and GPU + their CPU and DRAM share);
//! - `meter_it`: the meters' IT energy (their power readings integrated, or their energy counters'
//!   deltas), with the seconds the meters covered.
//!
//! and then, by definition, `idle_gpu = gpu - jobs_gpu`, `idle_cpu_dram = cpu_dram - (jobs_it -
//! jobs_gpu)`, `unmeasured = meter_it - gpu - cpu_dram`: the five parts add up to what the meters
//! measured. What makes the split worth reading is that each measured term is independent of the
//! others; a negative part says that two of them disagree (a job's summary read samples not yet rolled
//! up, meters that cover part of the load), and is shown as it is, never clipped.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// An hour, ms.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Longest interval between two readings of one meter that is integrated across (as PUE reads them).
pub(crate) const MAX_METER_GAP_MS: i64 = 3_600_000;

/// One meter reading: IT power or IT energy counter (either may be absent: a PUE-only reading).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MeterReading {
    /// Time, ms.
    pub t_ms: i64,
    /// IT power, kW.
    pub it_kw: Option<f64>,
    /// IT energy counter, kWh.
    pub it_kwh: Option<f64>,
}

/// One hour's measured terms, J (the meters' also with the seconds they covered).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct HourTerms {
    /// Meters' IT energy.
    pub meter_it_j: f64,
    /// Seconds of the hour the meters covered (summed over meters).
    pub meter_covered_s: f64,
    /// All GPUs.
    pub gpu_j: f64,
    /// All nodes' CPU packages and DRAM.
    pub cpu_dram_j: f64,
    /// Jobs' GPU energy.
    pub jobs_gpu_j: f64,
    /// Jobs' IT energy (GPU + CPU and DRAM share).
    pub jobs_it_j: f64,
}

/// One meter's IT energy over `[from_ms, to_ms)` per UTC hour: hour start -> (J, seconds covered).
/// Between consecutive readings at most `MAX_METER_GAP_MS` apart: the counter's delta spread evenly
/// over the interval when both carry a counter that moved forward, else the power readings' line
/// integrated over the part of the interval inside each hour.
pub(crate) fn meter_it_by_hour(
    readings: &[MeterReading],
    from_ms: i64,
    to_ms: i64,
) -> BTreeMap<i64, (f64, f64)> {
    meter_it_by_bucket(readings, from_ms, to_ms, HOUR_MS)
}

/// `meter_it_by_hour` in buckets of `bucket_ms` (aligned to the epoch).
pub(crate) fn meter_it_by_bucket(
    readings: &[MeterReading],
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
) -> BTreeMap<i64, (f64, f64)> {
    let bucket_ms = bucket_ms.max(1);
    let mut out: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for pair in readings.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let dt = b.t_ms - a.t_ms;
        if dt <= 0 || dt > MAX_METER_GAP_MS {
            continue;
        }
        // Energy of [lo, hi) within [a, b), J.
        let energy: Box<dyn Fn(i64, i64) -> f64> = match (a.it_kwh, b.it_kwh, a.it_kw, b.it_kw) {
            (Some(ea), Some(eb), _, _) if eb > ea && eb - ea <= 1e7 => {
                let j = (eb - ea) * 3.6e6;
                Box::new(move |lo, hi| j * (hi - lo) as f64 / dt as f64)
            }
            (_, _, Some(pa), Some(pb))
                if (0.0..=1e7).contains(&pa) && (0.0..=1e7).contains(&pb) =>
            {
                let p = move |t: i64| pa + (pb - pa) * (t - a.t_ms) as f64 / dt as f64;
                // kW x ms = J.
                Box::new(move |lo, hi| (p(lo) + p(hi)) / 2.0 * (hi - lo) as f64)
            }
            _ => continue,
        };
        let (lo, hi) = (a.t_ms.max(from_ms), b.t_ms.min(to_ms));
        let mut t = lo;
        while t < hi {
            let hour = t.div_euclid(bucket_ms) * bucket_ms;
            let end = (hour + bucket_ms).min(hi);
            let e = out.entry(hour).or_default();
            e.0 += energy(t, end);
            e.1 += (end - t) as f64 / 1000.0;
            t = end;
        }
    }
    out
}

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum By {
    /// Local days.
    Day,
    /// Local months.
    Month,
}

/// One day or month of a site, kWh.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Row {
    /// `YYYY-MM-DD` or `YYYY-MM`, local.
    pub period: String,
    /// First instant.
    pub start: DateTime<Utc>,
    /// Instant after the last.
    pub end: DateTime<Utc>,
    /// IT energy the meters measured; `null` when no meter covered any of the period.
    pub measured_it_kwh: Option<f64>,
    /// Share of the period the meters covered (0-1; over 1 with several meters).
    pub meter_coverage: f64,
    /// All GPUs of the site.
    pub gpu_kwh: f64,
    /// All nodes' CPU packages and DRAM.
    pub cpu_dram_kwh: f64,
    /// Jobs' GPU energy.
    pub jobs_gpu_kwh: f64,
    /// Jobs' share of their nodes' CPU and DRAM.
    pub jobs_cpu_dram_kwh: f64,
    /// GPUs when no job held them.
    pub idle_gpu_kwh: f64,
    /// CPU and DRAM energy no job's share covers.
    pub idle_cpu_dram_kwh: f64,
    /// Measured IT energy beyond every GPU and node counter; `null` without a meter.
    pub unmeasured_kwh: Option<f64>,
    /// How far (±, kWh) the unmeasured part lies from the truth: the meters', GPUs' and nodes'
    /// bounds added (`uncertainty::unmeasured_width_kwh`); every other figure carries the relative
    /// bound of its sensors (`Closure::bounds`).
    pub unmeasured_kwh_width: Option<f64>,
}

impl Row {
    /// The five parts that add up to the meters' IT energy, in stacking order: jobs' GPUs, jobs' CPU
    /// and DRAM, idle GPUs, idle CPU and DRAM, not measured by collectors (0 without a meter).
    pub(crate) fn parts(&self) -> [f64; 5] {
        [
            self.jobs_gpu_kwh,
            self.jobs_cpu_dram_kwh,
            self.idle_gpu_kwh,
            self.idle_cpu_dram_kwh,
            self.unmeasured_kwh.unwrap_or(0.0),
        ]
    }
}

/// The local day or month holding instant `t_ms`: (label, start, end).
fn period_of(t_ms: i64, tz: Tz, by: By) -> Option<(String, DateTime<Utc>, DateTime<Utc>)> {
    let local = Utc.timestamp_millis_opt(t_ms).single()?.with_timezone(&tz);
    let (first, next, label) = match by {
        By::Day => {
            let d = local.date_naive();
            (d, d.succ_opt()?, d.format("%Y-%m-%d").to_string())
        }
        By::Month => {
            let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1)?;
            let next = if local.month() == 12 {
                NaiveDate::from_ymd_opt(local.year() + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(local.year(), local.month() + 1, 1)?
            };
            (first, next, first.format("%Y-%m").to_string())
        }
    };
    let midnight = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .and_then(|t| tz.from_local_datetime(&t).earliest())
            .map(|t| t.with_timezone(&Utc))
    };
    Some((label, midnight(first)?, midnight(next)?))
}

/// Every period touching `[from_ms, to_ms)` with its hours' terms summed (each UTC hour counted in the
/// period its start falls in), oldest first; periods without any hour of data are listed with zeros.
pub(crate) fn rows(
    hours: &BTreeMap<i64, HourTerms>,
    tz: Tz,
    by: By,
    from_ms: i64,
    to_ms: i64,
) -> Vec<Row> {
    let mut sums: BTreeMap<i64, (String, DateTime<Utc>, DateTime<Utc>, HourTerms)> =
        BTreeMap::new();
    let mut hour = from_ms.div_euclid(HOUR_MS) * HOUR_MS;
    while hour < to_ms {
        if let Some((label, start, end)) = period_of(hour, tz, by) {
            let s = sums
                .entry(start.timestamp_millis())
                .or_insert_with(|| (label, start, end, HourTerms::default()));
            if let Some(h) = hours.get(&hour) {
                s.3.meter_it_j += h.meter_it_j;
                s.3.meter_covered_s += h.meter_covered_s;
                s.3.gpu_j += h.gpu_j;
                s.3.cpu_dram_j += h.cpu_dram_j;
                s.3.jobs_gpu_j += h.jobs_gpu_j;
                s.3.jobs_it_j += h.jobs_it_j;
            }
        }
        hour += HOUR_MS;
    }
    sums.into_values()
        .map(|(period, start, end, t)| {
            let kwh = |j: f64| j / 3.6e6;
            let seconds = (end - start).num_milliseconds() as f64 / 1000.0;
            let measured = (t.meter_covered_s > 0.0).then_some(t.meter_it_j);
            let jobs_cpu_dram = t.jobs_it_j - t.jobs_gpu_j;
            Row {
                period,
                start,
                end,
                measured_it_kwh: measured.map(kwh),
                meter_coverage: if seconds > 0.0 {
                    t.meter_covered_s / seconds
                } else {
                    0.0
                },
                gpu_kwh: kwh(t.gpu_j),
                cpu_dram_kwh: kwh(t.cpu_dram_j),
                jobs_gpu_kwh: kwh(t.jobs_gpu_j),
                jobs_cpu_dram_kwh: kwh(jobs_cpu_dram),
                idle_gpu_kwh: kwh(t.gpu_j - t.jobs_gpu_j),
                idle_cpu_dram_kwh: kwh(t.cpu_dram_j - jobs_cpu_dram),
                unmeasured_kwh: measured.map(|m| kwh(m - t.gpu_j - t.cpu_dram_j)),
                unmeasured_kwh_width: measured.map(|m| {
                    crate::analytics::uncertainty::unmeasured_width_kwh(
                        kwh(m),
                        kwh(t.gpu_j),
                        kwh(t.cpu_dram_j),
                    )
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(t_s: i64, kw: f64) -> MeterReading {
        MeterReading {
            t_ms: t_s * 1000,
            it_kw: Some(kw),
            it_kwh: None,
        }
    }

    #[test]
    fn power_readings_are_integrated_as_lines_clipped_at_hours() {
        // 0 kW at 00:30, 6 kW at 01:30: 1.5 kW mean in the first half hour, 4.5 in the second.
        let h = meter_it_by_hour(&[kw(1800, 0.0), kw(5400, 6.0)], 0, 7200 * 1000);
        assert_eq!(h.len(), 2);
        assert!((h[&0].0 - 1.5 * 1800.0 * 1000.0).abs() < 1e-6, "{h:?}");
        assert!(
            (h[&HOUR_MS].0 - 4.5 * 1800.0 * 1000.0).abs() < 1e-6,
            "{h:?}"
        );
        assert_eq!(h[&0].1, 1800.0);
        // A gap over an hour is not bridged; the window clips.
        let h = meter_it_by_hour(&[kw(0, 1.0), kw(7201, 1.0)], 0, 7200 * 1000);
        assert!(h.is_empty());
        let h = meter_it_by_hour(&[kw(0, 2.0), kw(3600, 2.0)], 900 * 1000, 1800 * 1000);
        assert!((h[&0].0 - 2.0 * 900.0 * 1000.0).abs() < 1e-6);
    }

    #[test]
    fn counters_spread_evenly_and_backwards_counters_are_skipped() {
        let c = |t_s: i64, kwh: f64| MeterReading {
            t_ms: t_s * 1000,
            it_kw: None,
            it_kwh: Some(kwh),
        };
        let h = meter_it_by_hour(&[c(3000, 10.0), c(4200, 12.0), c(4800, 11.0)], 0, 1 << 40);
        // 2 kWh over 20 minutes: 10 in the first hour, 10 in the second.
        assert!((h[&0].0 - 1.0 * 3.6e6).abs() < 1e-6, "{h:?}");
        assert!((h[&HOUR_MS].0 - 1.0 * 3.6e6).abs() < 1e-6, "{h:?}");
        assert_eq!(h[&HOUR_MS].1, 600.0, "the reset interval covers nothing");
    }

    #[test]
    fn the_parts_add_up_to_the_meters_and_days_are_local() {
        let tz: Tz = "America/New_York".parse().expect("zone");
        // 2026-11-30 00:00 in New York is 05:00 UTC.
        let day = Utc
            .with_ymd_and_hms(2026, 11, 30, 5, 0, 0)
            .single()
            .expect("a time");
        let mut hours = BTreeMap::new();
        for k in 0..24 {
            hours.insert(
                day.timestamp_millis() + k * HOUR_MS,
                HourTerms {
                    meter_it_j: 3.6e6 * 10.0,
                    meter_covered_s: 3600.0,
                    gpu_j: 3.6e6 * 3.0,
                    cpu_dram_j: 3.6e6 * 1.0,
                    jobs_gpu_j: 3.6e6 * 2.0,
                    jobs_it_j: 3.6e6 * 2.25,
                },
            );
        }
        let r = rows(
            &hours,
            tz,
            By::Day,
            day.timestamp_millis() - HOUR_MS,
            day.timestamp_millis() + 24 * HOUR_MS,
        );
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].period, "2026-11-29");
        assert_eq!(r[0].measured_it_kwh, None);
        let d = &r[1];
        assert_eq!(d.period, "2026-11-30");
        assert_eq!(d.meter_coverage, 1.0);
        assert!((d.jobs_cpu_dram_kwh - 6.0).abs() < 1e-9);
        assert!((d.idle_gpu_kwh - 24.0).abs() < 1e-9);
        assert!((d.idle_cpu_dram_kwh - 18.0).abs() < 1e-9);
        assert!((d.unmeasured_kwh.expect("test value") - 144.0).abs() < 1e-9);
        assert!(d.unmeasured_kwh.is_some());
        let sum: f64 = d.parts().iter().sum();
        assert!((sum - 240.0).abs() < 1e-9);
        let m = rows(
            &hours,
            tz,
            By::Month,
            day.timestamp_millis(),
            day.timestamp_millis() + HOUR_MS,
        );
        assert_eq!(m[0].period, "2026-11");
        assert_eq!(
            m[0].end,
            Utc.with_ymd_and_hms(2026, 12, 1, 5, 0, 0)
                .single()
                .expect("a time")
        );
    }
}
