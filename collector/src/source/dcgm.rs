//! NVIDIA's dcgm-exporter as a source: `run --source dcgm-exporter --url http://127.0.0.1:9400/metrics`
//! scrapes a node's exporter instead of opening NVML (for sites that will not run two NVML clients),
//! with the same spool and uplink as any source.
//!
//! The exposition is Prometheus' text format; its label sets differ by exporter version and vendor
//! (`Hostname` or not, `pci_bus_id`, `DCGM_FI_DRIVER_VERSION`, MIG labels), so GPUs are keyed by the
//! `gpu` label alone and other labels are read where present. What Wattlas stores is taken: power
//! (`DCGM_FI_DEV_POWER_USAGE`, W), the energy counter (`DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`, mJ since
//! the driver loaded: exact energy whatever the scrape interval), utilisation, memory used, temperature,
//! SM clock, the power limit where exported; other series are counted and ignored. A line that does not
//! parse is counted and skipped. MIG instances (`GPU_I_ID`) report their parent GPU's power: only the
//! GPU's own series are read.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use chrono::{DateTime, Utc};
use wattlas_protocol::dcgm::DcgmFields;
use wattlas_protocol::{GpuIdentity, GpuSample};

use super::{Poll, Source, SourceError};

/// One GPU of a scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSeries {
    /// `UUID`.
    pub uuid: Option<String>,
    /// `modelName`.
    pub model: Option<String>,
    /// `Hostname`, else `instance` without its port.
    pub host: Option<String>,
    /// The fields Wattlas stores.
    pub fields: DcgmFields,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// By `gpu` label.
    pub gpus: BTreeMap<u32, GpuSeries>,
    /// Samples of series Wattlas does not store.
    pub ignored: u64,
    /// Lines that did not parse (or a value that is not a number).
    pub skipped: u64,
}

/// A line of the exposition: metric name, labels, value.
type Line<'a> = (&'a str, Vec<(String, String)>, f64);

/// `name{labels} value [timestamp]`, leniently: a label that is not `key="value"` is passed over.
fn parse_line(line: &str) -> Option<Line<'_>> {
    let line = line.trim();
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        // The closing brace outside any quoted value.
        let (mut quoted, mut escaped, mut close) = (false, false, None);
        for (i, c) in inner.char_indices() {
            match (quoted, escaped, c) {
                (true, false, '\\') => escaped = true,
                (true, true, _) => escaped = false,
                (_, _, '"') => quoted = !quoted,
                (false, _, '}') => {
                    close = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let close = close?;
        let body = &inner[..close];
        rest = &inner[close + 1..];
        let mut start = 0;
        let mut quoted = false;
        let mut escaped = false;
        let mut pairs = Vec::new();
        for (i, c) in body.char_indices() {
            match (quoted, escaped, c) {
                (true, false, '\\') => escaped = true,
                (true, true, _) => escaped = false,
                (_, _, '"') => quoted = !quoted,
                (false, _, ',') => {
                    pairs.push(&body[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        pairs.push(&body[start..]);
        for pair in pairs {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let Some(v) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
                continue;
            };
            let v = v
                .replace("\\\"", "\"")
                .replace("\\n", "\n")
                .replace("\\\\", "\\");
            labels.push((k.trim().to_owned(), v));
        }
    }
    let value = rest.split_whitespace().next()?;
    let value: f64 = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// Parses one scrape of dcgm-exporter.
pub fn parse(text: &str) -> Scrape {
    let mut out = Scrape::default();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = parse_line(trimmed) else {
            out.skipped += 1;
            continue;
        };
        let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let Some(gpu) = label("gpu").and_then(|g| g.parse::<u32>().ok()) else {
            out.ignored += 1;
            continue;
        };
        if label("GPU_I_ID").is_some_and(|v| !v.is_empty()) {
            out.ignored += 1;
            continue;
        }
        let s = out.gpus.entry(gpu).or_default();
        if s.uuid.is_none() {
            s.uuid = label("UUID").map(str::to_owned);
        }
        if s.model.is_none() {
            s.model = label("modelName").map(str::to_owned);
        }
        if s.host.is_none() {
            s.host = label("Hostname").map(str::to_owned).or_else(|| {
                label("instance").map(|i| i.rsplit_once(':').map_or(i, |(h, _)| h).to_owned())
            });
        }
        if !s.fields.set(name, value) {
            out.ignored += 1;
        }
    }
    out
}

impl Scrape {
    /// The GPUs as the server should know them.
    pub fn identities(&self) -> Vec<GpuIdentity> {
        self.gpus
            .iter()
            .map(|(index, s)| GpuIdentity {
                index: *index,
                uuid: s
                    .uuid
                    .clone()
                    .unwrap_or_else(|| format!("dcgm-exporter gpu {index}")),
                model: s.model.clone().unwrap_or_else(|| "unknown".to_owned()),
                default_power_limit_w: None,
                keep_known: false,
            })
            .collect()
    }

    /// A sample per GPU that reported its power, stamped `now`.
    pub fn samples(&self, now: DateTime<Utc>) -> Vec<GpuSample> {
        self.gpus
            .iter()
            .filter_map(|(gpu, s)| s.fields.sample(now, *gpu))
            .collect()
    }
}

/// GET of a plain `http://host:port/path` URL (the exporter on the node), HTTP/1.0 so that the answer
/// is neither chunked nor compressed; the body.
pub(crate) fn get(url: &str, timeout: Duration) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs (the exporter on this node)"))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{url}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{url}: {e}"))?;
    // One write: an exporter may answer (and close) as soon as it has the request's head.
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: text/plain\r\nUser-Agent: wattlas-collector\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .take(64 << 20)
        .read_to_end(&mut answer)
        .map_err(|e| format!("{url}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("{url}: HTTP {status}"));
    }
    Ok(body.to_owned())
}

/// A node's dcgm-exporter, scraped on every poll.
pub struct DcgmExporterSource {
    url: String,
    identities: Vec<GpuIdentity>,
    /// Series ignored and lines skipped so far.
    pub ignored: u64,
    /// Lines that did not parse so far.
    pub skipped: u64,
}

impl DcgmExporterSource {
    /// Scrapes once to learn the GPUs; an exporter that does not answer, or answers without GPUs, is a
    /// clear error at start.
    pub fn connect(url: &str) -> Result<Self, SourceError> {
        let text = get(url, Duration::from_secs(5)).map_err(SourceError::Exporter)?;
        let scrape = parse(&text);
        if scrape.gpus.is_empty() {
            return Err(SourceError::Exporter(format!(
                "{url}: no DCGM_FI_DEV_* series with a gpu label (is it dcgm-exporter?)"
            )));
        }
        Ok(Self {
            url: url.to_owned(),
            identities: scrape.identities(),
            ignored: 0,
            skipped: 0,
        })
    }
}

impl Source for DcgmExporterSource {
    fn identities(&self) -> Vec<GpuIdentity> {
        self.identities.clone()
    }

    fn poll(&mut self, now: DateTime<Utc>) -> Poll {
        match get(&self.url, Duration::from_secs(2)) {
            Ok(text) => {
                let scrape = parse(&text);
                self.ignored += scrape.ignored;
                self.skipped += scrape.skipped;
                let samples = scrape.samples(now);
                Poll {
                    errors: (self.identities.len().saturating_sub(samples.len())) as u64,
                    samples,
                    ..Poll::default()
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "dcgm-exporter did not answer");
                Poll {
                    errors: self.identities.len().max(1) as u64,
                    ..Poll::default()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_values_and_oddities() {
        let (name, labels, v) =
            parse_line(r#"DCGM_FI_DEV_GPU_TEMP{gpu="0",modelName="A \"quoted\", name"} 32"#)
                .expect("line");
        assert_eq!((name, v), ("DCGM_FI_DEV_GPU_TEMP", 32.0));
        assert_eq!(labels[1], ("modelName".into(), "A \"quoted\", name".into()));
        // A label set elided with `...` (as some published scrapes are) keeps what it can.
        let (_, labels, _) = parse_line(
            r#"DCGM_FI_DEV_POWER_USAGE{gpu="1",...,modelName="NVIDIA L40S",...} 34.164000"#,
        )
        .expect("line");
        assert_eq!(labels.len(), 2);
        assert!(parse_line("DCGM_FI_DEV_POWER_USAGE{gpu=\"0\"} not-a-number").is_none());
        assert!(parse_line("DCGM_FI_DEV_POWER_USAGE{gpu=\"0\" 12").is_none());
        let s = parse("# HELP x\nDCGM_FI_DEV_POWER_USAGE{gpu=\"0\",instance=\"node7:9400\"} 70 1700000000000\nbroken{\nDCGM_FI_DEV_XID_ERRORS{gpu=\"0\"} 0\n");
        assert_eq!((s.skipped, s.ignored), (1, 1));
        assert_eq!(s.gpus[&0].fields.power_w, Some(70.0));
        assert_eq!(s.gpus[&0].host.as_deref(), Some("node7"));
    }
}
