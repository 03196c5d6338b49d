//! `wattlas-collector cap set|reset|show`: applying a power cap, for the Slurm prolog and epilog.
//!
//! On real GPUs this is NVML's power management limit (it needs root, and the driver keeps the limit
//! until reset or reboot); `reset` restores each GPU's default limit. The simulated source has no driver:
//! the limits live in a small JSON file beside its spool (`power-limits.json`, GPU index -> W), which the
//! running simulated collector reads every second and honours like a driver would.
//!
//! This is the only code of the collector that changes a GPU setting; sampling never does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

/// The file of the simulated GPUs' limits, in a spool directory.
pub(crate) fn sim_limits_path(spool_dir: &Path) -> PathBuf {
    spool_dir.join("power-limits.json")
}

/// One GPU's limit before and after.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CapChange {
    /// GPU index.
    pub gpu: u32,
    /// Limit before, W (`None`: the simulated default).
    pub before_w: Option<f64>,
    /// Limit after, W (`None`: the simulated default).
    pub after_w: Option<f64>,
}

impl std::fmt::Display for CapChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = |v: Option<f64>| v.map_or_else(|| "default".to_owned(), |w| format!("{w:.0} W"));
        write!(
            f,
            "gpu {}: {} -> {}",
            self.gpu,
            w(self.before_w),
            w(self.after_w)
        )
    }
}

/// Reads the simulated limits (an absent file: none set).
pub(crate) fn read_sim_limits(path: &Path) -> anyhow::Result<BTreeMap<u32, f64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{}: not a map of GPU index to watts", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Sets (`Some(W)`) or resets (`None`) the simulated limits of `gpus` (all set ones when empty and
/// resetting; required when setting), written atomically.
pub(crate) fn set_sim(
    path: &Path,
    gpus: &[u32],
    watts: Option<f64>,
) -> anyhow::Result<Vec<CapChange>> {
    let mut limits = read_sim_limits(path)?;
    let targets: Vec<u32> = if gpus.is_empty() {
        if watts.is_some() {
            bail!("--gpus: name the GPUs to cap (e.g. --gpus 0,1)");
        }
        limits.keys().copied().collect()
    } else {
        gpus.to_vec()
    };
    let mut changes = Vec::new();
    for gpu in targets {
        let before = limits.get(&gpu).copied();
        match watts {
            Some(w) => limits.insert(gpu, w),
            None => limits.remove(&gpu),
        };
        changes.push(CapChange {
            gpu,
            before_w: before,
            after_w: watts,
        });
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&limits)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(changes)
}

fn nvml_error(gpu: u32, what: &str, e: NvmlError) -> anyhow::Error {
    match e {
        NvmlError::NoPermission => anyhow::anyhow!(
            "gpu {gpu}: {what} needs root (run it from the Slurm prolog/epilog, which run as root)"
        ),
        NvmlError::NotSupported => anyhow::anyhow!("gpu {gpu}: this GPU does not support {what}"),
        other => anyhow::anyhow!("gpu {gpu}: {what}: {other}"),
    }
}

/// Sets (`Some(W)`) or resets to the default (`None`) the NVML power limit of `gpus` (all when empty).
/// Refuses a limit outside a GPU's allowed range before changing any GPU.
pub(crate) fn set_nvml(gpus: &[u32], watts: Option<f64>) -> anyhow::Result<Vec<CapChange>> {
    let nvml = Nvml::init().context("NVML (is the NVIDIA driver installed?)")?;
    let count = nvml.device_count().context("counting GPUs")?;
    let targets: Vec<u32> = if gpus.is_empty() {
        (0..count).collect()
    } else {
        gpus.to_vec()
    };
    // Check every GPU first, so a bad request changes nothing.
    let mut plan = Vec::new();
    for &gpu in &targets {
        if gpu >= count {
            bail!("--gpus: there is no GPU {gpu} (this node has {count})");
        }
        let device = nvml
            .device_by_index(gpu)
            .map_err(|e| nvml_error(gpu, "opening", e))?;
        let before = device
            .enforced_power_limit()
            .map_err(|e| nvml_error(gpu, "reading the power limit", e))?;
        let range = device
            .power_management_limit_constraints()
            .map_err(|e| nvml_error(gpu, "reading the power limit range", e))?;
        let target = match watts {
            Some(w) => (w * 1000.0).round() as u32,
            None => device
                .power_management_limit_default()
                .map_err(|e| nvml_error(gpu, "reading the default power limit", e))?,
        };
        if target < range.min_limit || target > range.max_limit {
            bail!(
                "--watts: gpu {gpu} accepts {:.0} to {:.0} W",
                f64::from(range.min_limit) / 1000.0,
                f64::from(range.max_limit) / 1000.0
            );
        }
        plan.push((gpu, before, target));
    }
    let mut changes = Vec::new();
    for (gpu, before, target) in plan {
        let mut device = nvml
            .device_by_index(gpu)
            .map_err(|e| nvml_error(gpu, "opening", e))?;
        device
            .set_power_management_limit(target)
            .map_err(|e| nvml_error(gpu, "setting the power limit", e))?;
        changes.push(CapChange {
            gpu,
            before_w: Some(f64::from(before) / 1000.0),
            after_w: Some(f64::from(target) / 1000.0),
        });
    }
    Ok(changes)
}

/// Parses `--gpus`: `0,1,3`, or Slurm's `SLURM_JOB_GPUS` form, which may hold ranges (`0-3,6`).
pub(crate) fn parse_gpus(text: &str) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |s: &str| {
            s.parse::<u32>()
                .with_context(|| format!("--gpus: '{s}' is not a GPU index"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if b < a || b - a > 1024 {
                    bail!("--gpus: bad range '{part}'");
                }
                out.extend(a..=b);
            }
            None => out.push(parse(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_lists_take_slurm_ranges() {
        assert_eq!(parse_gpus("0-2,5, 7").expect("parses"), [0, 1, 2, 5, 7]);
        assert_eq!(parse_gpus("").expect("parses"), Vec::<u32>::new());
        assert!(parse_gpus("0,x").is_err());
        assert!(parse_gpus("3-1").is_err());
    }

    #[test]
    fn simulated_limits_are_set_and_reset_in_their_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = sim_limits_path(dir.path());
        let changes = set_sim(&path, &[0, 1], Some(150.0)).expect("set");
        assert_eq!(changes[1].to_string(), "gpu 1: default -> 150 W");
        assert_eq!(
            read_sim_limits(&path).expect("read"),
            BTreeMap::from([(0, 150.0), (1, 150.0)])
        );
        assert!(
            set_sim(&path, &[], Some(100.0)).is_err(),
            "setting names GPUs"
        );
        let changes = set_sim(&path, &[1], None).expect("reset one");
        assert_eq!(changes[0].to_string(), "gpu 1: 150 W -> default");
        set_sim(&path, &[], None).expect("reset all");
        assert!(read_sim_limits(&path).expect("read").is_empty());
    }
}

/// `wattlas-collector cap ...`: its arguments and what each does.
pub mod cli {
    use std::path::PathBuf;

    use clap::{Args, Subcommand};

    use crate::config::SourceKind;

    /// `cap set|reset`.
    #[derive(Debug, Subcommand)]
    pub enum CapCommand {
        /// Set the power limit of GPUs.
        Set {
            /// The limit, W.
            #[arg(long)]
            watts: f64,
            /// Which GPUs.
            #[command(flatten)]
            target: CapTarget,
        },
        /// Restore the default power limit of GPUs.
        Reset {
            /// Which GPUs.
            #[command(flatten)]
            target: CapTarget,
        },
    }

    /// Which GPUs, of which source.
    #[derive(Debug, Args)]
    pub struct CapTarget {
        /// GPU indices, e.g. `0,1` or Slurm's `0-3` (default: the job's `SLURM_JOB_GPUS`; `reset` without
        /// any: every GPU).
        #[arg(long, env = "SLURM_JOB_GPUS")]
        gpus: Option<String>,
        /// nvml (real GPUs, the default) or simulated.
        #[arg(long, value_enum, env = "WATTLAS_SOURCE", default_value = "nvml")]
        source: SourceKind,
        /// The simulated collector's spool directory (its limits file lives there).
        #[arg(long, env = "WATTLAS_SPOOL_DIR", default_value = "/var/spool/wattlas")]
        spool_dir: PathBuf,
    }

    impl CapTarget {
        pub(crate) fn apply(&self, watts: Option<f64>) -> anyhow::Result<()> {
            if let Some(w) = watts {
                if !w.is_finite() || w <= 0.0 {
                    anyhow::bail!("--watts: must be a positive number of watts, got {w}");
                }
            }
            let gpus = super::parse_gpus(self.gpus.as_deref().unwrap_or(""))?;
            let changes = match self.source {
                // dcgm-exporter reads; a cap is set through the driver, as nvml does.
                SourceKind::Nvml | SourceKind::DcgmExporter => super::set_nvml(&gpus, watts)?,
                SourceKind::Simulated => {
                    super::set_sim(&super::sim_limits_path(&self.spool_dir), &gpus, watts)?
                }
            };
            for c in changes {
                println!("{c}");
            }
            Ok(())
        }
    }

    /// Runs `cap set|reset`.
    pub fn run(command: CapCommand) -> anyhow::Result<()> {
        match command {
            CapCommand::Set { watts, target } => target.apply(Some(watts)),
            CapCommand::Reset { target } => target.apply(None),
        }
    }
}
