//! `wattlas-collector import meter FILE --site S`: building-management exports as CSV, either
//! `time,it_kw,total_kw` or `time,pue` (IT power unknown), with RFC 3339 times. A malformed line stops
//! the import before anything is sent, naming the line and the column; re-importing stores nothing new.

use std::io::Read;

use chrono::{DateTime, Utc};
use wattlas_protocol::{FacilityBatch, FacilityReading};

use super::nvidia_smi::ImportError;
use crate::uplink::{Delivery, Uplink};

/// Readings per request.
const BATCH: usize = 10_000;

/// Parses an export; the first malformed cell is an error naming line and column.
pub fn parse(input: impl Read) -> Result<Vec<FacilityReading>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ImportError {
            line: 1,
            field: "header".into(),
            message: e.to_string(),
        })?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let header_error = |message: String| ImportError {
        line: 1,
        field: "header".into(),
        message,
    };
    let time = col("time").ok_or_else(|| header_error("no 'time' column".into()))?;
    let (it, total, pue) = (col("it_kw"), col("total_kw"), col("pue"));
    if !((it.is_some() && total.is_some()) || pue.is_some()) {
        return Err(header_error(
            "expected columns time,it_kw,total_kw or time,pue".into(),
        ));
    }
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = record.map_err(|e| ImportError {
            line,
            field: "row".into(),
            message: e.to_string(),
        })?;
        let cell = |c: usize| record.get(c).unwrap_or("").trim();
        let number = |c: Option<usize>, name: &str| -> Result<Option<f64>, ImportError> {
            let Some(c) = c else { return Ok(None) };
            match cell(c).parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
                _ => Err(ImportError {
                    line,
                    field: name.into(),
                    message: format!("'{}' is not a non-negative number", cell(c)),
                }),
            }
        };
        let t = DateTime::parse_from_rfc3339(cell(time))
            .map_err(|_| ImportError {
                line,
                field: "time".into(),
                message: format!("'{}' is not an RFC 3339 time", cell(time)),
            })?
            .with_timezone(&Utc);
        let r = FacilityReading {
            time: t,
            it_kw: number(it, "it_kw")?,
            total_kw: number(total, "total_kw")?,
            pue: number(pue, "pue")?,
            ..FacilityReading::default()
        };
        if let (Some(i), Some(t)) = (r.it_kw, r.total_kw) {
            if t < i {
                return Err(ImportError {
                    line,
                    field: "total_kw".into(),
                    message: format!("{t} is below it_kw {i}"),
                });
            }
        }
        if let Some(p) = r.pue {
            if p < 1.0 {
                return Err(ImportError {
                    line,
                    field: "pue".into(),
                    message: format!("{p} is below 1"),
                });
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Readings stored now.
    pub stored: u64,
    /// Readings the server already had.
    pub duplicates: u64,
}

/// Sends readings for `meter` in `site` (with a meter token both may be left out; the admin token
/// creates the meter if needed).
pub async fn send(
    uplink: &Uplink,
    site: Option<&str>,
    meter: Option<&str>,
    readings: &[FacilityReading],
) -> Result<Report, String> {
    let mut report = Report::default();
    for chunk in readings.chunks(BATCH) {
        let batch = FacilityBatch {
            meter: meter.map(str::to_owned),
            site: site.map(str::to_owned),
            readings: chunk.to_vec(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_shapes_and_names_bad_cells() {
        let p = parse("time,it_kw,total_kw\n2024-01-01T00:00:00Z,800,880\n".as_bytes())
            .expect("parses");
        assert_eq!(p[0].total_kw, Some(880.0));
        let p = parse("time,pue\n2024-01-01T00:00:00-05:00,1.31\n".as_bytes()).expect("parses");
        assert_eq!(p[0].pue, Some(1.31));
        assert_eq!(p[0].time.to_rfc3339(), "2024-01-01T05:00:00+00:00");
        let e = parse(
            "time,it_kw,total_kw\n2024-01-01T00:00:00Z,800,880\n2024-01-01T00:05:00Z,800,700\n"
                .as_bytes(),
        )
        .expect_err("bad");
        assert_eq!(e.to_string(), "line 3, total_kw: 700 is below it_kw 800");
        let e = parse("time,pue\n2024-01-01 00:00,1.2\n".as_bytes()).expect_err("bad");
        assert_eq!((e.line, e.field.as_str()), (2, "time"));
        assert!(parse("when,pue\n".as_bytes()).is_err());
    }
}
