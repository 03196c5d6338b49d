//! The layouts nvidia-smi writes, and one data line read against its layout.
//!
//! - `--query-gpu=... --format=csv[,nounits][,noheader]`: comma-separated, a header of field names with
//!   units in brackets (`power.draw [W]`), cells with units (`201.50 W`) unless `nounits`, `[N/A]` for what
//!   a GPU cannot report. Any column order and any subset; `noheader` logs take their columns from
//!   `--columns`.
//! - `nvidia-smi dmon [-s p,u,c,m] [-o DT]`: whitespace-separated under `#` header lines, `-` for missing,
//!   one line per GPU per second.
//!
//! Owns no I/O; `super` feeds it lines.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// Field names that mark a CSV line as a header (a data line never holds one of these as a cell).
const HEADER_NAMES: &[&str] = &[
    "timestamp",
    "index",
    "uuid",
    "name",
    "pci.bus_id",
    "power.draw",
    "power.draw.instant",
    "power.draw.average",
];

/// Power columns, in order of preference: `power.draw` is what nvidia-smi documents as the board's draw;
/// `.average` and `.instant` exist on newer drivers beside it or alone (the average integrates into
/// energy; an instant column beside the power is kept for charts).
const POWER_NAMES: &[&str] = &["power.draw", "power.draw.average", "power.draw.instant"];

/// How a line is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--query-gpu --format=csv`.
    Csv,
    /// `nvidia-smi dmon`.
    Dmon,
}

/// Where the time of a line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeCols {
    /// One `timestamp` cell.
    Stamp(usize),
    /// dmon `-o DT`: `YYYYMMDD` and `HH:MM:SS`.
    DateTime(usize, usize),
    /// dmon `-o T`: the time of day only (the date comes from `--date`).
    TimeOnly(usize),
}

/// The columns of one layout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    /// CSV or dmon.
    pub kind: Kind,
    /// The header as written (to recognise a repeat).
    pub header: String,
    /// Column names as written, units included.
    pub names: Vec<String>,
    /// Whether the header names a unit for the column (`[W]`): with `csv` its cells carry it too.
    pub has_unit: Vec<bool>,
    /// Time.
    pub time: TimeCols,
    /// `index`.
    pub index: Option<usize>,
    /// `uuid`.
    pub uuid: Option<usize>,
    /// `pci.bus_id`.
    pub bus: Option<usize>,
    /// `name`.
    pub name: Option<usize>,
    /// The power column used.
    pub power: usize,
    /// `power.draw.instant` where it stands beside another power column (charts draw it).
    pub instant: Option<usize>,
    /// `enforced.power.limit` or `power.limit`.
    pub limit: Option<usize>,
    /// `power.default_limit`.
    pub default_limit: Option<usize>,
    /// `utilization.gpu`.
    pub util: Option<usize>,
    /// `memory.used`.
    pub mem: Option<usize>,
    /// `temperature.gpu`.
    pub temp: Option<usize>,
    /// `clocks.sm`.
    pub sm: Option<usize>,
    /// Units in cells: unknown until the first data line says.
    pub units: Option<bool>,
}

/// A header that cannot be used: why.
pub(crate) type HeaderError = String;

fn bare(name: &str) -> String {
    name.split(" [")
        .next()
        .unwrap_or(name)
        .trim()
        .to_ascii_lowercase()
}

/// Whether a CSV line is a header line (asked of every line: no allocation).
pub(crate) fn is_csv_header(line: &str) -> bool {
    line.split(',').any(|c| {
        let name = c.split(" [").next().unwrap_or(c).trim();
        HEADER_NAMES.iter().any(|h| h.eq_ignore_ascii_case(name))
    })
}

/// Whether a line is a dmon comment (header or units line).
pub(crate) fn is_dmon_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

impl Layout {
    /// The layout of a CSV header line (or of `--columns`).
    pub(crate) fn csv(header: &str) -> Result<Layout, HeaderError> {
        let names: Vec<String> = header.split(',').map(|c| c.trim().to_owned()).collect();
        let bare: Vec<String> = names.iter().map(|n| bare(n)).collect();
        let has_unit = names.iter().map(|n| n.contains(" [")).collect();
        Layout::from_names(Kind::Csv, header, names, &bare, has_unit)
    }

    /// The layout of a dmon header line (`# gpu pwr ...` or `#Date Time gpu pwr ...`); `None` for the
    /// units line under it.
    pub(crate) fn dmon(header: &str) -> Option<Result<Layout, HeaderError>> {
        let tokens: Vec<String> = header
            .trim_start()
            .trim_start_matches('#')
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let first = tokens.first()?.to_ascii_lowercase();
        if first == "idx" || first == "yyyymmdd" || first == "hh:mm:ss" {
            return None;
        }
        // dmon's names mapped onto the query-gpu fields they measure.
        let bare: Vec<String> = tokens
            .iter()
            .map(|t| {
                match t.to_ascii_lowercase().as_str() {
                    "gpu" | "idx" => "index",
                    "date" => "date",
                    "time" => "time",
                    "pwr" => "power.draw",
                    "gtemp" => "temperature.gpu",
                    "sm" => "utilization.gpu",
                    "fb" => "memory.used",
                    "pclk" => "clocks.sm",
                    _ => "",
                }
                .to_owned()
            })
            .collect();
        let has_unit = vec![false; tokens.len()];
        Some(Layout::from_names(
            Kind::Dmon,
            header,
            tokens,
            &bare,
            has_unit,
        ))
    }

    fn from_names(
        kind: Kind,
        header: &str,
        names: Vec<String>,
        bare: &[String],
        has_unit: Vec<bool>,
    ) -> Result<Layout, HeaderError> {
        let col = |options: &[&str]| {
            options
                .iter()
                .find_map(|o| bare.iter().position(|n| n == o))
        };
        let time =
            match kind {
                Kind::Csv => TimeCols::Stamp(col(&["timestamp"]).ok_or("no 'timestamp' column")?),
                Kind::Dmon => match (col(&["date"]), col(&["time"])) {
                    (Some(d), Some(t)) => TimeCols::DateTime(d, t),
                    (None, Some(t)) => TimeCols::TimeOnly(t),
                    _ => return Err(
                        "dmon output without times: run it with -o DT (or -o T and give --date)"
                            .into(),
                    ),
                },
            };
        let power = col(POWER_NAMES).ok_or_else(|| match kind {
            Kind::Csv => {
                "no power column (power.draw, power.draw.instant or power.draw.average)".to_owned()
            }
            Kind::Dmon => "no power column (pwr): run dmon with -s p".to_owned(),
        })?;
        Ok(Layout {
            kind,
            header: header.trim().to_owned(),
            has_unit,
            time,
            index: col(&["index"]),
            uuid: col(&["uuid"]),
            bus: col(&["pci.bus_id"]),
            name: col(&["name"]),
            power,
            instant: col(&["power.draw.instant"]).filter(|c| *c != power),
            limit: col(&["enforced.power.limit", "power.limit"]),
            default_limit: col(&["power.default_limit"]),
            util: col(&["utilization.gpu"]),
            mem: col(&["memory.used"]),
            temp: col(&["temperature.gpu"]),
            sm: col(&["clocks.sm", "clocks.current.sm"]),
            units: if kind == Kind::Dmon {
                Some(false)
            } else {
                None
            },
            names,
        })
    }

    /// What the power column is: `power.draw.average` the sensor's 1-s average, `.instant` an instant
    /// reading; `power.draw` is either (nvidia-smi documents it as the 1-s average on Ampere and newer,
    /// instant on older boards), so a sample from it does not say.
    pub(crate) fn power_source(&self) -> Option<wattlas_protocol::PowerSource> {
        match (self.kind, self.power_name().as_str()) {
            (Kind::Csv, "power.draw.average") => Some(wattlas_protocol::PowerSource::Average),
            (Kind::Csv, "power.draw.instant") => Some(wattlas_protocol::PowerSource::Instant),
            _ => None,
        }
    }

    /// The power column's name without its unit.
    pub(crate) fn power_name(&self) -> String {
        match self.kind {
            Kind::Csv => bare(&self.names[self.power]),
            Kind::Dmon => "pwr".to_owned(),
        }
    }
}

/// Whether a cell holds no value.
pub(crate) fn is_missing(cell: &str) -> bool {
    let c = cell.trim();
    c.is_empty()
        || c == "-"
        || c.eq_ignore_ascii_case("[N/A]")
        || c.eq_ignore_ascii_case("N/A")
        || c.eq_ignore_ascii_case("[Not Supported]")
        || c.eq_ignore_ascii_case("[Unknown Error]")
        || c.eq_ignore_ascii_case("[Insufficient Permissions]")
}

/// Timestamps as nvidia-smi writes them (`2024/03/10 01:59:59.900`), and ISO forms some wrappers write.
pub(crate) fn parse_stamp(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    [
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%a %b %e %H:%M:%S %Y",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

/// dmon's `YYYYMMDD` and `HH:MM:SS`.
pub(crate) fn parse_dmon_time(
    date: Option<&str>,
    time: &str,
) -> Option<(Option<NaiveDate>, NaiveTime)> {
    let t = NaiveTime::parse_from_str(time.trim(), "%H:%M:%S").ok()?;
    match date {
        Some(d) => Some((Some(NaiveDate::parse_from_str(d.trim(), "%Y%m%d").ok()?), t)),
        None => Some((None, t)),
    }
}

/// A numeric cell: `None` when missing; an error message when it is no number or (with units in cells)
/// has lost its unit, as a cut-off line does.
pub(crate) fn number(cell: &str, with_unit: bool) -> Result<Option<f64>, &'static str> {
    if is_missing(cell) {
        return Ok(None);
    }
    let cell = cell.trim();
    let value = if with_unit {
        match cell.split_once(' ') {
            Some((v, unit)) if !unit.trim().is_empty() => v,
            _ => return Err("a value without its unit (cut off?)"),
        }
    } else {
        cell
    };
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err("not a number"),
    }
}

/// Splits a data line into its cells.
pub(crate) fn cells(kind: Kind, line: &str, out: &mut Vec<usize>) {
    // Byte offsets of cell starts and ends, in pairs, so no cell is copied.
    out.clear();
    match kind {
        Kind::Csv => {
            let mut start = 0;
            for (i, b) in line.bytes().enumerate() {
                if b == b',' {
                    out.push(start);
                    out.push(i);
                    start = i + 1;
                }
            }
            out.push(start);
            out.push(line.len());
        }
        Kind::Dmon => {
            let mut start = None;
            for (i, b) in line.bytes().enumerate() {
                let space = b == b' ' || b == b'\t';
                match (start, space) {
                    (None, false) => start = Some(i),
                    (Some(s), true) => {
                        out.push(s);
                        out.push(i);
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                out.push(s);
                out.push(line.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_headers_in_any_order_pick_the_power_column() {
        let l = Layout::csv("timestamp, power.draw.instant [W], index").expect("layout");
        assert_eq!(l.power_name(), "power.draw.instant");
        assert_eq!(l.index, Some(2));
        assert!(l.has_unit[1] && !l.has_unit[2]);
        let l = Layout::csv("timestamp, power.draw.instant [W], power.draw [W]").expect("layout");
        assert_eq!(l.power_name(), "power.draw");
        assert!(Layout::csv("timestamp, utilization.gpu [%]")
            .expect_err("no power")
            .contains("no power column"));
        assert!(is_csv_header("timestamp, power.draw [W]"));
        assert!(!is_csv_header("2024/01/01 00:00:00.000, 17.1 W"));
    }

    #[test]
    fn dmon_headers_with_and_without_dates() {
        let l = Layout::dmon("#Date       Time        gpu    pwr  gtemp  mtemp     sm    mem")
            .expect("header")
            .expect("layout");
        assert_eq!(l.time, TimeCols::DateTime(0, 1));
        assert_eq!(
            (l.index, l.power, l.temp, l.util),
            (Some(2), 3, Some(4), Some(6))
        );
        assert!(Layout::dmon("#YYYYMMDD   HH:MM:SS    Idx      W").is_none());
        assert!(Layout::dmon("# gpu   pwr  gtemp")
            .expect("header")
            .expect_err("no times")
            .contains("-o DT"));
        assert!(Layout::dmon("#Date Time gpu sm mem")
            .expect("header")
            .expect_err("no power")
            .contains("-s p"));
    }

    #[test]
    fn numbers_with_and_without_units() {
        assert_eq!(number("201.50 W", true), Ok(Some(201.5)));
        assert_eq!(number("[N/A]", true), Ok(None));
        assert_eq!(
            number("67", true),
            Err("a value without its unit (cut off?)")
        );
        assert_eq!(number("67", false), Ok(Some(67.0)));
        assert_eq!(number("abc", false), Err("not a number"));
        assert_eq!(number("inf", false), Err("not a number"));
        let mut c = Vec::new();
        cells(Kind::Dmon, "  20230101 12:00:00  0  43   -", &mut c);
        assert_eq!(c.len(), 10);
        cells(Kind::Csv, "a, b,", &mut c);
        assert_eq!(c, vec![0, 1, 2, 4, 5, 5]);
    }
}
