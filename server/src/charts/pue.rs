//! PUE charts: a year of daily means (the paper's Figure 4), a week of hourly means (Figure 5), and a
//! month x hour-of-day heat map of mean PUE.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use plotters::prelude::*;

use crate::analytics::pue::DayPue;

type ChartResult = Result<String, Box<dyn std::error::Error + Send + Sync>>;

const MONTH_ABBR: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn pue_range<'a>(values: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(*v), hi.max(*v))
    });
    if lo.is_finite() && hi.is_finite() {
        let pad = ((hi - lo) * 0.1).max(0.02);
        ((lo - pad).max(0.9), hi + pad)
    } else {
        (1.0, 2.0)
    }
}

/// Figure 4: each day's mean PUE over the year; x is in months (January 1 = 0, December 31 ~ 12).
pub(crate) fn daily(title: &str, days: &[DayPue], year: i32) -> ChartResult {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (lo, hi) = pue_range(days.iter().map(|d| &d.mean_pue));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, super::TITLE)
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(66)
            .build_cartesian_2d(0.0..12.0, lo..hi)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .label_style(super::TEXT)
            .axis_desc_style(super::TEXT)
            .x_desc("Month")
            .y_desc("PUE")
            .x_labels(13)
            .x_label_formatter(&|x: &f64| {
                let m = x.round();
                if (x - m).abs() < 1e-6 && (0.0..12.0).contains(&m) {
                    MONTH_ABBR[m as usize].to_owned()
                } else {
                    String::new()
                }
            })
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        let x_of = |d: NaiveDate| {
            let first = NaiveDate::from_ymd_opt(d.year(), d.month(), 1);
            let next = if d.month() == 12 {
                NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
            };
            let len = match (first, next) {
                (Some(a), Some(b)) => (b - a).num_days() as f64,
                _ => 30.0,
            };
            f64::from(d.month0()) + (f64::from(d.day0()) + 0.5) / len
        };
        let _ = year;
        chart
            .draw_series(LineSeries::new(
                days.iter().map(|d| (x_of(d.date), d.mean_pue)),
                RGBColor(11, 92, 173).stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Figure 5: hourly PUE over one week from `from`, labelled by local day.
pub(crate) fn week(
    title: &str,
    points: &[(DateTime<Utc>, f64)],
    from: DateTime<Utc>,
    tz: Tz,
) -> ChartResult {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (lo, hi) = pue_range(points.iter().map(|p| &p.1));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, super::TITLE)
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(66)
            .build_cartesian_2d(0.0..7.0, lo..hi)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .label_style(super::TEXT)
            .axis_desc_style(super::TEXT)
            .x_desc(format!("Local time ({tz})"))
            .y_desc("PUE")
            .x_labels(8)
            .x_label_formatter(&|d: &f64| {
                let t = (from + chrono::Duration::minutes((*d * 1440.0).round() as i64))
                    .with_timezone(&tz);
                t.format("%a %d").to_string()
            })
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                points
                    .iter()
                    // x in days since the week's start, each hour at its middle.
                    .map(|(t, p)| (((*t - from).num_minutes() as f64 + 30.0) / 1440.0, *p)),
                RGBColor(194, 65, 12).stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// A colour from a blue (low PUE) to red (high PUE) scale, `f` in 0..=1.
fn scale(f: f64) -> RGBColor {
    let f = f.clamp(0.0, 1.0);
    let lerp = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    RGBColor(lerp(33, 214), lerp(102, 48), lerp(172, 39))
}

/// The heat map's colour scale: PUE from, to.
pub(crate) const HEATMAP_SCALE: (f64, f64) = (1.0, 2.0);

/// Mean PUE by month (rows) and local hour of day (columns), with a colour legend on a fixed scale.
pub(crate) fn heatmap(title: &str, profile: &[[Option<f64>; 24]; 12]) -> ChartResult {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        // A fixed scale, PUE 1.0 to 2.0 (higher shown as 2.0): a colour means the same PUE in every
        // year and at every site, so maps can be compared side by side.
        let (lo, hi) = HEATMAP_SCALE;
        let (main, legend) = root.split_horizontally(800);
        let mut chart = ChartBuilder::on(&main)
            .caption(title, super::TITLE)
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(62)
            .build_cartesian_2d((0u32..24).into_segmented(), (0u32..12).into_segmented())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .label_style(super::TEXT)
            .axis_desc_style(super::TEXT)
            .disable_mesh()
            .x_desc("Local hour of day")
            .y_desc("Month")
            .x_labels(24)
            .y_labels(12)
            .x_label_formatter(&|v: &SegmentValue<u32>| match v {
                SegmentValue::CenterOf(h) if h % 3 == 0 => format!("{h:02}"),
                _ => String::new(),
            })
            .y_label_formatter(&|v: &SegmentValue<u32>| match v {
                // Row 11 is January, at the top.
                SegmentValue::CenterOf(m) if *m < 12 => MONTH_ABBR[11 - *m as usize].to_owned(),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        for (m, row) in profile.iter().enumerate() {
            for (h, cell) in row.iter().enumerate() {
                let y = 11 - m as u32;
                let style = match cell {
                    Some(v) => scale((v - lo) / (hi - lo)).filled(),
                    None => RGBColor(240, 240, 240).filled(),
                };
                let corners = [
                    (SegmentValue::Exact(h as u32), SegmentValue::Exact(y)),
                    (
                        SegmentValue::Exact(h as u32 + 1),
                        SegmentValue::Exact(y + 1),
                    ),
                ];
                chart
                    .draw_series(std::iter::once(Rectangle::new(corners, style)))
                    .map_err(|e| e.to_string())?;
            }
        }
        // Legend: the colour scale with its PUE values.
        let legend = legend.margin(50, 40, 10, 10);
        let (w, h) = legend.dim_in_pixel();
        for i in 0..h {
            let f = 1.0 - f64::from(i) / f64::from(h.max(1));
            legend
                .draw(&Rectangle::new(
                    [(0, i as i32), (18, i as i32 + 1)],
                    scale(f).filled(),
                ))
                .map_err(|e| e.to_string())?;
        }
        let _ = w;
        let text = super::TEXT.into_font().color(&BLACK);
        legend
            .draw(&Text::new(format!("≥ {hi:.2}"), (22, 0), text.clone()))
            .map_err(|e| e.to_string())?;
        legend
            .draw(&Text::new(
                format!("{lo:.2}"),
                (22, h as i32 - 12),
                text.clone(),
            ))
            .map_err(|e| e.to_string())?;
        legend
            .draw(&Text::new("PUE", (22, h as i32 / 2), text))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_have_titles_and_axis_labels() {
        let day = DayPue {
            date: NaiveDate::from_ymd_opt(2024, 7, 1).expect("date"),
            hours: 24,
            mean_pue: 1.4,
            mean_pue_low: 1.372,
            mean_pue_high: 1.428,
            min_pue: 1.3,
            max_pue: 1.5,
            variation_pct: Some(15.0),
        };
        let svg = daily("Daily <mean>", &[day], 2024).expect("renders");
        assert!(svg.contains("Daily &lt;mean&gt;"));
        assert!(svg.contains("PUE") && svg.contains("Month"), "axis labels");
        let mut profile = [[None; 24]; 12];
        profile[6][14] = Some(1.6);
        profile[0][3] = Some(1.05);
        let svg = heatmap("Heat", &profile).expect("renders");
        assert!(
            svg.contains("2.00") && svg.contains("1.00"),
            "the legend shows the fixed scale, not the data's range: {}",
            &svg[svg.len().saturating_sub(600)..]
        );
        // The same PUE is the same colour whatever else the map holds.
        profile[0][3] = Some(1.9);
        let other = heatmap("Heat", &profile).expect("renders");
        let colour_of_16 = scale((1.6 - 1.0) / 1.0);
        let hex = format!(
            "#{:02X}{:02X}{:02X}",
            colour_of_16.0, colour_of_16.1, colour_of_16.2
        );
        assert!(svg.contains(&hex) && other.contains(&hex), "{hex}");
    }
}
