//! Power-cap comparisons (the first paper's Figure 1): `GET /api/v1/powercap/comparison?tag=k:v` and the
//! pages `/powercap` (all comparisons) and `/powercap?tag=k:v`.

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::analytics::powercap::{advise, compare, CapAdvice, CapJob, CapRow};
use crate::auth::Caller;
use crate::charts;
use crate::db;
use crate::error::{AppError, PageError};
use crate::extract::Query;
use crate::state::AppState;

/// Most jobs one comparison reads.
const MAX_JOBS: i64 = 2000;

/// `?tag=k:v&baseline_w=`.
#[derive(Debug, Clone, Deserialize)]
pub struct ComparisonQuery {
    /// The shared tag, `key:value`.
    pub tag: Option<String>,
    /// Baseline cap, W (default: the highest present).
    pub baseline_w: Option<f64>,
    /// Slowdown budget of the advice, % (default 10).
    pub slowdown_pct: Option<f64>,
}

/// A comparison as served.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The shared tag, `key:value`.
    pub tag: String,
    /// Baseline cap, W.
    pub baseline_w: f64,
    /// Per cap, ascending.
    pub caps: Vec<CapRow>,
    /// The cap with the least energy within the slowdown budget.
    pub advice: Option<CapAdvice>,
}

/// The comparison of the finished jobs sharing `tag`.
pub async fn comparison(
    state: &AppState,
    tag: &str,
    baseline_w: Option<f64>,
    slowdown_pct: Option<f64>,
) -> Result<Comparison, AppError> {
    let budget = slowdown_pct.unwrap_or(10.0);
    if !budget.is_finite() || !(0.0..=1000.0).contains(&budget) {
        return Err(AppError::bad_request("slowdown_pct: must be 0 to 1000"));
    }
    let (k, v) = tag
        .split_once([':', '='])
        .ok_or_else(|| AppError::bad_request(format!("tag: expected key:value, got '{tag}'")))?;
    let filter = db::jobs::JobFilter {
        tag: Some((k.to_owned(), v.to_owned())),
        running: Some(false),
        ..Default::default()
    };
    let rows = db::jobs::list(&state.db, &filter, MAX_JOBS, 0).await?;
    let now = Utc::now();
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        let view = super::jobs::job_view(state, row, now).await?;
        if let Some(cap) = view.power_cap_w {
            jobs.push(CapJob {
                power_cap_w: cap,
                duration_s: view.duration_s,
                it_energy_kwh: view.it_energy_kwh,
            });
        }
    }
    let (baseline_w, caps) = compare(&jobs, baseline_w).map_err(|e| {
        AppError::Client(
            axum::http::StatusCode::NOT_FOUND,
            format!("tag {k}:{v}: {e}"),
        )
    })?;
    let advice = advise(&caps, budget);
    Ok(Comparison {
        tag: format!("{k}:{v}"),
        baseline_w,
        caps,
        advice,
    })
}

/// `GET /api/v1/powercap/comparison?tag=k:v[&baseline_w=W]`.
pub async fn api(
    State(state): State<AppState>,
    _caller: Caller,
    Query(q): Query<ComparisonQuery>,
) -> Result<axum::Json<Comparison>, AppError> {
    let tag = q
        .tag
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::bad_request("tag: required, as key:value"))?;
    Ok(axum::Json(
        comparison(&state, &tag, q.baseline_w, q.slowdown_pct).await?,
    ))
}

/// `/powercap?tag=k:v`.
#[derive(Template)]
#[template(path = "powercap/show.html")]
pub struct ShowPage {
    /// The comparison.
    pub comparison: Comparison,
    /// Figure 1, SVG.
    pub chart_svg: String,
}

/// `/powercap`.
#[derive(Template)]
#[template(path = "powercap/list.html")]
pub struct ListPage {
    /// Tag values shared by finished jobs: (key:value, jobs).
    pub candidates: Vec<(String, i64)>,
}

/// `GET /powercap[?tag=k:v]`.
pub async fn page(
    State(state): State<AppState>,
    Query(q): Query<ComparisonQuery>,
) -> Result<Html<String>, PageError> {
    let render = |r: Result<String, askama::Error>| {
        r.map_err(|e| PageError(AppError::Internal(e.to_string())))
    };
    match q.tag.filter(|t| !t.is_empty()) {
        Some(tag) => {
            let comparison = comparison(&state, &tag, q.baseline_w, q.slowdown_pct).await?;
            let chart_svg = charts::powercap::figure_1(
                &format!("Time and energy by power cap, {}", comparison.tag),
                &comparison.caps,
                comparison.baseline_w,
            )
            .map_err(|e| AppError::Internal(e.to_string()))?;
            Ok(Html(render(
                ShowPage {
                    comparison,
                    chart_svg,
                }
                .render(),
            )?))
        }
        None => {
            let candidates = db::jobs::shared_tags(&state.db)
                .await?
                .into_iter()
                .map(|(k, v, n)| (format!("{k}:{v}"), n))
                .collect();
            Ok(Html(render(ListPage { candidates }.render())?))
        }
    }
}
