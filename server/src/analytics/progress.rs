//! Training progress against energy (the first paper's section 3.3): each reported metric as a function
//! of the job's cumulative energy, and what the last 1 % of its improvement cost.

use std::collections::BTreeMap;

use wattlas_protocol::LastPercentCost;

/// Cumulative energy (J) at `t_ms`, from energy per bucket of `bucket_ms` (bucket start -> J) counted
/// from `from_ms`; linear within the bucket that holds `t_ms`.
pub(crate) fn energy_at(
    buckets: &BTreeMap<i64, f64>,
    bucket_ms: i64,
    from_ms: i64,
    t_ms: i64,
) -> f64 {
    let mut total = 0.0;
    for (&start, &j) in buckets {
        // The part of the bucket inside the job: [max(start, from), start + bucket).
        let lo = start.max(from_ms);
        let hi = start + bucket_ms;
        if t_ms >= hi {
            total += j;
        } else if t_ms > lo {
            total += j * (t_ms - lo) as f64 / (hi - lo) as f64;
        }
    }
    total
}

/// For reports `(step, cumulative kWh, metric)` in step order: the energy spent after the metric first
/// came within 1 % of its whole change (first to last report). `None` with fewer than two reports or
/// no change.
pub(crate) fn last_percent(points: &[(i64, f64, f64)]) -> Option<LastPercentCost> {
    let (first, last) = (points.first()?, points.last()?);
    let change = last.2 - first.2;
    if points.len() < 2 || change == 0.0 || !change.is_finite() {
        return None;
    }
    let threshold = first.2 + 0.99 * change;
    let reached = points.iter().find(|p| {
        if change > 0.0 {
            p.2 >= threshold
        } else {
            p.2 <= threshold
        }
    })?;
    let cost = (last.1 - reached.1).max(0.0);
    Some(LastPercentCost {
        first: first.2,
        last: last.2,
        step: reached.0,
        cost_kwh: cost,
        share: if last.1 > 0.0 { cost / last.1 } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_at_interpolates_within_a_bucket_and_clips_the_first() {
        // Job from 30 s; minute buckets at 0 (30 s of the job: 300 J) and 60 s (600 J).
        let buckets = BTreeMap::from([(0, 300.0), (60_000, 600.0)]);
        assert_eq!(energy_at(&buckets, 60_000, 30_000, 30_000), 0.0);
        assert!((energy_at(&buckets, 60_000, 30_000, 45_000) - 150.0).abs() < 1e-9);
        assert!((energy_at(&buckets, 60_000, 30_000, 60_000) - 300.0).abs() < 1e-9);
        assert!((energy_at(&buckets, 60_000, 30_000, 90_000) - 600.0).abs() < 1e-9);
        assert!((energy_at(&buckets, 60_000, 30_000, 500_000) - 900.0).abs() < 1e-9);
    }

    #[test]
    fn the_last_percent_of_a_falling_loss_and_a_rising_accuracy() {
        // Loss 3.0 -> 1.0 (change -2): within 1 % is <= 1.02, first reached at step 30 (1.015).
        let loss = [
            (0, 0.0, 3.0),
            (10, 1.0, 2.0),
            (20, 2.0, 1.1),
            (30, 3.0, 1.015),
            (40, 4.0, 1.0),
        ];
        let lp = last_percent(&loss).expect("changes");
        assert_eq!(lp.step, 30);
        assert!((lp.cost_kwh - 1.0).abs() < 1e-12);
        assert!((lp.share - 0.25).abs() < 1e-12);
        // Accuracy 0.5 -> 0.9: within 1 % is >= 0.896, reached at the last report: costs nothing.
        let acc = [(0, 0.0, 0.5), (1, 1.0, 0.8), (2, 2.0, 0.9)];
        let lp = last_percent(&acc).expect("changes");
        assert_eq!((lp.step, lp.cost_kwh), (2, 0.0));
        assert!(last_percent(&[(0, 0.0, 1.0), (1, 1.0, 1.0)]).is_none());
        assert!(last_percent(&[(0, 0.0, 1.0)]).is_none());
    }
}
