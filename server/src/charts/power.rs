//! Per-GPU power (or utilisation) of a job over time, drawn from the series `service::jobs::series`
//! reads. Jobs of many GPUs get a line per node.

use plotters::prelude::*;

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label, e.g. `node1/gpu0`.
    pub label: String,
    /// Points: (ms since epoch, W).
    pub points: Vec<(i64, f64)>,
}

pub use crate::db::rollups::GpuMetric;

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
