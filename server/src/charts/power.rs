//! Per-GPU power (or utilisation) of a job over time: raw 100 ms samples (averaged into at most ~1,200
//! points per GPU) for windows up to 30 minutes, means of rollups (minutes, or hours for windows over
//! three days) for longer ones. Jobs of many GPUs get a line per node.

use std::collections::BTreeMap;

use plotters::prelude::*;
use sqlx::PgPool;

use crate::db;
use crate::db::jobs::AllocatedGpu;
use crate::error::AppError;

/// Windows up to this long are drawn from raw samples.
const RAW_WINDOW_MS: i64 = 30 * 60 * 1000;
/// Most points per GPU series.
const MAX_POINTS: i64 = 1200;
/// Windows longer than this are drawn in hours.
const HOURLY_WINDOW_MS: i64 = 3 * 24 * 3_600_000;

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label, e.g. `node1/gpu0`.
    pub label: String,
    /// Points: (ms since epoch, W).
    pub points: Vec<(i64, f64)>,
}

pub use crate::db::rollups::GpuMetric;

/// Above this many GPUs a job's chart has a line per node (the mean of its GPUs), not per GPU: 64
/// lines are unreadable, and a week of them is megabytes of SVG.
const MAX_GPU_LINES: usize = 16;

/// Series of `metric` over `[from_ms, to_ms)`: one per allocated GPU, or per node for jobs of more
/// than `MAX_GPU_LINES` GPUs; each of at most ~`MAX_POINTS` points.
pub async fn job_series(
    db: &PgPool,
    allocated: &[AllocatedGpu],
    from_ms: i64,
    to_ms: i64,
    metric: GpuMetric,
) -> Result<Vec<Series>, AppError> {
    let mut out = Vec::new();
    let long = to_ms - from_ms > RAW_WINDOW_MS;
    let by_gpu = allocated.len() <= MAX_GPU_LINES;
    // Rollup buckets: whole minutes, or hours (from the hourly sums) for windows over three days.
    let rollup_bucket_ms = if to_ms - from_ms > HOURLY_WINDOW_MS {
        3_600_000
    } else {
        ((to_ms - from_ms) / MAX_POINTS / 60_000 + 1) * 60_000
    };
    for db::energy::NodeGpus {
        node_id,
        name: node,
        gpus,
    } in db::energy::node_gpus(allocated)
    {
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
                    GpuMetric::Power => Some(s.power_mw as f64 / 1000.0),
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
            let rows =
                db::rollups::series(db, node_id, &empty, from_ms, to_ms, metric, 60_000, by_gpu)
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
    }
    Ok(out)
}

/// Draws the series over `[from_ms, to_ms)` as an SVG document; x is minutes since `origin_ms` (the
/// job's start), y is labelled `y_desc`.
pub fn render(
    title: &str,
    y_desc: &str,
    series: &[Series],
    origin_ms: i64,
    (from_ms, to_ms): (i64, i64),
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let x0 = (from_ms - origin_ms) as f64 / 60_000.0;
        let x1 = ((to_ms - origin_ms) as f64 / 60_000.0).max(x0 + 1.0 / 60.0);
        let max_w = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(50.0)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0.0..max_w)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("Time since job start (min)")
            .y_desc(y_desc)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts = s
                .points
                .iter()
                .map(|(t, w)| ((*t - origin_ms) as f64 / 60_000.0, *w));
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
                });
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_units_and_escapes_text() {
        let series = vec![Series {
            label: "n<1>/gpu0".into(),
            points: vec![(0, 100.0), (60_000, 150.0)],
        }];
        let svg = render("Power <job>", "Power (W)", &series, 0, (0, 60_000)).expect("renders");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("Power (W)"));
        assert!(svg.contains("Time since job start (min)"));
        assert!(!svg.contains("<job>"), "title must be escaped");
        assert!(svg.contains("n&lt;1&gt;/gpu0"));
    }
}
