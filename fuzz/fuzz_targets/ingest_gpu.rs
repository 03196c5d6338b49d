//! Any bytes as the body of `POST /api/v1/ingest/gpu`: decoded and validated as the server does (node
//! energy readings that pass fit their columns), and a
//! batch that passes is encoded into a stored block that decodes to exactly its samples (sorted by GPU
//! and time, each GPU's millisecond once). Bytes that start as a binary batch (`WTB1`) are decoded as
//! one: what passes its checks passes JSON's too, as the same stored values (one rule for both forms).
#![no_main]

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use wattlas_protocol::GpuBatch;
use wattlas_server::codec;
use wattlas_server::service::ingest::checks::{
    validate_identities, validate_node_energy, validate_raw, validate_samples,
};

fn binary(data: &[u8]) {
    let Ok((batch, raw)) = wattlas_protocol::wire::decode_batch(data) else {
        return;
    };
    let known: HashSet<u32> = batch.gpus.iter().map(|g| g.index).collect();
    let now = Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .expect("a time");
    if validate_raw(&raw, &known, "n1", now).is_err() {
        return;
    }
    use wattlas_protocol::wire::{
        MEM_USED_MIB, POWER_INSTANT_W, POWER_LIMIT_W, POWER_W, SM_CLOCK_MHZ, TEMP_C, UTIL_PCT,
    };
    let json: Vec<wattlas_protocol::GpuSample> = raw
        .iter()
        .map(|s| wattlas_protocol::GpuSample {
            time: Utc
                .timestamp_millis_opt(s.t_ms)
                .single()
                .expect("a time that passed"),
            gpu: s.gpu,
            power_w: POWER_W.from_stored(s.power_mw),
            energy_mj: s.energy_mj.map(|e| e as u64),
            power_limit_w: s.limit_mw.map(|v| POWER_LIMIT_W.from_stored(v)),
            util_pct: s.util_dpct.map(|v| UTIL_PCT.from_stored(v)),
            mem_used_mib: s.mem_mib.map(|v| MEM_USED_MIB.from_stored(v)),
            temp_c: s.temp_dc.map(|v| TEMP_C.from_stored(v)),
            sm_clock_mhz: s.sm_mhz.map(|v| SM_CLOCK_MHZ.from_stored(v)),
            power_instant_w: s.instant_mw.map(|v| POWER_INSTANT_W.from_stored(v)),
            power_source: s.power_source,
        })
        .collect();
    let again =
        validate_samples(&json, &known, "n1", now).expect("what binary passes, JSON passes");
    assert_eq!(again, raw, "the same stored values");
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"WTB") {
        return binary(data);
    }
    let Ok(batch) = serde_json::from_slice::<GpuBatch>(data) else {
        return;
    };
    if validate_identities(&batch).is_err() {
        return;
    }
    let known: HashSet<u32> = batch.gpus.iter().map(|g| g.index).collect();
    let now = Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .expect("a time");
    // The node's CPU and DRAM counters: whatever passes fits the int8 columns they are stored in.
    if validate_node_energy(&batch, now).is_ok() {
        for r in &batch.node_energy {
            assert!(
                r.energy_uj <= r.max_energy_range_uj && r.max_energy_range_uj <= i64::MAX as u64
            );
            assert!(!r.zone.is_empty() && r.zone.len() <= 100);
        }
    }
    let Ok(samples) = validate_samples(&batch.samples, &known, "n1", now) else {
        return;
    };
    let Some(t0) = samples.iter().map(|s| s.t_ms).min() else {
        return;
    };
    let block = codec::encode(t0, &samples);
    let mut decoded = Vec::new();
    codec::decode(t0, &block, &mut decoded).expect("a block of ours decodes");
    let mut expected = samples.clone();
    expected.sort_by_key(|s| (s.gpu, s.t_ms));
    expected.dedup_by_key(|s| (s.gpu, s.t_ms));
    assert_eq!(decoded, expected);
});
