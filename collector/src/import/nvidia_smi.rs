//! `wattlas-collector import nvidia-smi FILE --node N --timezone TZ`: logs written by
//! `nvidia-smi --query-gpu=... --format=csv` (or `csv,nounits`).
//!
//! Columns are found by their header (any order; units in brackets ignored); `[N/A]` and
//! `[Not Supported]` are missing values, never zeros. nvidia-smi writes local time without a zone, so the
//! zone is given; in the hour a DST change repeats, a time is read as the earlier instant unless that
//! would go back in time for the same GPU. A malformed cell stops the import before anything is sent,
//! naming the line and the column; a row without a power reading is skipped and counted. The server
//! stores each (GPU, time) once, so importing a file twice changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use wattlas_protocol::{GpuBatch, GpuIdentity, GpuSample, IngestResult};

use crate::uplink::{Delivery, Uplink};

/// Samples per request.
const BATCH: usize = 20_000;

/// A file that cannot be imported: where and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}, {field}: {message}")]
pub struct ImportError {
    /// 1-based line number in the file.
    pub line: u64,
    /// Column (header name) or `header`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A parsed log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Data lines read.
    pub lines: u64,
    /// Samples to send.
    pub samples: Vec<GpuSample>,
    /// GPU identities found (when the file has uuid and name columns).
    pub gpus: Vec<GpuIdentity>,
    /// Lines skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Data lines read.
    pub lines: u64,
    /// Samples stored now.
    pub stored: u64,
    /// Samples the server already had.
    pub duplicates: u64,
    /// Lines skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
}

fn is_missing(cell: &str) -> bool {
    let c = cell.trim();
    c.is_empty()
        || c.eq_ignore_ascii_case("[N/A]")
        || c.eq_ignore_ascii_case("N/A")
        || c.eq_ignore_ascii_case("[Not Supported]")
        || c.eq_ignore_ascii_case("[Unknown Error]")
}

/// Parses a log; the first malformed cell is an error naming line and column.
pub fn parse(input: impl Read, tz: Tz) -> Result<Parsed, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| ImportError {
            line: 1,
            field: "header".into(),
            message: e.to_string(),
        })?
        .clone();
    let names: Vec<String> = headers
        .iter()
        .map(|h| {
            h.split(" [")
                .next()
                .unwrap_or(h)
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    let col = |options: &[&str]| {
        options
            .iter()
            .find_map(|o| names.iter().position(|n| n == o))
    };
    let need = |options: &[&str]| {
        col(options).ok_or_else(|| ImportError {
            line: 1,
            field: "header".into(),
            message: format!("no '{}' column", options[0]),
        })
    };
    let c_time = need(&["timestamp"])?;
    let c_index = need(&["index"])?;
    let c_power = need(&["power.draw", "power.draw.instant", "power.draw.average"])?;
    let c_uuid = col(&["uuid"]);
    let c_name = col(&["name"]);
    let c_limit = col(&["enforced.power.limit", "power.limit"]);
    let c_default = col(&["power.default_limit"]);
    let c_util = col(&["utilization.gpu"]);
    let c_mem = col(&["memory.used"]);
    let c_temp = col(&["temperature.gpu"]);
    let c_sm = col(&["clocks.sm", "clocks.current.sm"]);

    let mut out = Parsed::default();
    let mut last_time: HashMap<u32, DateTime<Utc>> = HashMap::new();
    let mut identities: BTreeMap<u32, GpuIdentity> = BTreeMap::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = record.map_err(|e| ImportError {
            line,
            field: "row".into(),
            message: e.to_string(),
        })?;
        out.lines += 1;
        let cell = |c: usize| record.get(c).unwrap_or("");
        let number = |c: Option<usize>| -> Result<Option<f64>, ImportError> {
            let Some(c) = c else { return Ok(None) };
            let raw = cell(c);
            if is_missing(raw) {
                return Ok(None);
            }
            let value = raw.split_whitespace().next().unwrap_or("");
            match value.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Some(v)),
                _ => Err(ImportError {
                    line,
                    field: headers[c].to_owned(),
                    message: format!("'{raw}' is not a number"),
                }),
            }
        };
        let index: u32 = cell(c_index).parse().map_err(|_| ImportError {
            line,
            field: headers[c_index].to_owned(),
            message: format!("'{}' is not a GPU index", cell(c_index)),
        })?;
        let naive = parse_time(cell(c_time)).ok_or_else(|| ImportError {
            line,
            field: headers[c_time].to_owned(),
            message: format!("'{}' is not a timestamp", cell(c_time)),
        })?;
        let time = match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(early, late) => {
                let (early, late) = (early.with_timezone(&Utc), late.with_timezone(&Utc));
                if last_time.get(&index).is_some_and(|prev| *prev >= early) {
                    late
                } else {
                    early
                }
            }
            LocalResult::None => {
                return Err(ImportError {
                    line,
                    field: headers[c_time].to_owned(),
                    message: format!(
                        "{} does not exist in {tz} (skipped by a DST change)",
                        cell(c_time)
                    ),
                })
            }
        };
        last_time.insert(index, time);
        if let (Some(u), Some(n)) = (c_uuid, c_name) {
            if !is_missing(cell(u)) {
                identities.entry(index).or_insert_with(|| GpuIdentity {
                    index,
                    uuid: cell(u).to_owned(),
                    model: cell(n).to_owned(),
                    default_power_limit_w: None,
                });
            }
        }
        if let Some(d) = number(c_default)? {
            if let Some(id) = identities.get_mut(&index) {
                id.default_power_limit_w = Some(d);
            }
        }
        let Some(power_w) = number(Some(c_power))? else {
            *out.skipped
                .entry(format!("{} is [N/A]", headers[c_power].trim()))
                .or_default() += 1;
            continue;
        };
        out.samples.push(GpuSample {
            time,
            gpu: index,
            power_w,
            energy_mj: None,
            power_limit_w: number(c_limit)?,
            util_pct: number(c_util)?,
            mem_used_mib: number(c_mem)?,
            temp_c: number(c_temp)?,
            sm_clock_mhz: number(c_sm)?,
        });
    }
    out.gpus = identities.into_values().collect();
    Ok(out)
}

fn parse_time(s: &str) -> Option<NaiveDateTime> {
    [
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%a %b %e %H:%M:%S %Y",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s.trim(), f).ok())
}

/// Sends parsed samples for `node`; stops at the first refusal (earlier batches stay: they are valid and
/// re-importing after a fix stores only what is missing).
pub async fn send(uplink: &Uplink, node: &str, parsed: Parsed) -> Result<Report, String> {
    let mut report = Report {
        lines: parsed.lines,
        skipped: parsed.skipped,
        ..Report::default()
    };
    for chunk in parsed.samples.chunks(BATCH) {
        let batch = GpuBatch {
            node: Some(node.to_owned()),
            gpus: parsed.gpus.clone(),
            samples: chunk.to_vec(),
            dropped_samples_total: None,
        };
        match uplink
            .post_json(wattlas_protocol::paths::INGEST_GPU, &batch)
            .await
        {
            (Delivery::Done, Some(body)) => {
                let r: IngestResult = serde_json::from_str(&body)
                    .map_err(|e| format!("unexpected answer from the server: {e}"))?;
                report.stored += r.stored;
                report.duplicates += r.duplicates;
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

    const LOG: &str = "timestamp, name, pci.bus_id, index, uuid, power.draw [W], enforced.power.limit [W], utilization.gpu [%], memory.used [MiB], temperature.gpu, clocks.sm [MHz]
2024/03/10 01:59:59.900, Tesla V100-SXM2-32GB, 00000000:1A:00.0, 0, GPU-aaa, 201.50 W, 250.00 W, 98 %, 30000 MiB, 61, 1380 MHz
2024/03/10 03:00:00.000, Tesla V100-SXM2-32GB, 00000000:1A:00.0, 0, GPU-aaa, 199.25 W, 250.00 W, 97 %, 30000 MiB, 62, [N/A]
2024/03/10 03:00:00.100, Tesla V100-SXM2-32GB, 00000000:1A:00.0, 0, GPU-aaa, [N/A], 250.00 W, 97 %, 30000 MiB, 62, 1380 MHz
";

    #[test]
    fn reads_units_missing_values_and_the_zone() {
        let tz: Tz = "America/New_York".parse().expect("tz");
        let p = parse(LOG.as_bytes(), tz).expect("parses");
        assert_eq!(p.lines, 3);
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.skipped.get("power.draw [W] is [N/A]"), Some(&1));
        let s = &p.samples[1];
        assert_eq!(s.power_w, 199.25);
        assert_eq!(s.sm_clock_mhz, None, "[N/A] is missing, not zero");
        // 01:59:59.9 EST and 03:00:00 EDT are 100 ms apart across the spring-forward gap.
        assert_eq!(
            (p.samples[1].time - p.samples[0].time).num_milliseconds(),
            100
        );
        assert_eq!(p.gpus[0].uuid, "GPU-aaa");
    }

    #[test]
    fn nounits_logs_and_column_order_do_not_matter() {
        let log = "power.draw [W], index, timestamp\n150.5, 1, 2024/01/01 00:00:00.000\n";
        let p = parse(log.as_bytes(), chrono_tz::UTC).expect("parses");
        assert_eq!(p.samples[0].gpu, 1);
        assert_eq!(p.samples[0].power_w, 150.5);
    }

    #[test]
    fn a_bad_cell_names_its_line_and_column() {
        let log = "timestamp, index, power.draw [W]\n2024/01/01 00:00:00.000, 0, 100 W\n2024/01/01 00:00:00.100, 0, abc W\n";
        let err = parse(log.as_bytes(), chrono_tz::UTC).expect_err("fails");
        assert_eq!(err.line, 3);
        assert_eq!(err.field, "power.draw [W]");
        let log = "timestamp, index, power.draw [W]\n2024/03/10 02:30:00.000, 0, 100 W\n";
        let err = parse(log.as_bytes(), "America/New_York".parse().expect("tz"))
            .expect_err("no such local time");
        assert!(err.message.contains("does not exist"), "{err}");
        let err =
            parse("index, power.draw\n".as_bytes(), chrono_tz::UTC).expect_err("no timestamp");
        assert_eq!(err.field, "header");
    }

    #[test]
    fn the_repeated_hour_of_autumn_is_read_in_order() {
        let log = "timestamp, index, power.draw [W]\n\
            2024/11/03 01:59:59.900, 0, 100\n2024/11/03 01:00:00.000, 0, 100\n";
        // Same wall clock hour twice: the second line is the later (EST) 01:00.
        let p = parse(log.as_bytes(), "America/New_York".parse().expect("tz")).expect("parses");
        assert_eq!(
            (p.samples[1].time - p.samples[0].time).num_milliseconds(),
            100
        );
    }
}
