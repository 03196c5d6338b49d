//! Every real nvidia-smi log of `../shared/data/real/nvidia-smi/` reads with default options into the
//! GPUs, sample counts and first and last times that `references.json` lists for it (computed there
//! independently). Energy is the server's business: `tests/tests/real.rs` imports the same files end to end.

use std::path::PathBuf;

use chrono::NaiveDateTime;
use wattlas_collector::import::nvidia_smi::{parse, Options};

fn real_dir() -> PathBuf {
    // At run time (cargo sets it): a binary built in another checkout sharing the build folder
    // would otherwise read that checkout's path.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let dir = manifest.join("../../shared/data/real");
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

/// The number after `key="` in a line, if any.
fn label_number(line: &str, key: &str) -> Option<u32> {
    let at = line.find(&format!("{key}=\""))? + key.len() + 2;
    line[at..].split('"').next()?.parse().ok()
}

/// Every real dcgm-exporter scrape of `../shared/data/real/dcgm-exporter/` (T4, L4, L40S; label sets of
/// several exporter versions, one with its labels elided as `...`) gives each GPU its power, and its
/// energy counter where the scrape has one, exactly as the lines say.
#[test]
fn every_real_dcgm_exporter_scrape_gives_each_gpus_power_and_energy() {
    use wattlas_collector::source::dcgm::parse;
    let dir = real_dir().join("dcgm-exporter");
    let (mut files, mut total_power) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("dcgm-exporter dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("prom") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path.display().to_string();
        let scrape = parse(&text);
        // Read independently, line by line: the value after the labels of each power and energy line.
        let mut power = std::collections::BTreeMap::new();
        let mut energy = std::collections::BTreeMap::new();
        let mut gpus = std::collections::BTreeSet::new();
        for line in text.lines() {
            if line.starts_with("DCGM_FI_DEV_") {
                gpus.extend(label_number(line, "gpu"));
            }
            let value = || line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if line.starts_with("DCGM_FI_DEV_POWER_USAGE{") {
                power.insert(label_number(line, "gpu").expect("gpu"), value().expect("W"));
            } else if line.starts_with("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{") {
                energy.insert(
                    label_number(line, "gpu").expect("gpu"),
                    value().expect("mJ"),
                );
            }
        }
        // A partial scrape (no power series) still names its GPUs, and gives no sample.
        assert_eq!(
            scrape.gpus.keys().copied().collect::<Vec<_>>(),
            gpus.iter().copied().collect::<Vec<_>>(),
            "{name}: the GPUs"
        );
        for (gpu, w) in &power {
            let s = &scrape.gpus[gpu];
            assert_eq!(s.fields.power_w, Some(*w), "{name} gpu {gpu}");
            total_power += 1;
            assert!(*w > 0.0 && *w < 2000.0, "{name}: {w} W");
            let model = s.model.as_deref().expect("model");
            assert!(
                ["Tesla T4", "NVIDIA L4", "NVIDIA L40S"].contains(&model),
                "{name}: {model}"
            );
            assert_eq!(
                s.fields.energy_mj,
                energy.get(gpu).map(|e| *e as u64),
                "{name} gpu {gpu}"
            );
        }
        let samples = scrape.samples(chrono::Utc::now());
        assert_eq!(
            samples.len(),
            power.len(),
            "{name}: a sample per GPU with power"
        );
        assert_eq!(scrape.identities().len(), gpus.len());
    }
    assert!(files >= 6, "{files} scrapes");
    assert!(total_power >= 6, "{total_power} GPUs with power");
}
