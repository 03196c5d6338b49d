//! Power-cap comparisons (the first paper's Figures 1-3) of the finished jobs sharing a tag, and the
//! stored comparison of each workload that job pages and statements read instead of comparing up to
//! 2,000 jobs again.

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::jobs::{series, JobContext};
use super::{Error, Result};
use crate::analytics::powercap::{advise, compare, CapAdvice, CapJob, CapRow};
use crate::charts::power::{GpuMetric, Series};
use crate::db;
use crate::service::caller::JobScope;
use crate::service::Context;

/// Most jobs one comparison reads.
const MAX_JOBS: i64 = 2000;

/// A comparison as served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Comparison {
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GroupComparison {
    /// The group, e.g. `16 GPUs` or `NVIDIA A100-SXM4-40GB`.
    pub label: String,
    /// Baseline cap of the group, W.
    pub baseline_w: f64,
    /// Per cap, ascending.
    pub caps: Vec<CapRow>,
}

/// The comparison of the finished jobs sharing `tag`.
pub(crate) async fn comparison(
    cx: &Context,
    scope: &JobScope,
    tag: &str,
    baseline_w: Option<f64>,
    slowdown_pct: Option<f64>,
) -> Result<Comparison> {
    let requested_baseline = baseline_w;
    let budget = slowdown_pct.unwrap_or(10.0);
    if !budget.is_finite() || !(0.0..=1000.0).contains(&budget) {
        return Err(Error::invalid("slowdown_pct", "must be 0 to 1000"));
    }
    let (k, v) = tag
        .split_once([':', '='])
        .ok_or_else(|| Error::invalid("tag", format!("expected key:value, got '{tag}'")))?;
    // Every finished job of the tag, whoever ran it: the advice is the same for whoever asks (the
    // rows are means, counts and spreads, never another person's job); only the example jobs of
    // Figure 6 are the asker's own.
    let filter = db::jobs::JobFilter {
        owner: None,
        tag: Some((k.to_owned(), v.to_owned())),
        running: Some(false),
        ..Default::default()
    };
    let rows = db::jobs::list(
        &cx.db,
        &filter,
        db::jobs::JobSort::Start,
        true,
        MAX_JOBS,
        &db::jobs::PageStart::Offset(0),
    )
    .await?;
    let views = super::jobs::listed_views(cx, rows).await?;
    let ids: Vec<String> = views.iter().map(|v| v.id.clone()).collect();
    let mut models = db::jobs::gpu_models(&cx.db, &ids).await?;
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
                it_energy_kwh_low: view.it_energy_kwh_low.unwrap_or(view.it_energy_kwh),
                it_energy_kwh_high: view.it_energy_kwh_high.unwrap_or(view.it_energy_kwh),
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
            if scope.allows(&view.user) && !examples.iter().any(|(k, _)| *k == key) {
                examples.push((key, view.id.clone()));
            }
        }
    }
    let (baseline_w, caps) = compare(&jobs, baseline_w)
        .map_err(|e| Error::NotComparable(format!("tag {k}:{v}: {e}")))?;
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

/// The comparison of a tag at the default baseline and slowdown budget as stored, while no finished
/// job of the tag (in the scope) has changed since; else compared now and stored. `None` where the
/// jobs cannot be compared.
pub(crate) async fn stored(
    cx: &Context,
    scope: &JobScope,
    tag: &str,
) -> Result<Option<Comparison>> {
    let mut one = stored_many(cx, scope, &[tag.to_owned()]).await?;
    Ok(one.pop().and_then(|(_, c)| c))
}

/// `stored` of many tags, their freshness asked in one query (a statement's hundreds of workloads).
pub(crate) async fn stored_many(
    cx: &Context,
    scope: &JobScope,
    tags: &[String],
) -> Result<Vec<(String, Option<Comparison>)>> {
    let mut fresh = db::comparisons::fresh(&cx.db, tags).await?;
    let mut out = Vec::with_capacity(tags.len());
    for tag in tags {
        let body = fresh.remove(tag).map(|b| b.0);
        out.push((tag.clone(), stored_or_computed(cx, scope, tag, body).await?));
    }
    Ok(out)
}

/// A comparison as stored (`Some`: fresh), else compared now and stored; its examples only where
/// the scope may see them.
async fn stored_or_computed(
    cx: &Context,
    scope: &JobScope,
    tag: &str,
    fresh: Option<Option<Comparison>>,
) -> Result<Option<Comparison>> {
    // One comparison for everyone (see `comparison`); its examples are dropped for a scope that may
    // not see them.
    let visible = |c: Option<Comparison>| async move {
        let Some(mut c) = c else { return Ok(None) };
        if scope.owner().is_some() {
            let mut mine = Vec::new();
            for (cap, id) in c.examples {
                if let Some(job) = db::jobs::by_id(&cx.db, &id).await? {
                    if scope.allows(&job.user_name) {
                        mine.push((cap, id));
                    }
                }
            }
            c.examples = mine;
        }
        Ok::<_, Error>(Some(c))
    };
    if let Some(body) = fresh {
        return visible(body).await;
    }
    let computed = match comparison(cx, &JobScope::All, tag, None, None).await {
        Ok(c) => Some(c),
        Err(Error::NotComparable(_)) => None,
        Err(e) => return Err(e),
    };
    db::comparisons::store(&cx.db, tag, None, &computed).await?;
    visible(computed).await
}

/// Figure 6's lines: each example job's mean power per GPU in time buckets (a minute for jobs of 10
/// minutes or more), from its start; with the bucket, s, and the longest job's span, ms.
pub(crate) async fn example_power(
    cx: &Context,
    comparison: &Comparison,
) -> Result<(Vec<Series>, i64, i64)> {
    let mut lines = Vec::new();
    let mut bucket_s = 60;
    let mut span_ms = 1;
    for (cap, id) in &comparison.examples {
        let Some(job) = db::jobs::by_id(&cx.db, id).await? else {
            continue;
        };
        let ctx = JobContext::of(cx, job).await?;
        let (from_ms, to_ms) = ctx.span_ms(Utc::now());
        let to_ms = to_ms.max(from_ms + 1);
        let series =
            series::job_series(&cx.db, &ctx.nodes, from_ms, to_ms, GpuMetric::Power).await?;
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
        lines.push(Series {
            label: format!("{cap} W cap"),
            points,
        });
    }
    Ok((lines, bucket_s, span_ms))
}

/// The tags (`key`, `value`, jobs) that several jobs visible to `owner` (all where `None`) share: what
/// a comparison may be asked of.
pub(crate) async fn shared_tags(
    cx: &Context,
    owner: Option<&str>,
) -> Result<Vec<(String, String, i64)>> {
    Ok(db::jobs::shared_tags(&cx.db, owner).await?)
}
