//! `wattlas-collector job start|end`: registration of Slurm jobs from prolog and epilog.
//!
//! Reads `SLURM_JOB_ID`, `SLURM_JOB_USER`, `SLURM_JOB_NAME`, and the GPUs from `SLURM_JOB_GPUS` or
//! `CUDA_VISIBLE_DEVICES`. Each node of a job registers its own GPUs; the server merges them.

use std::collections::BTreeMap;

use chrono::Utc;
use wattlas_protocol::{paths, Allocation, JobEnd, NewJob};

use crate::uplink::{Delivery, Uplink};

/// The CPUs the job holds on this node: `SLURM_CPUS_ON_NODE`, else `SLURM_JOB_CPUS_PER_NODE` where it
/// gives every node the same count (`16`, `16(x4)`).
pub fn cpus_on_node(env: &dyn Fn(&str) -> Option<String>) -> Option<u32> {
    if let Some(n) = env("SLURM_CPUS_ON_NODE").and_then(|v| v.trim().parse().ok()) {
        return Some(n);
    }
    let per_node = env("SLURM_JOB_CPUS_PER_NODE")?;
    let counts: Vec<&str> = per_node
        .split(',')
        .map(|c| c.split('(').next().unwrap_or(c).trim())
        .collect();
    match counts.as_slice() {
        [one] => one.parse().ok(),
        [first, rest @ ..] if rest.iter().all(|c| c == first) => first.parse().ok(),
        _ => None,
    }
}

/// Parses a GPU list as Slurm or CUDA write it: `0,1,3` or `0-3` or `0-1,4`.
pub fn parse_gpus(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (
                    a.parse().map_err(|_| format!("bad GPU range '{part}'"))?,
                    b.parse().map_err(|_| format!("bad GPU range '{part}'"))?,
                );
                if b < a || b - a > 1024 {
                    return Err(format!("bad GPU range '{part}'"));
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| {
                format!("'{part}' is not a GPU index (UUIDs are not supported here)")
            })?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The job the environment describes, for `node`.
pub fn job_from_env(
    env: &dyn Fn(&str) -> Option<String>,
    node: &str,
    tags: BTreeMap<String, String>,
) -> Result<NewJob, String> {
    let id = env("SLURM_JOB_ID").ok_or("SLURM_JOB_ID is not set")?;
    let user = env("SLURM_JOB_USER")
        .or_else(|| env("USER"))
        .ok_or("SLURM_JOB_USER is not set")?;
    let gpus = match env("SLURM_JOB_GPUS").or_else(|| env("CUDA_VISIBLE_DEVICES")) {
        Some(list) => parse_gpus(&list)?,
        None => Vec::new(),
    };
    Ok(NewJob {
        id,
        user,
        name: env("SLURM_JOB_NAME").unwrap_or_default(),
        site: None,
        start: Utc::now(),
        end: None,
        tags,
        allocations: if gpus.is_empty() {
            vec![]
        } else {
            vec![Allocation {
                node: node.to_owned(),
                gpus,
                mig: vec![],
                cpus: cpus_on_node(env),
            }]
        },
        unknown_gpus: vec![],
    })
}

/// Registers the job's start.
pub async fn start(uplink: &Uplink, job: &NewJob) -> Result<(), String> {
    match uplink.post_json(paths::JOBS, job).await.0 {
        Delivery::Done => Ok(()),
        Delivery::Rejected(why) | Delivery::Retry(why) => Err(why),
    }
}

/// Registers the job's end (now).
pub async fn end(uplink: &Uplink, id: &str) -> Result<(), String> {
    match uplink
        .post_json(&paths::job_end(id), &JobEnd { end: Utc::now() })
        .await
        .0
    {
        Delivery::Done => Ok(()),
        Delivery::Rejected(why) | Delivery::Retry(why) => Err(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_lists() {
        assert_eq!(parse_gpus("0,1,3").expect("ok"), vec![0, 1, 3]);
        assert_eq!(parse_gpus("0-2,5").expect("ok"), vec![0, 1, 2, 5]);
        assert!(parse_gpus("GPU-abc").is_err());
    }

    #[test]
    fn the_job_comes_from_the_environment() {
        let env = |k: &str| match k {
            "SLURM_JOB_ID" => Some("4242".to_owned()),
            "SLURM_JOB_USER" => Some("bob".to_owned()),
            "CUDA_VISIBLE_DEVICES" => Some("2,3".to_owned()),
            "SLURM_JOB_CPUS_PER_NODE" => Some("16(x2)".to_owned()),
            _ => None,
        };
        let job = job_from_env(&env, "n7", BTreeMap::new()).expect("job");
        assert_eq!(job.id, "4242");
        assert_eq!(
            job.allocations,
            vec![Allocation {
                node: "n7".into(),
                gpus: vec![2, 3],
                mig: vec![],
                cpus: Some(16),
            }]
        );
        // SLURM_CPUS_ON_NODE is this node's own count; uneven counts per node say nothing of this one.
        let on_node = |k: &str| match k {
            "SLURM_CPUS_ON_NODE" => Some("12".to_owned()),
            _ => None,
        };
        assert_eq!(cpus_on_node(&on_node), Some(12));
        let uneven = |k: &str| match k {
            "SLURM_JOB_CPUS_PER_NODE" => Some("16,8".to_owned()),
            _ => None,
        };
        assert_eq!(cpus_on_node(&uneven), None);
        let none = |_: &str| None;
        assert!(job_from_env(&none, "n7", BTreeMap::new()).is_err());
    }
}

/// `wattlas-collector job ...`: its arguments and what each does.
pub mod cli {
    use std::collections::BTreeMap;

    use anyhow::Context;
    use clap::{Args, Subcommand};

    use crate::uplink::Uplink;

    /// The server and the token to use.
    #[derive(Debug, Args)]
    pub struct ServerArgs {
        /// Server base URL.
        #[arg(long, env = "WATTLAS_SERVER")]
        pub server: String,
        /// Bearer token (the node's, or admin).
        #[arg(long, env = "WATTLAS_TOKEN", hide_env_values = true)]
        pub token: String,
    }

    /// `job start|end`.
    #[derive(Debug, Subcommand)]
    pub enum JobCommand {
        /// Register the job of the Slurm environment (prolog).
        Start {
            /// Node name (default: the host name).
            #[arg(long, env = "WATTLAS_NODE")]
            node: Option<String>,
            /// Tags, `key=value`, repeatable (e.g. `workload=bert-mlm`).
            #[arg(long = "tag")]
            tags: Vec<String>,
            /// Where to register it.
            #[command(flatten)]
            server: ServerArgs,
        },
        /// Register the end of the job of the Slurm environment (epilog).
        End {
            /// Where to register it.
            #[command(flatten)]
            server: ServerArgs,
        },
    }

    /// Runs `job start|end` with the Slurm environment.
    pub async fn run(command: JobCommand) -> anyhow::Result<()> {
        match command {
            JobCommand::Start { node, tags, server } => {
                let node = node
                    .or_else(crate::config::hostname)
                    .context("--node is required (no host name)")?;
                let mut map = BTreeMap::new();
                for t in tags {
                    let (k, v) = t
                        .split_once('=')
                        .with_context(|| format!("--tag '{t}': expected key=value"))?;
                    map.insert(k.to_owned(), v.to_owned());
                }
                let job = super::job_from_env(&|k| std::env::var(k).ok(), &node, map)
                    .map_err(anyhow::Error::msg)?;
                let uplink = Uplink::new(&server.server, &server.token)?;
                super::start(&uplink, &job)
                    .await
                    .map_err(|e| anyhow::anyhow!("registering job {}: {e}", job.id))
            }
            JobCommand::End { server } => {
                let id = std::env::var("SLURM_JOB_ID").context("SLURM_JOB_ID is not set")?;
                let uplink = Uplink::new(&server.server, &server.token)?;
                super::end(&uplink, &id)
                    .await
                    .map_err(|e| anyhow::anyhow!("ending job {id}: {e}"))
            }
        }
    }
}
