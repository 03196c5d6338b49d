//! Any bytes as the body of `POST /api/v1/ingest/gpu`: decoded and validated as the server does, and a
//! batch that passes is encoded into a stored block that decodes to exactly its samples (sorted by GPU
//! and time, each GPU's millisecond once).
#![no_main]

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use wattlas_protocol::GpuBatch;
use wattlas_server::codec;
use wattlas_server::routes::ingest::{validate_identities, validate_samples};

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
