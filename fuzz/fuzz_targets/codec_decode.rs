//! Any bytes as a stored block (a corrupt row, a future format): an error, never a panic or a runaway
//! allocation; what decodes encodes again, live (format 1) and settled (format 2), to a block that
//! decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wattlas_server::codec;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let t0 = i64::from_le_bytes(data[..8].try_into().expect("8 bytes")) % (1 << 45);
    let mut out = Vec::new();
    if codec::decode(t0, &data[8..], &mut out).is_err() {
        return;
    }
    if out.iter().any(|s| s.t_ms < t0) {
        return;
    }
    let block = codec::encode(t0, &out);
    let mut again = Vec::new();
    codec::decode(t0, &block, &mut again).expect("a block of ours decodes");
    let mut expected = out.clone();
    expected.sort_by_key(|s| (s.gpu, s.t_ms));
    expected.dedup_by_key(|s| (s.gpu, s.t_ms));
    assert_eq!(again, expected);
    let packed = codec::encode_packed(t0, &out);
    let mut again = Vec::new();
    codec::decode(t0, &packed, &mut again).expect("a settled block of ours decodes");
    assert_eq!(again, expected);
});
