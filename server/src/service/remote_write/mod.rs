//! Prometheus remote write 1.0 (`POST /api/v1/write`): what a site's Prometheus, vmagent, Grafana Alloy or
//! OpenTelemetry collector sends of the dcgm-exporter series it scrapes. The body is a snappy-compressed
//! (block format) protobuf `WriteRequest`; its messages are written out here with prost's derive.
//!
//! Series map to nodes by `Hostname` (dcgm-exporter's own label), else `instance` without its port, and
//! to GPUs by `gpu`; `UUID` and `modelName` name the GPU. The samples of one scrape share a timestamp, so
//! the fields of a GPU at one timestamp make one sample; a timestamp without power makes none (counted).
//! Series Wattlas does not store are ignored and counted; Prometheus' staleness markers (NaN) are
//! skipped.

pub(crate) mod store;

use std::collections::BTreeMap;

use chrono::TimeZone;
use wattlas_protocol::dcgm::DcgmFields;
use wattlas_protocol::{GpuIdentity, GpuSample};

use super::{Error, Result};

/// `prometheus.WriteRequest` (fields 1 only: metadata, field 3, is not needed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// ms since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

pub mod wire;

/// The body as sent, into owned messages (tests, the fuzz target; the server reads bodies with
/// [`decode_map`], which holds one series at a time).
pub fn decode(body: &[u8]) -> Result<WriteRequest> {
    let raw = wire::decompress(body, &wire::LIMITS)?;
    <WriteRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| Error::invalid("body", format!("not a remote-write WriteRequest: {e}")))
}

/// One node's part of a write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSeries {
    /// Its GPUs, as the series name them.
    pub gpus: Vec<GpuIdentity>,
    /// A sample per GPU and timestamp that has power.
    pub samples: Vec<GpuSample>,
}

/// A write, by node name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    /// Node name -> its series.
    pub nodes: BTreeMap<String, NodeSeries>,
    /// Samples of series Wattlas does not store.
    pub ignored: u64,
    /// GPU timestamps without a power sample (no sample made of them).
    pub without_power: u64,
    /// What reading the body found: sizes, and series dropped over a per-series limit.
    pub read: wire::Read,
}

/// The write's DCGM series as GPU samples per node; a series that names no node is refused, naming it.
pub fn map(request: &WriteRequest) -> Result<Mapped> {
    let mut mapper = Mapper::default();
    for (i, ts) in request.timeseries.iter().enumerate() {
        let series = wire::Series {
            labels: ts
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect(),
            samples: ts.samples.iter().map(|s| (s.value, s.timestamp)).collect(),
        };
        mapper.series(i, &series)?;
    }
    mapper.finish(wire::Read::default())
}

/// A body as sent (snappy, then protobuf) mapped as [`map`] does, within `limits`: the server's path.
/// Holds the decompressed body and one series at a time; runs on a blocking thread.
pub fn decode_map(body: &[u8], limits: &wire::Limits) -> Result<Mapped> {
    let raw = wire::decompress(body, limits)?;
    let mut mapper = Mapper::default();
    let read = wire::read(&raw, limits, |i, series| mapper.series(i, series))?;
    mapper.finish(read)
}

/// Gathers the DCGM fields of each node's GPUs by timestamp, series by series. Host names are kept
/// once each (a row per sample holding its own copy of a 4 KiB name was 800 MB for one write).
#[derive(Default)]
struct Mapper {
    out: Mapped,
    hosts: BTreeMap<String, u32>,
    rows: BTreeMap<(u32, u32, i64), DcgmFields>,
    ids: BTreeMap<(u32, u32), (Option<String>, Option<String>)>,
}

impl Mapper {
    fn series(&mut self, i: usize, ts: &wire::Series<'_>) -> Result<()> {
        let label = |k: &str| ts.labels.iter().find(|l| l.0 == k).map(|l| l.1);
        let name = label("__name__").unwrap_or("");
        if !DcgmFields::stores(name) {
            self.out.ignored += ts.samples.len() as u64;
            return Ok(());
        }
        // A MIG instance's series repeat its GPU's; the GPU's own are read.
        if label("GPU_I_ID").is_some_and(|v| !v.is_empty()) {
            self.out.ignored += ts.samples.len() as u64;
            return Ok(());
        }
        let Some(gpu) = label("gpu").and_then(|g| g.parse::<u32>().ok()) else {
            return Err(Error::invalid(
                format!("timeseries[{i}].labels.gpu"),
                format!("{name} without a GPU index"),
            ));
        };
        let host = label("Hostname")
            .filter(|h| !h.is_empty())
            .or_else(|| label("instance").map(|i| i.rsplit_once(':').map_or(i, |(h, _)| h)))
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    format!("timeseries[{i}].labels"),
                    "no Hostname or instance label: which node is it?",
                )
            })?;
        let next = self.hosts.len() as u32;
        let host = match self.hosts.get(host) {
            Some(h) => *h,
            None => *self.hosts.entry(host.to_owned()).or_insert(next),
        };
        let id = self.ids.entry((host, gpu)).or_default();
        if id.0.is_none() {
            id.0 = label("UUID").map(str::to_owned);
        }
        if id.1.is_none() {
            id.1 = label("modelName").map(str::to_owned);
        }
        for (value, t_ms) in &ts.samples {
            if !value.is_finite() {
                continue;
            }
            self.rows
                .entry((host, gpu, *t_ms))
                .or_default()
                .set(name, *value);
        }
        Ok(())
    }

    fn finish(self, read: wire::Read) -> Result<Mapped> {
        let Mapper {
            mut out,
            hosts,
            rows,
            ids,
        } = self;
        out.read = read;
        // Each host's series by its index, named at the end.
        let mut nodes: Vec<Option<NodeSeries>> = vec![None; hosts.len()];
        for ((host, gpu), (uuid, model)) in ids {
            let node = nodes[host as usize].get_or_insert_with(NodeSeries::default);
            node.gpus.push(GpuIdentity {
                index: gpu,
                uuid: uuid.unwrap_or_else(|| format!("remote write gpu {gpu}")),
                model: model.unwrap_or_else(|| "unknown".to_owned()),
                default_power_limit_w: None,
                keep_known: false,
            });
        }
        for ((host, gpu, t_ms), fields) in rows {
            if fields.power_w.is_none() {
                out.without_power += 1;
                continue;
            }
            let Some(time) = chrono::Utc.timestamp_millis_opt(t_ms).single() else {
                return Err(Error::invalid(
                    "timeseries.samples.timestamp",
                    format!("{t_ms} is not a time"),
                ));
            };
            nodes[host as usize]
                .get_or_insert_with(NodeSeries::default)
                .samples
                .extend(fields.sample(time, gpu));
        }
        for (name, h) in hosts {
            if let Some(node) = nodes[h as usize].take() {
                out.nodes.insert(name, node);
            }
        }
        Ok(out)
    }
}

/// A write request as Prometheus sends it (tests, the fuzz target's seeds).
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(request);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, gpu: &str, host: &str, points: &[(i64, f64)]) -> TimeSeries {
        let label = |n: &str, v: &str| Label {
            name: n.into(),
            value: v.into(),
        };
        TimeSeries {
            labels: vec![
                label("__name__", name),
                label("gpu", gpu),
                label("UUID", "GPU-1"),
                label("modelName", "NVIDIA L40S"),
                label("instance", host),
            ],
            samples: points
                .iter()
                .map(|(t, v)| Sample {
                    value: *v,
                    timestamp: *t,
                })
                .collect(),
        }
    }

    #[test]
    fn a_write_round_trips_and_maps_to_samples_per_node() {
        let request = WriteRequest {
            timeseries: vec![
                series(
                    "DCGM_FI_DEV_POWER_USAGE",
                    "0",
                    "gpu07:9400",
                    &[(1_700_000_000_000, 200.0), (1_700_000_001_000, f64::NAN)],
                ),
                series(
                    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                    "0",
                    "gpu07:9400",
                    &[(1_700_000_000_000, 5e6), (1_700_000_001_000, 5.2e6)],
                ),
                series("DCGM_FI_DEV_XID_ERRORS", "0", "gpu07:9400", &[(1, 0.0)]),
            ],
        };
        let decoded = decode(&encode(&request)).expect("decodes");
        // (NaN is not equal to itself: compare the encodings.)
        assert_eq!(encode(&decoded), encode(&request));
        let m = map(&decoded).expect("maps");
        assert_eq!(
            (m.ignored, m.without_power),
            (1, 1),
            "the stale power point"
        );
        let node = &m.nodes["gpu07"];
        assert_eq!(node.gpus[0].model, "NVIDIA L40S");
        assert_eq!(node.samples.len(), 1);
        assert_eq!(node.samples[0].energy_mj, Some(5_000_000));
        assert!(decode(b"not snappy").is_err());
        let anonymous = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "DCGM_FI_DEV_POWER_USAGE".into(),
                    },
                    Label {
                        name: "gpu".into(),
                        value: "0".into(),
                    },
                ],
                samples: vec![],
            }],
        };
        let e = map(&anonymous).expect_err("no node");
        assert!(e.to_string().contains("timeseries[0].labels"), "{e}");
    }

    #[test]
    fn the_bounded_reader_maps_as_owned_messages_do() {
        // The fuzz target's seed: two nodes, power with a stale marker, the counter, an ignored series.
        let body = include_bytes!("../../../../fuzz/seeds/remote_write/dcgm_two_nodes");
        let read = decode_map(body, &wire::LIMITS).expect("reads");
        let owned = map(&decode(body).expect("decodes")).expect("maps");
        assert_eq!(read.nodes, owned.nodes);
        assert_eq!((read.ignored, read.without_power), (1, 2));
        assert_eq!((owned.ignored, owned.without_power), (1, 2));
        assert_eq!(read.read.series, 4);
        assert_eq!(
            read.nodes["gpu01"].samples.len(),
            1,
            "the stale point makes none"
        );
    }

    #[test]
    fn a_series_past_a_per_series_limit_is_dropped_and_a_request_past_its_limits_refused() {
        let limits = wire::Limits {
            labels: 6,
            samples: 3,
            ..wire::LIMITS
        };
        let mut wide = series("DCGM_FI_DEV_POWER_USAGE", "0", "n:1", &[(1, 1.0)]);
        wide.labels.push(Label {
            name: "pod".into(),
            value: "p".into(),
        });
        wide.labels.push(Label {
            name: "namespace".into(),
            value: "ns".into(),
        });
        let ok = series("DCGM_FI_DEV_POWER_USAGE", "0", "n:2", &[(1, 1.0)]);
        let request = WriteRequest {
            timeseries: vec![wide, ok.clone()],
        };
        let m = decode_map(&encode(&request), &limits).expect("reads");
        assert_eq!(m.read.dropped_too_many_labels, 1);
        assert_eq!(m.nodes.keys().collect::<Vec<_>>(), ["n"]);
        assert_eq!(
            m.nodes["n"].gpus[0].uuid, "GPU-1",
            "the kept series' identity"
        );

        let many = WriteRequest {
            timeseries: vec![ok.clone(), ok.clone(), ok.clone(), ok],
        };
        let e = decode_map(&encode(&many), &limits).expect_err("four samples, three allowed");
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("samples"), "{e}");
        // Truncated: a length past the end.
        let raw = [0x0a, 0x05, 0x0a, 0x00];
        let body = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("compresses");
        let e = decode_map(&body, &wire::LIMITS).expect_err("truncated");
        assert!(e.to_string().contains("past the end"), "{e}");
    }
}
