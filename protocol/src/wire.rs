//! The binary form of a GPU batch (`Content-Type: application/vnd.wattlas.batch`), beside JSON: the
//! collector's default, JSON stays for people and scripts. The samples travel as one block of the
//! storage codec (`codec`: column by column, delta-encoded varints, ~2-4 bytes a sample instead of
//! ~150 of JSON), the rest of the batch (GPUs, CPU and DRAM readings, counts) as JSON.
//!
//! Frame: `WTB` 0x01 | metadata length (u32, little-endian) | metadata (a `GpuBatch` in JSON with
//! `samples: []`) | block start time (i64 ms, little-endian) | block. The server checks the samples
//! with the same rules as JSON's, in the same units (the [`Bound`] constants: [`POWER_W`] and the rest); a sample's index in an error is its
//! place in the block, which is ordered by GPU, then time.

use crate::codec::{self, RawSample};
use crate::{GpuBatch, GpuSample, MAX_GPU_POWER_W};

/// The content type of a binary batch.
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.wattlas.batch";

const MAGIC: [u8; 4] = *b"WTB\x01";

/// A sample field: its name in JSON, bounds in that unit, and the factor to the stored integer unit.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The JSON field.
    pub field: &'static str,
    /// Lowest value accepted.
    pub lo: f64,
    /// Highest value accepted.
    pub hi: f64,
    /// Stored unit per JSON unit (mW per W, tenths of a percent per percent, ...).
    pub scale: f64,
}

/// Power, W (stored mW).
pub const POWER_W: Bound = Bound {
    field: "power_w",
    lo: 0.0,
    hi: MAX_GPU_POWER_W,
    scale: 1000.0,
};
/// Instant power, W (stored mW).
pub const POWER_INSTANT_W: Bound = Bound {
    field: "power_instant_w",
    lo: 0.0,
    hi: MAX_GPU_POWER_W,
    scale: 1000.0,
};
/// Enforced power limit, W (stored mW).
pub const POWER_LIMIT_W: Bound = Bound {
    field: "power_limit_w",
    lo: 0.0,
    hi: MAX_GPU_POWER_W,
    scale: 1000.0,
};
/// Utilisation, % (stored in tenths).
pub const UTIL_PCT: Bound = Bound {
    field: "util_pct",
    lo: 0.0,
    hi: 100.0,
    scale: 10.0,
};
/// Memory used, MiB.
pub const MEM_USED_MIB: Bound = Bound {
    field: "mem_used_mib",
    lo: 0.0,
    hi: 1.0e9,
    scale: 1.0,
};
/// Temperature, °C (stored in tenths).
pub const TEMP_C: Bound = Bound {
    field: "temp_c",
    lo: -100.0,
    hi: 300.0,
    scale: 10.0,
};
/// SM clock, MHz.
pub const SM_CLOCK_MHZ: Bound = Bound {
    field: "sm_clock_mhz",
    lo: 0.0,
    hi: 100_000.0,
    scale: 1.0,
};

impl Bound {
    /// A JSON value in stored units; `None` outside the bounds (or not finite).
    pub fn to_stored(&self, v: f64) -> Option<i64> {
        (v.is_finite() && v >= self.lo && v <= self.hi).then(|| (v * self.scale).round() as i64)
    }

    /// Whether a stored value lies within the bounds.
    pub fn holds_stored(&self, v: i64) -> bool {
        let lo = (self.lo * self.scale).round() as i64;
        let hi = (self.hi * self.scale).round() as i64;
        (lo..=hi).contains(&v)
    }

    /// A stored value in the JSON unit, for messages.
    pub fn from_stored(&self, v: i64) -> f64 {
        v as f64 / self.scale
    }
}

/// A sample in stored units; `None` when a value is out of bounds (the collector then sends JSON,
/// which the server refuses naming the field).
pub fn raw_sample(s: &GpuSample) -> Option<RawSample> {
    let opt = |b: &Bound, v: Option<f64>| match v {
        Some(v) => b.to_stored(v).map(Some),
        None => Some(None),
    };
    Some(RawSample {
        gpu: s.gpu,
        t_ms: s.time.timestamp_millis(),
        power_mw: POWER_W.to_stored(s.power_w)?,
        energy_mj: match s.energy_mj {
            Some(e) => Some(i64::try_from(e).ok()?),
            None => None,
        },
        limit_mw: opt(&POWER_LIMIT_W, s.power_limit_w)?,
        util_dpct: opt(&UTIL_PCT, s.util_pct)?,
        mem_mib: opt(&MEM_USED_MIB, s.mem_used_mib)?,
        temp_dc: opt(&TEMP_C, s.temp_c)?,
        sm_mhz: opt(&SM_CLOCK_MHZ, s.sm_clock_mhz)?,
        instant_mw: opt(&POWER_INSTANT_W, s.power_instant_w)?,
        power_source: s.power_source,
    })
}

/// A batch as a binary frame; `None` when a sample cannot be carried (see [`raw_sample`]).
pub fn encode_batch(batch: &GpuBatch) -> Option<Vec<u8>> {
    let samples: Vec<RawSample> = batch
        .samples
        .iter()
        .map(raw_sample)
        .collect::<Option<_>>()?;
    let meta = serde_json::to_vec(&GpuBatch {
        samples: Vec::new(),
        ..batch.clone()
    })
    .ok()?;
    let t0 = samples.iter().map(|s| s.t_ms).min().unwrap_or(0);
    let block = codec::encode(t0, &samples);
    let mut out = Vec::with_capacity(16 + meta.len() + block.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&u32::try_from(meta.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&t0.to_le_bytes());
    out.extend_from_slice(&block);
    Some(out)
}

/// Why a binary frame was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    /// Not a frame of this format.
    #[error("not a Wattlas binary batch (no WTB1 header)")]
    Magic,
    /// The frame ends early.
    #[error("the batch ends before its {0}")]
    Truncated(&'static str),
    /// The metadata is not a batch.
    #[error("metadata: {0}")]
    Meta(String),
    /// The samples block does not decode.
    #[error("samples: {0}")]
    Block(#[from] codec::CodecError),
}

/// A binary frame's batch (its `samples` empty) and samples in stored units, in the block's order.
pub fn decode_batch(frame: &[u8]) -> Result<(GpuBatch, Vec<RawSample>), WireError> {
    let rest = frame.strip_prefix(&MAGIC).ok_or(WireError::Magic)?;
    let (len, rest) = split(rest, 4, "metadata length")?;
    let len = u32::from_le_bytes(
        len.try_into()
            .map_err(|_| WireError::Truncated("metadata"))?,
    );
    let (meta, rest) = split(rest, len as usize, "metadata")?;
    let batch: GpuBatch =
        serde_json::from_slice(meta).map_err(|e| WireError::Meta(e.to_string()))?;
    if !batch.samples.is_empty() {
        return Err(WireError::Meta(
            "samples go in the block, not in the metadata".to_owned(),
        ));
    }
    let (t0, block) = split(rest, 8, "block start time")?;
    let t0 = i64::from_le_bytes(t0.try_into().map_err(|_| WireError::Truncated("block"))?);
    // Collectors send live blocks (format 1, or 3 with instant power and power sources); settled
    // blocks are the server's own storage.
    if let Some(&version) = block
        .first()
        .filter(|v| **v != codec::VERSION && **v != codec::VERSION_SOURCES)
    {
        return Err(WireError::Block(codec::CodecError::Version(version)));
    }
    let mut samples = Vec::new();
    codec::decode(t0, block, &mut samples)?;
    Ok((batch, samples))
}

fn split<'a>(b: &'a [u8], n: usize, what: &'static str) -> Result<(&'a [u8], &'a [u8]), WireError> {
    if b.len() < n {
        return Err(WireError::Truncated(what));
    }
    Ok(b.split_at(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    fn sample(gpu: u32, k: i64, power_w: f64) -> GpuSample {
        GpuSample {
            time: Utc
                .with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
                .single()
                .expect("t")
                + Duration::milliseconds(100 * k),
            gpu,
            power_w,
            energy_mj: Some(1_000_000 + 20_000 * k as u64),
            power_limit_w: Some(300.0),
            util_pct: Some(97.5),
            mem_used_mib: Some(40_000.0),
            temp_c: Some(61.2),
            sm_clock_mhz: None,
            power_instant_w: None,
            power_source: None,
        }
    }

    #[test]
    fn a_batch_round_trips_in_a_tenth_of_the_bytes_of_its_json() {
        let batch = GpuBatch {
            node: Some("n1".into()),
            gpus: vec![],
            samples: (0..10)
                .flat_map(|k| (0..8).map(move |g| sample(g, k, 200.0 + k as f64)))
                .collect(),
            dropped_samples_total: Some(3),
            clock_steps: None,
            node_energy: vec![],
            node_cpus: Some(64),
            dropped_ranges: Vec::new(),
        };
        let frame = encode_batch(&batch).expect("frame");
        let (meta, samples) = decode_batch(&frame).expect("decodes");
        assert_eq!(meta.node.as_deref(), Some("n1"));
        assert_eq!(
            (meta.dropped_samples_total, meta.node_cpus),
            (Some(3), Some(64))
        );
        let mut want: Vec<RawSample> = batch.samples.iter().filter_map(raw_sample).collect();
        want.sort_by_key(|s| (s.gpu, s.t_ms));
        assert_eq!(samples, want);
        assert_eq!(samples[0].temp_dc, Some(612));
        let json = serde_json::to_vec(&batch).expect("json");
        assert!(
            frame.len() * 10 < json.len(),
            "{} vs {}",
            frame.len(),
            json.len()
        );
    }

    #[test]
    fn out_of_bounds_or_broken_frames_are_named() {
        let mut batch = GpuBatch {
            node: None,
            gpus: vec![],
            samples: vec![sample(0, 0, 200.0)],
            dropped_samples_total: None,
            clock_steps: None,
            node_energy: vec![],
            node_cpus: None,
            dropped_ranges: Vec::new(),
        };
        batch.samples[0].power_w = MAX_GPU_POWER_W + 1.0;
        assert!(
            encode_batch(&batch).is_none(),
            "JSON carries what is out of bounds"
        );
        batch.samples[0].power_w = 100.0;
        let frame = encode_batch(&batch).expect("frame");
        assert_eq!(decode_batch(b"{\"samples\":[]}"), Err(WireError::Magic));
        assert_eq!(
            decode_batch(&frame[..6]),
            Err(WireError::Truncated("metadata length"))
        );
        assert!(matches!(
            decode_batch(&frame[..frame.len() - 1]),
            Err(WireError::Block(_))
        ));
        assert!(POWER_W.holds_stored(2_000_000) && !POWER_W.holds_stored(2_000_001));
        assert!(TEMP_C.holds_stored(-1000) && !TEMP_C.holds_stored(-1001));
    }
}
