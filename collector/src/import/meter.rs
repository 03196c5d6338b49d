//! `wattlas-collector import meter FILE`: building-management exports as they come.
//!
//! A CSV with a header; columns are found by name, in any order, with units from the name or a bracket:
//! - power: `it_kw`, `total_kw` (or `..._w`, `IT power [kW]`, `facility_kw`), kW or W;
//! - energy counters: `it_kwh`, `total_kwh` (cumulative, as a meter's register reads);
//! - or `pue` alone (hourly values, as some dashboards export).
//!
//! Times are RFC 3339, or local without a zone (`2024-01-01 00:05[:00]`) read in `--timezone`. Broken
//! lines are skipped and counted by reason with their first line numbers; `strict` refuses the whole file
//! at the first. The server stores each (meter, time) once, so re-importing changes nothing.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::Args;
use wattlas_protocol::{FacilityBatch, FacilityReading};

pub(crate) use super::lines::ImportError;
use super::lines::{Line, Lines, Skips};
use crate::uplink::{Delivery, Uplink};

/// Readings per request.
const BATCH: usize = 10_000;

/// `import meter`.
#[derive(Debug, Args)]
pub struct MeterImportArgs {
    /// The CSV export.
    pub file: PathBuf,
    /// Site the export is of (admin token; a meter token names its site and meter).
    #[arg(long)]
    pub site: Option<String>,
    /// Meter to store the readings under (admin token; default SITE-bms, created if new).
    #[arg(long)]
    pub meter: Option<String>,
    /// IANA zone of times written without a zone.
    #[arg(long)]
    pub timezone: Option<String>,
    /// Refuse the whole file at its first bad line, storing nothing.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub server: super::ServerArgs,
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Col {
    Time,
    /// Power, with the factor to kW.
    ItPower(f64),
    TotalPower(f64),
    ItKwh,
    TotalKwh,
    Pue,
    Other,
}

fn classify(header: &str) -> Col {
    let h = header.trim().trim_matches('"').to_ascii_lowercase();
    // A unit in brackets or parentheses: `IT power [kW]`, `Total (W)`.
    let (name, unit) = match h.find(['[', '(']) {
        Some(i) => (
            h[..i].trim().to_owned(),
            Some(h[i + 1..].trim_end_matches([']', ')']).trim().to_owned()),
        ),
        None => (h.clone(), None),
    };
    let name = name.replace([' ', '-'], "_");
    let (base, unit) = match unit {
        Some(u) => (name.as_str(), u),
        None => match name.rsplit_once('_') {
            Some((b, u)) if ["kw", "w", "kwh"].contains(&u) => (b, u.to_owned()),
            _ => (name.as_str(), String::new()),
        },
    };
    let base = base.trim_end_matches("_power").trim_end_matches("_energy");
    let it = ["it", "it_load", "it_equipment"].contains(&base);
    let total = ["total", "facility", "site", "total_facility"].contains(&base);
    match (base, unit.as_str()) {
        ("time" | "timestamp" | "date" | "datetime" | "date_time", _) => Col::Time,
        ("pue", _) => Col::Pue,
        (_, "kw") if it => Col::ItPower(1.0),
        (_, "w") if it => Col::ItPower(0.001),
        (_, "kw") if total => Col::TotalPower(1.0),
        (_, "w") if total => Col::TotalPower(0.001),
        (_, "kwh") if it => Col::ItKwh,
        (_, "kwh") if total => Col::TotalKwh,
        _ => Col::Other,
    }
}

/// A parsed export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Lines read, the header included.
    pub lines: u64,
    /// The readings.
    pub readings: Vec<FacilityReading>,
    /// Lines left out, by reason.
    pub skipped: Skips,
}

fn time(cell: &str, tz: Option<Tz>) -> Result<DateTime<Utc>, &'static str> {
    let cell = cell.trim().trim_matches('"');
    if let Ok(t) = DateTime::parse_from_rfc3339(cell) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(cell, f).ok())
    .ok_or("not a time")?;
    let tz = tz.ok_or("a time without zone: give --timezone")?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        // The repeated hour of autumn: meters export it twice; the first is the earlier.
        LocalResult::Ambiguous(early, _) => Ok(early.with_timezone(&Utc)),
        LocalResult::None => Err("a local time skipped by a DST change"),
    }
}

/// Parses an export. `tz` reads times without a zone; `strict` refuses at the first bad line.
pub fn parse(input: impl BufRead, tz: Option<Tz>, strict: bool) -> Result<Parsed, ImportError> {
    let mut out = Parsed::default();
    let mut lines = Lines::new(input);
    let mut cols: Option<(Vec<Col>, Vec<String>)> = None;
    while let Some(line) = lines
        .next_line()
        .map_err(|e| ImportError::new(out.lines + 1, "file", e.to_string()))?
    {
        out.lines += 1;
        let mut skip = |why: String, no: u64, field: &str| out.skipped.skip(strict, why, no, field);
        let (no, text, complete) = match line {
            Line::Broken { no, why } => {
                skip(why.to_owned(), no, "row")?;
                continue;
            }
            Line::Text { no, text, complete } => (no, text, complete),
        };
        if text.trim().is_empty() {
            skip("blank line".into(), no, "row")?;
            continue;
        }
        let cells: Vec<&str> = text
            .split(',')
            .map(|c| c.trim().trim_matches('"'))
            .collect();
        let Some((kinds, names)) = &cols else {
            let kinds: Vec<Col> = cells.iter().map(|c| classify(c)).collect();
            let has = |f: &dyn Fn(&Col) -> bool| kinds.iter().any(f);
            if !has(&|c| *c == Col::Time) {
                return Err(ImportError::new(
                    no,
                    "header",
                    "no time column (time or timestamp)",
                ));
            }
            let power =
                has(&|c| matches!(c, Col::ItPower(_))) && has(&|c| matches!(c, Col::TotalPower(_)));
            let energy = has(&|c| *c == Col::ItKwh) && has(&|c| *c == Col::TotalKwh);
            if !(power || energy || has(&|c| *c == Col::Pue)) {
                return Err(ImportError::new(
                    no,
                    "header",
                    "expected IT and total power (it_kw,total_kw or _w), energy counters (it_kwh,total_kwh) or pue",
                ));
            }
            cols = Some((kinds, cells.iter().map(|c| (*c).to_owned()).collect()));
            continue;
        };
        if cells.len() != kinds.len() {
            let why = if complete {
                format!(
                    "{} fields where the header has {}",
                    cells.len(),
                    kinds.len()
                )
            } else {
                "last line cut off".to_owned()
            };
            skip(why, no, "row")?;
            continue;
        }
        if cells.iter().zip(names.iter()).all(|(c, n)| c == n) {
            skip("repeated header".into(), no, "header")?;
            continue;
        }
        let mut r = FacilityReading::default();
        let mut bad = None;
        for ((cell, kind), name) in cells.iter().zip(kinds).zip(names) {
            let num = || -> Result<Option<f64>, String> {
                if cell.is_empty() {
                    return Ok(None);
                }
                match cell.parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
                    _ => Err(format!("{name}: not a non-negative number")),
                }
            };
            let got = match kind {
                Col::Time => time(cell, tz)
                    .map(|t| r.time = t)
                    .map_err(|e| format!("{name}: {e}")),
                Col::ItPower(f) => num().map(|v| r.it_kw = v.map(|v| v * f)),
                Col::TotalPower(f) => num().map(|v| r.total_kw = v.map(|v| v * f)),
                Col::ItKwh => num().map(|v| r.it_kwh = v),
                Col::TotalKwh => num().map(|v| r.total_kwh = v),
                Col::Pue => num().map(|v| r.pue = v),
                Col::Other => Ok(()),
            };
            if let Err(e) = got {
                bad.get_or_insert((e, name.clone()));
            }
        }
        if let Some((why, field)) = bad {
            skip(why, no, &field)?;
            continue;
        }
        if let (Some(i), Some(t)) = (r.it_kw, r.total_kw) {
            if t < i {
                skip("total power below IT power".into(), no, "total_kw")?;
                continue;
            }
        }
        if r.pue.is_some_and(|p| p < 1.0) {
            skip("pue below 1".into(), no, "pue")?;
            continue;
        }
        if [r.it_kw, r.total_kw, r.it_kwh, r.total_kwh, r.pue]
            .iter()
            .all(Option::is_none)
        {
            skip("no value".into(), no, "row")?;
            continue;
        }
        out.readings.push(r);
    }
    Ok(out)
}

/// What the server did with an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// Readings stored now.
    pub stored: u64,
    /// Readings the server already had.
    pub duplicates: u64,
}

/// Readings in time order, in batches of at most `BATCH` readings and a year's span (the server
/// refuses a batch over `MAX_READINGS_SPAN_DAYS`).
fn batches(readings: &[FacilityReading]) -> Vec<Vec<FacilityReading>> {
    let mut sorted = readings.to_vec();
    sorted.sort_by_key(|r| r.time);
    let span = chrono::Duration::days(wattlas_protocol::MAX_READINGS_SPAN_DAYS - 1);
    let mut out: Vec<Vec<FacilityReading>> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(b) if b.len() < BATCH && r.time - b[0].time <= span => b.push(r),
            _ => out.push(vec![r]),
        }
    }
    out
}

/// Sends readings for `meter` in `site` (with a meter token both may be left out; the admin token
/// creates the meter if needed).
pub(crate) async fn send(
    uplink: &Uplink,
    site: Option<&str>,
    meter: Option<&str>,
    readings: &[FacilityReading],
) -> Result<Report, String> {
    let mut report = Report::default();
    for chunk in batches(readings) {
        let batch = FacilityBatch {
            meter: meter.map(str::to_owned),
            site: site.map(str::to_owned),
            readings: chunk,
        };
        match uplink
            .post_json(wattlas_protocol::paths::INGEST_FACILITY, &batch)
            .await
        {
            (Delivery::Done, Some(body)) => {
                let v: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| format!("unexpected answer: {e}"))?;
                report.stored += v["stored"].as_u64().unwrap_or(0);
                report.duplicates += v["duplicates"].as_u64().unwrap_or(0);
            }
            (Delivery::Done, None) => return Err("empty answer from the server".into()),
            (Delivery::Rejected(why) | Delivery::Retry(why), _) => return Err(why),
        }
    }
    Ok(report)
}

/// Runs `import meter` and prints its report.
pub(crate) async fn run(a: MeterImportArgs) -> anyhow::Result<()> {
    let tz: Option<Tz> = match &a.timezone {
        Some(z) => Some(
            z.parse()
                .map_err(|_| anyhow::anyhow!("--timezone: '{z}' is not an IANA time zone"))?,
        ),
        None => None,
    };
    let f =
        std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let parsed = parse(std::io::BufReader::new(f), tz, a.strict)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    // With the admin token a meter is named (default SITE-bms); a meter token names its own.
    let meter = a
        .meter
        .clone()
        .or_else(|| a.site.as_ref().map(|s| format!("{s}-bms")));
    let uplink = Uplink::new(&a.server.server, &a.server.token)?;
    let report = send(
        &uplink,
        a.site.as_deref(),
        meter.as_deref(),
        &parsed.readings,
    )
    .await
    .map_err(|e| anyhow::anyhow!("server refused the import: {e}"))?;
    println!("lines read: {}", parsed.lines);
    println!("readings stored: {}", report.stored);
    println!("readings already stored: {}", report.duplicates);
    println!("lines skipped: {}", parsed.skipped.total());
    print!("{}", parsed.skipped);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Parsed, ImportError> {
        parse(s.as_bytes(), None, false)
    }

    #[test]
    fn batches_hold_a_year_at_most_and_keep_every_reading() {
        // Hourly PUE over 30 months, given newest first: 10,000 hourly readings span 416 days.
        let t0 = Utc
            .with_ymd_and_hms(2022, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let readings: Vec<FacilityReading> = (0..30 * 730)
            .rev()
            .map(|h| FacilityReading {
                time: t0 + chrono::Duration::hours(h),
                it_kw: None,
                total_kw: None,
                it_kwh: None,
                total_kwh: None,
                pue: Some(1.3),
            })
            .collect();
        let out = batches(&readings);
        assert_eq!(out.iter().map(Vec::len).sum::<usize>(), readings.len());
        for b in &out {
            assert!(b.len() <= BATCH);
            let span = b[b.len() - 1].time - b[0].time;
            assert!(
                span.num_days() < wattlas_protocol::MAX_READINGS_SPAN_DAYS,
                "{span}"
            );
            assert!(b.windows(2).all(|w| w[0].time < w[1].time), "in time order");
        }
    }

    #[test]
    fn reads_power_energy_and_pue_shapes() {
        let x = p("time,it_kw,total_kw\n2024-01-01T00:00:00Z,800,880\n").expect("parses");
        assert_eq!(x.readings[0].total_kw, Some(880.0));
        let x =
            p("Timestamp,IT Power [W],Facility Power [W]\n2024-01-01T00:00:00Z,800000,880000\n")
                .expect("parses");
        assert_eq!(
            (x.readings[0].it_kw, x.readings[0].total_kw),
            (Some(800.0), Some(880.0))
        );
        let x = p("time,total_kwh,it_kwh\n2024-01-01T00:00:00Z,1000.5,900.25\n").expect("parses");
        assert_eq!(
            (x.readings[0].it_kwh, x.readings[0].total_kwh),
            (Some(900.25), Some(1000.5))
        );
        let x = p("time,pue\n2024-01-01T00:00:00-05:00,1.31\n").expect("parses");
        assert_eq!(x.readings[0].pue, Some(1.31));
        assert_eq!(x.readings[0].time.to_rfc3339(), "2024-01-01T05:00:00+00:00");
        assert!(p("when,pue\n").is_err());
        assert!(p("time,it_kw\n").is_err(), "IT power alone gives no PUE");
    }

    #[test]
    fn local_times_need_a_zone() {
        let csv = "time,pue\n2024-07-01 14:00,1.4\n";
        let x = p(csv).expect("parses");
        assert_eq!(
            x.skipped
                .count("time: a time without zone: give --timezone"),
            1
        );
        let x = parse(csv.as_bytes(), Some(chrono_tz::America::New_York), false).expect("parses");
        assert_eq!(x.readings[0].time.to_rfc3339(), "2024-07-01T18:00:00+00:00");
    }

    #[test]
    fn bad_lines_are_skipped_and_counted_or_refused_when_strict() {
        let csv = "time,it_kw,total_kw\n2024-01-01T00:00:00Z,800,880\n\
            2024-01-01T00:05:00Z,800,700\n2024-01-01T00:10:00Z,800,lots\n\
            time,it_kw,total_kw\n2024-01-01T00:15:00Z,800,880";
        let x = p(csv).expect("parses");
        assert_eq!(x.readings.len(), 2);
        assert_eq!(
            x.skipped.lines(),
            vec![
                "1: repeated header (line 5)",
                "1: total power below IT power (line 3)",
                "1: total_kw: not a non-negative number (line 4)",
            ]
        );
        let e = parse(csv.as_bytes(), None, true).expect_err("strict");
        assert_eq!(
            e.to_string(),
            "line 3, total_kw: total power below IT power"
        );
    }
}
