//! A job's power (or utilisation) series for its charts: raw 100 ms samples (averaged into at most
//! ~1,200 points per GPU) for windows up to 30 minutes, means of rollups (minutes, or hours for windows
//! over three days) for longer ones; a line per GPU, or per node for jobs of many GPUs.

use std::collections::BTreeMap;

use sqlx::PgPool;

use crate::charts::power::{GpuMetric, Series};
use crate::db;
use crate::db::energy::NodeGpus;

/// Above this many GPUs a job's chart has a line per node (the mean of its GPUs), not per GPU: 64
/// lines are unreadable, and a week of them is megabytes of SVG.
const MAX_GPU_LINES: usize = 16;

/// Windows up to this long are drawn from raw samples.
const RAW_WINDOW_MS: i64 = 30 * 60 * 1000;
/// Most points per GPU series.
const MAX_POINTS: i64 = 1200;
/// Windows longer than this are drawn in hours.
const HOURLY_WINDOW_MS: i64 = 3 * 24 * 3_600_000;

/// Series of `metric` over `[from_ms, to_ms)`: one per allocated GPU, or per node for jobs of more
/// than `MAX_GPU_LINES` GPUs; each of at most ~`MAX_POINTS` points.
pub(crate) async fn job_series(
    db: &PgPool,
    nodes: &[NodeGpus],
    from_ms: i64,
    to_ms: i64,
    metric: GpuMetric,
) -> Result<Vec<Series>, db::Error> {
    let long = to_ms - from_ms > RAW_WINDOW_MS;
    let by_gpu = nodes.iter().map(|n| n.gpus.len()).sum::<usize>() <= MAX_GPU_LINES;
    // Rollup buckets: whole minutes, or whole hours (from the hourly sums) for windows over three
    // days, as many as keep a line within `MAX_POINTS` (90 days: two hours).
    let window = to_ms - from_ms;
    let rollup_bucket_ms = if window > HOURLY_WINDOW_MS {
        (window / MAX_POINTS / 3_600_000 + 1) * 3_600_000
    } else {
        (window / MAX_POINTS / 60_000 + 1) * 60_000
    };
    // Node by node at once; the lines in the nodes' order.
    let lines = super::per_node(nodes, |node| {
        let db = db.clone();
        async move {
            node_series(
                &db,
                node,
                (from_ms, to_ms),
                metric,
                by_gpu,
                long,
                rollup_bucket_ms,
            )
            .await
        }
    })
    .await?;
    Ok(lines.into_iter().flatten().collect())
}

/// One node's lines of `job_series`.
async fn node_series(
    db: &PgPool,
    node: NodeGpus,
    (from_ms, to_ms): (i64, i64),
    metric: GpuMetric,
    by_gpu: bool,
    long: bool,
    rollup_bucket_ms: i64,
) -> Result<Vec<Series>, db::Error> {
    let mut out = Vec::new();
    let db::energy::NodeGpus {
        node_id,
        name: node,
        gpus,
        ..
    } = node;
    // A line per GPU (keyed by its index) or one for the node (key None).
    let keys: Vec<Option<u32>> = if by_gpu {
        gpus.iter().map(|g| Some(*g)).collect()
    } else {
        vec![None]
    };
    let key_of = |gpu: i64| by_gpu.then_some(gpu as u32);
    let mut lines: BTreeMap<Option<u32>, Vec<(i64, f64)>> =
        keys.iter().map(|k| (*k, Vec::new())).collect();
    let mut raw_from = from_ms;
    let rollup_points = |rows: Vec<db::rollups::SeriesPoint>,
                         lines: &mut BTreeMap<Option<u32>, Vec<(i64, f64)>>,
                         bucket_ms: i64| {
        let mut last = i64::MIN;
        for (gpu, bucket, value, last_minute) in rows {
            if let Some(pts) = lines.get_mut(&key_of(i64::from(gpu))) {
                let mid = bucket.timestamp_millis() + bucket_ms / 2;
                pts.push((mid.min(last_minute.timestamp_millis() + 30_000), value));
                last = last.max(last_minute.timestamp_millis() + 60_000);
            }
        }
        last
    };
    if long {
        let rows = db::rollups::series(
            db,
            node_id,
            &gpus,
            from_ms,
            to_ms,
            metric,
            rollup_bucket_ms,
            by_gpu,
        )
        .await?;
        raw_from = raw_from.max(rollup_points(rows, &mut lines, rollup_bucket_ms));
    }
    // Raw samples for what rollups do not cover yet (the whole window when it is short).
    if to_ms - raw_from <= RAW_WINDOW_MS || !long {
        let bucket_ms = if long {
            60_000
        } else {
            ((to_ms - raw_from) / MAX_POINTS).max(100)
        };
        // Per line, per bucket: sum of values, count, sum of times.
        let mut sums: BTreeMap<(Option<u32>, i64), (f64, i64, i64)> = BTreeMap::new();
        for s in db::samples::fetch(db, node_id, &gpus, raw_from, to_ms).await? {
            let value = match metric {
                GpuMetric::Power => Some(s.chart_power_mw() as f64 / 1000.0),
                GpuMetric::Util => s.util_dpct.map(|d| d as f64 / 10.0),
            };
            if let Some(v) = value {
                let e = sums
                    .entry((key_of(i64::from(s.gpu)), (s.t_ms - raw_from) / bucket_ms))
                    .or_default();
                e.0 += v;
                e.1 += 1;
                e.2 += s.t_ms;
            }
        }
        for ((key, _), (sum, n, t)) in sums {
            if let Some(pts) = lines.get_mut(&key) {
                pts.push((t / n, sum / n as f64));
            }
        }
    }
    // A short window whose raw samples have expired (retention) still has its minutes.
    let empty: Vec<u32> = if by_gpu {
        lines
            .iter()
            .filter(|(_, pts)| pts.is_empty())
            .filter_map(|(k, _)| *k)
            .collect()
    } else if lines.values().all(Vec::is_empty) {
        gpus.clone()
    } else {
        Vec::new()
    };
    if !long && !empty.is_empty() {
        let rows = db::rollups::series(db, node_id, &empty, from_ms, to_ms, metric, 60_000, by_gpu)
            .await?;
        rollup_points(rows, &mut lines, 60_000);
    }
    for (key, mut points) in lines {
        points.sort_by_key(|p| p.0);
        out.push(Series {
            label: match key {
                Some(gpu) => format!("{node}/gpu{gpu}"),
                None => format!("{node} (mean of {} GPUs)", gpus.len()),
            },
            points,
        });
    }
    Ok(out)
}
