//! A job's coverage gaps: stretches of an allocated GPU's time in the job without samples.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::JobContext;
use crate::db;
use crate::service::Context;
use crate::service::Result;

/// A stretch of one GPU's time in the job without samples.
pub(crate) struct Gap {
    /// `node/gpuN`.
    pub gpu: String,
    /// Start.
    pub from: DateTime<Utc>,
    /// End.
    pub to: DateTime<Utc>,
    /// Length, s.
    pub seconds: f64,
}

/// Gaps shown on a job page at most.
const MAX_GAPS: usize = 20;

/// The job's coverage gaps, per GPU: from the raw samples for jobs up to 30 minutes (any interval over
/// the integration limit), from the minute rollups for longer ones (minutes without data). Returns
/// the first `MAX_GAPS` and how many there are.
pub(crate) async fn coverage_gaps(cx: &Context, ctx: &JobContext) -> Result<(Vec<Gap>, usize)> {
    let job = &ctx.job;
    let from_ms = job.start_time.timestamp_millis();
    // A running job's last seconds are still on their way.
    let to_ms = job.end_time.map_or_else(
        || Utc::now().timestamp_millis() - 5_000,
        |e| e.timestamp_millis(),
    );
    if to_ms <= from_ms {
        return Ok((Vec::new(), 0));
    }
    let raw = to_ms - from_ms <= 30 * 60_000;
    // Node by node at once (each reads its own samples or hours).
    let mut out: Vec<Gap> = super::per_node(&ctx.nodes, |node| {
        let cx = cx.clone();
        async move { node_gaps(&cx, &node, raw, from_ms, to_ms).await }
    })
    .await?
    .into_iter()
    .flatten()
    .collect();
    out.sort_by_key(|g| g.from);
    let total = out.len();
    out.truncate(MAX_GAPS);
    Ok((out, total))
}

/// One node's gaps (see `coverage_gaps`): from its raw samples for a short job, else its minutes.
async fn node_gaps(
    cx: &Context,
    node: &db::energy::NodeGpus,
    raw: bool,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<Gap>> {
    let mut out = Vec::new();
    // Per GPU, runs of samples no further apart than the limit: every raw sample of a short job,
    // runs of whole minutes of a long one (a week of 64 GPUs is 645,000 minutes).
    let mut runs: BTreeMap<u32, Vec<(i64, i64)>> =
        node.gpus.iter().map(|g| (*g, Vec::new())).collect();
    let (start, limit) = if raw {
        let mut times: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
        for s in db::samples::fetch(&cx.db, node.node_id, &node.gpus, from_ms, to_ms).await? {
            times.entry(s.gpu).or_default().push(s.t_ms);
        }
        for (gpu, mut t) in times {
            t.sort_unstable();
            t.dedup();
            runs.insert(
                gpu,
                crate::analytics::energy::cadence_runs(&t, cx.config.max_gap_ms),
            );
        }
        (from_ms, cx.config.max_gap_ms)
    } else {
        for (gpu, first, last) in db::rollups::minute_runs(
            &cx.db,
            node.node_id,
            &node.gpus,
            db::energy::floor_minute(from_ms),
            to_ms,
        )
        .await?
        {
            runs.entry(gpu).or_default().push((first, last));
        }
        (db::energy::floor_minute(from_ms), 60_000)
    };
    for (gpu, r) in runs {
        for (a, b) in crate::analytics::energy::gaps_between_runs(&r, start, to_ms, limit) {
            out.push(Gap {
                gpu: format!("{}/gpu{gpu}", node.name),
                from: db::ts(a.max(from_ms)),
                to: db::ts(b),
                seconds: (b - a.max(from_ms)) as f64 / 1000.0,
            });
        }
    }
    Ok(out)
}
