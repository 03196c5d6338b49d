//! A statement's chart: GPU energy per day.

use chrono::NaiveDate;
use plotters::prelude::*;

/// Bars of IT energy per UTC day in the statement's unit, as an SVG document.
pub(crate) fn by_day(
    title: &str,
    days_kwh: &[(NaiveDate, f64)],
    unit: crate::analytics::statement::EnergyUnit,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    // In the statement's one unit.
    let days: Vec<(NaiveDate, f64)> = days_kwh.iter().map(|&(d, k)| (d, unit.value(k))).collect();
    let days = days.as_slice();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let first = days.first().map(|d| d.0);
        let index = |d: NaiveDate| first.map_or(0, |f| (d - f).num_days());
        let span = days.last().map_or(1, |d| index(d.0) + 1).max(1);
        let top = days.iter().map(|d| d.1).fold(0.0f64, f64::max).max(1e-3) * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, super::TITLE)
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(78)
            .build_cartesian_2d(-0.5f64..span as f64 - 0.5, 0.0..top)
            .map_err(|e| e.to_string())?;
        let label = |x: &f64| {
            first
                .and_then(|f| f.checked_add_signed(chrono::Duration::days(x.round() as i64)))
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .label_style(super::TEXT)
            .axis_desc_style(super::TEXT)
            .disable_x_mesh()
            .x_desc("Day (UTC)")
            .y_desc(format!("IT energy ({})", unit.symbol()))
            .x_labels(span.clamp(1, 8) as usize)
            .x_label_formatter(&label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        let color = RGBColor(11, 92, 173);
        chart
            .draw_series(days.iter().map(|(d, kwh)| {
                let x = index(*d) as f64;
                Rectangle::new([(x - 0.4, 0.0), (x + 0.4, *kwh)], color.filled())
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
