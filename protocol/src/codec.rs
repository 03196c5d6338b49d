//! The encoding of raw 100 ms GPU samples: one `bytea` block per node and window as stored, and the
//! samples of a collector's binary batch on the wire (`wire`).
//!
//! A row per sample costs ~90 bytes in PostgreSQL (24-byte tuple header, item pointer, alignment, index
//! entry). At 864,000 samples per GPU per day that is the whole database, so raw samples are stored as
//! blocks: all samples of one node's batch in one row, column by column, each column delta-encoded and
//! written as zig-zag varints. Consecutive readings of a GPU differ little (time +100 ms, power a few
//! watts, counter a few joules), so most values take one or two bytes. A column a GPU never reports
//! costs one byte; a column reported sometimes carries a presence bitmap.
//!
//! This module owns the byte layout only. Which blocks exist and how they are deduplicated is the
//! server's `db::samples`; what the samples mean is its `analytics::energy`.

use thiserror::Error;

/// Format version written as the first byte of every block.
const VERSION: u8 = 1;

/// One decoded sample, in the integer units it is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSample {
    /// NVML index of the GPU on its node.
    pub gpu: u32,
    /// Milliseconds since the Unix epoch.
    pub t_ms: i64,
    /// Power in milliwatts (NVML's own unit).
    pub power_mw: i64,
    /// NVML energy counter in millijoules.
    pub energy_mj: Option<i64>,
    /// Enforced power limit in milliwatts.
    pub limit_mw: Option<i64>,
    /// Utilisation in tenths of a percent.
    pub util_dpct: Option<i64>,
    /// Memory used in MiB.
    pub mem_mib: Option<i64>,
    /// Temperature in tenths of a degree Celsius.
    pub temp_dc: Option<i64>,
    /// SM clock in MHz.
    pub sm_mhz: Option<i64>,
}

/// A block that cannot be decoded: storage corruption or a version this build does not know.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// The block ended in the middle of a value.
    #[error("raw sample block truncated")]
    Truncated,
    /// The first byte names a format this build cannot read.
    #[error("raw sample block has unknown format version {0}")]
    Version(u8),
    /// A varint ran past 64 bits.
    #[error("raw sample block has an overlong varint")]
    Overlong,
}

/// Encodes samples of one node into a block. `t0_ms` is the block's start time (stored in its row);
/// every sample must be at or after it. Samples are grouped by GPU and sorted by time; a GPU's samples
/// at the same millisecond are kept once (the first).
pub fn encode(t0_ms: i64, samples: &[RawSample]) -> Vec<u8> {
    let mut sorted: Vec<&RawSample> = samples.iter().collect();
    sorted.sort_by_key(|s| (s.gpu, s.t_ms));
    sorted.dedup_by_key(|s| (s.gpu, s.t_ms));

    let mut out = Vec::with_capacity(16 + sorted.len() * 12);
    out.push(VERSION);
    let groups: Vec<&[&RawSample]> = sorted.chunk_by(|a, b| a.gpu == b.gpu).collect();
    put_varint(&mut out, groups.len() as u64);
    for group in groups {
        put_varint(&mut out, u64::from(group[0].gpu));
        put_varint(&mut out, group.len() as u64);
        put_dods(&mut out, t0_ms, group.iter().map(|s| s.t_ms));
        put_deltas(&mut out, 0, group.iter().map(|s| s.power_mw));
        put_optional(&mut out, group.iter().map(|s| s.energy_mj), true);
        let optional: [fn(&RawSample) -> Option<i64>; 5] = [
            |s| s.limit_mw,
            |s| s.util_dpct,
            |s| s.mem_mib,
            |s| s.temp_dc,
            |s| s.sm_mhz,
        ];
        for field in optional {
            put_optional(&mut out, group.iter().map(|s| field(s)), false);
        }
    }
    out
}

/// Decodes a block written by [`encode`] with the same `t0_ms`.
pub fn decode(t0_ms: i64, block: &[u8], out: &mut Vec<RawSample>) -> Result<(), CodecError> {
    let mut r = Reader { buf: block, pos: 0 };
    let version = r.byte()?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let n_gpus = r.varint()?;
    for _ in 0..n_gpus {
        let gpu = u32::try_from(r.varint()?).map_err(|_| CodecError::Overlong)?;
        let n = usize::try_from(r.varint()?).map_err(|_| CodecError::Overlong)?;
        if n > block.len() * 8 {
            // Every sample costs at least one byte per column: a larger count is corruption.
            return Err(CodecError::Truncated);
        }
        let times = r.dods(t0_ms, n)?;
        let powers = r.deltas(0, n)?;
        let energy = r.optional(n, true)?;
        let mut columns: [Vec<Option<i64>>; 5] = Default::default();
        for column in &mut columns {
            *column = r.optional(n, false)?;
        }
        let [limit, util, mem, temp, sm] = columns;
        for i in 0..n {
            out.push(RawSample {
                gpu,
                t_ms: times[i],
                power_mw: powers[i],
                energy_mj: energy[i],
                limit_mw: limit[i],
                util_dpct: util[i],
                mem_mib: mem[i],
                temp_dc: temp[i],
                sm_mhz: sm[i],
            });
        }
    }
    Ok(())
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_deltas(out: &mut Vec<u8>, start: i64, values: impl Iterator<Item = i64>) {
    let mut prev = start;
    for v in values {
        put_varint(out, zigzag(v.wrapping_sub(prev)));
        prev = v;
    }
}

/// Delta-of-delta: steady series (a 100 ms clock, a counter rising at a steady power) cost one byte.
fn put_dods(out: &mut Vec<u8>, start: i64, values: impl Iterator<Item = i64>) {
    let (mut prev, mut prev_delta) = (start, 0i64);
    for v in values {
        let delta = v.wrapping_sub(prev);
        put_varint(out, zigzag(delta.wrapping_sub(prev_delta)));
        prev = v;
        prev_delta = delta;
    }
}

/// Tag 0: all missing; 1: all present; 2: a presence bitmap follows. Then deltas (or delta-of-deltas)
/// of the present values.
fn put_optional(out: &mut Vec<u8>, values: impl Iterator<Item = Option<i64>> + Clone, dod: bool) {
    let n = values.clone().count();
    let present = values.clone().filter(Option::is_some).count();
    if present == 0 {
        out.push(0);
        return;
    }
    if present == n {
        out.push(1);
    } else {
        out.push(2);
        let mut bitmap = vec![0u8; n.div_ceil(8)];
        for (i, v) in values.clone().enumerate() {
            if v.is_some() {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        out.extend_from_slice(&bitmap);
    }
    if dod {
        put_dods(out, 0, values.flatten());
    } else {
        put_deltas(out, 0, values.flatten());
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self.buf.get(self.pos).ok_or(CodecError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Overlong)
    }

    fn deltas(&mut self, start: i64, n: usize) -> Result<Vec<i64>, CodecError> {
        let mut prev = start;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            prev = prev.wrapping_add(unzigzag(self.varint()?));
            out.push(prev);
        }
        Ok(out)
    }

    fn dods(&mut self, start: i64, n: usize) -> Result<Vec<i64>, CodecError> {
        let (mut prev, mut delta) = (start, 0i64);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            delta = delta.wrapping_add(unzigzag(self.varint()?));
            prev = prev.wrapping_add(delta);
            out.push(prev);
        }
        Ok(out)
    }

    fn series(&mut self, n: usize, dod: bool) -> Result<Vec<i64>, CodecError> {
        if dod {
            self.dods(0, n)
        } else {
            self.deltas(0, n)
        }
    }

    fn optional(&mut self, n: usize, dod: bool) -> Result<Vec<Option<i64>>, CodecError> {
        match self.byte()? {
            0 => Ok(vec![None; n]),
            1 => Ok(self.series(n, dod)?.into_iter().map(Some).collect()),
            2 => {
                let len = n.div_ceil(8);
                let end = self.pos.checked_add(len).ok_or(CodecError::Truncated)?;
                let bitmap = self
                    .buf
                    .get(self.pos..end)
                    .ok_or(CodecError::Truncated)?
                    .to_vec();
                self.pos = end;
                let present = (0..n)
                    .filter(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
                    .count();
                let mut values = self.series(present, dod)?.into_iter();
                Ok((0..n)
                    .map(|i| {
                        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                            values.next()
                        } else {
                            None
                        }
                    })
                    .collect())
            }
            other => Err(CodecError::Version(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(gpu: u32, t_ms: i64, power_mw: i64) -> RawSample {
        RawSample {
            gpu,
            t_ms,
            power_mw,
            energy_mj: Some(1_000_000 + t_ms * 3),
            limit_mw: Some(250_000),
            util_dpct: Some(970),
            mem_mib: Some(30_000),
            temp_dc: Some(650),
            sm_mhz: Some(1380),
        }
    }

    #[test]
    fn round_trips_and_sorts_by_gpu_then_time() {
        let t0 = 1_700_000_000_000;
        let mut samples: Vec<RawSample> = (0..10)
            .flat_map(|i| (0..4).map(move |g| sample(g, t0 + 100 * i, 150_000 + 37 * i)))
            .collect();
        samples[5].energy_mj = None;
        samples[6].util_dpct = None;
        samples[7].power_mw = 0;
        samples.reverse();
        let block = encode(t0, &samples);
        let mut back = Vec::new();
        decode(t0, &block, &mut back).expect("decodes");
        let mut expected = samples.clone();
        expected.sort_by_key(|s| (s.gpu, s.t_ms));
        assert_eq!(back, expected);
    }

    #[test]
    fn duplicate_times_of_a_gpu_are_kept_once() {
        let t0 = 0;
        let samples = vec![sample(0, 100, 1), sample(0, 100, 2), sample(1, 100, 3)];
        let mut back = Vec::new();
        decode(t0, &encode(t0, &samples), &mut back).expect("decodes");
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].power_mw, 1);
    }

    #[test]
    fn a_steady_gpu_costs_few_bytes_per_sample() {
        let t0 = 1_700_000_000_000;
        // Eight GPUs, one second of 100 ms readings: the shape of one collector batch.
        let samples: Vec<RawSample> = (0..10)
            .flat_map(|i| {
                (0..8).map(move |g| {
                    let mut s = sample(g, t0 + 100 * i, 200_000 + (i * 7919 % 9000));
                    s.energy_mj = Some(5_000_000 + i * 20_000 + (i * 7919 % 900));
                    s
                })
            })
            .collect();
        let block = encode(t0, &samples);
        let per_sample = block.len() as f64 / samples.len() as f64;
        assert!(per_sample < 12.0, "{per_sample} bytes per sample");
    }

    #[test]
    fn corrupt_blocks_are_errors_not_panics() {
        let t0 = 0;
        let block = encode(t0, &[sample(0, 5, 1), sample(0, 105, 2)]);
        for cut in 0..block.len() {
            let mut out = Vec::new();
            assert!(decode(t0, &block[..cut], &mut out).is_err(), "cut at {cut}");
        }
        let mut bad = block.clone();
        bad[0] = 9;
        assert_eq!(
            decode(t0, &bad, &mut Vec::new()),
            Err(CodecError::Version(9))
        );
    }
}
