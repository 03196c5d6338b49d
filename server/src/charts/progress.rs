//! A training metric against the job's cumulative IT energy (the first paper's section 3.3), with the
//! point from which the last 1 % of the metric's change was bought marked.

use plotters::prelude::*;
use wattlas_protocol::MetricProgress;

/// The metric as an SVG line chart; x is cumulative IT energy in kWh.
pub(crate) fn render(
    job: &str,
    metric: &MetricProgress,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let pts: Vec<(f64, f64)> = metric.points.iter().map(|p| (p.2, p.3)).collect();
    let x_max = pts.iter().map(|p| p.0).fold(0.0f64, f64::max).max(1e-6);
    let (lo, hi) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        let pad = (hi - lo) * 0.08;
        (lo - pad, hi + pad)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} against IT energy, job {job}", metric.name),
                super::TITLE,
            )
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(78)
            .build_cartesian_2d(0.0..x_max * 1.02, lo..hi)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .label_style(super::TEXT)
            .axis_desc_style(super::TEXT)
            .x_desc("Cumulative IT energy of the job (kWh)")
            .y_desc(metric.name.as_str())
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        let color = RGBColor(11, 92, 173);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(metric.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
            });
        if let Some(lp) = &metric.last_percent {
            if let Some(at) = metric.points.iter().find(|p| p.0 == lp.step) {
                let red = RGBColor(161, 19, 27);
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(at.2, lo), (at.2, hi)],
                        red.stroke_width(2),
                    )))
                    .map_err(|e| e.to_string())?
                    .label(format!("last 1 % of the change: {:.3} kWh", lp.cost_kwh))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], red.stroke_width(3))
                    });
            }
        }
        chart
            .configure_series_labels()
            .label_font(super::TEXT)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
