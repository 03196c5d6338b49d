//! Power-cap comparisons (the first paper's Figure 1): `GET /api/v1/powercap/comparison?tag=k:v` and the
//! pages `/powercap` (all comparisons) and `/powercap?tag=k:v`.

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use serde::Deserialize;

use crate::auth::Caller;
use crate::auth::{Nav, Viewer};
use crate::charts;
use crate::error::{AppError, PageError};
use crate::extract::{ApiJson, Query};
use crate::service::comparisons::{self, comparison, Comparison, GroupComparison};
use crate::state::AppState;

/// `?tag=k:v&baseline_w=`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ComparisonQuery {
    /// The shared tag, `key:value`.
    pub tag: Option<String>,
    /// Baseline cap, W (default: the highest present).
    pub baseline_w: Option<f64>,
    /// Slowdown budget of the advice, % (default 10).
    pub slowdown_pct: Option<f64>,
}

/// `GET /api/v1/powercap/comparison?tag=k:v[&baseline_w=W]`.
pub(crate) async fn api(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ComparisonQuery>,
) -> Result<ApiJson<Comparison>, AppError> {
    let scope = caller.job_scope()?;
    let tag = q
        .tag
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::bad_request("tag: required, as key:value"))?;
    Ok(ApiJson(
        comparison(&state, &scope, &tag, q.baseline_w, q.slowdown_pct).await?,
    ))
}

/// `/powercap?tag=k:v`.
#[derive(Template)]
#[template(path = "powercap/show.html")]
pub(crate) struct ShowPage {
    /// Header.
    pub nav: Nav,
    /// The comparison.
    pub comparison: Comparison,
    /// Figure 1, SVG.
    pub chart_svg: String,
    /// Figure 6, SVG: mean power over time of the latest job at each cap.
    pub power_svg: String,
    /// Figures 2 and 3 as tables: (title, groups), where the jobs differ.
    pub groupings: Vec<(&'static str, Vec<GroupComparison>)>,
}

/// Figure 6: each example job's mean power per GPU over time, from its start.
async fn figure_6(state: &AppState, comparison: &Comparison) -> Result<String, AppError> {
    let (lines, bucket_s, span_ms) = comparisons::example_power(state, comparison).await?;
    Ok(charts::power::render(
        &format!("Mean power per GPU over {bucket_s} s buckets, latest job at each cap"),
        "Mean power per GPU (W)",
        &lines,
        0,
        (0, span_ms),
        None,
    )
    .map_err(charts::ChartError::from)?)
}

/// `/powercap`.
#[derive(Template)]
#[template(path = "powercap/list.html")]
pub(crate) struct ListPage {
    /// Header.
    pub nav: Nav,
    /// Tag values shared by finished jobs: (key:value, jobs).
    pub candidates: Vec<(String, i64)>,
}

/// `GET /powercap[?tag=k:v]`.
pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    crate::extract::PageQuery(q): crate::extract::PageQuery<ComparisonQuery>,
) -> Result<Html<String>, PageError> {
    let render = |r: Result<String, askama::Error>| r.map_err(PageError::from);
    match q.tag.filter(|t| !t.is_empty()) {
        Some(tag) => {
            let comparison = comparison(
                &state,
                &viewer.job_scope(),
                &tag,
                q.baseline_w,
                q.slowdown_pct,
            )
            .await?;
            let chart_svg = charts::powercap::figure_1(
                &format!("Time and energy by power cap, {}", comparison.tag),
                &comparison.caps,
                comparison.baseline_w,
            )
            .map_err(charts::ChartError::from)?;
            let power_svg = figure_6(&state, &comparison).await?;
            Ok(Html(render(
                ShowPage {
                    nav: viewer.nav(),
                    groupings: vec![
                        ("By GPU count (Figure 2)", comparison.by_gpu_count.clone()),
                        ("By GPU model (Figure 3)", comparison.by_gpu_model.clone()),
                    ],
                    comparison,
                    chart_svg,
                    power_svg,
                }
                .render(),
            )?))
        }
        None => {
            let candidates = crate::service::comparisons::shared_tags(
                &state,
                viewer.job_scope().owner().as_deref(),
            )
            .await?
            .into_iter()
            .map(|(k, v, n)| (format!("{k}:{v}"), n))
            .collect();
            Ok(Html(render(
                ListPage {
                    nav: viewer.nav(),
                    candidates,
                }
                .render(),
            )?))
        }
    }
}
