//! Jobs over HTTP: the JSON API (`/api/v1/jobs...`) here, the pages (`/jobs`, `/jobs/{id}`) in `pages`,
//! the CSV export in `csv`, the per-GPU charts in `charts`; the domain is `service::jobs`.

pub(crate) mod charts;
pub(crate) mod csv;
pub(crate) mod pages;
pub(crate) mod query;

use axum::extract::State;
use axum::http::StatusCode;
use wattlas_protocol::{JobEnd, JobList, JobView, NewJob};

use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{ApiJson, Path, Query};
use crate::service::jobs::list::{list_views, ListQuery};
use crate::service::jobs::{current_view, register, visible_job};
use crate::state::AppState;

/// `POST /api/v1/jobs`: registers a job, or adds to one (each node's prolog posts its own allocation):
/// 201 when created, 200 when added to.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(job): ApiJson<NewJob>,
) -> Result<(StatusCode, ApiJson<JobView>), AppError> {
    let caller = caller.writer()?;
    let (created, view) = register::register(&state, &caller, &job).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(view)))
}

/// `POST /api/v1/jobs/{id}/end`.
pub(crate) async fn end(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<JobEnd>,
) -> Result<ApiJson<JobView>, AppError> {
    let caller = caller.writer()?;
    Ok(ApiJson(
        register::end(&state, &caller, &id, body.end).await?,
    ))
}

/// `GET /api/v1/jobs/{id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<JobView>, AppError> {
    let job = visible_job(&state, &caller.job_scope()?, &id).await?;
    Ok(ApiJson(current_view(&state, job).await?))
}

/// `GET /api/v1/jobs`.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<ApiJson<JobList>, AppError> {
    Ok(ApiJson(list_views(&state, &caller.job_scope()?, &q).await?))
}
