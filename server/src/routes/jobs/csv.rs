//! `GET /api/v1/jobs.csv` and `GET /jobs.csv`: the filtered jobs as CSV, one row per job.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::auth::Viewer;
use crate::auth::{Caller, JobScope};
use crate::error::{AppError, PageError};
use crate::extract::Query;
use crate::service::jobs::list::{export_views, jobs_csv, ListQuery};
use crate::state::AppState;

async fn export(state: &AppState, scope: &JobScope, q: &ListQuery) -> Result<Response, AppError> {
    let jobs = export_views(state, scope, q).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"wattlas-jobs.csv\"",
            ),
        ],
        jobs_csv(&jobs),
    )
        .into_response())
}

/// `GET /api/v1/jobs.csv`: filters as for the list.
pub(crate) async fn export_api(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    export(&state, &caller.job_scope()?, &q).await
}

/// `GET /jobs.csv`: the jobs page's filtered set.
pub(crate) async fn export_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    Ok(export(&state, &viewer.job_scope(), &q).await?)
}
