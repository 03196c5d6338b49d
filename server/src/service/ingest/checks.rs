//! The checks of a GPU batch, whole, before anything is stored: the GPUs it names, each sample's
//! fields and units, the span it covers, the raw retention (live data only), the node's CPU and DRAM
//! counters. The first bad field refuses the batch, named (`samples[3].power_w: ...`).

use crate::ids::NodeId;
use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use wattlas_protocol::{GpuBatch, GpuSample, MAX_GPU_INDEX, MAX_GPU_POWER_W};

use super::writers::Checked;
use crate::codec::RawSample;
use crate::db;
use crate::service::error::{Error, Result};
use crate::service::Context;

/// How far in the future a sample may be (clock skew between node and server).
const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

/// Checks a node's batch whole, storing nothing: its samples against the GPUs it names (or the node
/// already has), the raw retention (live data only; `import` lets history in), its CPU and DRAM readings.
/// Refused on the first bad field.
pub(crate) async fn check_batch(
    cx: &Context,
    node_id: NodeId,
    node_name: &str,
    batch: GpuBatch,
    raw: Option<Vec<RawSample>>,
    import: bool,
) -> Result<Checked> {
    let mut known: HashSet<u32> = batch.gpus.iter().map(|g| g.index).collect();
    let unknown = match &raw {
        Some(raw) => raw.iter().any(|s| !known.contains(&s.gpu)),
        None => batch.samples.iter().any(|s| !known.contains(&s.gpu)),
    };
    if unknown {
        known.extend(
            db::nodes::gpus(&cx.db, node_id)
                .await?
                .iter()
                .map(|g| g.index),
        );
    }
    let now = Utc::now();
    let samples = match raw {
        Some(raw) => {
            validate_raw(&raw, &known, node_name, now)?;
            raw
        }
        None => validate_samples(&batch.samples, &known, node_name, now)?,
    };
    check_span(&samples)?;
    // Live data older than the raw retention would be dropped at the next retention run, and a node
    // could spread it over many days of chunks: only imports send history.
    let oldest = now - chrono::Duration::days(i64::from(cx.config.raw_retention_days));
    if !import {
        let oldest_ms = oldest.timestamp_millis();
        if let Some((i, s)) = samples.iter().enumerate().find(|(_, s)| s.t_ms < oldest_ms) {
            return Err(Error::invalid(
                format!("samples[{i}].time"),
                format!(
                    "{} is older than the raw retention ({} days); history comes by import (?source=import)",
                    db::ts(s.t_ms).to_rfc3339(),
                    cx.config.raw_retention_days
                ),
            ));
        }
    }
    validate_node_energy(&batch, now)?;
    validate_dropped(&batch, now)?;
    if !import {
        if let Some((i, r)) = batch
            .node_energy
            .iter()
            .enumerate()
            .find(|(_, r)| r.time < oldest)
        {
            return Err(Error::invalid(
                format!("node_energy[{i}].time"),
                format!(
                    "{} is older than the raw retention; history comes by import (?source=import)",
                    r.time.to_rfc3339()
                ),
            ));
        }
    }
    Ok(Checked {
        node_id,
        gpus: batch.gpus,
        samples,
        node_energy: batch.node_energy,
        node_cpus: batch.node_cpus,
        dropped_total: batch.dropped_samples_total,
        dropped_ranges: batch.dropped_ranges,
        clock_steps: batch.clock_steps,
        clock_offset_ms: None,
    })
}

/// Dropped ranges one batch may report at most (a collector keeps fewer, merging the oldest).
pub(crate) const MAX_DROPPED_RANGES: usize = 10_000;

/// The ranges of samples the collector dropped: at most [`MAX_DROPPED_RANGES`], each of a GPU index
/// in range, ordered, not in the future, of a plausible sample count (one a millisecond at most).
fn validate_dropped(batch: &GpuBatch, now: DateTime<Utc>) -> Result<()> {
    if batch.dropped_ranges.len() > MAX_DROPPED_RANGES {
        return Err(Error::invalid(
            "dropped_ranges",
            format!(
                "{} ranges; at most {MAX_DROPPED_RANGES} in one batch",
                batch.dropped_ranges.len()
            ),
        ));
    }
    let future = now + chrono::Duration::milliseconds(MAX_FUTURE_MS);
    for (i, r) in batch.dropped_ranges.iter().enumerate() {
        let field = |f: &str| format!("dropped_ranges[{i}].{f}");
        if r.gpu > MAX_GPU_INDEX {
            return Err(Error::invalid(
                field("gpu"),
                format!("{} is over {MAX_GPU_INDEX}", r.gpu),
            ));
        }
        if r.to < r.from {
            return Err(Error::invalid(field("to"), "is before from"));
        }
        if r.to > future || r.from.timestamp() < 0 {
            return Err(Error::invalid(
                field(if r.to > future { "to" } else { "from" }),
                "is not a time a sample could have been taken",
            ));
        }
        // At most one sample a millisecond of each GPU (collectors sample every 100 ms by default).
        let most = (r.to - r.from).num_milliseconds() + 1;
        if r.samples == 0 || r.samples > most.max(1) as u64 {
            return Err(Error::invalid(
                field("samples"),
                format!(
                    "{} in {} s is not a count of dropped samples",
                    r.samples,
                    (r.to - r.from).num_seconds()
                ),
            ));
        }
    }
    Ok(())
}

/// The longest time one batch may cover: raw samples are stored in chunks of one day, so a batch over
/// 200 days would make 200 tables (a node could flood the database with them).
pub(crate) const MAX_BATCH_SPAN_MS: i64 = 24 * 3_600_000;

/// Refuses a batch whose samples span more than [`MAX_BATCH_SPAN_MS`].
pub(crate) fn check_span(samples: &[RawSample]) -> Result<()> {
    let (Some(lo), Some(hi)) = (
        samples.iter().map(|s| s.t_ms).min(),
        samples.iter().map(|s| s.t_ms).max(),
    ) else {
        return Ok(());
    };
    if hi - lo > MAX_BATCH_SPAN_MS {
        return Err(Error::invalid(
            "samples",
            format!(
                "they span {:.1} h; one batch covers at most 24 h (send older samples in batches of their own)",
                (hi - lo) as f64 / 3_600_000.0
            ),
        ));
    }
    Ok(())
}

/// Most CPUs a node may say it has.
const MAX_NODE_CPUS: u32 = 1 << 20;

/// Checks the node's CPU and DRAM counters and CPU count; the first bad field refuses the batch.
pub fn validate_node_energy(batch: &GpuBatch, now: DateTime<Utc>) -> Result<()> {
    if let Some(c) = batch.node_cpus {
        if c == 0 || c > MAX_NODE_CPUS {
            return Err(Error::invalid(
                "node_cpus",
                format!("{c} is not 1 to {MAX_NODE_CPUS}"),
            ));
        }
    }
    let earliest = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let latest = now + chrono::Duration::milliseconds(MAX_FUTURE_MS);
    let mut seen = HashSet::new();
    for (i, r) in batch.node_energy.iter().enumerate() {
        let bad = |field: &str, why: String| {
            Err(Error::invalid(format!("node_energy[{i}].{field}"), why))
        };
        if r.zone.is_empty()
            || r.zone.len() > 100
            || r.zone.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return bad(
                "zone",
                "must be 1 to 100 printable characters without spaces".into(),
            );
        }
        if r.time < earliest || r.time > latest {
            return bad("time", format!("{} is not plausible", r.time.to_rfc3339()));
        }
        // Stored as PostgreSQL int8.
        if r.max_energy_range_uj == 0 || r.max_energy_range_uj > i64::MAX as u64 {
            return bad(
                "max_energy_range_uj",
                format!("{} is not 1 to 2^63-1", r.max_energy_range_uj),
            );
        }
        if r.energy_uj > r.max_energy_range_uj {
            return bad(
                "energy_uj",
                format!(
                    "{} is over the counter's range {}",
                    r.energy_uj, r.max_energy_range_uj
                ),
            );
        }
        if !seen.insert((r.zone.as_str(), r.time)) {
            return bad(
                "time",
                format!("zone {} read twice at {}", r.zone, r.time.to_rfc3339()),
            );
        }
    }
    let times = batch.node_energy.iter().map(|r| r.time.timestamp_millis());
    if let (Some(lo), Some(hi)) = (times.clone().min(), times.max()) {
        if hi - lo > MAX_BATCH_SPAN_MS {
            return Err(Error::invalid(
                "node_energy",
                "the readings span more than 24 h; one batch covers at most 24 h",
            ));
        }
    }
    Ok(())
}

pub fn validate_identities(batch: &GpuBatch) -> Result<()> {
    let mut seen = HashSet::new();
    for (i, g) in batch.gpus.iter().enumerate() {
        if !seen.insert(g.index) {
            return Err(Error::invalid(
                format!("gpus[{i}].index"),
                format!("GPU {} listed twice", g.index),
            ));
        }
        if g.index > MAX_GPU_INDEX {
            return Err(Error::invalid(
                format!("gpus[{i}].index"),
                format!(
                    "{} is past the highest GPU index a node may have ({MAX_GPU_INDEX})",
                    g.index
                ),
            ));
        }
        if g.uuid.trim().is_empty() || g.uuid.len() > 200 {
            return Err(Error::invalid(
                format!("gpus[{i}].uuid"),
                "must be 1 to 200 characters",
            ));
        }
        if g.model.len() > 200 {
            return Err(Error::invalid(
                format!("gpus[{i}].model"),
                "longer than 200 characters",
            ));
        }
        if let Some(w) = g.default_power_limit_w {
            if !w.is_finite() || w <= 0.0 || w > MAX_GPU_POWER_W {
                return Err(Error::invalid(
                    format!("gpus[{i}].default_power_limit_w"),
                    format!("{w} is not a power limit"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks every sample and converts it to stored units. The first bad field refuses the whole batch.
/// Checks JSON samples and converts them to stored units, refusing on the first bad field by index.
pub fn validate_samples(
    samples: &[GpuSample],
    known: &HashSet<u32>,
    node: &str,
    now: DateTime<Utc>,
) -> Result<Vec<RawSample>> {
    use wattlas_protocol::wire::{
        Bound, MEM_USED_MIB, POWER_INSTANT_W, POWER_LIMIT_W, POWER_W, SM_CLOCK_MHZ, TEMP_C,
        UTIL_PCT,
    };
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let bad =
                |field: &str, why: String| Error::invalid(format!("samples[{i}].{field}"), why);
            check_gpu_and_time(i, s.gpu, s.time.timestamp_millis(), known, node, now)?;
            let stored = |b: &Bound, v: Option<f64>| -> Result<Option<i64>> {
                match v {
                    Some(v) => b
                        .to_stored(v)
                        .map(Some)
                        .ok_or_else(|| bad(b.field, format!("{v} is outside {}..{}", b.lo, b.hi))),
                    None => Ok(None),
                }
            };
            let energy_mj = match s.energy_mj {
                Some(e) => Some(
                    i64::try_from(e).map_err(|_| bad("energy_mj", format!("{e} is too large")))?,
                ),
                None => None,
            };
            Ok(RawSample {
                gpu: s.gpu,
                t_ms: s.time.timestamp_millis(),
                power_mw: stored(&POWER_W, Some(s.power_w))?.unwrap_or_default(),
                energy_mj,
                limit_mw: stored(&POWER_LIMIT_W, s.power_limit_w)?,
                util_dpct: stored(&UTIL_PCT, s.util_pct)?,
                mem_mib: stored(&MEM_USED_MIB, s.mem_used_mib)?,
                temp_dc: stored(&TEMP_C, s.temp_c)?,
                sm_mhz: stored(&SM_CLOCK_MHZ, s.sm_clock_mhz)?,
                instant_mw: stored(&POWER_INSTANT_W, s.power_instant_w)?,
                power_source: s.power_source,
            })
        })
        .collect()
}

/// Checks samples that came in stored units (the binary form) by the same rules and bounds as JSON's;
/// an error names the sample by its place in the block and the field by its JSON name and unit.
pub fn validate_raw(
    samples: &[RawSample],
    known: &HashSet<u32>,
    node: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    use wattlas_protocol::wire::{
        Bound, MEM_USED_MIB, POWER_INSTANT_W, POWER_LIMIT_W, POWER_W, SM_CLOCK_MHZ, TEMP_C,
        UTIL_PCT,
    };
    for (i, s) in samples.iter().enumerate() {
        check_gpu_and_time(i, s.gpu, s.t_ms, known, node, now)?;
        let fields: [(&Bound, Option<i64>); 7] = [
            (&POWER_W, Some(s.power_mw)),
            (&POWER_INSTANT_W, s.instant_mw),
            (&POWER_LIMIT_W, s.limit_mw),
            (&UTIL_PCT, s.util_dpct),
            (&MEM_USED_MIB, s.mem_mib),
            (&TEMP_C, s.temp_dc),
            (&SM_CLOCK_MHZ, s.sm_mhz),
        ];
        for (b, v) in fields {
            if let Some(v) = v.filter(|v| !b.holds_stored(*v)) {
                return Err(Error::invalid(
                    format!("samples[{i}].{}", b.field),
                    format!("{} is outside {}..{}", b.from_stored(v), b.lo, b.hi),
                ));
            }
        }
        if let Some(e) = s.energy_mj.filter(|e| *e < 0) {
            return Err(Error::invalid(
                format!("samples[{i}].energy_mj"),
                format!("{e} is negative"),
            ));
        }
    }
    Ok(())
}

/// A sample's GPU is one the node has, and its time lies between 2000 and five minutes from now.
fn check_gpu_and_time(
    i: usize,
    gpu: u32,
    t_ms: i64,
    known: &HashSet<u32>,
    node: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    const Y2000_MS: i64 = 946_684_800_000;
    let bad = |field: &str, why: String| Error::invalid(format!("samples[{i}].{field}"), why);
    if !known.contains(&gpu) {
        return Err(bad(
            "gpu",
            format!("unknown GPU index {gpu} on node '{node}' (send its identity in gpus)"),
        ));
    }
    let shown = || crate::db::ts(t_ms).to_rfc3339();
    if t_ms < Y2000_MS {
        return Err(bad("time", format!("{} is before 2000", shown())));
    }
    if t_ms > now.timestamp_millis() + MAX_FUTURE_MS {
        return Err(bad(
            "time",
            format!("{} is more than 5 minutes in the future", shown()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(power_w: f64) -> GpuSample {
        GpuSample {
            time: Utc::now(),
            gpu: 0,
            power_w,
            energy_mj: Some(5),
            power_limit_w: Some(250.0),
            util_pct: Some(99.0),
            mem_used_mib: None,
            temp_c: Some(60.0),
            sm_clock_mhz: Some(1380.0),
            power_instant_w: None,
            power_source: None,
        }
    }

    fn check(samples: &[GpuSample]) -> Result<Vec<RawSample>, String> {
        let known: HashSet<u32> = [0].into_iter().collect();
        validate_samples(samples, &known, "n1", Utc::now()).map_err(|e| e.to_string())
    }

    #[test]
    fn converts_to_stored_units() {
        let raw = check(&[sample(123.456)]).expect("valid");
        assert_eq!(raw[0].power_mw, 123_456);
        assert_eq!(raw[0].limit_mw, Some(250_000));
        assert_eq!(raw[0].util_dpct, Some(990));
        assert_eq!(raw[0].mem_mib, None);
    }

    #[test]
    fn names_the_bad_field_and_index() {
        let mut samples = vec![sample(100.0), sample(f64::NAN)];
        assert_eq!(
            check(&samples).expect_err("invalid"),
            "samples[1].power_w: NaN is outside 0..2000"
        );
        samples[1] = sample(-1.0);
        assert!(check(&samples)
            .expect_err("invalid")
            .starts_with("samples[1].power_w"));
        samples[1] = sample(2500.0);
        assert!(check(&samples)
            .expect_err("invalid")
            .starts_with("samples[1].power_w"));
        samples[1] = sample(100.0);
        samples[1].time = Utc::now() + chrono::Duration::minutes(6);
        assert!(check(&samples)
            .expect_err("invalid")
            .contains("more than 5 minutes in the future"));
        samples[1] = sample(100.0);
        samples[1].gpu = 3;
        assert!(check(&samples)
            .expect_err("invalid")
            .starts_with("samples[1].gpu: unknown GPU index 3"));
        samples[1] = sample(100.0);
        samples[1].util_pct = Some(f64::INFINITY);
        assert!(check(&samples)
            .expect_err("invalid")
            .starts_with("samples[1].util_pct"));
    }
}
