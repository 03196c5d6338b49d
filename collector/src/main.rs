//! `wattlas-collector`: run (sample and push), import logs, register Slurm jobs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wattlas_collector::config::{RunArgs, SourceKind};
use wattlas_collector::source::nvml::NvmlSource;
use wattlas_collector::source::simulated::SimulatedSource;
use wattlas_collector::source::Source;
use wattlas_collector::uplink::Uplink;
use wattlas_collector::{import, run, slurm};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "wattlas-collector",
    version,
    about = "Samples every GPU of a node every 100 ms and pushes to Wattlas"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sample the GPUs and push batches to the server until stopped.
    Run(Box<RunArgs>),
    /// Import existing logs.
    #[command(subcommand)]
    Import(import::cli::ImportCommand),
    /// Register Slurm jobs from prolog and epilog.
    #[command(subcommand)]
    Job(JobCommand),
    /// Read a facility meter (total and IT power) and push the readings to the server until stopped.
    Meter(Box<MeterArgs>),
    /// Apply or remove a GPU power cap (Slurm prolog/epilog; real GPUs need root).
    #[command(subcommand)]
    Cap(CapCommand),
}

/// `cap set|reset`.
#[derive(Debug, Subcommand)]
enum CapCommand {
    /// Set the power limit of GPUs.
    Set {
        /// The limit, W.
        #[arg(long)]
        watts: f64,
        #[command(flatten)]
        target: CapTarget,
    },
    /// Restore the default power limit of GPUs.
    Reset {
        #[command(flatten)]
        target: CapTarget,
    },
}

/// Which GPUs, of which source.
#[derive(Debug, Args)]
struct CapTarget {
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
    fn apply(&self, watts: Option<f64>) -> anyhow::Result<()> {
        if let Some(w) = watts {
            if !w.is_finite() || w <= 0.0 {
                anyhow::bail!("--watts: must be a positive number of watts, got {w}");
            }
        }
        let gpus = wattlas_collector::cap::parse_gpus(self.gpus.as_deref().unwrap_or(""))?;
        let changes = match self.source {
            SourceKind::Nvml => wattlas_collector::cap::set_nvml(&gpus, watts)?,
            SourceKind::Simulated => wattlas_collector::cap::set_sim(
                &wattlas_collector::cap::sim_limits_path(&self.spool_dir),
                &gpus,
                watts,
            )?,
        };
        for c in changes {
            println!("{c}");
        }
        Ok(())
    }
}

/// Flags of `meter`; every one may also come from the TOML file given by `--config`.
#[derive(Debug, Clone, Default, Args, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MeterArgs {
    /// TOML file with any of these settings (snake_case keys).
    #[arg(long, env = "WATTLAS_METER_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Server base URL.
    #[arg(long, env = "WATTLAS_SERVER")]
    server: Option<String>,
    /// The meter's token (or admin, with --meter and --site).
    #[arg(long, env = "WATTLAS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Meter name (required with the admin token).
    #[arg(long, env = "WATTLAS_METER")]
    meter: Option<String>,
    /// Site of the meter (with the admin token a new meter is created there).
    #[arg(long, env = "WATTLAS_SITE")]
    site: Option<String>,
    /// Source: simulated or modbus.
    #[arg(long, env = "WATTLAS_METER_SOURCE")]
    source: Option<String>,
    /// Seconds between readings (default 60).
    #[arg(long, env = "WATTLAS_METER_INTERVAL_S")]
    interval_s: Option<u64>,
    /// Spool directory (default .wattlas/meter-spool).
    #[arg(long, env = "WATTLAS_SPOOL_DIR")]
    spool_dir: Option<PathBuf>,
    /// Spool bound in bytes (default 64 MiB).
    #[arg(long, env = "WATTLAS_SPOOL_MAX_BYTES")]
    spool_max_bytes: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    run_seconds: Option<f64>,
    /// Simulated: the site's IANA zone (the day/night rhythm is local; default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// Simulated: mean IT load, kW (default 800).
    #[arg(long)]
    it_base_kw: Option<f64>,
    /// Simulated: noise seed (default 1).
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated: first send this many days of history (default 0).
    #[arg(long)]
    backfill_days: Option<u32>,
    /// Modbus: meter address, host:port.
    #[arg(long)]
    modbus_addr: Option<String>,
    /// Modbus: unit id (default 1).
    #[arg(long)]
    modbus_unit: Option<u8>,
    /// Modbus: holding or input registers (default holding).
    #[arg(long, value_enum)]
    modbus_registers: Option<wattlas_collector::meter::modbus::RegisterKind>,
    /// Modbus: address of total facility power.
    #[arg(long)]
    modbus_total_register: Option<u16>,
    /// Modbus: address of IT power.
    #[arg(long)]
    modbus_it_register: Option<u16>,
    /// Modbus: data type (u16, i16, u32, i32, f32; default f32).
    #[arg(long, value_enum)]
    modbus_data_type: Option<wattlas_collector::meter::modbus::DataType>,
    /// Modbus: multiplier from register value to kW (default 1).
    #[arg(long)]
    modbus_scale: Option<f64>,
    /// Modbus: word order of 32-bit values (big or little; default big).
    #[arg(long, value_enum)]
    modbus_word_order: Option<wattlas_collector::meter::modbus::WordOrder>,
}

impl MeterArgs {
    /// Flags over the TOML file: both as JSON objects, flags' keys replacing the file's.
    fn resolve(self) -> anyhow::Result<MeterArgs> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file: MeterArgs =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut merged = serde_json::to_value(file)?;
        if let (Some(m), serde_json::Value::Object(flags)) =
            (merged.as_object_mut(), serde_json::to_value(&self)?)
        {
            for (k, v) in flags {
                if !v.is_null() {
                    m.insert(k, v);
                }
            }
        }
        let mut out: MeterArgs = serde_json::from_value(merged)?;
        out.config = self.config;
        Ok(out)
    }
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Server base URL.
    #[arg(long, env = "WATTLAS_SERVER")]
    server: String,
    /// Bearer token (the node's, or admin).
    #[arg(long, env = "WATTLAS_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Register the job of the Slurm environment (prolog).
    Start {
        /// Node name (default: the host name).
        #[arg(long, env = "WATTLAS_NODE")]
        node: Option<String>,
        /// Tags, `key=value`, repeatable (e.g. `workload=bert-mlm`).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Register the end of the job of the Slurm environment (epilog).
    End {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wattlas-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let config = (*args).resolve()?;
            let source: Box<dyn Source> = match config.source {
                SourceKind::Nvml => {
                    let source = NvmlSource::init().context("the nvml source needs an NVIDIA driver (use --source simulated without one)")?;
                    tracing::info!(
                        gpus = source.identities().len(),
                        driver = source.driver_version().unwrap_or_default(),
                        "NVML ready"
                    );
                    Box::new(source)
                }
                SourceKind::Simulated => Box::new(SimulatedSource::new(config.sim.clone())),
            };
            let ledger = config.sim_ledger.clone();
            tracing::info!(node = %config.node, server = %config.server, source = ?config.source, "collector starting");
            let stats = run::run(config, source, ledger, shutdown_signal()).await?;
            let rejected = stats.rejected.load(std::sync::atomic::Ordering::Relaxed);
            if rejected > 0 {
                anyhow::bail!("the server refused {rejected} samples (see rejected/ in the spool)");
            }
            Ok(())
        }
        Command::Import(cmd) => import::cli::run(cmd).await,
        Command::Meter(args) => meter(args.resolve()?).await,
        Command::Cap(CapCommand::Set { watts, target }) => target.apply(Some(watts)),
        Command::Cap(CapCommand::Reset { target }) => target.apply(None),
        Command::Job(JobCommand::Start { node, tags, server }) => {
            let node = node
                .or_else(wattlas_collector::config::hostname)
                .context("--node is required (no host name)")?;
            let mut map = BTreeMap::new();
            for t in tags {
                let (k, v) = t
                    .split_once('=')
                    .with_context(|| format!("--tag '{t}': expected key=value"))?;
                map.insert(k.to_owned(), v.to_owned());
            }
            let job = slurm::job_from_env(&|k| std::env::var(k).ok(), &node, map)
                .map_err(anyhow::Error::msg)?;
            let uplink = Uplink::new(&server.server, &server.token)?;
            slurm::start(&uplink, &job)
                .await
                .map_err(|e| anyhow::anyhow!("registering job {}: {e}", job.id))
        }
        Command::Job(JobCommand::End { server }) => {
            let id = std::env::var("SLURM_JOB_ID").context("SLURM_JOB_ID is not set")?;
            let uplink = Uplink::new(&server.server, &server.token)?;
            slurm::end(&uplink, &id)
                .await
                .map_err(|e| anyhow::anyhow!("ending job {id}: {e}"))
        }
    }
}

async fn meter(a: MeterArgs) -> anyhow::Result<()> {
    use wattlas_collector::meter::{modbus, simulated, Meter};
    let server = a.server.context("--server is required")?;
    let token = a.token.context("--token is required")?;
    let interval_s = a.interval_s.unwrap_or(60).max(1);
    let source = a.source.as_deref().unwrap_or("simulated");
    let meter = match source {
        "simulated" => {
            let tz: chrono_tz::Tz = a
                .timezone
                .as_deref()
                .unwrap_or("UTC")
                .parse()
                .map_err(|_| anyhow::anyhow!("--timezone: not an IANA zone"))?;
            let site = simulated::SimulatedSite {
                tz,
                it_base_kw: a.it_base_kw.unwrap_or(800.0),
                seed: a.seed.unwrap_or(1),
            };
            if let Some(days) = a.backfill_days.filter(|d| *d > 0) {
                let now = chrono::Utc::now();
                let readings = wattlas_collector::meter_run::backfill(
                    &site,
                    now - chrono::Duration::days(i64::from(days)),
                    now,
                    interval_s,
                );
                let uplink = Uplink::new(&server, &token)?;
                let report =
                    import::meter::send(&uplink, a.site.as_deref(), a.meter.as_deref(), &readings)
                        .await
                        .map_err(|e| anyhow::anyhow!("backfill refused: {e}"))?;
                tracing::info!(
                    readings = readings.len(),
                    stored = report.stored,
                    "backfilled the simulated site"
                );
            }
            Meter::Simulated(site)
        }
        "modbus" => {
            let addr = a.modbus_addr.context("--modbus-addr is required")?;
            let addr = tokio::net::lookup_host(&addr)
                .await?
                .next()
                .with_context(|| format!("--modbus-addr: cannot resolve {addr}"))?;
            Meter::Modbus(modbus::ModbusMeter::new(modbus::ModbusConfig {
                addr,
                unit: a.modbus_unit.unwrap_or(1),
                kind: a.modbus_registers.unwrap_or(modbus::RegisterKind::Holding),
                total_register: a
                    .modbus_total_register
                    .context("--modbus-total-register is required")?,
                it_register: a
                    .modbus_it_register
                    .context("--modbus-it-register is required")?,
                data_type: a.modbus_data_type.unwrap_or(modbus::DataType::F32),
                scale: a.modbus_scale.unwrap_or(1.0),
                word_order: a.modbus_word_order.unwrap_or(modbus::WordOrder::Big),
            }))
        }
        other => anyhow::bail!("--source: '{other}' is not simulated or modbus"),
    };
    let config = wattlas_collector::meter_run::MeterRun {
        server,
        token,
        meter: a.meter,
        site: a.site,
        interval_s,
        spool_dir: a
            .spool_dir
            .unwrap_or_else(|| PathBuf::from(".wattlas/meter-spool")),
        spool_max_bytes: a.spool_max_bytes.unwrap_or(64 * 1024 * 1024),
        run_seconds: a.run_seconds,
    };
    wattlas_collector::meter_run::run(config, meter, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
