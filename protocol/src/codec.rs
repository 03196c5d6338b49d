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
//! Settled data is rewritten into large blocks (one per GPU per hour, `encode_packed`, format 2): the same
//! columns, but each stream of deltas coded in frames of 32 values, each frame Rice-coded or bit-packed
//! at its widest value's width, whichever is shorter (a column that does not change costs a byte per 32
//! samples), absences as runs, and the
//! energy counter stored as its difference from what the power readings predict (the counter integrates
//! the same power, so the residual is small where the raw delta is not).
//!
//! This module owns the byte layout only. Which blocks exist and how they are deduplicated is the
//! server's `db::samples`; what the samples mean is its `analytics::energy`.

use thiserror::Error;

use crate::PowerSource;

/// Format version written as the first byte of every live block (`encode`) whose samples carry no
/// instant power or power source.
pub const VERSION: u8 = 1;

/// Format version of settled blocks (`encode_packed`), likewise.
pub const PACKED: u8 = 2;

/// [`VERSION`] with two more optional columns: the instant power and what `power_mw` is (issue 35).
/// Written only where a sample carries either, so blocks of GPUs without them keep their old bytes.
pub const VERSION_SOURCES: u8 = 3;

/// [`PACKED`] with the same two more columns.
pub const PACKED_SOURCES: u8 = 4;

/// Values per bit-packed frame.
const FRAME: usize = 32;

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
    /// The sensor's instant power in milliwatts, where it offers one beside `power_mw`.
    pub instant_mw: Option<i64>,
    /// What `power_mw` is ([`PowerSource::code`]).
    pub power_source: Option<PowerSource>,
}

impl RawSample {
    /// The power to draw: the instant reading where there is one, else `power_mw`.
    pub fn chart_power_mw(&self) -> i64 {
        self.instant_mw.unwrap_or(self.power_mw)
    }
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
    /// A field that no block of ours holds (a frame wider than 64 bits, a sample count beyond the block).
    #[error("raw sample block is corrupt: {0}")]
    Corrupt(&'static str),
}

/// Encodes samples of one node into a block. `t0_ms` is the block's start time (stored in its row);
/// every sample must be at or after it. Samples are grouped by GPU and sorted by time; a GPU's samples
/// at the same millisecond are kept once (the first).
pub fn encode(t0_ms: i64, samples: &[RawSample]) -> Vec<u8> {
    let sorted = by_gpu_then_time(samples);
    let mut out = Vec::with_capacity(16 + sorted.len() * 12);
    let columns = columns_for(&sorted);
    out.push(if columns.len() > BASE_COLUMNS {
        VERSION_SOURCES
    } else {
        VERSION
    });
    let groups: Vec<&[&RawSample]> = sorted.chunk_by(|a, b| a.gpu == b.gpu).collect();
    put_varint(&mut out, groups.len() as u64);
    for group in groups {
        put_varint(&mut out, u64::from(group[0].gpu));
        put_varint(&mut out, group.len() as u64);
        put_dods(&mut out, t0_ms, group.iter().map(|s| s.t_ms));
        put_deltas(&mut out, 0, group.iter().map(|s| s.power_mw));
        put_optional(&mut out, group.iter().map(|s| s.energy_mj), true);
        for field in columns {
            put_optional(&mut out, group.iter().map(|s| field(s)), false);
        }
    }
    out
}

fn by_gpu_then_time(samples: &[RawSample]) -> Vec<&RawSample> {
    let mut sorted: Vec<&RawSample> = samples.iter().collect();
    sorted.sort_by_key(|s| (s.gpu, s.t_ms));
    sorted.dedup_by_key(|s| (s.gpu, s.t_ms));
    sorted
}

/// The optional columns after the energy counter, in their order in a block: the first
/// [`BASE_COLUMNS`] in every format, the last two in [`VERSION_SOURCES`] and [`PACKED_SOURCES`].
const OPTIONAL: [fn(&RawSample) -> Option<i64>; 7] = [
    |s| s.limit_mw,
    |s| s.util_dpct,
    |s| s.mem_mib,
    |s| s.temp_dc,
    |s| s.sm_mhz,
    |s| s.instant_mw,
    |s| s.power_source.map(PowerSource::code),
];

/// Optional columns in formats 1 and 2.
const BASE_COLUMNS: usize = 5;

/// The optional columns a block of these samples needs.
fn columns_for(sorted: &[&RawSample]) -> &'static [fn(&RawSample) -> Option<i64>] {
    if sorted
        .iter()
        .any(|s| s.instant_mw.is_some() || s.power_source.is_some())
    {
        &OPTIONAL
    } else {
        &OPTIONAL[..BASE_COLUMNS]
    }
}

/// Encodes samples of one node as a settled block (format 2), usually one GPU's hour. Same sorting,
/// deduplication and `t0_ms` rule as [`encode`]; [`decode`] reads both formats.
pub fn encode_packed(t0_ms: i64, samples: &[RawSample]) -> Vec<u8> {
    let sorted = by_gpu_then_time(samples);
    let mut out = Vec::with_capacity(16 + sorted.len() * 4);
    let columns = columns_for(&sorted);
    out.push(if columns.len() > BASE_COLUMNS {
        PACKED_SOURCES
    } else {
        PACKED
    });
    let groups: Vec<&[&RawSample]> = sorted.chunk_by(|a, b| a.gpu == b.gpu).collect();
    put_varint(&mut out, groups.len() as u64);
    for group in groups {
        put_varint(&mut out, u64::from(group[0].gpu));
        put_varint(&mut out, group.len() as u64);
        let times: Vec<i64> = group.iter().map(|s| s.t_ms).collect();
        // The first time from t0, the first step, then steps' changes.
        put_varint(&mut out, zigzag(times[0].wrapping_sub(t0_ms)));
        if times.len() > 1 {
            put_varint(&mut out, zigzag(times[1].wrapping_sub(times[0])));
            put_packed(
                &mut out,
                times.windows(3).map(|w| {
                    zigzag(
                        w[2].wrapping_sub(w[1])
                            .wrapping_sub(w[1].wrapping_sub(w[0])),
                    )
                }),
            );
        }
        let powers: Vec<i64> = group.iter().map(|s| s.power_mw).collect();
        put_first_and_deltas(&mut out, &powers);
        // The counter: present readings as (index, value); each stored as its difference from the
        // previous reading plus the energy of the power between them (trapezoid, mW x ms / 1000 = mJ).
        let energy: Vec<(usize, i64)> = group
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.energy_mj?)))
            .collect();
        put_presence(&mut out, group.iter().map(|s| s.energy_mj.is_some()));
        if let Some(&(_, first)) = energy.first() {
            put_varint(&mut out, zigzag(first));
            // Whichever predictor codes this GPU's counter in the fewest bytes.
            let coded = Predictor::ALL.map(|p| {
                let mut bytes = vec![p as u8];
                put_packed(
                    &mut bytes,
                    energy.windows(2).enumerate().map(|(k, w)| {
                        let before = k.checked_sub(1).map(|b| energy[b]);
                        zigzag(
                            w[1].1
                                .wrapping_sub(p.predict(before, w[0], w[1].0, &powers, &times)),
                        )
                    }),
                );
                bytes
            });
            let best = coded
                .iter()
                .min_by_key(|c| c.len())
                .expect("three predictors");
            out.extend_from_slice(best);
        }
        for field in columns {
            put_presence(&mut out, group.iter().map(|s| field(s).is_some()));
            let values: Vec<i64> = group.iter().filter_map(|s| field(s)).collect();
            if !values.is_empty() {
                put_first_and_deltas(&mut out, &values);
            }
        }
    }
    out
}

/// How a settled block predicts each energy counter reading from what came before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Predictor {
    /// The previous reading plus the trapezoid of the power between them (mW x ms / 1000 = mJ).
    Trapezoid = 0,
    /// The previous reading plus the earlier power over the interval (a counter that integrates what
    /// was reported, as the simulator's does).
    Left = 1,
    /// The previous reading plus the previous step (a steady draw).
    Step = 2,
}

impl Predictor {
    const ALL: [Self; 3] = [Self::Trapezoid, Self::Left, Self::Step];

    fn of(byte: u8) -> Result<Self, CodecError> {
        Self::ALL
            .into_iter()
            .find(|p| *p as u8 == byte)
            .ok_or(CodecError::Corrupt("energy predictor"))
    }

    /// The reading at sample `j` from the reading (index, value) before it and the one before that.
    fn predict(
        self,
        before: Option<(usize, i64)>,
        (i, at_i): (usize, i64),
        j: usize,
        powers: &[i64],
        times: &[i64],
    ) -> i64 {
        let dt = times[j].wrapping_sub(times[i]);
        match self {
            Self::Trapezoid => {
                at_i.wrapping_add(powers[i].wrapping_add(powers[j]).wrapping_mul(dt) / 2000)
            }
            Self::Left => at_i.wrapping_add(powers[i].wrapping_mul(dt) / 1000),
            Self::Step => at_i.wrapping_add(before.map_or(0, |(_, b)| at_i.wrapping_sub(b))),
        }
    }
}

/// The first value, the greatest common divisor of the steps (readings in whole percent or degrees are
/// stored in tenths, so every step is a multiple of 10), then the steps divided by it; a column that
/// never changes ends at its divisor, 0.
fn put_first_and_deltas(out: &mut Vec<u8>, values: &[i64]) {
    put_varint(out, zigzag(values[0]));
    let divisor = values
        .windows(2)
        .fold(0u64, |g, w| gcd(g, w[1].wrapping_sub(w[0]).unsigned_abs()));
    put_varint(out, divisor);
    if divisor > 0 {
        put_packed(
            out,
            values.windows(2).map(|w| {
                zigzag((i128::from(w[1].wrapping_sub(w[0])) / i128::from(divisor)) as i64)
            }),
        );
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Tag 0: none present; 1: all; 2: runs (count, then lengths alternating present and absent, starting
/// with present, the first possibly 0).
fn put_presence(out: &mut Vec<u8>, present: impl Iterator<Item = bool>) {
    let mut runs: Vec<u64> = vec![0];
    let mut state = true;
    for p in present {
        if p != state {
            runs.push(0);
            state = p;
        }
        *runs.last_mut().expect("one run at least") += 1;
    }
    match runs.as_slice() {
        [_] => out.push(1),
        [0, _] => out.push(0),
        _ => {
            out.push(2);
            put_varint(out, runs.len() as u64);
            for r in runs {
                put_varint(out, r);
            }
        }
    }
}

/// Frames of up to `FRAME` values, each frame Rice-coded: its parameter k (one byte), then per value
/// the quotient `v >> k` in unary (ones ended by a zero) and the k low bits, least significant first.
/// A quotient of `ESCAPE` or more is written as `ESCAPE` ones and the value's 64 bits. Deltas of
/// readings are mostly small with a few large steps, where Rice codes cost about log2 of the typical
/// value plus 1.5 bits, and a step costs only itself.
fn put_packed(out: &mut Vec<u8>, values: impl Iterator<Item = u64>) {
    let values: Vec<u64> = values.collect();
    let mut bits = BitWriter { out, acc: 0, n: 0 };
    for frame in values.chunks(FRAME) {
        let (k, rice_bits) = rice_parameter(frame);
        let width = 64 - frame.iter().fold(0u64, |a, &v| a | v).leading_zeros();
        if u64::from(width) * frame.len() as u64 <= rice_bits {
            // Plain bit-packing at the widest value's width: 0 bits for a frame of zeros.
            bits.put(u64::from(PLAIN + width as u8), 8);
            for &v in frame {
                bits.put(v, width);
            }
            continue;
        }
        bits.put(u64::from(k), 8);
        for &v in frame {
            let q = v >> k;
            if q >= ESCAPE {
                bits.ones(ESCAPE as u32);
                bits.put(v, 64);
            } else {
                bits.ones(q as u32);
                bits.put(0, 1);
                bits.put(v, u32::from(k));
            }
        }
    }
    bits.flush();
}

/// Quotients this large are escaped.
const ESCAPE: u64 = 24;

/// A frame's first byte from this on says plain bit-packing at width (byte - PLAIN).
const PLAIN: u8 = 64;

/// The k that codes the frame in the fewest bits, searched near log2 of its mean, and those bits.
fn rice_parameter(frame: &[u64]) -> (u8, u64) {
    let cost = |k: u32| -> u64 {
        frame
            .iter()
            .map(|&v| {
                let q = v >> k;
                if q >= ESCAPE {
                    ESCAPE + 64
                } else {
                    q + 1 + u64::from(k)
                }
            })
            .sum()
    };
    let mean = frame.iter().map(|&v| u128::from(v)).sum::<u128>() / frame.len().max(1) as u128;
    let guess = 127 - mean.max(1).leading_zeros();
    (guess.saturating_sub(2)..=(guess + 1).min(63))
        .map(|k| (k as u8, cost(k)))
        .min_by_key(|&(_, c)| c)
        .unwrap_or((0, u64::MAX))
}

struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u128,
    n: u32,
}

impl BitWriter<'_> {
    fn put(&mut self, v: u64, bits: u32) {
        if bits == 0 {
            return;
        }
        let v = if bits == 64 {
            v
        } else {
            v & ((1u64 << bits) - 1)
        };
        self.acc |= u128::from(v) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    fn ones(&mut self, count: u32) {
        let mut left = count;
        while left > 0 {
            let now = left.min(32);
            self.put((1u64 << now) - 1, now);
            left -= now;
        }
    }
    fn flush(&mut self) {
        if self.n > 0 {
            self.out.push(self.acc as u8);
            (self.acc, self.n) = (0, 0);
        }
    }
}

/// Decodes a block written by [`encode`] or [`encode_packed`] with the same `t0_ms`.
pub fn decode(t0_ms: i64, block: &[u8], out: &mut Vec<RawSample>) -> Result<(), CodecError> {
    let mut r = Reader { buf: block, pos: 0 };
    let version = r.byte()?;
    let columns = match version {
        VERSION | PACKED => BASE_COLUMNS,
        VERSION_SOURCES | PACKED_SOURCES => OPTIONAL.len(),
        _ => return Err(CodecError::Version(version)),
    };
    if version == PACKED || version == PACKED_SOURCES {
        return decode_packed(t0_ms, r, columns, out);
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
        let mut read: [Vec<Option<i64>>; 7] = Default::default();
        for column in &mut read[..columns] {
            *column = r.optional(n, false)?;
        }
        push_samples(out, gpu, &times, &powers, &energy, read)?;
    }
    Ok(())
}

fn decode_packed(
    t0_ms: i64,
    mut r: Reader<'_>,
    columns: usize,
    out: &mut Vec<RawSample>,
) -> Result<(), CodecError> {
    let n_gpus = r.varint()?;
    for _ in 0..n_gpus {
        let gpu = u32::try_from(r.varint()?).map_err(|_| CodecError::Overlong)?;
        let n = usize::try_from(r.varint()?).map_err(|_| CodecError::Overlong)?;
        // Every 32 samples cost a byte at least in the time column (a frame header).
        if n == 0 || n / FRAME > r.buf.len() - r.pos {
            return Err(CodecError::Corrupt("sample count"));
        }
        let mut times = Vec::with_capacity(n);
        times.push(t0_ms.wrapping_add(unzigzag(r.varint()?)));
        if n > 1 {
            let mut step = unzigzag(r.varint()?);
            times.push(times[0].wrapping_add(step));
            for change in r.packed(n - 2)? {
                step = step.wrapping_add(unzigzag(change));
                let last = times[times.len() - 1];
                times.push(last.wrapping_add(step));
            }
        }
        let powers = r.first_and_deltas(n)?;
        let present = r.presence(n)?;
        let mut energy = vec![None; n];
        let at: Vec<usize> = (0..n).filter(|&i| present[i]).collect();
        if let Some(&first) = at.first() {
            energy[first] = Some(unzigzag(r.varint()?));
            let predictor = Predictor::of(r.byte()?)?;
            let mut before = None;
            for (w, residual) in at.windows(2).zip(r.packed(at.len() - 1)?) {
                let previous = (w[0], energy[w[0]].unwrap_or_default());
                let value = predictor
                    .predict(before, previous, w[1], &powers, &times)
                    .wrapping_add(unzigzag(residual));
                energy[w[1]] = Some(value);
                before = Some(previous);
            }
        }
        let mut read: [Vec<Option<i64>>; 7] = Default::default();
        for column in &mut read[..columns] {
            let present = r.presence(n)?;
            let count = present.iter().filter(|p| **p).count();
            let mut values = if count > 0 {
                r.first_and_deltas(count)?.into_iter()
            } else {
                Vec::new().into_iter()
            };
            *column = present
                .iter()
                .map(|&p| if p { values.next() } else { None })
                .collect();
        }
        push_samples(out, gpu, &times, &powers, &energy, read)?;
    }
    if r.pos != r.buf.len() {
        return Err(CodecError::Corrupt("bytes after the last GPU"));
    }
    Ok(())
}

/// One GPU's decoded columns as samples (every format; a column the format lacks is empty).
fn push_samples(
    out: &mut Vec<RawSample>,
    gpu: u32,
    times: &[i64],
    powers: &[i64],
    energy: &[Option<i64>],
    columns: [Vec<Option<i64>>; 7],
) -> Result<(), CodecError> {
    let [limit, util, mem, temp, sm, instant, source] = columns;
    let at = |column: &[Option<i64>], i: usize| column.get(i).copied().flatten();
    for i in 0..times.len() {
        let power_source = match at(&source, i) {
            Some(code) => {
                Some(PowerSource::of_code(code).ok_or(CodecError::Corrupt("power source"))?)
            }
            None => None,
        };
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
            instant_mw: at(&instant, i),
            power_source,
        });
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

/// Bits of a `put_packed` stream; the stream ends on a byte boundary.
struct BitReader<'r, 'a> {
    r: &'r mut Reader<'a>,
    acc: u128,
    n: u32,
}

impl BitReader<'_, '_> {
    /// Hands back the whole bytes read ahead (the stream's last byte is padded to its end).
    fn finish(self) {
        self.r.pos -= (self.n / 8) as usize;
    }

    /// Takes bytes while at most 120 bits are held and bytes remain.
    fn refill(&mut self) {
        while self.n <= 120 {
            match self.r.buf.get(self.r.pos) {
                Some(&b) => {
                    self.acc |= u128::from(b) << self.n;
                    self.n += 8;
                    self.r.pos += 1;
                }
                None => return,
            }
        }
    }

    /// Ones up to the next zero (which is taken too), or `max` ones (then no zero is taken).
    fn unary(&mut self, max: u64) -> Result<u64, CodecError> {
        let mut q = 0;
        loop {
            self.refill();
            if self.n == 0 {
                return Err(CodecError::Truncated);
            }
            let ones = u64::from((self.acc as u64).trailing_ones().min(self.n));
            if q + ones >= max {
                let take = (max - q) as u32;
                self.acc >>= take;
                self.n -= take;
                return Ok(max);
            }
            if ones < u64::from(self.n) {
                self.acc >>= ones + 1;
                self.n -= ones as u32 + 1;
                return Ok(q + ones);
            }
            q += ones;
            self.acc >>= ones;
            self.n -= ones as u32;
        }
    }

    fn get(&mut self, bits: u32) -> Result<u64, CodecError> {
        if bits == 0 {
            return Ok(0);
        }
        if self.n < bits {
            self.refill();
            if self.n < bits {
                return Err(CodecError::Truncated);
            }
        }
        let v = if bits == 64 {
            self.acc as u64
        } else {
            (self.acc as u64) & ((1u64 << bits) - 1)
        };
        self.acc >>= bits;
        self.n -= bits;
        Ok(v)
    }
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

    /// `n` values written by `put_packed`.
    fn packed(&mut self, n: usize) -> Result<Vec<u64>, CodecError> {
        let mut out = Vec::with_capacity(n.min(self.buf.len().saturating_mul(8)));
        let mut bits = BitReader {
            r: self,
            acc: 0,
            n: 0,
        };
        while out.len() < n {
            let k = bits.get(8)? as u32;
            let len = (n - out.len()).min(FRAME);
            if k >= u32::from(PLAIN) {
                let width = k - u32::from(PLAIN);
                if width > 64 {
                    return Err(CodecError::Corrupt("frame width"));
                }
                for _ in 0..len {
                    out.push(bits.get(width)?);
                }
                continue;
            }
            for _ in 0..len {
                let q = bits.unary(ESCAPE)?;
                out.push(if q == ESCAPE {
                    bits.get(64)?
                } else {
                    (q << k) | bits.get(k)?
                });
            }
        }
        bits.finish();
        Ok(out)
    }

    fn first_and_deltas(&mut self, n: usize) -> Result<Vec<i64>, CodecError> {
        let mut value = unzigzag(self.varint()?);
        let divisor = self.varint()?;
        if divisor == 0 {
            return Ok(vec![value; n]);
        }
        let mut out = Vec::with_capacity(n);
        out.push(value);
        for step in self.packed(n - 1)? {
            value = value.wrapping_add(unzigzag(step).wrapping_mul(divisor as i64));
            out.push(value);
        }
        Ok(out)
    }

    fn presence(&mut self, n: usize) -> Result<Vec<bool>, CodecError> {
        match self.byte()? {
            0 => Ok(vec![false; n]),
            1 => Ok(vec![true; n]),
            2 => {
                let runs = self.varint()?;
                let mut out = Vec::with_capacity(n);
                let mut state = true;
                for _ in 0..runs {
                    let len = usize::try_from(self.varint()?).map_err(|_| CodecError::Overlong)?;
                    if len > n - out.len() {
                        return Err(CodecError::Corrupt("presence runs"));
                    }
                    out.extend(std::iter::repeat_n(state, len));
                    state = !state;
                }
                if out.len() != n {
                    return Err(CodecError::Corrupt("presence runs"));
                }
                Ok(out)
            }
            _ => Err(CodecError::Corrupt("presence tag")),
        }
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
            instant_mw: None,
            power_source: None,
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
    fn instant_power_and_its_source_round_trip_in_both_formats_and_old_blocks_keep_their_bytes() {
        let t0 = 1_700_000_000_000;
        let plain: Vec<RawSample> = (0..200)
            .map(|i| {
                sample(
                    i % 2,
                    t0 + 100 * i64::from(i / 2),
                    150_000 + 37 * i64::from(i),
                )
            })
            .collect();
        // GPUs without the new columns are written as before (formats 1 and 2).
        assert_eq!(encode(t0, &plain)[0], VERSION);
        assert_eq!(encode_packed(t0, &plain)[0], PACKED);
        let mut with: Vec<RawSample> = plain.clone();
        for (i, s) in with.iter_mut().enumerate() {
            // GPU 0 reports both readings; GPU 1 only says what its power is, and loses a few.
            if s.gpu == 0 {
                s.instant_mw = Some(s.power_mw + 40_000 - (i as i64 % 7) * 9_000);
                s.power_source = Some(PowerSource::Average);
            } else if i % 11 != 0 {
                s.power_source = Some(PowerSource::Instant);
            }
        }
        let mut expected = with.clone();
        expected.sort_by_key(|s| (s.gpu, s.t_ms));
        for (block, version) in [
            (encode(t0, &with), VERSION_SOURCES),
            (encode_packed(t0, &with), PACKED_SOURCES),
        ] {
            assert_eq!(block[0], version);
            let mut back = Vec::new();
            decode(t0, &block, &mut back).expect("decodes");
            assert_eq!(back, expected, "format {version}");
        }
        // A block of format 1 or 2 decodes with neither.
        let mut back = Vec::new();
        decode(t0, &encode_packed(t0, &plain), &mut back).expect("decodes");
        assert!(back
            .iter()
            .all(|s| s.instant_mw.is_none() && s.power_source.is_none()));
    }

    #[test]
    fn an_unknown_power_source_code_is_corruption() {
        let t0 = 0;
        let mut s = sample(0, 100, 1);
        s.power_source = Some(PowerSource::Instant);
        let mut block = encode(t0, &[s]);
        // The last column holds the code 2 as a zig-zag varint (4): make it 9 (zig-zag 18).
        let at = block.iter().rposition(|b| *b == 4).expect("the code");
        block[at] = 18;
        let mut back = Vec::new();
        assert_eq!(
            decode(t0, &block, &mut back),
            Err(CodecError::Corrupt("power source"))
        );
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

    /// An hour of two GPUs with gaps in columns, jitter, a counter that wraps past i64 and a power step.
    fn an_hour() -> Vec<RawSample> {
        let t0 = 1_700_000_000_000;
        (0..36_000i64)
            .flat_map(|i| {
                (0..2).map(move |g| {
                    let mut s = sample(
                        g,
                        t0 + 100 * i + (i * 7 % 5) - 2,
                        150_000 + (i * 7919 % 4000),
                    );
                    s.energy_mj = Some(if g == 1 {
                        i64::MAX - 1_000_000 + i * 15
                    } else {
                        i * 15 + i % 3
                    });
                    if i > 20_000 {
                        s.power_mw += 300_000;
                    }
                    if i % 1000 == 7 {
                        s.util_dpct = None;
                    }
                    if (10_000..10_050).contains(&i) {
                        s.energy_mj = None;
                    }
                    s.temp_dc = Some(600 + i / 3000);
                    s
                })
            })
            .collect()
    }

    #[test]
    fn packed_blocks_round_trip() {
        let samples = an_hour();
        let t0 = samples[0].t_ms - 5;
        let block = encode_packed(t0, &samples);
        let mut back = Vec::new();
        decode(t0, &block, &mut back).expect("decodes");
        let mut expected = samples.clone();
        expected.sort_by_key(|s| (s.gpu, s.t_ms));
        assert_eq!(back, expected);
        // Edge shapes: one sample, all columns absent, a lone GPU.
        let mut lone = sample(3, t0 + 1, 0);
        (lone.energy_mj, lone.limit_mw, lone.util_dpct) = (None, None, None);
        let extremes: Vec<RawSample> = [i64::MIN, i64::MAX, 0, i64::MIN, 10, 30]
            .iter()
            .enumerate()
            .map(|(i, &p)| sample(5, t0 + i as i64, p))
            .collect();
        for samples in [vec![lone], vec![lone, sample(3, t0 + 2, 7)], extremes] {
            let mut back = Vec::new();
            decode(t0, &encode_packed(t0, &samples), &mut back).expect("decodes");
            assert_eq!(back, samples);
        }
    }

    #[test]
    fn an_hour_that_never_changes_costs_almost_nothing() {
        let t0 = 1_700_000_000_000;
        let samples: Vec<RawSample> = (0..36_000)
            .map(|i| {
                let mut s = sample(0, t0 + 100 * i, 60_000);
                s.energy_mj = Some(1_000_000 + 6_000 * i);
                s
            })
            .collect();
        let block = encode_packed(t0, &samples);
        assert!(block.len() < 36_000 / 8, "{} bytes", block.len());
        let mut back = Vec::new();
        decode(t0, &block, &mut back).expect("decodes");
        assert_eq!(back, samples);
    }

    #[test]
    fn packed_blocks_are_smaller_than_live_ones() {
        let samples = an_hour();
        let t0 = samples[0].t_ms - 5;
        let live = encode(t0, &samples).len() as f64 / samples.len() as f64;
        let packed = encode_packed(t0, &samples).len() as f64 / samples.len() as f64;
        assert!(packed < 0.6 * live, "{packed} vs {live} bytes per sample");
    }

    #[test]
    fn corrupt_packed_blocks_are_errors_not_panics() {
        let samples: Vec<RawSample> = an_hour().into_iter().take(300).collect();
        let t0 = samples[0].t_ms;
        let block = encode_packed(t0, &samples);
        for cut in 0..block.len() {
            assert!(
                decode(t0, &block[..cut], &mut Vec::new()).is_err(),
                "cut at {cut}"
            );
        }
        let mut wide = block.clone();
        // The first frame's width byte: version, GPU count, GPU, count (2), first time, first step.
        let at = 1 + 1 + 1 + 2 + 1 + 2;
        wide[at] = 65;
        assert!(decode(t0, &wide, &mut Vec::new()).is_err());
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
