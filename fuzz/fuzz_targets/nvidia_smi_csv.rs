//! Any bytes as an `nvidia-smi --query-gpu ... --format=csv` log: parsed or refused with a line and a
//! field, never a panic; what parses is within the protocol's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wattlas_collector::import::nvidia_smi;

fuzz_target!(|data: &[u8]| {
    for tz in [chrono_tz::UTC, chrono_tz::America::New_York] {
        match nvidia_smi::parse(data, tz) {
            Ok(parsed) => {
                assert!(parsed.samples.len() as u64 <= parsed.lines);
                for s in &parsed.samples {
                    assert!(s.power_w.is_finite(), "{s:?}");
                }
            }
            Err(e) => {
                assert!(e.line >= 1, "{e}");
                assert!(!e.field.is_empty(), "{e}");
            }
        }
    }
});
