//! Any bytes as the body of `POST /api/v1/ingest/gpu`: decoded and validated as the server does (node
//! energy readings that pass fit their columns), and a
//! batch that passes is encoded into a stored block that decodes to exactly its samples (sorted by GPU
//! and time, each GPU's millisecond once).
#![no_main]

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use wattlas_protocol::GpuBatch;
use wattlas_server::codec;
use wattlas_server::routes::ingest::{validate_identities, validate_node_energy, validate_samples};

fuzz_target!(|data: &[u8]| {
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
