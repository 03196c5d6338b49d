//! `wattlas-collector slurm sync`: jobs that never got an epilog end anyway.
//!
//! A node that dies (power loss, a crashed or killed slurmd) runs no epilog, so the jobs on it would stay
//! "running" in Wattlas for ever. Run on the controller (or any host with sacct) from cron or a systemd
//! timer, or with `--interval-s` as a service, with the admin token: it lists the site's jobs that
//! Wattlas thinks are running, asks sacct what became of them (by raw id, every run of a requeued job),
//! and registers what sacct says of each one Slurm has ended: its end as Slurm recorded it, its state
//! (`NODE_FAIL`, `TIMEOUT`, ...), and the name, account and partition where Wattlas had none. The
//! server closes the job's open parts at that end. A job sacct does not know is reported, never ended.

use std::collections::HashMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use wattlas_protocol::{paths, JobList};

use crate::import::sacct::{self, SacctJob, FORMAT};
use crate::uplink::Uplink;

/// `slurm ...`.
#[derive(Debug, Subcommand)]
pub enum SlurmCommand {
    /// End the jobs Slurm has ended that Wattlas still thinks are running (no epilog ran).
    Sync(SyncArgs),
}

/// `slurm sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The cluster's site.
    #[arg(long)]
    pub site: String,
    /// sacct to ask.
    #[arg(long, env = "WATTLAS_SACCT", default_value = "sacct")]
    pub sacct: String,
    /// Repeat every this many seconds until stopped (default: once, for cron or a timer).
    #[arg(long)]
    pub interval_s: Option<f64>,
    /// Server and admin token.
    #[command(flatten)]
    pub server: crate::slurm::cli::ServerArgs,
}

/// What one pass found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// Jobs Wattlas thought running.
    pub running: usize,
    /// Of those, ended now at Slurm's end.
    pub ended: Vec<String>,
    /// Still running (or requeued and pending again) in Slurm.
    pub still_running: usize,
    /// Unknown to sacct: left as they are.
    pub unknown: Vec<String>,
    /// Records the server refused (another user, other nodes), by line of sacct's answer.
    pub refused: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "running in Wattlas: {}", self.running)?;
        writeln!(
            f,
            "ended now as Slurm ended them: {} {}",
            self.ended.len(),
            self.ended.join(" ")
        )?;
        writeln!(f, "still running in Slurm: {}", self.still_running)?;
        writeln!(
            f,
            "unknown to sacct (left running): {} {}",
            self.unknown.len(),
            self.unknown.join(" ")
        )?;
        for r in &self.refused {
            writeln!(f, "refused: {r}")?;
        }
        Ok(())
    }
}

/// The site's jobs Wattlas thinks are running: (id, raw id), every page.
async fn running_jobs(uplink: &Uplink, site: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut after: Option<(String, Option<String>)> = None;
    loop {
        let mut path = format!(
            "{}?state=running&site={}&sort=id&order=asc&limit=500",
            paths::JOBS,
            paths::encode_segment(site)
        );
        if let Some((id, key)) = &after {
            path.push_str(&format!("&after={}", paths::encode_segment(id)));
            if let Some(k) = key {
                path.push_str(&format!("&after_key={}", paths::encode_segment(k)));
            }
        }
        let page: JobList = uplink
            .get_json(&path)
            .await
            .map_err(|e| anyhow::anyhow!("listing the running jobs: {e}"))?;
        out.extend(page.jobs.into_iter().map(|j| {
            let raw = j.scheduler.raw_id.clone().unwrap_or_else(|| j.id.clone());
            (j.id, raw)
        }));
        match page.next {
            Some(n) => after = Some((n.after, n.after_key)),
            None => return Ok(out),
        }
    }
}

/// sacct's records of these raw ids (every run), their times in seconds since the epoch.
async fn ask_sacct(sacct_bin: &str, raw_ids: &[String]) -> anyhow::Result<Vec<SacctJob>> {
    let mut out = Vec::new();
    for chunk in raw_ids.chunks(200) {
        let answer = crate::slurm::output_within(
            tokio::process::Command::new(sacct_bin)
                .args(["--allusers", "--allocations", "--duplicates", "--parsable2"])
                .args(["--noheader", "--format", FORMAT, "--jobs", &chunk.join(",")])
                .env("SLURM_TIME_FORMAT", "%s"),
            Duration::from_secs(120),
        )
        .await
        .map_err(anyhow::Error::msg)?;
        if !answer.status.success() {
            anyhow::bail!(
                "{sacct_bin} failed: {}",
                String::from_utf8_lossy(&answer.stderr).trim()
            );
        }
        // Seconds since the epoch: the zone is not needed.
        let parsed = sacct::parse(&answer.stdout[..], chrono_tz::UTC, false, Some(FORMAT))
            .map_err(|e| anyhow::anyhow!("sacct's answer: {e}"))?;
        out.extend(parsed.jobs);
    }
    Ok(out)
}

/// Of each raw id's runs (sacct lists a requeued job once per run), the latest.
pub(crate) fn latest_runs(records: Vec<SacctJob>) -> HashMap<String, SacctJob> {
    let mut latest: HashMap<String, SacctJob> = HashMap::new();
    for r in records {
        let key = r.scheduler.raw_id.clone().unwrap_or_else(|| r.id.clone());
        match latest.get(&key) {
            Some(have) if have.start > r.start => {}
            _ => {
                latest.insert(key, r);
            }
        }
    }
    latest
}

/// One pass.
pub(crate) async fn once(uplink: &Uplink, a: &SyncArgs) -> anyhow::Result<Report> {
    let running = running_jobs(uplink, &a.site).await?;
    let mut report = Report {
        running: running.len(),
        ..Report::default()
    };
    if running.is_empty() {
        return Ok(report);
    }
    let raw_ids: Vec<String> = running.iter().map(|(_, raw)| raw.clone()).collect();
    let latest = latest_runs(ask_sacct(&a.sacct, &raw_ids).await?);
    let mut to_end = Vec::new();
    for (id, raw) in &running {
        match latest.get(raw) {
            None => report.unknown.push(id.clone()),
            Some(r) if r.end.is_none() => report.still_running += 1,
            Some(r) => to_end.push(r.clone()),
        }
    }
    let done = sacct::register(uplink, &to_end, &a.site, &Default::default(), false).await?;
    report.refused = done.refused;
    report.ended = done.registered;
    Ok(report)
}

/// Runs `slurm sync`.
pub async fn run(command: SlurmCommand) -> anyhow::Result<()> {
    let SlurmCommand::Sync(a) = command;
    let uplink = Uplink::new(&a.server.server, &a.server.token)?;
    let Some(every) = a.interval_s else {
        print!("{}", once(&uplink, &a).await?);
        return Ok(());
    };
    let every = Duration::from_secs_f64(every.clamp(1.0, 86_400.0));
    loop {
        match once(&uplink, &a).await {
            Ok(r) if !r.ended.is_empty() || !r.refused.is_empty() => {
                tracing::info!(ended = ?r.ended, refused = ?r.refused, "slurm sync")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "slurm sync failed; next pass later")
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requeued_job_is_judged_by_its_latest_run() {
        let format = FORMAT;
        let text = "12|12|nobody|rq||gpu|REQUEUED|2026-12-06T11:20:10+0000|2026-12-06T11:20:13+0000|gpu01|cpu=1,gres/gpu=1|\n\
                    12|12|nobody|rq||gpu|RUNNING|2026-12-06T11:22:20+0000|Unknown|gpu01|cpu=1,gres/gpu=1|\n\
                    15|15|nobody|dead||gpu|NODE_FAIL|2026-12-06T11:20:10+0000|2026-12-06T11:20:43+0000|gpu02|cpu=1,gres/gpu=1|\n";
        let p = sacct::parse(text.as_bytes(), chrono_tz::UTC, false, Some(format)).expect("parses");
        let latest = latest_runs(p.jobs);
        assert_eq!(latest["12"].end, None, "running again: not ended");
        assert_eq!(
            latest["15"].end.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-12-06T11:20:43+00:00")
        );
        assert_eq!(latest["15"].scheduler.state.as_deref(), Some("NODE_FAIL"));
        assert_eq!(paths::encode_segment("a b+c"), "a%20b%2Bc");
    }
}
