//! `wattlas-collector import ...`: the arguments of each importer and what it prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use clap::{Args, Subcommand};
use wattlas_protocol::{paths, Allocation, NewJob, NewNode};

use super::nvidia_smi::{self, send::Delivered, Options, Summary};
use crate::uplink::{Delivery, Uplink};

pub(crate) use super::{tags, ServerArgs};

/// `import nvidia-smi`.
#[derive(Debug, Args)]
pub struct NvidiaSmiArgs {
    /// The log: `--query-gpu=... --format=csv[,nounits][,noheader]` or `nvidia-smi dmon` output.
    pub file: PathBuf,
    /// Node the log was written on.
    #[arg(long)]
    pub node: String,
    /// IANA zone of the log's timestamps (nvidia-smi writes local time without a zone).
    #[arg(long)]
    pub timezone: String,
    /// GPUs per poll, for logs without index, uuid or pci.bus_id (default: found from the rows' times).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// GPU model, where the log has no `name` column.
    #[arg(long)]
    pub model: Option<String>,
    /// Columns of a `--format=csv,noheader` log, as given to `--query-gpu`.
    #[arg(long)]
    pub columns: Option<String>,
    /// Date of a `dmon -o T` log (it has times of day only).
    #[arg(long)]
    pub date: Option<NaiveDate>,
    /// Refuse the whole file at its first bad line, storing nothing (default: skip bad lines, report
    /// them by number, import the rest).
    #[arg(long)]
    pub strict: bool,
    /// The node's site (admin token): registers the node there if the server does not know it yet.
    #[arg(long)]
    pub site: Option<String>,
    /// Also register a job of this id over the log's window and GPUs (admin token; needs --user).
    #[arg(long, requires = "user")]
    pub job: Option<String>,
    /// The job's user.
    #[arg(long, requires = "job")]
    pub user: Option<String>,
    /// The job's tags, `key=value`, repeatable.
    #[arg(long = "tag", requires = "job")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The importers.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Building-management exports: power (kW or W), energy counters (kWh) or PUE, any zone.
    Meter(super::meter::MeterImportArgs),
    /// Logs of `nvidia-smi --query-gpu=... --format=csv` and `nvidia-smi dmon`.
    NvidiaSmi(Box<NvidiaSmiArgs>),
    /// Job history from `sacct --parsable2 --allocations`.
    Sacct(super::sacct::SacctArgs),
}

/// Runs an import and prints its report.
pub async fn run(cmd: ImportCommand) -> anyhow::Result<()> {
    match cmd {
        ImportCommand::NvidiaSmi(a) => nvidia_smi_import(*a).await,
        ImportCommand::Meter(a) => super::meter::run(a).await,
        ImportCommand::Sacct(a) => super::sacct::run(a).await,
    }
}

/// Registers `node` in `site` unless the server knows it already.
async fn ensure_node(uplink: &Uplink, node: &str, site: &str) -> anyhow::Result<()> {
    let body = NewNode {
        name: node.to_owned(),
        site: site.to_owned(),
    };
    match uplink.post_json(paths::NODES, &body).await.0 {
        Delivery::Done => {
            println!("node {node}: registered in site {site} (reset its token on /admin to run a collector there)");
            Ok(())
        }
        Delivery::Rejected(why) if why.starts_with("409") => Ok(()),
        Delivery::Rejected(why) | Delivery::Retry(why) => {
            anyhow::bail!("registering node {node}: {why}")
        }
    }
}

async fn nvidia_smi_import(a: NvidiaSmiArgs) -> anyhow::Result<()> {
    let tz: chrono_tz::Tz = a
        .timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("--timezone: '{}' is not an IANA time zone", a.timezone))?;
    let opts = Options {
        tz,
        gpus: a.gpus,
        model: a.model.clone(),
        columns: a.columns.clone(),
        date: a.date,
        strict: a.strict,
    };
    let job_tags = tags(&a.tags)?;
    let uplink = Uplink::new(&a.server.server, &a.server.token)?;
    if let Some(site) = &a.site {
        ensure_node(&uplink, &a.node, site).await?;
    }
    let (summary, delivered) = nvidia_smi::send::import(&uplink, &a.node, &a.file, &opts).await?;
    print_report(&summary, delivered);
    if let (Some(id), Some(user)) = (&a.job, &a.user) {
        register_job(&uplink, &a, id, user, job_tags, &summary).await?;
    }
    Ok(())
}

fn print_report(s: &Summary, d: Delivered) {
    println!("lines read: {}", s.lines);
    println!("samples read: {}", s.samples);
    println!("samples stored: {}", d.stored);
    println!("samples already stored: {}", d.duplicates);
    println!(
        "GPUs: {} (told apart by {})",
        s.gpus.len(),
        if s.identified_by.is_empty() {
            "nothing: no samples"
        } else {
            &s.identified_by
        }
    );
    if !s.power_column.is_empty() {
        println!("power column: {}", s.power_column);
    }
    for (i, g) in &s.gpus {
        println!(
            "  GPU {i}: {} samples, {} to {} ({}, {})",
            g.samples,
            g.first.to_rfc3339(),
            g.last.to_rfc3339(),
            g.identity.model,
            g.identity.uuid
        );
    }
    println!("lines skipped: {}", s.skipped.total());
    print!("{}", s.skipped);
}

async fn register_job(
    uplink: &Uplink,
    a: &NvidiaSmiArgs,
    id: &str,
    user: &str,
    tags: BTreeMap<String, String>,
    s: &Summary,
) -> anyhow::Result<()> {
    let (Some(start), Some(end)) = (
        s.gpus.values().map(|g| g.first).min(),
        s.gpus.values().map(|g| g.last).max(),
    ) else {
        anyhow::bail!("--job {id}: the log has no samples, so no window");
    };
    let job = NewJob {
        id: id.to_owned(),
        user: user.to_owned(),
        name: file_name(&a.file),
        site: a.site.clone(),
        start,
        end: Some(end),
        tags,
        allocations: vec![Allocation {
            node: a.node.clone(),
            gpus: s.gpus.keys().copied().collect(),
            mig: vec![],
            cpus: None,
        }],
        unknown_gpus: vec![],
        scheduler: Default::default(),
        nodes: vec![],
    };
    match uplink.post_json(paths::JOBS, &job).await.0 {
        Delivery::Done => {
            println!(
                "job {id}: registered, {} to {}, {} GPUs of {}",
                start.to_rfc3339(),
                end.to_rfc3339(),
                s.gpus.len(),
                a.node
            );
            Ok(())
        }
        Delivery::Rejected(why) | Delivery::Retry(why) => {
            anyhow::bail!("registering job {id}: {why}")
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}
