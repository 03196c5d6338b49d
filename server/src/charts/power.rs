//! Per-GPU power (or utilisation) of a job over time, drawn from the series `service::jobs::series`
//! reads. Jobs of many GPUs get a line per node.

use plotters::prelude::*;

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// Legend label, e.g. `node1/gpu0`.
    pub label: String,
    /// Points: (ms since epoch, W).
    pub points: Vec<(i64, f64)>,
}

pub(crate) use crate::db::rollups::GpuMetric;

/// Okabe-Ito's colour-blind-safe colours that keep 3:1 contrast on white (blue, vermillion, bluish
/// green, reddish purple, black); lines past the fifth repeat them dashed.
pub(crate) const LINE_COLOURS: [RGBColor; 5] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(0, 0, 0),
];

/// Draws the series over `[from_ms, to_ms)` as an SVG document; x is minutes since `origin_ms` (the
/// job's start), y is labelled `y_desc`; `cap_w`, the power cap per GPU, as a dashed grey line. The
/// y range leaves a band above the data for the legend, which never covers a line.
pub(crate) fn render(
    title: &str,
    y_desc: &str,
    series: &[Series],
    origin_ms: i64,
    (from_ms, to_ms): (i64, i64),
    cap_w: Option<f64>,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let x0 = (from_ms - origin_ms) as f64 / 60_000.0;
        let x1 = ((to_ms - origin_ms) as f64 / 60_000.0).max(x0 + 1.0 / 60.0);
        let data_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(cap_w.unwrap_or(0.0), f64::max)
            .max(50.0)
            * 1.05;
        // About 22 px per legend row of a ~330 px plot.
        let rows = series.len() + usize::from(cap_w.is_some());
        let band = (rows as f64 * 22.0 + 12.0) / 330.0;
        let max_w = data_max / (1.0 - band.min(0.6));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, super::TITLE)
            .margin(12)
            .x_label_area_size(54)
            .y_label_area_size(74)
            .build_cartesian_2d(x0..x1, 0.0..max_w)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("Time since job start (min)")
            .y_desc(y_desc)
            .label_style(super::TEXT)
            .axis_desc_style(super::TEXT)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in series.iter().enumerate() {
            let color = LINE_COLOURS[i % LINE_COLOURS.len()].to_rgba();
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|(t, w)| ((*t - origin_ms) as f64 / 60_000.0, *w))
                .collect();
            let dashed = i >= LINE_COLOURS.len();
            let drawn = if dashed {
                chart.draw_series(DashedLineSeries::new(pts, 8, 5, color.stroke_width(2)))
            } else {
                chart.draw_series(LineSeries::new(pts, color.stroke_width(2)))
            };
            drawn
                .map_err(|e| e.to_string())?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
                });
        }
        if let Some(cap) = cap_w {
            let grey = RGBColor(90, 90, 90);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0, cap), (x1, cap)],
                    10,
                    6,
                    grey.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(format!("Power cap per GPU, {cap:.0} W"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], grey.stroke_width(2))
                });
        }
        if rows > 0 {
            chart
                .configure_series_labels()
                .label_font(super::TEXT)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperRight)
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
        let svg = render(
            "Power <job>",
            "Power (W)",
            &series,
            0,
            (0, 60_000),
            Some(250.0),
        )
        .expect("renders");
        assert!(
            svg.contains("Power cap per GPU, 250 W"),
            "the cap is drawn and named"
        );
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("Power (W)"));
        assert!(svg.contains("Time since job start (min)"));
        assert!(!svg.contains("<job>"), "title must be escaped");
        assert!(svg.contains("n&lt;1&gt;/gpu0"));
    }
}
