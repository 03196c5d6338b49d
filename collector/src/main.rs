//! `wattlas-collector`: the dispatcher. Each command's arguments and work live in its module: `run`
//! (`config`, `run`), `import` (`import::cli`), `job` (`slurm::cli`), `meter` (`meter::cli`), `cap`
//! (`cap::cli`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wattlas_collector::config::{RunArgs, SourceKind};
use wattlas_collector::run::shutdown_signal;
use wattlas_collector::source::dcgm::DcgmExporterSource;
use wattlas_collector::source::nvml::NvmlSource;
use wattlas_collector::source::simulated::SimulatedSource;
use wattlas_collector::source::Source;
use wattlas_collector::{cap, import, meter, run, slurm, slurm_sync};

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
    /// Register Slurm jobs from prolog and epilog; show a job's energy.
    #[command(subcommand)]
    Job(slurm::cli::JobCommand),
    /// Slurm on the controller: end the jobs no epilog ended (`slurm sync`).
    #[command(subcommand)]
    Slurm(slurm_sync::SlurmCommand),
    /// Read a facility meter (total and IT power) and push the readings to the server until stopped.
    Meter(Box<meter::cli::MeterArgs>),
    /// Apply or remove a GPU power cap (Slurm prolog/epilog; real GPUs need root).
    #[command(subcommand)]
    Cap(cap::cli::CapCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match Cli::parse().command {
        Command::Run(args) => run_collector(*args).await,
        Command::Import(cmd) => import::cli::run(cmd).await,
        Command::Meter(args) => meter::cli::run(*args, shutdown_signal()).await,
        Command::Cap(cmd) => cap::cli::run(cmd),
        Command::Job(cmd) => slurm::cli::run(cmd).await,
        Command::Slurm(cmd) => slurm_sync::run(cmd).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wattlas-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `run`: the source the configuration names, sampled and pushed until stopped.
async fn run_collector(args: RunArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let source: Box<dyn Source> = match config.source {
        SourceKind::Nvml => {
            let source = NvmlSource::init().context(
                "the nvml source needs an NVIDIA driver (use --source simulated without one)",
            )?;
            tracing::info!(
                gpus = source.identities().len(),
                driver = source.driver_version().unwrap_or_default(),
                "NVML ready"
            );
            Box::new(source)
        }
        SourceKind::Simulated => Box::new(SimulatedSource::new(config.sim.clone())),
        SourceKind::DcgmExporter => {
            let source = DcgmExporterSource::connect(&config.url)
                .with_context(|| format!("the dcgm-exporter source reads {}", config.url))?;
            tracing::info!(gpus = source.identities().len(), url = %config.url, "dcgm-exporter ready");
            Box::new(source)
        }
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
