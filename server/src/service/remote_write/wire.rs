//! A bounded reader of a remote-write body: snappy, then the protobuf `WriteRequest` walked in place.
//!
//! Decoding into owned messages let 3.1 MB of snappy become 64 MiB of empty labels and 2.6 GB of
//! memory (issue 33, N2): here nothing is copied out of the decompressed buffer but the series a caller
//! keeps, one series is held at a time, and every count is bounded before it is stored. The limits are
//! VictoriaMetrics' defaults where it has one (`-maxInsertRequestSize`, `-maxLabelsPerTimeseries`,
//! `-maxLabelNameLen`, `-maxLabelValueLen`); a series over a per-series limit is dropped and counted,
//! as VictoriaMetrics does; a request over a per-request limit is refused whole (413), naming it.

use super::super::{Error, Result};

/// What one write may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes (VictoriaMetrics: 32 MB).
    pub decoded_bytes: usize,
    /// Series.
    pub series: usize,
    /// Samples, all series together (Prometheus sends 2,000 a request by default, vmagent 10,000).
    pub samples: usize,
    /// Labels of one series (VictoriaMetrics: 40; dcgm-exporter writes about 12).
    pub labels: usize,
    /// Bytes of a label's name (VictoriaMetrics: 256).
    pub name_bytes: usize,
    /// Bytes of a label's value (VictoriaMetrics: 4 KiB).
    pub value_bytes: usize,
}

/// The limits the server applies.
pub const LIMITS: Limits = Limits {
    decoded_bytes: 32 << 20,
    series: 100_000,
    samples: 200_000,
    labels: 40,
    name_bytes: 256,
    value_bytes: 4096,
};

/// One series as read: labels and samples borrowed or copied from the buffer, reused series to series.
#[derive(Debug, Default)]
pub(crate) struct Series<'a> {
    /// (name, value), in the order sent.
    pub labels: Vec<(&'a str, &'a str)>,
    /// (value, ms since the epoch).
    pub samples: Vec<(f64, i64)>,
}

/// What a read found besides the series it passed on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// Decompressed bytes.
    pub decoded_bytes: usize,
    /// Series read, kept or dropped.
    pub series: usize,
    /// Samples read, of all series.
    pub samples: usize,
    /// Series dropped for more labels than the limit.
    pub dropped_too_many_labels: u64,
    /// Series dropped for a label name or value over the limit.
    pub dropped_label_too_long: u64,
}

/// The decompressed size a snappy body declares, refused over the limit before anything is allocated.
pub fn decompressed_len(body: &[u8], limits: &Limits) -> Result<usize> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| Error::invalid("body", format!("not snappy-compressed: {e}")))?;
    if len > limits.decoded_bytes {
        return Err(Error::TooLarge(format!(
            "body: {len} bytes decompressed; at most {} per request",
            limits.decoded_bytes
        )));
    }
    Ok(len)
}

/// Decompresses a snappy body within the limits.
pub(crate) fn decompress(body: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    decompressed_len(body, limits)?;
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::invalid("body", format!("not snappy-compressed: {e}")))
}

/// Walks a decompressed `WriteRequest`, passing each series within the per-series limits to `each`
/// (with its index among all series); refuses the whole request past a per-request limit or at the
/// first malformed field.
pub(crate) fn read<'a>(
    raw: &'a [u8],
    limits: &Limits,
    mut each: impl FnMut(usize, &Series<'a>) -> Result<()>,
) -> Result<Read> {
    let mut out = Read {
        decoded_bytes: raw.len(),
        ..Read::default()
    };
    let mut series = Series::default();
    let mut buf = raw;
    while !buf.is_empty() {
        let (field, value) = next_field(&mut buf, &|| "body".to_owned())?;
        // WriteRequest: 1 timeseries; 3 metadata (not read).
        let (1, Value::Bytes(bytes)) = (field, value) else {
            continue;
        };
        let i = out.series;
        out.series += 1;
        if out.series > limits.series {
            return Err(Error::TooLarge(format!(
                "timeseries: more than {} in one request",
                limits.series
            )));
        }
        let fit = read_series(bytes, i, limits, &mut series)?;
        out.samples += series.samples.len();
        if out.samples > limits.samples {
            return Err(Error::TooLarge(format!(
                "timeseries[{i}].samples: more than {} samples in one request",
                limits.samples
            )));
        }
        match fit {
            Fit::Kept => each(i, &series)?,
            Fit::TooManyLabels => out.dropped_too_many_labels += 1,
            Fit::LabelTooLong => out.dropped_label_too_long += 1,
        }
    }
    Ok(out)
}

/// Whether a series fits the per-series limits.
enum Fit {
    Kept,
    TooManyLabels,
    LabelTooLong,
}

/// Reads one `TimeSeries` into `out` (cleared first). Past the label limits the labels stop being
/// kept, but the series is still read to its end (its samples count against the request's limit).
fn read_series<'a>(
    mut buf: &'a [u8],
    i: usize,
    limits: &Limits,
    out: &mut Series<'a>,
) -> Result<Fit> {
    out.labels.clear();
    out.samples.clear();
    let mut fit = Fit::Kept;
    let mut labels = 0usize;
    let at = || format!("timeseries[{i}]");
    while !buf.is_empty() {
        match next_field(&mut buf, &at)? {
            (1, Value::Bytes(label)) => {
                labels += 1;
                if labels > limits.labels {
                    fit = Fit::TooManyLabels;
                    continue;
                }
                let (name, value) = read_label(label, &at)?;
                if name.len() > limits.name_bytes || value.len() > limits.value_bytes {
                    if matches!(fit, Fit::Kept) {
                        fit = Fit::LabelTooLong;
                    }
                    continue;
                }
                if matches!(fit, Fit::Kept) {
                    out.labels.push((name, value));
                }
            }
            (2, Value::Bytes(sample)) => {
                // Counted before the caller's limit check sees it; bounded by the body's size.
                if out.samples.len() > limits.samples {
                    return Err(Error::TooLarge(format!(
                        "{}.samples: more than {} samples in one request",
                        at(),
                        limits.samples
                    )));
                }
                out.samples.push(read_sample(sample, &at)?);
            }
            // Exemplars, histograms: not read.
            _ => {}
        }
    }
    if matches!(fit, Fit::Kept) {
        Ok(Fit::Kept)
    } else {
        out.labels.clear();
        Ok(fit)
    }
}

fn read_label<'a>(mut buf: &'a [u8], at: &dyn Fn() -> String) -> Result<(&'a str, &'a str)> {
    let (mut name, mut value) = ("", "");
    while !buf.is_empty() {
        match next_field(&mut buf, &at)? {
            (1, Value::Bytes(b)) => name = utf8(b, || format!("{}.labels.name", at()))?,
            (2, Value::Bytes(b)) => value = utf8(b, || format!("{}.labels.value", at()))?,
            _ => {}
        }
    }
    Ok((name, value))
}

fn read_sample(mut buf: &[u8], at: &dyn Fn() -> String) -> Result<(f64, i64)> {
    let (mut value, mut t) = (0.0, 0i64);
    while !buf.is_empty() {
        match next_field(&mut buf, &at)? {
            (1, Value::Fixed64(v)) => value = f64::from_bits(v),
            (2, Value::Varint(v)) => t = v as i64,
            _ => {}
        }
    }
    Ok((value, t))
}

fn utf8(b: &[u8], field: impl Fn() -> String) -> Result<&str> {
    std::str::from_utf8(b).map_err(|_| Error::invalid(field(), "not UTF-8"))
}

/// A field's value by wire type.
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

/// The next field of a message: its number and value; the buffer moves past it. `at` names where, for
/// an error only (formatting it for every field was a tenth of the server's CPU in a remote write).
fn next_field<'a>(buf: &mut &'a [u8], at: &dyn Fn() -> String) -> Result<(u64, Value<'a>)> {
    let malformed =
        |what: &str| Error::invalid(at(), format!("not a remote-write WriteRequest: {what}"));
    let key = varint(buf).ok_or_else(|| malformed("a truncated field key"))?;
    let (field, wire) = (key >> 3, key & 7);
    if field == 0 {
        return Err(malformed("field number 0"));
    }
    let value = match wire {
        0 => Value::Varint(varint(buf).ok_or_else(|| malformed("a truncated varint"))?),
        1 => {
            let (v, rest) = buf
                .split_first_chunk::<8>()
                .ok_or_else(|| malformed("a truncated fixed64"))?;
            *buf = rest;
            Value::Fixed64(u64::from_le_bytes(*v))
        }
        2 => {
            let len = varint(buf).ok_or_else(|| malformed("a truncated length"))?;
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= buf.len())
                .ok_or_else(|| malformed("a length past the end"))?;
            let (v, rest) = buf.split_at(len);
            *buf = rest;
            Value::Bytes(v)
        }
        5 => {
            let (_, rest) = buf
                .split_first_chunk::<4>()
                .ok_or_else(|| malformed("a truncated fixed32"))?;
            *buf = rest;
            Value::Fixed32
        }
        w => return Err(malformed(&format!("wire type {w}"))),
    };
    Ok((field, value))
}

/// A base-128 varint of at most ten bytes.
fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(v);
        }
    }
    None
}
