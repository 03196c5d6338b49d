//! Any bytes as an nvidia-smi log (`--query-gpu ... --format=csv` or `dmon`): read with bad lines
//! skipped, or refused with a line and a field, never a panic; what is read is within the protocol's
//! bounds, and strict mode refuses whatever the default skipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wattlas_collector::import::nvidia_smi::{parse, Options};

fuzz_target!(|data: &[u8]| {
    for tz in [chrono_tz::UTC, chrono_tz::America::New_York] {
        let mut opts = Options::new(tz);
        match parse(data, &opts) {
            Ok(parsed) => {
                assert!(
                    parsed.samples.len() as u64 <= parsed.summary.lines,
                    "{parsed:?}"
                );
                for s in &parsed.samples {
                    assert!(s.power_w.is_finite() && s.power_w >= 0.0, "{s:?}");
                }
                opts.strict = true;
                if parsed.summary.skipped.total() > 0 {
                    assert!(
                        parse(data, &opts).is_err(),
                        "strict accepted what was skipped"
                    );
                }
            }
            Err(e) => {
                assert!(!e.field.is_empty(), "{e}");
            }
        }
    }
});
