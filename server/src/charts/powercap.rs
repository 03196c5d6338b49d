//! The first paper's Figure 1: time and energy at each power cap as a percentage of the baseline cap,
//! as grouped bars with a 100 % line.

use plotters::prelude::*;

use crate::analytics::powercap::CapRow;

/// Grouped bars: per cap, time % (left) and energy % (right); a black line at 100 %.
pub(crate) fn figure_1(
    title: &str,
    rows: &[CapRow],
    baseline_w: f64,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let n = rows.len().max(1) as u32;
        let top = rows
            .iter()
            .flat_map(|r| [r.rel_time_pct, r.rel_energy_pct])
            .fold(110.0f64, f64::max)
            * 1.3;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, super::TITLE)
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(70)
            // A segmented 0..k has k + 1 slots.
            .build_cartesian_2d((0u32..n - 1).into_segmented(), 0.0..top)
            .map_err(|e| e.to_string())?;
        let caps: Vec<String> = rows
            .iter()
            .map(|r| format!("{:.0} W", r.power_cap_w))
            .collect();
        chart
            .configure_mesh()
            .label_style(super::TEXT)
            .axis_desc_style(super::TEXT)
            .disable_x_mesh()
            .x_desc("Power cap")
            .y_desc(format!("% of the {baseline_w:.0} W baseline"))
            .x_labels(rows.len().max(1))
            .x_label_formatter(&|v: &SegmentValue<u32>| match v {
                SegmentValue::CenterOf(i) => caps.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        let time_color = RGBColor(11, 92, 173);
        let energy_color = RGBColor(214, 110, 20);
        let bar = |from: SegmentValue<u32>, to: SegmentValue<u32>, v: f64, color: RGBColor| {
            let mut r = Rectangle::new([(from, 0.0), (to, v)], color.filled());
            r.set_margin(0, 0, 6, 6);
            r
        };
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                bar(
                    SegmentValue::Exact(i as u32),
                    SegmentValue::CenterOf(i as u32),
                    r.rel_time_pct,
                    time_color,
                )
            }))
            .map_err(|e| e.to_string())?
            .label("Time")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], time_color.filled())
            });
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                bar(
                    SegmentValue::CenterOf(i as u32),
                    SegmentValue::Exact(i as u32 + 1),
                    r.rel_energy_pct,
                    energy_color,
                )
            }))
            .map_err(|e| e.to_string())?
            .label("Energy")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], energy_color.filled())
            });
        chart
            .draw_series(LineSeries::new(
                [
                    (SegmentValue::Exact(0), 100.0),
                    (SegmentValue::Exact(n), 100.0),
                ],
                BLACK.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("100 % (baseline)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .label_font(super::TEXT)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
