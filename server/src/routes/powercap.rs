//! Power-cap comparisons (the first paper's Figure 1): `GET /api/v1/powercap/comparison?tag=k:v` and the
//! pages `/powercap` (all comparisons) and `/powercap?tag=k:v`.

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::analytics::powercap::{advise, compare, CapAdvice, CapJob, CapRow};
use crate::auth::session::{Nav, Viewer};
use crate::auth::{Caller, JobScope};
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
    /// The latest job at each cap (for Figure 6), by ascending cap.
    pub examples: Vec<(i64, String)>,
    /// Figure 2: the comparison within each GPU count, where the jobs differ in GPU count.
    pub by_gpu_count: Vec<GroupComparison>,
    /// Figure 3: the comparison within each GPU model, where the jobs differ in model.
    pub by_gpu_model: Vec<GroupComparison>,
}

/// The comparison within one group of jobs (a GPU count or a GPU model).
#[derive(Debug, Clone, Serialize)]
pub struct GroupComparison {
    /// The group, e.g. `16 GPUs` or `NVIDIA A100-SXM4-40GB`.
    pub label: String,
    /// Baseline cap of the group, W.
    pub baseline_w: f64,
    /// Per cap, ascending.
    pub caps: Vec<CapRow>,
}

/// The comparison of the finished jobs sharing `tag`.
pub async fn comparison(
    state: &AppState,
    scope: &JobScope,
    tag: &str,
    baseline_w: Option<f64>,
    slowdown_pct: Option<f64>,
) -> Result<Comparison, AppError> {
    let requested_baseline = baseline_w;
    let budget = slowdown_pct.unwrap_or(10.0);
    if !budget.is_finite() || !(0.0..=1000.0).contains(&budget) {
        return Err(AppError::bad_request("slowdown_pct: must be 0 to 1000"));
    }
    let (k, v) = tag
        .split_once([':', '='])
        .ok_or_else(|| AppError::bad_request(format!("tag: expected key:value, got '{tag}'")))?;
    let filter = db::jobs::JobFilter {
        owner: scope.owner(),
        tag: Some((k.to_owned(), v.to_owned())),
        running: Some(false),
        ..Default::default()
    };
    let rows = db::jobs::list(
        &state.db,
        &filter,
        db::jobs::JobSort::Start,
        true,
        MAX_JOBS,
        0,
    )
    .await?;
    let views = super::jobs::listed_views(state, rows).await?;
    let ids: Vec<String> = views.iter().map(|v| v.id.clone()).collect();
    let mut models = db::jobs::gpu_models(&state.db, &ids).await?;
    let mut jobs = Vec::with_capacity(views.len());
    let mut examples: Vec<(i64, String)> = Vec::new();
    // Figures 2 and 3: the same comparison within each GPU count and each GPU model.
    let mut by_count: std::collections::BTreeMap<String, Vec<CapJob>> = Default::default();
    let mut by_model: std::collections::BTreeMap<String, Vec<CapJob>> = Default::default();
    for view in views {
        if let Some(cap) = view.power_cap_w {
            let job = CapJob {
                power_cap_w: cap,
                duration_s: view.duration_s,
                it_energy_kwh: view.it_energy_kwh,
            };
            jobs.push(job.clone());
            by_count
                .entry(if view.gpu_count == 1 {
                    "1 GPU".to_owned()
                } else {
                    format!("{} GPUs", view.gpu_count)
                })
                .or_default()
                .push(job.clone());
            let model = models
                .remove(&view.id)
                .unwrap_or_else(|| "unknown model".into());
            by_model.entry(model).or_default().push(job);
            // Rows come newest first: the first job seen at a cap is its latest.
            let key = cap.round() as i64;
            if !examples.iter().any(|(k, _)| *k == key) {
                examples.push((key, view.id.clone()));
            }
        }
    }
    let (baseline_w, caps) = compare(&jobs, baseline_w).map_err(|e| {
        AppError::Client(
            axum::http::StatusCode::NOT_FOUND,
            format!("tag {k}:{v}: {e}"),
        )
    })?;
    let advice = advise(&caps, budget);
    examples.sort();
    // Only where the jobs differ; a group without its own baseline cap is left out.
    let split = |groups: std::collections::BTreeMap<String, Vec<CapJob>>| -> Vec<GroupComparison> {
        if groups.len() < 2 {
            return Vec::new();
        }
        groups
            .into_iter()
            .filter_map(|(label, jobs)| {
                compare(&jobs, requested_baseline)
                    .ok()
                    .map(|(baseline_w, caps)| GroupComparison {
                        label,
                        baseline_w,
                        caps,
                    })
            })
            .collect()
    };
    let by_gpu_count = split(by_count);
    let by_gpu_model = split(by_model);
    Ok(Comparison {
        tag: format!("{k}:{v}"),
        baseline_w,
        caps,
        advice,
        examples,
        by_gpu_count,
        by_gpu_model,
    })
}

/// `GET /api/v1/powercap/comparison?tag=k:v[&baseline_w=W]`.
pub async fn api(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ComparisonQuery>,
) -> Result<axum::Json<Comparison>, AppError> {
    let scope = caller.job_scope()?;
    let tag = q
        .tag
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::bad_request("tag: required, as key:value"))?;
    Ok(axum::Json(
        comparison(&state, &scope, &tag, q.baseline_w, q.slowdown_pct).await?,
    ))
}

/// `/powercap?tag=k:v`.
#[derive(Template)]
#[template(path = "powercap/show.html")]
pub struct ShowPage {
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

/// Figure 6: each example job's mean power per GPU in time buckets (a minute for jobs of 10 minutes
/// or more), from its start.
async fn figure_6(state: &AppState, comparison: &Comparison) -> Result<String, AppError> {
    let mut lines = Vec::new();
    let mut bucket_s = 60;
    let mut span_ms = 1;
    for (cap, id) in &comparison.examples {
        let Some(job) = db::jobs::by_id(&state.db, id).await? else {
            continue;
        };
        let from_ms = job.start_time.timestamp_millis();
        let to_ms = job
            .end_time
            .unwrap_or_else(Utc::now)
            .timestamp_millis()
            .max(from_ms + 1);
        let allocated = db::jobs::allocations(&state.db, id).await?;
        let series = charts::power::job_series(
            &state.db,
            &allocated,
            from_ms,
            to_ms,
            charts::power::GpuMetric::Power,
        )
        .await?;
        let duration_s = (to_ms - from_ms) / 1000;
        bucket_s = if duration_s >= 600 {
            60
        } else {
            (duration_s / 30).max(1)
        };
        let mut buckets: std::collections::BTreeMap<i64, (f64, u32)> =
            std::collections::BTreeMap::new();
        for s in &series {
            for (t, w) in &s.points {
                let e = buckets
                    .entry((t - from_ms) / (bucket_s * 1000))
                    .or_default();
                e.0 += w;
                e.1 += 1;
            }
        }
        // Mean over GPUs and readings in each bucket, at the bucket's middle, ms since the job's start.
        let points: Vec<(i64, f64)> = buckets
            .into_iter()
            .map(|(b, (sum, n))| (b * bucket_s * 1000 + bucket_s * 500, sum / f64::from(n)))
            .collect();
        span_ms = span_ms.max(to_ms - from_ms);
        lines.push(charts::power::Series {
            label: format!("{cap} W cap"),
            points,
        });
    }
    charts::power::render(
        &format!("Mean power per GPU over {bucket_s} s buckets, latest job at each cap"),
        "Mean power per GPU (W)",
        &lines,
        0,
        (0, span_ms),
    )
    .map_err(|e| AppError::Internal(e.to_string()))
}

/// `/powercap`.
#[derive(Template)]
#[template(path = "powercap/list.html")]
pub struct ListPage {
    /// Header.
    pub nav: Nav,
    /// Tag values shared by finished jobs: (key:value, jobs).
    pub candidates: Vec<(String, i64)>,
}

/// `GET /powercap[?tag=k:v]`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ComparisonQuery>,
) -> Result<Html<String>, PageError> {
    let render = |r: Result<String, askama::Error>| {
        r.map_err(|e| PageError(AppError::Internal(e.to_string())))
    };
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
            .map_err(|e| AppError::Internal(e.to_string()))?;
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
            let candidates =
                db::jobs::shared_tags(&state.db, viewer.job_scope().owner().as_deref())
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
