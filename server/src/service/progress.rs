//! Training progress (the first paper's section 3.3): reports from a training script, checked and
//! stored, and each metric against the job's cumulative IT energy.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use wattlas_protocol::{JobProgress, MetricProgress, ProgressPoint, ProgressReport};

use super::{Error, Result};
use crate::analytics::progress::{energy_at, last_percent};
use crate::db;
use crate::service::Context;

/// Most reports in one request.
const MAX_REPORTS: usize = 10_000;

/// Most metrics in one report.
const MAX_METRICS: usize = 32;

/// Checks reports against their job; the first bad field refuses them all.
pub(crate) fn validate(job: &db::jobs::Job, reports: &[ProgressReport]) -> Result<()> {
    if reports.is_empty() || reports.len() > MAX_REPORTS {
        return Err(Error::invalid(
            "reports",
            format!("1 to {MAX_REPORTS} per request"),
        ));
    }
    let earliest = job.start_time - Duration::minutes(1);
    let latest = job.end_time.unwrap_or_else(Utc::now) + Duration::hours(1);
    for (i, r) in reports.iter().enumerate() {
        if r.step < 0 {
            return Err(Error::invalid(
                format!("[{i}].step"),
                "must not be negative",
            ));
        }
        if r.time < earliest || r.time > latest {
            return Err(Error::invalid(
                format!("[{i}].time"),
                format!(
                    "{} is outside the job ({} to {})",
                    r.time.to_rfc3339(),
                    job.start_time.to_rfc3339(),
                    job.end_time
                        .map_or_else(|| "now".to_owned(), |e| e.to_rfc3339())
                ),
            ));
        }
        if r.metrics.is_empty() || r.metrics.len() > MAX_METRICS {
            return Err(Error::invalid(
                format!("[{i}].metrics"),
                format!("1 to {MAX_METRICS} metrics"),
            ));
        }
        for (name, value) in &r.metrics {
            if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                return Err(Error::invalid(
                    format!("[{i}].metrics"),
                    "names must be 1 to 100 printable characters",
                ));
            }
            if !value.is_finite() {
                return Err(Error::invalid(
                    format!("[{i}].metrics.{name}"),
                    "must be a finite number",
                ));
            }
        }
    }
    Ok(())
}

/// Checks and stores a job's reports: how many were stored.
pub(crate) async fn store(
    cx: &Context,
    job: &db::jobs::Job,
    reports: &[ProgressReport],
) -> Result<u64> {
    validate(job, reports)?;
    Ok(db::progress::upsert(&cx.db, &job.id, reports).await?)
}

/// A job's reports, stored.
pub(crate) async fn reports(cx: &Context, job: &db::jobs::Job) -> Result<Vec<ProgressReport>> {
    Ok(db::progress::list(&cx.db, &job.id).await?)
}

/// Each metric of a job against its cumulative IT energy, from the job's energy by minute.
pub(crate) fn progress_from(
    job: &db::jobs::Job,
    reports: &[ProgressReport],
    it_by_minute: &BTreeMap<i64, f64>,
) -> JobProgress {
    let from_ms = job.start_time.timestamp_millis();
    let mut metrics: Vec<MetricProgress> = Vec::new();
    let mut by_name: BTreeMap<&str, Vec<ProgressPoint>> = BTreeMap::new();
    for r in reports {
        let kwh = energy_at(
            it_by_minute,
            db::energy::MINUTE_MS,
            from_ms,
            r.time.timestamp_millis(),
        ) / 3.6e6;
        for (name, value) in &r.metrics {
            by_name
                .entry(name)
                .or_default()
                .push((r.step, r.time, kwh, *value));
        }
    }
    for (name, points) in by_name {
        let triples: Vec<(i64, f64, f64)> = points.iter().map(|p| (p.0, p.2, p.3)).collect();
        metrics.push(MetricProgress {
            name: name.to_owned(),
            last_percent: last_percent(&triples),
            points,
        });
    }
    JobProgress {
        job: job.id.clone(),
        reports: reports.len() as u64,
        metrics,
    }
}
