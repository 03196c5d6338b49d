//! The long mode (`wattlas-bench --soak MINUTES`): sustained ingest at twice the demo fleet's rate (four
//! real collector processes of four simulated GPUs at 100 ms, running the power-cap experiment's jobs)
//! into the release server binary, while a client reads the dashboard every few seconds. Reports the
//! server's memory over the run (it should stay flat), the pages' latency under that load, and samples
//! stored against samples the collectors' simulators emitted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::pages::{fetch, start_server};
use crate::{fresh_db, ADMIN};
use wattlas_tests::post;

const COLLECTORS: usize = 4;
const GPUS: usize = 4;

/// Resident memory of a process now, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Kills the collectors however the run ends.
struct Collectors(Vec<std::process::Child>);

impl Drop for Collectors {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn soak(base_url: &str, minutes: u64) -> anyhow::Result<Vec<(String, String)>> {
    let (db, url) = fresh_db(base_url, "wattlas_bench_soak").await?;
    let (server, base) = start_server(&url, true).await?;
    let http = reqwest::Client::new();
    post(
        &http,
        &base,
        ADMIN,
        "/api/v1/sites",
        serde_json::json!({"name": "soak", "timezone": "UTC"}),
    )
    .await;
    let dir = std::env::temp_dir().join(format!("wattlas-bench-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?
        .parent()
        .context("bench binary without a folder")?
        .join("wattlas-collector");
    let run_s = minutes * 60;
    let mut children = Vec::new();
    for n in 0..COLLECTORS {
        let node = format!("soak{n}");
        let created = post(
            &http,
            &base,
            ADMIN,
            "/api/v1/nodes",
            serde_json::json!({"name": node, "site": "soak"}),
        )
        .await;
        let token = created["token"].as_str().context("node token")?.to_owned();
        children.push(
            Command::new(&exe)
                .args(["run", "--source", "simulated", "--node", &node])
                .args(["--server", &base, "--token", &token])
                .args([
                    "--sim-gpus",
                    &GPUS.to_string(),
                    "--sim-caps",
                    "100,150,200,250",
                ])
                .args(["--sim-gpus-per-job", "2", "--sim-job-seconds", "120"])
                .args(["--sim-seed", &(n + 1).to_string()])
                .args(["--run-seconds", &run_s.to_string()])
                .arg("--sim-ledger")
                .arg(dir.join(format!("ledger{n}.json")))
                .arg("--spool-dir")
                .arg(dir.join(format!("spool{n}")))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", exe.display()))?,
        );
    }
    let mut collectors = Collectors(children);
    eprintln!(
        "soak: {COLLECTORS} collectors x {GPUS} GPUs at 100 ms for {minutes} min against {base}"
    );

    // Every 5 s: the server's memory, and the dashboard as a person would read it.
    let pid = server.pid();
    let started = Instant::now();
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let (mut list, mut job, mut chart, mut api) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    while started.elapsed() < Duration::from_secs(run_s) {
        rss.push((started.elapsed().as_secs_f64(), rss_kib(pid)?));
        let timed = |url: String, expect: &'static [u8]| {
            let http = http.clone();
            async move {
                let t = Instant::now();
                fetch(&http, &url, expect).await?;
                Ok::<f64, anyhow::Error>(t.elapsed().as_secs_f64() * 1000.0)
            }
        };
        list.push(timed(format!("{base}/jobs"), b"</html>").await?);
        let latest: serde_json::Value = http
            .get(format!("{base}/api/v1/jobs?limit=1"))
            .bearer_auth(ADMIN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if let Some(id) = latest["jobs"][0]["id"].as_str() {
            job.push(timed(format!("{base}/jobs/{id}"), b"</html>").await?);
            chart.push(timed(format!("{base}/jobs/{id}/power.svg"), b"</svg>").await?);
        }
        api.push(timed(format!("{base}/api/v1/jobs?limit=50"), b"\"jobs\"").await?);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    // The collectors stop on their own, flushing their spools.
    let children = std::mem::take(&mut collectors.0);
    for mut c in children {
        let status = tokio::task::spawn_blocking(move || c.wait()).await??;
        anyhow::ensure!(status.success(), "a collector failed: {status}");
    }
    let mut emitted = 0i64;
    for n in 0..COLLECTORS {
        let ledger: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("ledger{n}.json")))?)?;
        emitted += ledger["samples_emitted"]
            .as_i64()
            .context("samples_emitted")?;
    }
    let stored: i64 = sqlx::query_scalar("select coalesce(sum(n_samples), 0)::int8 from gpu_raw")
        .fetch_one(&db)
        .await?;
    let jobs: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&db)
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    drop(server);
    db.close().await;

    let mb = |kib: u64| kib as f64 / 1024.0;
    // The pools, caches and allocator warm up over the first minutes (the first soaks: 17 -> 27 MB by
    // minute 7, then level); a leak keeps climbing. So: the second half against the middle.
    let half = rss
        .iter()
        .find(|(t, _)| *t >= run_s as f64 / 2.0)
        .or(rss.first())
        .map_or(0, |r| r.1);
    let last = rss.last().map_or(0, |r| r.1);
    let peak = rss.iter().map(|r| r.1).max().unwrap_or(0);
    let growth = last as f64 / half.max(1) as f64;
    let mut rows = vec![
        (
            format!("Soak: {COLLECTORS} collector processes x {GPUS} simulated GPUs at 100 ms (twice the demo fleet), jobs of the cap experiment, {minutes} min, release server"),
            format!("{stored} of {emitted} samples stored ({} missing); {jobs} jobs", emitted - stored),
        ),
        (
            "Server memory during the soak (RSS every 5 s)".to_owned(),
            format!(
                "{:.0} MB at half time, **{:.0} MB** at the end ({:+.0} % over the second half), peak {:.0} MB; target flat over the second half (within +10 %): {}",
                mb(half),
                mb(last),
                (growth - 1.0) * 100.0,
                mb(peak),
                if growth <= 1.10 { "met" } else { "missed" }
            ),
        ),
    ];
    // The whole course, a reading per minute: a leak climbs to the end, warming up levels off.
    let per_minute: Vec<String> = rss
        .iter()
        .filter(|(t, _)| *t % 60.0 < 5.0)
        .map(|(_, kib)| format!("{:.0}", mb(*kib)))
        .collect();
    rows.push((
        "Server RSS at each minute of the soak, MB".to_owned(),
        per_minute.join(", "),
    ));
    for (what, mut ms) in [
        ("Jobs page `/jobs` during the soak", list),
        ("The latest job's page during the soak", job),
        ("Its power chart during the soak", chart),
        ("Jobs API `/api/v1/jobs?limit=50` during the soak", api),
    ] {
        ms.sort_by(f64::total_cmp);
        rows.push((
            what.to_owned(),
            format!(
                "p50 **{:.0} ms**, p95 **{:.0} ms**, max {:.0} ms ({} requests)",
                percentile(&ms, 0.5),
                percentile(&ms, 0.95),
                ms.last().copied().unwrap_or(f64::NAN),
                ms.len()
            ),
        ));
    }
    Ok(rows)
}
