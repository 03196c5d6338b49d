//! Every real nvidia-smi log of `../shared/data/real/nvidia-smi/` reads with default options into the
//! GPUs, sample counts and first and last times that `references.json` lists for it (computed there
//! independently). Energy is the server's business: `tests/tests/real.rs` imports the same files end to end.

use std::path::PathBuf;

use chrono::NaiveDateTime;
use wattlas_collector::import::nvidia_smi::{parse, Options};

fn real_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/real");
    assert!(
        dir.join("references.json").exists(),
        "{} is missing: the real logs live in ../shared beside the checkout",
        dir.display()
    );
    dir
}

#[test]
fn every_real_log_reads_into_the_reference_gpus_and_samples() {
    let dir = real_dir();
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("references.json")).expect("references"),
    )
    .expect("json");
    let files = refs["files"].as_object().expect("files");
    let mut checked = 0;
    for (name, r) in files {
        if !name.starts_with("nvidia-smi/") {
            continue;
        }
        // "UTC (unknown; ...)": the zone is the first word.
        let zone = r["timezone"].as_str().expect("zone");
        let tz: chrono_tz::Tz = zone
            .split_whitespace()
            .next()
            .expect("zone")
            .parse()
            .expect("tz");
        let f = std::fs::File::open(dir.join(name)).expect("file");
        let p = parse(std::io::BufReader::new(f), &Options::new(tz))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let per_gpu = r["per_gpu"].as_object().expect("per_gpu");
        assert_eq!(p.summary.gpus.len(), per_gpu.len(), "{name}: GPUs");
        assert_eq!(
            p.summary.power_column,
            r["power_column"].as_str().expect("column"),
            "{name}"
        );
        for (key, g) in per_gpu {
            // Keyed by index, or by uuid where the log has no index.
            let found = p
                .summary
                .gpus
                .values()
                .find(|f| f.identity.uuid == *key || f.identity.index.to_string() == *key)
                .unwrap_or_else(|| panic!("{name}: no GPU {key}"));
            assert_eq!(
                found.samples,
                g["samples"].as_u64().expect("n"),
                "{name} GPU {key}: samples; skipped:\n{}",
                p.summary.skipped
            );
            for (ours, theirs) in [
                (found.first, &g["first_local"]),
                (found.last, &g["last_local"]),
            ] {
                let local = ours.with_timezone(&tz).naive_local();
                let want = NaiveDateTime::parse_from_str(
                    theirs.as_str().expect("time"),
                    "%Y-%m-%d %H:%M:%S%.f",
                )
                .expect("reference time");
                assert_eq!(local, want, "{name} GPU {key}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} logs checked");
}
