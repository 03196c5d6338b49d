//! `GET /jobs/{id}/power.svg` and `/jobs/{id}/util.svg`.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;

use super::query::Window;
use crate::auth::Viewer;
use crate::charts;
use crate::error::{AppError, PageError};
use crate::extract::{Path, Query};
use crate::service::jobs::{series, JobContext};
use crate::state::AppState;

/// `GET /jobs/{id}/power.svg` and `/jobs/{id}/util.svg`: per-GPU power or utilisation over the job or a
/// window of it (`?from_min=&to_min=`): raw 100 ms samples when the window is short, minute means when
/// long.
pub(crate) async fn gpu_chart(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, chart)): Path<(String, String)>,
    Query(window): Query<Window>,
) -> Result<Response, PageError> {
    let (metric, title, y) = match chart.as_str() {
        "power.svg" => (
            charts::power::GpuMetric::Power,
            "Power per GPU",
            "Power (W)",
        ),
        "util.svg" => (
            charts::power::GpuMetric::Util,
            "Utilisation per GPU",
            "GPU utilisation (%)",
        ),
        _ => return Err(AppError::not_found("charts: power.svg, util.svg").into()),
    };
    let ctx = JobContext::load(&state, &viewer.job_scope(), &id).await?;
    let (start_ms, end_ms) = ctx.span_ms(Utc::now());
    let (from_ms, to_ms) = window.bounds(start_ms, end_ms.max(start_ms + 1))?;
    let series = series::job_series(state.read_db(), &ctx.nodes, from_ms, to_ms, metric).await?;
    // The cap most of the job's samples reported, from its summary, on the power chart.
    let cap_w = match metric {
        charts::power::GpuMetric::Power => {
            crate::service::jobs::stored_power_cap_w(&state, &ctx.job.id).await?
        }
        _ => None,
    };
    Ok(crate::routes::svg::svg_response(charts::power::render(
        &format!("{title}, job {}", ctx.job.id),
        y,
        &series,
        start_ms,
        (from_ms, to_ms),
        cap_w,
    ))?)
}
