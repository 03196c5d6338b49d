//! Any text as a dcgm-exporter scrape: parsed as the collector's dcgm-exporter source does; every
//! sample it makes has finite, non-negative power and a GPU it identifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wattlas_collector::source::dcgm::parse;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let scrape = parse(&text);
    let ids: Vec<u32> = scrape.identities().iter().map(|g| g.index).collect();
    for s in scrape.samples(chrono::Utc::now()) {
        assert!(s.power_w.is_finite() && s.power_w >= 0.0);
        assert!(ids.contains(&s.gpu));
    }
});
