//! Any bytes as the body of `POST /api/v1/write`: decoded (snappy, then protobuf) and mapped to GPU
//! samples per node as the server does; what maps has finite, non-negative power and one identity per
//! GPU of a node.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wattlas_server::service::remote_write::{decode, encode, map};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode(data) else {
        return;
    };
    // What decodes encodes and decodes again to the same series.
    let again = decode(&encode(&request)).expect("our own encoding decodes");
    assert_eq!(again.timeseries.len(), request.timeseries.len());
    let Ok(mapped) = map(&request) else {
        return;
    };
    for (node, series) in &mapped.nodes {
        assert!(!node.is_empty());
        let mut seen = std::collections::HashSet::new();
        for g in &series.gpus {
            assert!(seen.insert(g.index), "GPU {} of {node} twice", g.index);
        }
        for s in &series.samples {
            assert!(s.power_w.is_finite() && s.power_w >= 0.0);
        }
    }
});
