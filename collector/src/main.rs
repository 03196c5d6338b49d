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
    Import(ImportCommand),
    /// Register Slurm jobs from prolog and epilog.
    #[command(subcommand)]
    Job(JobCommand),
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
enum ImportCommand {
    /// Logs of `nvidia-smi --query-gpu=... --format=csv[,nounits]`.
    NvidiaSmi {
        /// The CSV file.
        file: PathBuf,
        /// Node the log was written on.
        #[arg(long)]
        node: String,
        /// IANA zone of the log's timestamps (nvidia-smi writes local time without a zone).
        #[arg(long)]
        timezone: String,
        #[command(flatten)]
        server: ServerArgs,
    },
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
        Command::Import(ImportCommand::NvidiaSmi {
            file,
            node,
            timezone,
            server,
        }) => {
            let tz: chrono_tz::Tz = timezone.parse().map_err(|_| {
                anyhow::anyhow!("--timezone: '{timezone}' is not an IANA time zone")
            })?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let parsed = import::nvidia_smi::parse(std::io::BufReader::new(f), tz)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let uplink = Uplink::new(&server.server, &server.token)?;
            let report = import::nvidia_smi::send(&uplink, &node, parsed)
                .await
                .map_err(|e| anyhow::anyhow!("server refused the import: {e}"))?;
            println!("lines read: {}", report.lines);
            println!("samples stored: {}", report.stored);
            println!("samples already stored: {}", report.duplicates);
            let skipped: u64 = report.skipped.values().sum();
            println!("lines skipped: {skipped}");
            for (why, n) in &report.skipped {
                println!("  {n}: {why}");
            }
            Ok(())
        }
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
