//! Any bytes as a meter export (power, energy counters or PUE): parsed with bad lines skipped, or
//! refused with a line and a field, never a panic; every parsed reading is finite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wattlas_collector::import::meter;

fuzz_target!(
    |data: &[u8]| match meter::parse(data, Some(chrono_tz::UTC), false) {
        Ok(parsed) => {
            for r in &parsed.readings {
                for v in [r.it_kw, r.total_kw, r.it_kwh, r.total_kwh, r.pue]
                    .into_iter()
                    .flatten()
                {
                    assert!(v.is_finite(), "{r:?}");
                }
            }
        }
        Err(e) => {
            assert!(e.line >= 1, "{e}");
            assert!(!e.field.is_empty(), "{e}");
        }
    }
);
