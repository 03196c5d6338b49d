//! Power-cap comparison, the first paper's Figures 1-3: the same workload run at different power caps,
//! its time and energy shown as a percentage of those at a baseline cap (by default the highest).
//!
//! Input: finished jobs that share a tag value, each with the cap most of its samples reported, its
//! duration and its IT energy. Jobs are grouped by cap (to the watt); each group's mean duration and
//! mean energy are compared with the baseline group's.

use serde::{Deserialize, Serialize};

/// One job of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CapJob {
    /// The cap most of its samples reported, W.
    pub power_cap_w: f64,
    /// Duration, s.
    pub duration_s: f64,
    /// IT energy, kWh.
    pub it_energy_kwh: f64,
    /// Its bound, kWh (issue 35); the energy itself where the job's view has none.
    pub it_energy_kwh_low: f64,
    /// .
    pub it_energy_kwh_high: f64,
}

/// One cap of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CapRow {
    /// Cap, W.
    pub power_cap_w: f64,
    /// Jobs at this cap.
    pub jobs: usize,
    /// Mean duration, s.
    pub mean_duration_s: f64,
    /// Mean IT energy, kWh.
    pub mean_it_energy_kwh: f64,
    /// Where it lies: the mean of its jobs' bounds (issue 35). The percentages compare jobs on the
    /// same boards, whose sensors' gain cancels; their spread is the jobs' own.
    #[serde(default)]
    pub mean_it_energy_kwh_low: f64,
    /// .
    #[serde(default)]
    pub mean_it_energy_kwh_high: f64,
    /// Mean duration as a percentage of the baseline's.
    pub rel_time_pct: f64,
    /// Mean energy as a percentage of the baseline's.
    pub rel_energy_pct: f64,
    /// The spread behind the mean: the least and the most energy of one job at this cap, % of the
    /// baseline's mean (equal where the cap rests on one job).
    #[serde(default)]
    pub rel_energy_min_pct: f64,
    /// .
    #[serde(default)]
    pub rel_energy_max_pct: f64,
}

/// Why a comparison cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CompareError {
    /// No job with a known cap.
    #[error("no finished job with a known power cap")]
    Empty,
    /// The requested baseline cap has no job.
    #[error("no job ran at the baseline cap of {0} W")]
    NoBaseline(i64),
    /// The baseline's mean duration or energy is zero.
    #[error("the baseline's jobs have no duration or energy")]
    ZeroBaseline,
}

/// Groups jobs by cap and compares each cap with `baseline_w` (default: the highest cap present).
/// Returns the baseline used and the rows, by ascending cap.
pub(crate) fn compare(
    jobs: &[CapJob],
    baseline_w: Option<f64>,
) -> Result<(f64, Vec<CapRow>), CompareError> {
    let mut groups: Vec<(i64, Vec<&CapJob>)> = Vec::new();
    for j in jobs {
        let key = j.power_cap_w.round() as i64;
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(j),
            None => groups.push((key, vec![j])),
        }
    }
    groups.sort_by_key(|(k, _)| *k);
    let base_key = match baseline_w {
        Some(w) => w.round() as i64,
        None => groups.last().map(|(k, _)| *k).ok_or(CompareError::Empty)?,
    };
    let mean =
        |g: &[&CapJob], f: fn(&CapJob) -> f64| g.iter().map(|j| f(j)).sum::<f64>() / g.len() as f64;
    let (_, base) = groups
        .iter()
        .find(|(k, _)| *k == base_key)
        .ok_or(CompareError::NoBaseline(base_key))?;
    let base_time = mean(base, |j| j.duration_s);
    let base_energy = mean(base, |j| j.it_energy_kwh);
    if base_time <= 0.0 || base_energy <= 0.0 {
        return Err(CompareError::ZeroBaseline);
    }
    let rows = groups
        .iter()
        .map(|(k, g)| {
            let t = mean(g, |j| j.duration_s);
            let e = mean(g, |j| j.it_energy_kwh);
            let each = g.iter().map(|j| j.it_energy_kwh / base_energy * 100.0);
            CapRow {
                power_cap_w: *k as f64,
                jobs: g.len(),
                mean_duration_s: t,
                mean_it_energy_kwh: e,
                mean_it_energy_kwh_low: mean(g, |j| j.it_energy_kwh_low),
                mean_it_energy_kwh_high: mean(g, |j| j.it_energy_kwh_high),
                rel_time_pct: t / base_time * 100.0,
                rel_energy_pct: e / base_energy * 100.0,
                rel_energy_min_pct: each.clone().fold(f64::INFINITY, f64::min),
                rel_energy_max_pct: each.fold(f64::NEG_INFINITY, f64::max),
            }
        })
        .collect();
    Ok((base_key as f64, rows))
}

/// The cap to apply: least energy within a slowdown budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CapAdvice {
    /// Largest accepted slowdown, % over the baseline's time.
    pub slowdown_budget_pct: f64,
    /// The advised cap, W.
    pub power_cap_w: f64,
    /// Its time, % of the baseline's.
    pub rel_time_pct: f64,
    /// Its energy, % of the baseline's.
    pub rel_energy_pct: f64,
    /// IT energy saved per job versus the baseline, kWh.
    pub saving_kwh_per_job: f64,
}

/// Among the caps no slower than the baseline by more than `budget_pct`, the one with the least energy
/// (the baseline itself when no cap saves energy).
pub(crate) fn advise(rows: &[CapRow], budget_pct: f64) -> Option<CapAdvice> {
    let base = rows.iter().find(|r| {
        (r.rel_time_pct - 100.0).abs() < 1e-9 && (r.rel_energy_pct - 100.0).abs() < 1e-9
    })?;
    let best = rows
        .iter()
        .filter(|r| r.rel_time_pct <= 100.0 + budget_pct + 1e-9)
        .min_by(|a, b| a.rel_energy_pct.total_cmp(&b.rel_energy_pct))?;
    Some(CapAdvice {
        slowdown_budget_pct: budget_pct,
        power_cap_w: best.power_cap_w,
        rel_time_pct: best.rel_time_pct,
        rel_energy_pct: best.rel_energy_pct,
        saving_kwh_per_job: base.mean_it_energy_kwh - best.mean_it_energy_kwh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(cap: f64, t: f64, e: f64) -> CapJob {
        CapJob {
            it_energy_kwh_low: e * 0.95,
            it_energy_kwh_high: e * 1.05,
            power_cap_w: cap,
            duration_s: t,
            it_energy_kwh: e,
        }
    }

    #[test]
    fn the_papers_bert_at_150_w() {
        // Figure 1: BERT at 150 W took 108.5 % of the time and 87.7 % of the energy of 250 W.
        let jobs = [
            job(250.0, 1000.0, 10.0),
            job(250.2, 1000.0, 10.0),
            job(150.0, 1085.0, 8.77),
        ];
        let (base, rows) = compare(&jobs, None).expect("compares");
        assert_eq!(base, 250.0);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].jobs, 2, "250.2 W rounds to the 250 W group");
        assert!((rows[0].rel_time_pct - 108.5).abs() < 1e-9);
        assert!((rows[0].rel_energy_pct - 87.7).abs() < 1e-9);
        assert!((rows[1].rel_time_pct - 100.0).abs() < 1e-12);
        assert!(
            (rows[0].rel_energy_min_pct - 87.7).abs() < 1e-9,
            "one job: no spread"
        );
        assert!((rows[0].rel_energy_max_pct - 87.7).abs() < 1e-9);
    }

    #[test]
    fn each_cap_says_its_spread() {
        let jobs = [
            job(250.0, 1000.0, 9.0),
            job(250.0, 1000.0, 11.0),
            job(150.0, 1085.0, 8.0),
            job(150.0, 1085.0, 9.0),
        ];
        let (_, rows) = compare(&jobs, None).expect("compares");
        assert!((rows[0].rel_energy_min_pct - 80.0).abs() < 1e-9);
        assert!((rows[0].rel_energy_max_pct - 90.0).abs() < 1e-9);
        assert!((rows[1].rel_energy_min_pct - 90.0).abs() < 1e-9);
        assert!((rows[1].rel_energy_max_pct - 110.0).abs() < 1e-9);
    }

    #[test]
    fn advice_keeps_to_the_slowdown_budget() {
        let jobs = [
            job(250.0, 1000.0, 10.0),
            job(200.0, 1020.0, 9.3),
            job(150.0, 1085.0, 8.77),
            job(100.0, 1314.0, 8.6),
        ];
        let (_, rows) = compare(&jobs, None).expect("compares");
        let a = advise(&rows, 10.0).expect("advice");
        assert_eq!(a.power_cap_w, 150.0, "100 W saves more but is 31 % slower");
        assert!((a.saving_kwh_per_job - 1.23).abs() < 1e-9);
        assert_eq!(advise(&rows, 40.0).expect("advice").power_cap_w, 100.0);
        assert_eq!(
            advise(&rows, 1.0).expect("advice").power_cap_w,
            250.0,
            "nothing within 1 %: keep the default"
        );
    }

    #[test]
    fn a_chosen_baseline_and_the_errors() {
        let jobs = [job(100.0, 1300.0, 8.0), job(200.0, 1000.0, 10.0)];
        let (base, rows) = compare(&jobs, Some(100.0)).expect("compares");
        assert_eq!(base, 100.0);
        assert!((rows[1].rel_energy_pct - 125.0).abs() < 1e-9);
        assert_eq!(
            compare(&jobs, Some(150.0)),
            Err(CompareError::NoBaseline(150))
        );
        assert_eq!(compare(&[], None), Err(CompareError::Empty));
    }
}
