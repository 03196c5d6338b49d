//! `wattlas-collector job start|end`: registration of Slurm jobs from prolog and epilog.
//!
//! Reads `SLURM_JOB_ID`, `SLURM_JOB_USER`, the GPUs from `SLURM_JOB_GPUS` or `CUDA_VISIBLE_DEVICES`,
//! the CPUs, partition and comment. Slurm 22.05 gives a prolog neither the job's name nor, for an
//! array task or a heterogeneous job's component, its id as sacct writes it (`4_2`, `9+1`): the prolog
//! environment of task 4_2 names only raw job 5. `job start` then asks `scontrol show job -o 5` once
//! (bounded by a timeout; without an answer it registers the raw id, and the sacct import or the sync
//! later finds the job by that raw id). Each node of a job registers its own GPUs; the server merges
//! them. The epilog ends the job by its raw id, which the server resolves.

use std::collections::BTreeMap;

use chrono::Utc;
use wattlas_protocol::{paths, Allocation, JobEnd, NewJob, SchedulerFields};

use crate::uplink::{Delivery, Uplink};

/// The CPUs the job holds on this node: `SLURM_CPUS_ON_NODE`, else `SLURM_JOB_CPUS_PER_NODE` where it
/// gives every node the same count (`16`, `16(x4)`).
pub(crate) fn cpus_on_node(env: &dyn Fn(&str) -> Option<String>) -> Option<u32> {
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
pub(crate) fn parse_gpus(s: &str) -> Result<Vec<u32>, String> {
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

/// What `scontrol show job -o ID` says of a job that a 22.05 prolog's environment does not: its array
/// or heterogeneous identity, its name and account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ScontrolJob {
    /// `ArrayJobId` and `ArrayTaskId` of an array task.
    pub array: Option<(String, String)>,
    /// `HetJobId` and `HetJobOffset` of a heterogeneous job's component.
    pub het: Option<(String, String)>,
    /// `JobName`.
    pub name: Option<String>,
    /// `Account`.
    pub account: Option<String>,
    /// `Partition`.
    pub partition: Option<String>,
}

/// Reads one line of `scontrol show job -o ID`. Values may hold spaces (`JobName=my job`): the name
/// is what stands between `JobName=` and the ` UserId=name(uid)` that always follows it (a
/// heterogeneous job's ` HetJobIdSet=` comes first); the fields before it and `Account=`,
/// `Partition=` hold no spaces.
pub(crate) fn parse_scontrol(line: &str) -> Result<ScontrolJob, String> {
    let line = line.trim();
    let name_at = line
        .find(" JobName=")
        .ok_or("no JobName= in scontrol's answer")?;
    let head: BTreeMap<&str, &str> = line[..name_at]
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let after_name = &line[name_at + " JobName=".len()..];
    // A heterogeneous job's line puts HetJobIdSet= between the name and UserId=.
    if head.contains_key("HetJobId") {
        if let Some(at) = after_name.find(" HetJobIdSet=") {
            let name = &after_name[..at];
            let rest = &after_name[at..];
            return Ok(read_scontrol(&head, name, rest));
        }
    }
    let user_at = after_name
        .match_indices(" UserId=")
        .map(|(i, _)| i)
        .find(|i| {
            let token = after_name[i + " UserId=".len()..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            token.ends_with(')') && token.contains('(')
        })
        .ok_or("no UserId=user(uid) after JobName= in scontrol's answer")?;
    Ok(read_scontrol(
        &head,
        &after_name[..user_at],
        &after_name[user_at..],
    ))
}

/// A Slurm field's value where it has one: empty and `(null)` (scontrol's unset account) are none.
pub(crate) fn slurm_value(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty() && v != "(null)").then(|| v.to_owned())
}

/// The fields of scontrol's line: the words before the name, the name, the words after it.
fn read_scontrol(head: &BTreeMap<&str, &str>, name: &str, rest: &str) -> ScontrolJob {
    let field = |key: &str| {
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| slurm_value(v))
    };
    let pair = |a: &str, b: &str| match (head.get(a), head.get(b)) {
        (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() && *y != "N/A" => {
            Some(((*x).to_owned(), (*y).to_owned()))
        }
        _ => None,
    };
    ScontrolJob {
        array: pair("ArrayJobId", "ArrayTaskId"),
        het: pair("HetJobId", "HetJobOffset"),
        name: Some(name.to_owned()).filter(|n| !n.is_empty()),
        account: field("Account"),
        partition: field("Partition"),
    }
}

/// Runs a Slurm command (scontrol, sacct) and waits `timeout` at most, killing it after: its output,
/// or why there is none.
pub(crate) async fn output_within(
    command: &mut tokio::process::Command,
    timeout: std::time::Duration,
) -> Result<std::process::Output, String> {
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program} not run: {e}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(format!("{program} did not answer within {timeout:?}")),
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Ok(Ok(out)) => Ok(out),
    }
}

/// Asks `scontrol show job -o ID` (bounded by `timeout`); `None` with a warning when it cannot say.
pub(crate) async fn ask_scontrol(
    scontrol: &str,
    raw_id: &str,
    timeout: std::time::Duration,
) -> Option<ScontrolJob> {
    let out = match output_within(
        tokio::process::Command::new(scontrol).args(["show", "job", "-o", raw_id]),
        timeout,
    )
    .await
    {
        Ok(out) => out,
        Err(e) => {
            tracing::warn!(error = %e, "scontrol did not say: the job is registered by its raw id");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // A heterogeneous job's leader lists every component: the line of this raw id.
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("JobId={raw_id} ")))
        .or_else(|| text.lines().next())?;
    match parse_scontrol(line) {
        Ok(job) => Some(job),
        Err(e) => {
            tracing::warn!(error = %e, "scontrol's answer not read: the job is registered by its raw id");
            None
        }
    }
}

/// The job's id as sacct writes it: `ARRAY_TASK` for an array task, `HETJOB+OFFSET` for a component of a
/// heterogeneous job, else the raw id; from the environment where Slurm gives it there, else from
/// scontrol's answer.
pub(crate) fn slurm_id(
    env: &dyn Fn(&str) -> Option<String>,
    raw_id: &str,
    asked: Option<&ScontrolJob>,
) -> String {
    if let (Some(a), Some(t)) = (env("SLURM_ARRAY_JOB_ID"), env("SLURM_ARRAY_TASK_ID")) {
        return format!("{a}_{t}");
    }
    if let (Some(h), Some(o)) = (env("SLURM_HET_JOB_ID"), env("SLURM_HET_JOB_OFFSET")) {
        return format!("{h}+{o}");
    }
    match asked {
        Some(ScontrolJob {
            array: Some((a, t)),
            ..
        }) => format!("{a}_{t}"),
        Some(ScontrolJob {
            het: Some((h, o)), ..
        }) => format!("{h}+{o}"),
        _ => raw_id.to_owned(),
    }
}

/// Whether the environment leaves the job's identity or name open (Slurm 22.05's prolog gives neither
/// the array task nor the name), so that scontrol should be asked.
pub(crate) fn env_is_incomplete(env: &dyn Fn(&str) -> Option<String>) -> bool {
    env("SLURM_JOB_NAME").is_none()
        || (env("SLURM_HET_JOB_ID").is_some() && env("SLURM_HET_JOB_OFFSET").is_none())
}

/// The job the environment (and scontrol's answer, where asked) describes, for `node`.
pub(crate) fn job_from_env(
    env: &dyn Fn(&str) -> Option<String>,
    node: &str,
    tags: BTreeMap<String, String>,
    asked: Option<&ScontrolJob>,
) -> Result<NewJob, String> {
    let raw_id = env("SLURM_JOB_ID").ok_or("SLURM_JOB_ID is not set")?;
    let user = env("SLURM_JOB_USER")
        .or_else(|| env("USER"))
        .ok_or("SLURM_JOB_USER is not set")?;
    let gpus = match env("SLURM_JOB_GPUS").or_else(|| env("CUDA_VISIBLE_DEVICES")) {
        Some(list) => parse_gpus(&list)?,
        None => Vec::new(),
    };
    let known = |v: Option<String>| v.as_deref().and_then(slurm_value);
    let id = slurm_id(env, &raw_id, asked);
    Ok(NewJob {
        id,
        user,
        name: known(env("SLURM_JOB_NAME"))
            .or_else(|| asked.and_then(|a| a.name.clone()))
            .unwrap_or_default(),
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
        scheduler: SchedulerFields {
            raw_id: Some(raw_id),
            account: known(env("SLURM_JOB_ACCOUNT"))
                .or_else(|| asked.and_then(|a| a.account.clone())),
            partition: known(env("SLURM_JOB_PARTITION"))
                .or_else(|| asked.and_then(|a| a.partition.clone())),
            state: None,
        },
        nodes: vec![],
    })
}

/// Registers the job's start.
pub(crate) async fn start(uplink: &Uplink, job: &NewJob) -> Result<(), String> {
    match uplink.post_json(paths::JOBS, job).await.0 {
        Delivery::Done => Ok(()),
        Delivery::Rejected(why) | Delivery::Retry(why) => Err(why),
    }
}

/// Registers the job's end (now).
pub(crate) async fn end(uplink: &Uplink, id: &str) -> Result<(), String> {
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
        let job = job_from_env(&env, "n7", BTreeMap::new(), None).expect("job");
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
        assert!(job_from_env(&none, "n7", BTreeMap::new(), None).is_err());
    }

    /// Lines as Debian's Slurm 22.05 `scontrol show job -o` printed them (abridged after Partition).
    const ARRAY_TASK: &str = "JobId=5 ArrayJobId=4 ArrayTaskId=1 JobName=sweep one UserId=nobody(65534) GroupId=nogroup(65534) MCS_label=N/A Priority=4294901757 Nice=0 Account=(null) QOS=normal JobState=RUNNING Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 Partition=gpu AllocNode:Sid=localhost:1208 Comment=workload=x UserId=fake(1)";
    const HET: &str = "JobId=10 HetJobId=9 HetJobOffset=1 JobName=het job HetJobIdSet=9-10 UserId=nobody(65534) GroupId=nogroup(65534) MCS_label=N/A Priority=1 Nice=0 Account=physics QOS=normal JobState=RUNNING Partition=gpu";
    const PLAIN: &str = "JobId=6 JobName=a UserId=b UserId=nobody(65534) GroupId=nogroup(65534) Account=(null) QOS=normal Partition=gpu";

    #[test]
    fn scontrol_names_array_tasks_and_het_components_as_sacct_does() {
        let array = parse_scontrol(ARRAY_TASK).expect("parses");
        assert_eq!(array.array, Some(("4".into(), "1".into())));
        assert_eq!(array.name.as_deref(), Some("sweep one"));
        assert_eq!(array.account, None, "(null) is no account");
        assert_eq!(array.partition.as_deref(), Some("gpu"));
        let het = parse_scontrol(HET).expect("parses");
        assert_eq!(het.het, Some(("9".into(), "1".into())));
        assert_eq!(het.account.as_deref(), Some("physics"));
        assert_eq!(het.name.as_deref(), Some("het job"));
        // A name holding " UserId=" is cut at the UserId=user(uid) that follows it.
        let plain = parse_scontrol(PLAIN).expect("parses");
        assert_eq!(plain.name.as_deref(), Some("a UserId=b"));
        assert!(parse_scontrol("slurm_load_jobs error: Invalid job id specified").is_err());

        // 22.05's prolog environment of task 4_1: raw job 5, no name, no array ids.
        let env = |k: &str| match k {
            "SLURM_JOB_ID" => Some("5".to_owned()),
            "SLURM_JOB_USER" => Some("nobody".to_owned()),
            "SLURM_JOB_GPUS" => Some("1".to_owned()),
            "SLURM_JOB_PARTITION" => Some("gpu".to_owned()),
            _ => None,
        };
        assert!(env_is_incomplete(&env));
        let job = job_from_env(&env, "gpu01", BTreeMap::new(), Some(&array)).expect("job");
        assert_eq!(job.id, "4_1");
        assert_eq!(job.name, "sweep one");
        assert_eq!(job.scheduler.raw_id.as_deref(), Some("5"));
        // Unanswered: the raw id, which the server resolves when sacct names it.
        let job = job_from_env(&env, "gpu01", BTreeMap::new(), None).expect("job");
        assert_eq!((job.id.as_str(), job.name.as_str()), ("5", ""));
        // Where the environment has them (later Slurm, srun's TaskProlog), no question is needed.
        let full = |k: &str| match k {
            "SLURM_ARRAY_JOB_ID" => Some("4".to_owned()),
            "SLURM_ARRAY_TASK_ID" => Some("1".to_owned()),
            "SLURM_JOB_NAME" => Some("sweep".to_owned()),
            other => env(other),
        };
        assert!(!env_is_incomplete(&full));
        assert_eq!(slurm_id(&full, "5", None), "4_1");
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
            /// scontrol, asked once for the job's array or heterogeneous id and its name where the
            /// prolog's environment lacks them (Slurm 22.05's does).
            #[arg(long, env = "WATTLAS_SCONTROL", default_value = "scontrol")]
            scontrol: String,
            /// Never ask scontrol: register the raw id (the sacct import and the sync find the job
            /// by it later).
            #[arg(long)]
            no_scontrol: bool,
            /// Seconds to wait for scontrol's answer.
            #[arg(long, default_value_t = 5.0)]
            scontrol_timeout_s: f64,
            /// Where to register it.
            #[command(flatten)]
            server: ServerArgs,
        },
        /// Register the end of the job of the Slurm environment (epilog): by its raw id
        /// (`SLURM_JOB_ID`), which the server resolves to the job its prolog registered.
        End {
            /// Where to register it.
            #[command(flatten)]
            server: ServerArgs,
        },
        /// Print a job's energy, as a user sees it at the end of their job (their API token).
        Show {
            /// The job's id as sacct writes it (`1234`, `1234_5`, `1234+1`); default: `SLURM_JOB_ID`.
            id: Option<String>,
            /// JSON (the API's view) instead of text.
            #[arg(long)]
            json: bool,
            /// Where to ask.
            #[command(flatten)]
            server: ServerArgs,
        },
    }

    /// Runs `job start|end` with the Slurm environment.
    pub async fn run(command: JobCommand) -> anyhow::Result<()> {
        match command {
            JobCommand::Start {
                node,
                tags,
                scontrol,
                no_scontrol,
                scontrol_timeout_s,
                server,
            } => {
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
                let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                let asked = match env("SLURM_JOB_ID") {
                    Some(raw) if !no_scontrol && super::env_is_incomplete(&env) => {
                        let timeout =
                            std::time::Duration::from_secs_f64(scontrol_timeout_s.clamp(0.1, 60.0));
                        super::ask_scontrol(&scontrol, &raw, timeout).await
                    }
                    _ => None,
                };
                let job = super::job_from_env(&env, &node, map, asked.as_ref())
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
            JobCommand::Show { id, json, server } => {
                let id = id
                    .or_else(|| std::env::var("SLURM_JOB_ID").ok())
                    .context("name the job (or run inside it: SLURM_JOB_ID)")?;
                let uplink = Uplink::new(&server.server, &server.token)?;
                let view: wattlas_protocol::JobView = uplink
                    .get_json(&wattlas_protocol::paths::job(&id))
                    .await
                    .map_err(|e| anyhow::anyhow!("job {id}: {e}"))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&view)?);
                } else {
                    print!("{}", super::summary(&view, &server.server));
                }
                Ok(())
            }
        }
    }
}

/// A job's energy as `job show` prints it (in the manner of `seff`): what ran where, each term of its
/// energy, facility energy at its PUE, CO2e and cost, idle GPUs, what is partial, and its page.
pub(crate) fn summary(v: &wattlas_protocol::JobView, server: &str) -> String {
    use std::fmt::Write;
    use wattlas_protocol::units::{co2e, energy};
    let mut o = String::new();
    let state = match (&v.scheduler.state, v.running) {
        (_, true) => "RUNNING (figures so far)".to_owned(),
        (Some(s), false) => s.clone(),
        (None, false) => "ended".to_owned(),
    };
    let _ = writeln!(
        o,
        "Job {} ({}) of {} at {}: {state}",
        v.id, v.name, v.user, v.site
    );
    let _ = writeln!(
        o,
        "Ran {} to {} UTC ({:.0} s){}",
        v.start.format("%Y-%m-%d %H:%M:%S"),
        v.end.map_or_else(
            || "now".to_owned(),
            |e| e.format("%Y-%m-%d %H:%M:%S").to_string()
        ),
        v.duration_s,
        match (&v.scheduler.account, &v.scheduler.partition) {
            (Some(a), Some(p)) => format!(", account {a}, partition {p}"),
            (None, Some(p)) => format!(", partition {p}"),
            (Some(a), None) => format!(", account {a}"),
            (None, None) => String::new(),
        }
    );
    let where_ = v
        .allocations
        .iter()
        .map(|a| {
            let gpus: Vec<String> = a.gpus.iter().map(u32::to_string).collect();
            format!("{} [{}]", a.node, gpus.join(","))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        o,
        "GPUs: {} on {}; mean power {:.0} W{}; samples cover {:.1} % of GPU-time",
        v.gpu_count,
        if where_.is_empty() {
            "-".to_owned()
        } else {
            where_
        },
        v.avg_power_w,
        v.power_cap_w
            .map_or(String::new(), |c| format!(", cap {c:.0} W")),
        v.coverage * 100.0
    );
    let part = |x: Option<f64>| x.map_or_else(|| "not measured".to_owned(), energy);
    let _ = writeln!(
        o,
        "Energy: GPU {}, CPU {}, DRAM {}: IT {}",
        energy(v.gpu_energy_kwh),
        part(v.cpu_energy_kwh),
        part(v.dram_energy_kwh),
        energy(v.it_energy_kwh)
    );
    let pue = match v.pue {
        Some(p) if v.pue_fallback_share > 0.0 => format!(
            "PUE {p:.2} ({:.0} % of it the site's assumed PUE)",
            v.pue_fallback_share * 100.0
        ),
        Some(p) => format!("PUE {p:.2}, measured"),
        None => "no PUE".to_owned(),
    };
    let _ = writeln!(o, "Facility: {} at {pue}", energy(v.facility_energy_kwh));
    let co2 = v.co2e_kg.map_or_else(|| "not configured".to_owned(), co2e);
    let cost = match (v.cost, &v.currency) {
        (Some(c), Some(cur)) => format!("{c:.4} {cur}"),
        _ => "not configured".to_owned(),
    };
    let _ = writeln!(o, "CO2e: {co2}; cost: {cost}");
    if let Some(idle) = v.idle_gpu_energy_kwh {
        let _ = writeln!(
            o,
            "Idle GPUs: {} GPU-minutes under 5 % utilisation, {}",
            v.idle_gpu_minutes,
            energy(idle)
        );
    }
    for u in &v.unknown_gpus {
        let _ = writeln!(
            o,
            "Not charged: {} GPUs on {} (which ones, the scheduler's record cannot say)",
            u.gpus, u.node
        );
    }
    let _ = writeln!(
        o,
        "Page: {}/jobs/{}",
        server.trim_end_matches('/'),
        wattlas_protocol::paths::encode_segment(&v.id)
    );
    o
}
