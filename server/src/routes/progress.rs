//! Training progress (the first paper's section 3.3): `POST /api/v1/jobs/{id}/progress` from the training
//! script, `GET` of each metric against the job's cumulative IT energy, and the job page's charts.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use chrono::{Duration, Utc};
use wattlas_protocol::{JobProgress, MetricProgress, ProgressBody, ProgressPoint, ProgressReport};

use crate::analytics::progress::{energy_at, last_percent};
use crate::auth::session::Viewer;
use crate::auth::Caller;
use crate::db;
use crate::db::users::Role;
use crate::error::{AppError, PageError};
use crate::extract::{ApiJson, Path};
use crate::state::AppState;

/// Most reports in one request.
const MAX_REPORTS: usize = 10_000;
/// Most metrics in one report.
const MAX_METRICS: usize = 32;

fn validate(job: &db::jobs::Job, reports: &[ProgressReport]) -> Result<(), AppError> {
    if reports.is_empty() || reports.len() > MAX_REPORTS {
        return Err(AppError::bad_request(format!(
            "reports: 1 to {MAX_REPORTS} per request"
        )));
    }
    let earliest = job.start_time - Duration::minutes(1);
    let latest = job.end_time.unwrap_or_else(Utc::now) + Duration::hours(1);
    for (i, r) in reports.iter().enumerate() {
        if r.step < 0 {
            return Err(AppError::bad_request(format!(
                "[{i}].step: must not be negative"
            )));
        }
        if r.time < earliest || r.time > latest {
            return Err(AppError::bad_request(format!(
                "[{i}].time: {} is outside the job ({} to {})",
                r.time.to_rfc3339(),
                job.start_time.to_rfc3339(),
                job.end_time
                    .map_or_else(|| "now".to_owned(), |e| e.to_rfc3339())
            )));
        }
        if r.metrics.is_empty() || r.metrics.len() > MAX_METRICS {
            return Err(AppError::bad_request(format!(
                "[{i}].metrics: 1 to {MAX_METRICS} metrics"
            )));
        }
        for (name, value) in &r.metrics {
            if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                return Err(AppError::bad_request(format!(
                    "[{i}].metrics: names must be 1 to 100 printable characters"
                )));
            }
            if !value.is_finite() {
                return Err(AppError::bad_request(format!(
                    "[{i}].metrics.{name}: must be a finite number"
                )));
            }
        }
    }
    Ok(())
}

/// `POST /api/v1/jobs/{id}/progress`: the job's owner (with their API token) or an admin.
pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProgressBody>,
) -> Result<axum::Json<serde_json::Value>, AppError> {
    let job = super::jobs::visible_job(&state, &caller.job_scope()?, &id).await?;
    let owner = matches!(&caller, Caller::User(u) if u.name == job.user_name);
    if !owner && caller.role() != Some(Role::Admin) {
        return Err(AppError::forbidden(format!(
            "only the job's owner ('{}') reports its progress",
            job.user_name
        )));
    }
    let reports = match body {
        ProgressBody::One(r) => vec![r],
        ProgressBody::Many(rs) => rs,
    };
    validate(&job, &reports)?;
    let stored = db::progress::upsert(&state.db, &job.id, &reports).await?;
    Ok(axum::Json(serde_json::json!({ "stored": stored })))
}

/// Each metric of a job against its cumulative IT energy.
pub async fn progress_of(state: &AppState, job: &db::jobs::Job) -> Result<JobProgress, AppError> {
    let reports = db::progress::list(&state.db, &job.id).await?;
    let mut metrics: Vec<MetricProgress> = Vec::new();
    if let Some(last) = reports.iter().map(|r| r.time).max() {
        let allocated = db::jobs::allocations(&state.db, &job.id).await?;
        let from_ms = job.start_time.timestamp_millis();
        let to_ms = last.timestamp_millis().max(from_ms);
        let energy = db::energy::job_energy(
            &state.db,
            &db::energy::node_gpus(&allocated),
            from_ms,
            to_ms,
            state.config.max_gap_ms,
            db::energy::MINUTE_MS,
        )
        .await?;
        let mut by_name: BTreeMap<&str, Vec<ProgressPoint>> = BTreeMap::new();
        for r in &reports {
            let kwh = energy_at(
                &energy.by_bucket,
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
    }
    Ok(JobProgress {
        job: job.id.clone(),
        reports: reports.len() as u64,
        metrics,
    })
}

/// `GET /api/v1/jobs/{id}/progress`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<JobProgress>, AppError> {
    let job = super::jobs::visible_job(&state, &caller.job_scope()?, &id).await?;
    Ok(axum::Json(progress_of(&state, &job).await?))
}

/// `GET /jobs/{id}/progress/{metric}.svg`: one metric against cumulative energy.
pub async fn chart(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, metric)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let job = super::jobs::visible_job(&state, &viewer.job_scope(), &id).await?;
    let metric = metric.strip_suffix(".svg").unwrap_or(&metric).to_owned();
    let progress = progress_of(&state, &job).await?;
    let m = progress
        .metrics
        .iter()
        .find(|m| m.name == metric)
        .ok_or_else(|| AppError::not_found(format!("job '{id}' reported no metric '{metric}'")))?;
    Ok(crate::charts::svg_response(
        crate::charts::progress::render(&job.id, m),
    )?)
}
