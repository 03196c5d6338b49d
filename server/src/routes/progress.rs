//! Training progress (the first paper's section 3.3) over HTTP: `POST /api/v1/jobs/{id}/progress` from
//! the training script, `GET` of each metric against the job's cumulative IT energy, and the job page's
//! charts; the domain is `service::progress`.

use axum::extract::State;
use axum::response::Response;
use wattlas_protocol::{JobProgress, ProgressBody};

use crate::auth::Caller;
use crate::auth::Viewer;
use crate::error::{AppError, PageError};
use crate::extract::{ApiJson, Path};
use crate::service::jobs::progress_of;
use crate::service::jobs::{visible_job, JobContext};
use crate::service::progress::store;
use crate::service::users::Role;
use crate::state::AppState;

/// `POST /api/v1/jobs/{id}/progress`: the job's owner (with their API token) or an admin.
pub(crate) async fn post(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProgressBody>,
) -> Result<ApiJson<serde_json::Value>, AppError> {
    let job = visible_job(&state, &caller.job_scope()?, &id).await?;
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
    let stored = store(&state, &job, &reports).await?;
    Ok(ApiJson(serde_json::json!({ "stored": stored })))
}

/// `GET /api/v1/jobs/{id}/progress`.
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<JobProgress>, AppError> {
    let ctx = JobContext::load(&state, &caller.job_scope()?, &id).await?;
    Ok(ApiJson(progress_of(&state, &ctx).await?))
}

/// `GET /jobs/{id}/progress/{metric}.svg`: one metric against cumulative energy.
pub(crate) async fn chart(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, metric)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let ctx = JobContext::load(&state, &viewer.job_scope(), &id).await?;
    let metric = metric.strip_suffix(".svg").unwrap_or(&metric).to_owned();
    let progress = progress_of(&state, &ctx).await?;
    let m = progress
        .metrics
        .iter()
        .find(|m| m.name == metric)
        .ok_or_else(|| AppError::not_found(format!("job '{id}' reported no metric '{metric}'")))?;
    Ok(crate::routes::svg::svg_response(
        crate::charts::progress::render(&ctx.job.id, m),
    )?)
}
