//! Configuration of `wattlas-collector run`: flags, `WATTLAS_*` environment variables, or a TOML file.
//! A flag or variable wins over the file; the file wins over the defaults.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Real GPUs through NVML.
    Nvml,
    /// Simulated GPUs that follow their power cap as the first paper's Figures 1-3 show.
    Simulated,
    /// The node's dcgm-exporter (`--url`), scraped instead of opening NVML.
    #[serde(rename = "dcgm-exporter")]
    DcgmExporter,
}

/// Flags of `run`; every one may also come from the TOML file given by `--config`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// TOML file with any of these settings (snake_case keys).
    #[arg(long, env = "WATTLAS_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Server base URL, e.g. http://wattlas:8080.
    #[arg(long, env = "WATTLAS_SERVER")]
    pub server: Option<String>,
    /// The node's bearer token (better: `--token-file` or `WATTLAS_TOKEN`; a flag shows in `ps`).
    #[arg(long, env = "WATTLAS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the token (mode 0600: one readable by others is refused).
    #[arg(long, env = "WATTLAS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Node name (default: the host name).
    #[arg(long, env = "WATTLAS_NODE")]
    pub node: Option<String>,
    /// Sample source.
    #[arg(long, env = "WATTLAS_SOURCE", value_enum)]
    pub source: Option<SourceKind>,
    /// dcgm-exporter source: its metrics URL (default http://127.0.0.1:9400/metrics).
    #[arg(long, env = "WATTLAS_DCGM_URL")]
    pub url: Option<String>,
    /// Sampling interval in ms (default 100; 1000 suits dcgm-exporter, which updates every second).
    #[arg(long, env = "WATTLAS_INTERVAL_MS")]
    pub interval_ms: Option<u64>,
    /// Batch interval in ms (default 1000).
    #[arg(long, env = "WATTLAS_BATCH_MS")]
    pub batch_ms: Option<u64>,
    /// Spool directory (default /var/spool/wattlas, or .wattlas/spool when not root).
    #[arg(long, env = "WATTLAS_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Spool bound in bytes (default 512 MiB); the oldest batches are dropped, and counted, beyond it.
    #[arg(long, env = "WATTLAS_SPOOL_MAX_BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// Simulated source: number of GPUs (default 4).
    #[arg(long, env = "WATTLAS_SIM_GPUS")]
    pub sim_gpus: Option<u32>,
    /// Simulated source: GPU model (V100, A100, T4, K80, H100; default V100).
    #[arg(long, env = "WATTLAS_SIM_MODEL")]
    pub sim_model: Option<String>,
    /// Simulated source: random seed (default 1).
    #[arg(long, env = "WATTLAS_SIM_SEED")]
    pub sim_seed: Option<u64>,
    /// Simulated source: run the paper's power-cap experiment: jobs at these caps in W, e.g. 100,150,200,250.
    #[arg(long, env = "WATTLAS_SIM_CAPS", value_delimiter = ',')]
    pub sim_caps: Option<Vec<f64>>,
    /// Simulated source: GPUs per experiment job (default 2).
    #[arg(long, env = "WATTLAS_SIM_GPUS_PER_JOB")]
    pub sim_gpus_per_job: Option<u32>,
    /// Simulated source: seconds one experiment job takes at the default cap (default 600).
    #[arg(long, env = "WATTLAS_SIM_JOB_SECONDS")]
    pub sim_job_seconds: Option<f64>,
    /// Simulated source: jobs each GPU group runs before idling for good (default: no end).
    #[arg(long, env = "WATTLAS_SIM_JOBS")]
    pub sim_jobs: Option<u32>,
    /// Simulated source: user that owns the experiment jobs (default alice).
    #[arg(long, env = "WATTLAS_SIM_USER")]
    pub sim_user: Option<String>,
    /// Simulated source: write what was emitted (samples, energy per job) to this JSON file.
    #[arg(long, env = "WATTLAS_SIM_LEDGER")]
    pub sim_ledger: Option<PathBuf>,
    /// Simulated source: keep every GPU's energy counter at every poll in the ledger (`true`), the
    /// truth of any window of time (end-to-end tests of scheduler jobs).
    #[arg(long, env = "WATTLAS_SIM_TRACE")]
    pub sim_trace: Option<bool>,
    /// Stop after this many seconds (default: run until stopped).
    #[arg(long, env = "WATTLAS_RUN_SECONDS")]
    pub run_seconds: Option<f64>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 (default: off).
    #[arg(long, env = "WATTLAS_METRICS_BIND")]
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// Linux powercap tree of the CPU and DRAM energy counters (default /sys/class/powercap).
    #[arg(long, env = "WATTLAS_POWERCAP_ROOT")]
    pub powercap_root: Option<PathBuf>,
    /// Milliseconds between readings of the CPU and DRAM counters (default 5000; energy is exact
    /// whatever the spacing, it only sets how finely it is split between jobs).
    #[arg(long, env = "WATTLAS_RAPL_INTERVAL_MS")]
    pub rapl_interval_ms: Option<u64>,
}

/// Problems with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML file is malformed.
    #[error("{path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause (names line and key).
        source: toml::de::Error,
    },
    /// A required setting is missing.
    #[error("{0} is required (flag, WATTLAS_* variable or config file)")]
    Missing(&'static str),
    /// A token file that cannot be used.
    #[error("--token-file {path}: {why}")]
    TokenFile {
        /// File.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A setting has an impossible value.
    #[error("{0}")]
    Invalid(String),
}

/// The resolved settings of `run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Server base URL.
    pub server: String,
    /// Bearer token.
    pub token: String,
    /// Node name.
    pub node: String,
    /// Source.
    pub source: SourceKind,
    /// Sampling interval.
    pub interval_ms: u64,
    /// Batch interval.
    pub batch_ms: u64,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Spool bound.
    pub spool_max_bytes: u64,
    /// Simulated source settings.
    pub sim: crate::source::simulated::SimConfig,
    /// Where to write the simulator's ledger.
    pub sim_ledger: Option<PathBuf>,
    /// Stop after this long.
    pub run_seconds: Option<f64>,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// dcgm-exporter's metrics URL.
    pub url: String,
    /// Powercap tree.
    pub powercap_root: PathBuf,
    /// Between readings of the CPU and DRAM counters, ms.
    pub rapl_interval_ms: u64,
}

impl RunArgs {
    /// Flags over file over defaults.
    pub fn resolve(self) -> Result<RunConfig, ConfigError> {
        let a = match self.config.clone() {
            Some(path) => overlay_file(self, &path)?,
            None => self,
        };
        let node = a
            .node
            .or_else(hostname)
            .ok_or(ConfigError::Missing("node"))?;
        let interval_ms = a.interval_ms.unwrap_or(100);
        if !(10..=60_000).contains(&interval_ms) {
            return Err(ConfigError::Invalid(format!(
                "interval_ms: {interval_ms} is outside 10..60000"
            )));
        }
        let batch_ms = a.batch_ms.unwrap_or(1000).max(interval_ms);
        let model = a.sim_model.unwrap_or_else(|| "V100".into());
        let sim = crate::source::simulated::SimConfig {
            node: node.clone(),
            gpus: a.sim_gpus.unwrap_or(4),
            model: crate::source::simulated::GpuModel::named(&model).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "sim_model: unknown model '{model}' (V100, A100, T4, K80, H100)"
                ))
            })?,
            seed: a.sim_seed.unwrap_or(1),
            caps: a.sim_caps.unwrap_or_default(),
            gpus_per_job: a.sim_gpus_per_job.unwrap_or(2).max(1),
            job_seconds: a.sim_job_seconds.unwrap_or(600.0),
            jobs_per_group: a.sim_jobs,
            user: a.sim_user.unwrap_or_else(|| "alice".into()),
            limits_file: None,
            trace: a.sim_trace.unwrap_or(false),
        };
        let spool_dir = a.spool_dir.unwrap_or_else(default_spool_dir);
        let sim = crate::source::simulated::SimConfig {
            limits_file: Some(crate::cap::sim_limits_path(&spool_dir)),
            ..sim
        };
        Ok(RunConfig {
            server: a
                .server
                .ok_or(ConfigError::Missing("server"))?
                .trim_end_matches('/')
                .to_owned(),
            token: match (a.token, a.token_file) {
                (Some(t), _) => t,
                (None, Some(path)) => read_token_file(&path)?,
                (None, None) => return Err(ConfigError::Missing("token")),
            },
            node,
            source: a.source.unwrap_or(SourceKind::Nvml),
            interval_ms,
            batch_ms,
            spool_dir,
            spool_max_bytes: a.spool_max_bytes.unwrap_or(512 * 1024 * 1024),
            sim,
            sim_ledger: a.sim_ledger,
            run_seconds: a.run_seconds,
            metrics_bind: a.metrics_bind,
            url: a
                .url
                .unwrap_or_else(|| "http://127.0.0.1:9400/metrics".to_owned()),
            powercap_root: a
                .powercap_root
                .unwrap_or_else(|| PathBuf::from(crate::source::rapl::DEFAULT_ROOT)),
            rapl_interval_ms: a.rapl_interval_ms.unwrap_or(5000).max(100),
        })
    }
}

/// Flags (and variables) over the TOML file at `path`, the one way every command merges them: each
/// setting the flags leave unset comes from the file; the file's unknown keys are refused, naming the
/// line. Both sides go through the same serde names, so a new flag needs no code here.
pub(crate) fn overlay_file<T: Serialize + DeserializeOwned>(
    flags: T,
    path: &Path,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: T = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let merge = || -> Result<T, serde_json::Error> {
        let mut merged = serde_json::to_value(file)?;
        if let (Some(m), serde_json::Value::Object(given)) =
            (merged.as_object_mut(), serde_json::to_value(&flags)?)
        {
            for (k, v) in given {
                if !v.is_null() {
                    m.insert(k, v);
                }
            }
        }
        serde_json::from_value(merged)
    };
    merge().map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))
}

/// The host name, as Slurm knows the node.
pub(crate) fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

fn default_spool_dir() -> PathBuf {
    let system = PathBuf::from("/var/spool/wattlas");
    if std::fs::create_dir_all(&system).is_ok() {
        system
    } else {
        PathBuf::from(".wattlas/spool")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "server = \"http://file:1\"\ntoken = \"t\"\nnode = \"n1\"\nsource = \"simulated\"\nsim_gpus = 8\n")
            .expect("write");
        let args = RunArgs {
            config: Some(path),
            server: Some("http://flag:2/".into()),
            ..RunArgs::default()
        };
        let c = args.resolve().expect("resolves");
        assert_eq!(c.server, "http://flag:2");
        assert_eq!(c.sim.gpus, 8);
        assert_eq!(c.source, SourceKind::Simulated);
        assert_eq!(c.interval_ms, 100);
    }

    #[test]
    fn a_bad_file_names_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "server = \"x\"\nsim_gpus = \"eight\"\n").expect("write");
        let err = RunArgs {
            config: Some(path),
            ..RunArgs::default()
        }
        .resolve()
        .expect_err("fails");
        let text = err.to_string();
        assert!(
            text.contains("sim_gpus") && text.contains("line 2"),
            "{text}"
        );
    }
}

/// Reads a bearer token from a file readable by its owner alone (a token in a file others can read is
/// as good as published).
pub(crate) fn read_token_file(path: &std::path::Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |why: String| ConfigError::TokenFile {
        path: path.to_owned(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "mode {mode:o} lets others read it: chmod 600 {}",
            path.display()
        )));
    }
    let token = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(bad("empty".into()));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod token_file_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "wn_secret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = read_token_file(&path)
            .expect_err("world-readable")
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_token_file(&path).expect("read"), "wn_secret");
    }
}
