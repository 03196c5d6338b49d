//! Charts drawn as inline SVG, for pages that show them in the HTML itself: each bar segment and point
//! carries a `<title>` (its value on hover, read by screen readers), the width follows the page (a
//! `viewBox`, no fixed size), text is 13 px, the legend sits below the plot where it covers nothing,
//! and the colours are Okabe-Ito's colour-blind-safe ones with at least 3:1 contrast on white. Only
//! presentation attributes: the pages' CSP allows no inline style.

use std::fmt::Write;

/// Okabe-Ito blue, bluish green, vermillion, reddish purple, and a grey, all >= 3:1 on white.
pub(crate) const PALETTE: [&str; 5] = ["#0072B2", "#009E73", "#D55E00", "#CC79A7", "#7F7F7F"];

const W: f64 = 960.0;
const H: f64 = 380.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 92.0;
const FONT: &str = r##"font-family="system-ui, sans-serif" font-size="13" fill="#222""##;

/// Escapes text for SVG.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round axis step for `max` in about five ticks.
fn step(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 {
        return 1.0;
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A value with up to 3 significant decimals, as axis and hover text.
pub(crate) fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn open(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{t}"><title>{t}</title><rect width="{W}" height="{H}" fill="#fff"/><text x="{LEFT}" y="22" {FONT} font-weight="600">{t}</text>"##,
        t = esc(title)
    );
}

/// The y axis from `lo` to `top` with grid lines, labelled `unit`; the top it drew to.
fn y_axis(out: &mut String, lo: f64, top: f64, unit: &str) -> f64 {
    let st = step(top - lo);
    let top = lo + ((top - lo) / st).ceil().max(1.0) * st;
    let plot_h = H - TOP - BOTTOM;
    let mut v = lo;
    while v <= top + st / 2.0 {
        let y = TOP + plot_h * (1.0 - (v - lo) / (top - lo));
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{lx}" y="{ty:.1}" {FONT} text-anchor="end">{n}</text>"##,
            x2 = W - RIGHT,
            lx = LEFT - 6.0,
            ty = y + 4.0,
            n = num(v)
        );
        v += st;
    }
    let _ = write!(
        out,
        r#"<text transform="translate(16 {cy:.1}) rotate(-90)" {FONT} text-anchor="middle">{u}</text>"#,
        cy = TOP + plot_h / 2.0,
        u = esc(unit)
    );
    top
}

/// The legend under the x labels, wrapping onto a second row where the first is full.
fn legend(out: &mut String, items: &[(&str, &str)]) {
    let mut x = LEFT;
    let mut y = H - BOTTOM + 50.0;
    for (name, colour) in items {
        let width = 19.0 + 7.5 * name.chars().count() as f64 + 22.0;
        if x > LEFT && x + width - 22.0 > W - RIGHT {
            x = LEFT;
            y += 22.0;
        }
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{ry}" width="14" height="14" fill="{colour}"/><text x="{tx}" y="{y}" {FONT}>{n}</text>"#,
            ry = y - 11.0,
            tx = x + 19.0,
            n = esc(name)
        );
        x += width;
    }
}

/// x labels under `n` slots, every k-th so they do not run into each other.
fn x_labels(out: &mut String, labels: &[String], x_of: impl Fn(usize) -> f64) {
    let plot_w = W - LEFT - RIGHT;
    let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f64 * 7.5 + 8.0;
    let every = ((widest * labels.len() as f64 / plot_w).ceil() as usize).max(1);
    for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{y}" {FONT} text-anchor="middle">{l}</text>"#,
            x = x_of(i),
            y = H - BOTTOM + 18.0,
            l = esc(l)
        );
    }
}

/// One stacked series: its name, colour and a value per bar (negative values are not drawn; their
/// hover text still says them).
pub(crate) struct Stack<'a> {
    /// Legend name.
    pub name: &'a str,
    /// Fill.
    pub colour: &'a str,
    /// Per bar.
    pub values: Vec<f64>,
}

/// Stacked bars, one per label, with an optional black tick per bar (`mark`: its name and values).
pub(crate) fn stacked_bars(
    title: &str,
    unit: &str,
    labels: &[String],
    stacks: &[Stack<'_>],
    mark: Option<(&str, &[Option<f64>])>,
) -> String {
    let mut out = String::new();
    open(&mut out, title);
    let n = labels.len().max(1);
    let heights: Vec<f64> = (0..n)
        .map(|i| {
            stacks
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0).max(0.0))
                .sum()
        })
        .collect();
    let marks_max = mark
        .map(|(_, m)| m.iter().flatten().copied().fold(0.0, f64::max))
        .unwrap_or(0.0);
    let top = y_axis(
        &mut out,
        0.0,
        heights.iter().copied().fold(marks_max, f64::max),
        unit,
    );
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / n as f64;
    let bar = (slot * 0.7).min(60.0);
    let x_of = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let y_of = |v: f64| TOP + plot_h * (1.0 - v / top);
    for (i, label) in labels.iter().enumerate() {
        let mut base = 0.0;
        for s in stacks {
            let v = s.values.get(i).copied().unwrap_or(0.0);
            let hover = format!("{label} · {}: {} {unit}", s.name, num(v));
            if v > 0.0 {
                let _ = write!(
                    out,
                    r##"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{c}" stroke="#fff" stroke-width="0.5"><title>{t}</title></rect>"##,
                    x = x_of(i) - bar / 2.0,
                    y = y_of(base + v),
                    h = y_of(base) - y_of(base + v),
                    c = s.colour,
                    t = esc(&hover)
                );
                base += v;
            }
        }
        if let Some((name, values)) = mark {
            if let Some(Some(v)) = values.get(i) {
                let _ = write!(
                    out,
                    r##"<line x1="{x1:.1}" x2="{x2:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#000" stroke-width="3"><title>{t}</title></line>"##,
                    x1 = x_of(i) - bar / 2.0 - 4.0,
                    x2 = x_of(i) + bar / 2.0 + 4.0,
                    y = y_of(v.max(0.0)),
                    t = esc(&format!("{label} · {name}: {} {unit}", num(*v)))
                );
            }
        }
    }
    x_labels(&mut out, labels, x_of);
    let mut items: Vec<(&str, &str)> = stacks.iter().map(|s| (s.name, s.colour)).collect();
    if let Some((name, _)) = mark {
        items.push((name, "#000"));
    }
    legend(&mut out, &items);
    out.push_str("</svg>");
    out
}

/// One line: its name, colour and points (x ms, value).
pub(crate) struct Line<'a> {
    /// Legend name.
    pub name: &'a str,
    /// Stroke.
    pub colour: &'a str,
    /// Points, x in ms, in order; a gap in x over `gap_ms` breaks the line.
    pub points: Vec<(i64, f64)>,
}

/// Lines over `[from_ms, to_ms]` with x ticks labelled by `tick_label(ms)` every `tick_ms`; points
/// further apart than `gap_ms` are not joined; the y axis starts at `y_lo` (0 for power, 1 for PUE).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lines(
    title: &str,
    unit: &str,
    y_lo: f64,
    from_ms: i64,
    to_ms: i64,
    tick_ms: i64,
    gap_ms: i64,
    tick_label: impl Fn(i64) -> String,
    series: &[Line<'_>],
) -> String {
    let mut out = String::new();
    open(&mut out, title);
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(y_lo, f64::max);
    let top = y_axis(&mut out, y_lo, max, unit);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let span = (to_ms - from_ms).max(1) as f64;
    let x_of = |t: i64| LEFT + plot_w * (t - from_ms) as f64 / span;
    let y_of = |v: f64| TOP + plot_h * (1.0 - (v.max(y_lo) - y_lo) / (top - y_lo));
    let ticks: Vec<i64> = (0..)
        .map(|k| from_ms.div_euclid(tick_ms) * tick_ms + k * tick_ms)
        .filter(|t| *t >= from_ms)
        .take_while(|t| *t <= to_ms)
        .collect();
    let labels: Vec<String> = ticks.iter().map(|t| tick_label(*t)).collect();
    x_labels(&mut out, &labels, |i| x_of(ticks[i]));
    for s in series {
        let mut path = String::new();
        let mut last: Option<i64> = None;
        for (t, v) in &s.points {
            let cmd = if last.is_some_and(|l| t - l <= gap_ms) {
                'L'
            } else {
                'M'
            };
            let _ = write!(path, "{cmd}{:.1} {:.1} ", x_of(*t), y_of(*v));
            last = Some(*t);
        }
        let _ = write!(
            out,
            r#"<path d="{p}" fill="none" stroke="{c}" stroke-width="2.5"/>"#,
            p = path.trim_end(),
            c = s.colour
        );
        for (t, v) in &s.points {
            let _ = write!(
                out,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{c}"><title>{h}</title></circle>"##,
                x = x_of(*t),
                y = y_of(*v),
                c = s.colour,
                h = esc(&format!(
                    "{} · {}: {} {unit}",
                    tick_label(*t),
                    s.name,
                    num(*v)
                ))
            );
        }
    }
    let items: Vec<(&str, &str)> = series.iter().map(|s| (s.name, s.colour)).collect();
    legend(&mut out, &items);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luminance(hex: &str) -> f64 {
        let c = |i: usize| {
            let v = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")) / 255.0;
            if v <= 0.039_28 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * c(1) + 0.7152 * c(3) + 0.0722 * c(5)
    }

    #[test]
    fn the_palette_stands_out_from_white() {
        for c in PALETTE {
            let ratio = 1.05 / (luminance(c) + 0.05);
            assert!(ratio >= 3.0, "{c}: {ratio:.2}:1");
        }
    }

    #[test]
    fn every_segment_says_its_value_on_hover_and_text_is_readable() {
        let svg = stacked_bars(
            "Energy <by day>",
            "kWh",
            &["11-29".into(), "11-30".into()],
            &[
                Stack {
                    name: "Jobs, GPU",
                    colour: PALETTE[0],
                    values: vec![12.5, -0.25],
                },
                Stack {
                    name: "Idle GPUs",
                    colour: PALETTE[2],
                    values: vec![1.0, 2.0],
                },
            ],
            Some(("Measured IT", &[Some(20.0), None])),
        );
        assert!(svg.contains("viewBox=\"0 0 960 380\" width=\"100%\""));
        assert!(svg.contains("<title>Energy &lt;by day&gt;</title>"));
        assert!(svg.contains("<title>11-29 · Jobs, GPU: 12.5 kWh</title>"));
        assert!(svg.contains("<title>11-29 · Measured IT: 20.0 kWh</title>"));
        // The negative part is not drawn (no rect says it).
        assert!(!svg.contains("-0.250 kWh</title></rect>"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            3 + 3,
            "3 segments, 3 legend keys"
        );
        assert!(!svg.contains("style="), "the CSP allows no inline style");
        for size in svg.split("font-size=\"").skip(1) {
            let px: f64 = size
                .split('"')
                .next()
                .expect("test value")
                .parse()
                .expect("test value");
            assert!(px >= 12.0);
        }
    }

    #[test]
    fn lines_break_at_gaps_and_points_have_titles() {
        let svg = lines(
            "Power",
            "kW",
            0.0,
            0,
            10_000,
            5_000,
            1_500,
            |t| format!("t{t}"),
            &[Line {
                name: "GPUs",
                colour: PALETTE[0],
                points: vec![(0, 1.0), (1_000, 2.0), (5_000, 3.0)],
            }],
        );
        let d = svg
            .split("<path d=\"")
            .nth(1)
            .expect("test value")
            .split('"')
            .next()
            .expect("test value");
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert!(svg.contains("<title>t5000 · GPUs: 3.00 kW</title>"));
        assert!(svg.contains(">t10000</text>"));
    }
}
