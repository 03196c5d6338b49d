//! Charts as SVG, drawn with plotters: titles, axis labels with units, legends.

pub(crate) mod inline;
pub(crate) mod power;
pub(crate) mod powercap;
pub(crate) mod progress;
pub(crate) mod pue;
pub(crate) mod statement;

/// Every chart's axis labels, axis names and legends: 14.5 px at the chart's own width (900 px), as
/// drawn on a page at that width; no chart text below 13 px (issue 31: 9.7 px was unreadable). Plotters
/// sizes text by its em box: its SVG writes `font-size` as the size / 1.24 (13 here was 10.5 px).
pub(crate) const TEXT: (&str, u32) = ("sans-serif", 18);

/// Chart titles (17.7 px in the SVG).
pub(crate) const TITLE: (&str, u32) = ("sans-serif", 22);

/// What every chart renderer returns.
pub(crate) type Rendered = Result<String, Box<dyn std::error::Error + Send + Sync>>;

/// A chart that could not be drawn, with plotters' cause.
#[derive(Debug, thiserror::Error)]
#[error("drawing a chart")]
pub(crate) struct ChartError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl From<Box<dyn std::error::Error + Send + Sync>> for ChartError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self(e)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    /// The font sizes an SVG document names (`font-size="14"`, `font-size:14px`).
    fn font_sizes(svg: &str) -> Vec<f64> {
        let mut out = Vec::new();
        for marker in ["font-size=\"", "font-size:"] {
            for rest in svg.split(marker).skip(1) {
                let n: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                out.push(n.parse().expect("a font size"));
            }
        }
        out
    }

    /// Every chart, drawn: no text under 13 px at the chart's own width (issue 31: the PUE, job and
    /// cap charts had 9.7 px text), and some text in each (the check found something to check).
    #[test]
    fn no_chart_text_is_under_13_px() {
        let t0 = Utc
            .with_ymd_and_hms(2026, 7, 1, 0, 0, 0)
            .single()
            .expect("time");
        let day = crate::analytics::pue::DayPue {
            date: NaiveDate::from_ymd_opt(2026, 7, 1).expect("date"),
            hours: 24,
            mean_pue: 1.4,
            mean_pue_low: 1.372,
            mean_pue_high: 1.428,
            min_pue: 1.3,
            max_pue: 1.5,
            variation_pct: Some(15.0),
        };
        let mut profile = [[None; 24]; 12];
        profile[6][14] = Some(1.6);
        let rows: Vec<crate::analytics::powercap::CapRow> =
            [(150.0, 112.0, 88.0), (250.0, 100.0, 100.0)]
                .iter()
                .map(|&(cap, time, energy)| crate::analytics::powercap::CapRow {
                    power_cap_w: cap,
                    jobs: 2,
                    mean_duration_s: 600.0,
                    mean_it_energy_kwh: 0.1,
                    mean_it_energy_kwh_low: 0.095,
                    mean_it_energy_kwh_high: 0.105,
                    rel_time_pct: time,
                    rel_energy_pct: energy,
                    rel_energy_min_pct: energy - 1.0,
                    rel_energy_max_pct: energy + 1.0,
                })
                .collect();
        let progress = wattlas_protocol::MetricProgress {
            name: "loss".into(),
            points: (0..10)
                .map(|i| {
                    (
                        i * 100,
                        t0,
                        f64::from(i as i32) * 0.01,
                        2.0 - f64::from(i as i32) * 0.1,
                    )
                })
                .collect(),
            last_percent: None,
        };
        let charts = [
            (
                "power",
                super::power::render(
                    "Power",
                    "Power (W)",
                    &[super::power::Series {
                        label: "gpu-1/gpu0".into(),
                        points: vec![(0, 100.0), (60_000, 150.0)],
                    }],
                    0,
                    (0, 60_000),
                    Some(250.0),
                ),
            ),
            ("daily PUE", super::pue::daily("Daily", &[day], 2026)),
            (
                "week PUE",
                super::pue::week(
                    "Week",
                    &[(t0, 1.3), (t0 + chrono::Duration::hours(30), 1.4)],
                    t0,
                    chrono_tz::Europe::Berlin,
                ),
            ),
            ("PUE heat map", super::pue::heatmap("Heat", &profile)),
            (
                "power caps",
                super::powercap::figure_1("Caps", &rows, 250.0),
            ),
            ("progress", super::progress::render("job-1", &progress)),
            (
                "statement",
                super::statement::by_day(
                    "By day",
                    &[(NaiveDate::from_ymd_opt(2026, 7, 1).expect("date"), 0.4)],
                    crate::analytics::statement::EnergyUnit::Wh,
                ),
            ),
        ];
        for (name, svg) in charts {
            let svg = svg.unwrap_or_else(|e| panic!("{name}: {e}"));
            let sizes = font_sizes(&svg);
            assert!(!sizes.is_empty(), "{name}: no text found");
            let smallest = sizes.iter().copied().fold(f64::INFINITY, f64::min);
            let at = svg.find(&format!("{smallest}")).unwrap_or(0);
            assert!(
                smallest >= 13.0,
                "{name}: text of {smallest} px: {}",
                &svg[at.saturating_sub(200)..(at + 200).min(svg.len())]
            );
        }
    }
}
