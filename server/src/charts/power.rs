//! Per-GPU power (or utilisation) of a job over time: raw 100 ms samples (averaged into at most ~1,200
//! points per GPU) for windows up to 30 minutes, per-minute means from rollups for longer ones.

use plotters::prelude::*;
use sqlx::PgPool;

use crate::db;
use crate::db::jobs::AllocatedGpu;
use crate::error::AppError;

/// Windows up to this long are drawn from raw samples.
const RAW_WINDOW_MS: i64 = 30 * 60 * 1000;
/// Most points per GPU series.
const MAX_POINTS: i64 = 1200;

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label, e.g. `node1/gpu0`.
    pub label: String,
    /// Points: (ms since epoch, W).
    pub points: Vec<(i64, f64)>,
}

pub use crate::db::rollups::GpuMetric;

/// Series of `metric` of every allocated GPU over `[from_ms, to_ms)`.
pub async fn job_series(
    db: &PgPool,
    allocated: &[AllocatedGpu],
    from_ms: i64,
    to_ms: i64,
    metric: GpuMetric,
) -> Result<Vec<Series>, AppError> {
    let mut out = Vec::new();
    let long = to_ms - from_ms > RAW_WINDOW_MS;
    for db::energy::NodeGpus {
        node_id,
        name: node,
        gpus,
    } in db::energy::node_gpus(allocated)
    {
        let mut per_gpu: Vec<(u32, Vec<(i64, f64)>)> =
            gpus.iter().map(|g| (*g, Vec::new())).collect();
        let mut raw_from = from_ms;
        if long {
            for (gpu, minute, w) in
                db::rollups::minute_series(db, node_id, &gpus, from_ms, to_ms, metric).await?
            {
                if let Some((_, pts)) = per_gpu.iter_mut().find(|(g, _)| *g == gpu as u32) {
                    pts.push((minute.timestamp_millis() + 30_000, w));
                    raw_from = raw_from.max(minute.timestamp_millis() + 60_000);
                }
            }
        }
        // Raw samples for what rollups do not cover yet (the whole window when it is short).
        if to_ms - raw_from <= RAW_WINDOW_MS || !long {
            let bucket_ms = if long {
                60_000
            } else {
                ((to_ms - raw_from) / MAX_POINTS).max(100)
            };
            let raw = db::samples::fetch(db, node_id, &gpus, raw_from, to_ms).await?;
            for gpu_samples in raw.chunk_by(|a, b| a.gpu == b.gpu) {
                let Some((_, pts)) = per_gpu.iter_mut().find(|(g, _)| *g == gpu_samples[0].gpu)
                else {
                    continue;
                };
                for bucket in gpu_samples.chunk_by(|a, b| {
                    (a.t_ms - raw_from) / bucket_ms == (b.t_ms - raw_from) / bucket_ms
                }) {
                    let values: Vec<f64> = bucket
                        .iter()
                        .filter_map(|s| match metric {
                            GpuMetric::Power => Some(s.power_mw as f64 / 1000.0),
                            GpuMetric::Util => s.util_dpct.map(|d| d as f64 / 10.0),
                        })
                        .collect();
                    if values.is_empty() {
                        continue;
                    }
                    let mean = values.iter().sum::<f64>() / values.len() as f64;
                    let mid = bucket.iter().map(|s| s.t_ms).sum::<i64>() / bucket.len() as i64;
                    pts.push((mid, mean));
                }
            }
        }
        // A short window whose raw samples have expired (retention) still has its minutes.
        let empty: Vec<u32> = per_gpu
            .iter()
            .filter(|(_, pts)| pts.is_empty())
            .map(|(g, _)| *g)
            .collect();
        if !long && !empty.is_empty() {
            for (gpu, minute, v) in
                db::rollups::minute_series(db, node_id, &empty, from_ms, to_ms, metric).await?
            {
                if let Some((_, pts)) = per_gpu.iter_mut().find(|(g, _)| *g == gpu as u32) {
                    pts.push((minute.timestamp_millis() + 30_000, v));
                }
            }
        }
        for (gpu, mut points) in per_gpu {
            points.sort_by_key(|p| p.0);
            out.push(Series {
                label: format!("{node}/gpu{gpu}"),
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
