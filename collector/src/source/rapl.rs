//! CPU package and DRAM energy from Linux powercap (RAPL): `/sys/class/powercap/intel-rapl:N` for each
//! package (AMD CPUs expose the same tree), its `intel-rapl:N:M` subzones (`dram` is the one charged;
//! `core` and `uncore` are inside the package already), and `psys` where the platform has it.
//!
//! Each zone's `energy_uj` counts up to `max_energy_range_uj` and wraps to 0; the collector sends the
//! counter as read and the server unwraps it between consecutive readings. Since the 2020 RAPL advisory
//! (CVE-2020-8694) `energy_uj` is readable by root only: a zone that cannot be read is reported once at
//! start and counted, and sends nothing. Never a zero: no reading means not measured.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use wattlas_protocol::{NodeEnergyKind, NodeEnergyReading};

/// Where Linux exposes powercap.
pub(crate) const DEFAULT_ROOT: &str = "/sys/class/powercap";

/// One counter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Zone {
    /// `package-0`, `package-0/dram`, `psys`.
    pub name: String,
    /// What it counts.
    pub kind: NodeEnergyKind,
    /// Its `energy_uj`.
    pub energy: PathBuf,
    /// Its `max_energy_range_uj`.
    pub max_uj: u64,
}

/// The node's readable counters, and those it found but cannot read.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rapl {
    /// Counters read on every reading.
    pub zones: Vec<Zone>,
    /// Counters found but unreadable: (zone, why).
    pub unreadable: Vec<(String, String)>,
}

fn read_trimmed(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned())
}

fn read_u64(path: &Path) -> Result<u64, String> {
    let text = read_trimmed(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.parse()
        .map_err(|_| format!("{}: '{text}' is not a number", path.display()))
}

/// The zone of a powercap directory, if it is one this collector charges, with its label.
fn kind_of(name: &str) -> Option<NodeEnergyKind> {
    if name.starts_with("package-") {
        Some(NodeEnergyKind::Cpu)
    } else if name == "dram" {
        Some(NodeEnergyKind::Dram)
    } else if name == "psys" {
        Some(NodeEnergyKind::Psys)
    } else {
        None
    }
}

impl Rapl {
    /// The counters under `root` (none where there is no powercap tree: a VM, a non-Intel/AMD CPU).
    pub(crate) fn discover(root: &Path) -> Rapl {
        let mut out = Rapl::default();
        let Ok(entries) = std::fs::read_dir(root) else {
            return out;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("intel-rapl:"))
            })
            .collect();
        // intel-rapl:0 before intel-rapl:0:0 before intel-rapl:1.
        dirs.sort();
        let mut labels: std::collections::HashMap<String, String> = Default::default();
        for dir in dirs {
            let Some(id) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let Ok(name) = read_trimmed(&dir.join("name")) else {
                continue;
            };
            labels.insert(id.clone(), name.clone());
            let Some(kind) = kind_of(&name) else { continue };
            // A subzone (`intel-rapl:0:2`) is labelled with its package: `package-0/dram`.
            let parent = id.rsplit_once(':').map(|(p, _)| p.to_owned());
            let label = match parent.as_ref().and_then(|p| labels.get(p)) {
                Some(parent) if id.matches(':').count() > 1 => format!("{parent}/{name}"),
                _ => name.clone(),
            };
            let energy = dir.join("energy_uj");
            let max_uj = match read_u64(&dir.join("max_energy_range_uj")) {
                Ok(m) if m > 0 => m,
                Ok(_) => {
                    out.unreadable
                        .push((label, "max_energy_range_uj is 0".to_owned()));
                    continue;
                }
                Err(e) => {
                    out.unreadable.push((label, e));
                    continue;
                }
            };
            match read_u64(&energy) {
                Ok(_) => out.zones.push(Zone {
                    name: label,
                    kind,
                    energy,
                    max_uj,
                }),
                Err(e) => out.unreadable.push((label, e)),
            }
        }
        out
    }

    /// Reads every counter once, stamped `now`; a counter that fails this time is counted, not sent.
    pub(crate) fn read(&self, now: DateTime<Utc>) -> (Vec<NodeEnergyReading>, u64) {
        let mut out = Vec::with_capacity(self.zones.len());
        let mut errors = 0;
        for z in &self.zones {
            match read_u64(&z.energy) {
                Ok(energy_uj) if energy_uj <= z.max_uj => out.push(NodeEnergyReading {
                    time: now,
                    zone: z.name.clone(),
                    kind: z.kind,
                    energy_uj,
                    max_energy_range_uj: z.max_uj,
                }),
                _ => errors += 1,
            }
        }
        (out, errors)
    }

    /// What to say at start: which counters are read, and which cannot be, and why.
    pub(crate) fn describe(&self, root: &Path) -> String {
        let read: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
        let mut text = if read.is_empty() {
            format!(
                "no readable RAPL counters under {}: CPU and DRAM energy are not measured on this node",
                root.display()
            )
        } else {
            format!("RAPL counters read: {}", read.join(", "))
        };
        if !self.unreadable.is_empty() {
            let why: Vec<String> = self
                .unreadable
                .iter()
                .map(|(z, e)| format!("{z} ({e})"))
                .collect();
            text.push_str(&format!(
                "; unreadable: {} (energy_uj is root-only since the 2020 RAPL advisory: run the collector as root, or grant read access to the file)",
                why.join(", ")
            ));
        }
        text
    }
}

/// The node's logical CPUs: the `processor` lines of `/proc/cpuinfo`, else what the runtime sees.
pub(crate) fn node_cpus() -> Option<u32> {
    let from_cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok().map(|t| {
        t.lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count() as u32
    });
    from_cpuinfo.filter(|n| *n > 0).or_else(|| {
        std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u32)
    })
}

/// A generated powercap tree for tests: zones `(dir, name, energy_uj, max_energy_range_uj)`.
pub fn write_tree(root: &Path, zones: &[(&str, &str, u64, u64)]) -> std::io::Result<()> {
    for (dir, name, energy, max) in zones {
        let d = root.join(dir);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("name"), format!("{name}\n"))?;
        std::fs::write(d.join("energy_uj"), format!("{energy}\n"))?;
        std::fs::write(d.join("max_energy_range_uj"), format!("{max}\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 262_143_328_850;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        write_tree(
            dir.path(),
            &[
                ("intel-rapl:0", "package-0", 1_000, MAX),
                ("intel-rapl:0:0", "core", 500, MAX),
                ("intel-rapl:0:1", "dram", 200, 65_712_999_613),
                ("intel-rapl:1", "package-1", 3_000, MAX),
                ("intel-rapl:1:0", "dram", 400, 65_712_999_613),
                ("intel-rapl:2", "psys", 9_000, MAX),
            ],
        )
        .expect("tree");
        dir
    }

    #[test]
    fn packages_their_dram_and_psys_are_found_core_is_not() {
        let dir = tree();
        let rapl = Rapl::discover(dir.path());
        let names: Vec<(&str, NodeEnergyKind)> = rapl
            .zones
            .iter()
            .map(|z| (z.name.as_str(), z.kind))
            .collect();
        assert_eq!(
            names,
            [
                ("package-0", NodeEnergyKind::Cpu),
                ("package-0/dram", NodeEnergyKind::Dram),
                ("package-1", NodeEnergyKind::Cpu),
                ("package-1/dram", NodeEnergyKind::Dram),
                ("psys", NodeEnergyKind::Psys),
            ]
        );
        assert!(rapl.unreadable.is_empty());
        let t = Utc::now();
        let (readings, errors) = rapl.read(t);
        assert_eq!(errors, 0);
        assert_eq!(readings[0].energy_uj, 1_000);
        assert_eq!(readings[1].max_energy_range_uj, 65_712_999_613);
        assert!(readings.iter().all(|r| r.time == t));
        // The counter advances; the next reading says so.
        std::fs::write(dir.path().join("intel-rapl:0/energy_uj"), "5000\n").expect("write");
        assert_eq!(rapl.read(t).0[0].energy_uj, 5_000);
    }

    #[test]
    fn no_tree_is_no_counters_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rapl = Rapl::discover(&dir.path().join("absent"));
        assert!(rapl.zones.is_empty() && rapl.unreadable.is_empty());
        assert!(rapl
            .describe(dir.path())
            .contains("CPU and DRAM energy are not measured"));
    }

    #[test]
    fn an_unreadable_counter_is_named_with_why_and_never_read_as_zero() {
        let dir = tree();
        // As a non-root user meets it: energy_uj is a directory here, which no user can read as a file
        // (tests run as root, where chmod would not stop the read).
        let energy = dir.path().join("intel-rapl:1/energy_uj");
        std::fs::remove_file(&energy).expect("rm");
        std::fs::create_dir(&energy).expect("dir");
        let rapl = Rapl::discover(dir.path());
        assert_eq!(rapl.unreadable.len(), 1);
        assert_eq!(rapl.unreadable[0].0, "package-1");
        assert!(rapl.zones.iter().all(|z| z.name != "package-1"));
        let text = rapl.describe(dir.path());
        assert!(
            text.contains("unreadable: package-1") && text.contains("root"),
            "{text}"
        );
        // A counter that breaks later is counted and left out of that reading.
        std::fs::write(dir.path().join("intel-rapl:0/energy_uj"), "garbage\n").expect("write");
        let (readings, errors) = rapl.read(Utc::now());
        assert_eq!(errors, 1);
        assert!(readings.iter().all(|r| r.zone != "package-0"));
    }
}
