//! The long mode (`wattlas-bench --soak MINUTES`): sustained ingest at twice the demo fleet's rate (four
//! real collector processes of four simulated GPUs at 100 ms, running the power-cap experiment's jobs)
//! into the release server binary, while a client reads the dashboard every few seconds. Reports the
//! server's memory over the run (it should stay flat), the pages' latency under that load, and samples
//! stored against samples the collectors' simulators emitted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::DurationRound;

use crate::pages::{fetch, start_server};
use crate::{fresh_db, ADMIN};
use wattlas_tests::post;

const COLLECTORS: usize = 4;
const GPUS: usize = 4;

/// Resident memory of a process now, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    wattlas_server::metrics::rss_kib(Some(pid)).with_context(|| format!("VmRSS of process {pid}"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The server's memory over a soak, from its RSS readings `(s since the start, KiB)`.
struct Memory {
    /// At half time, MB.
    half: f64,
    /// At the end, MB.
    last: f64,
    /// Highest, MB.
    peak: f64,
    /// End over half time.
    growth: f64,
    /// A reading per minute, MB.
    per_minute: Vec<String>,
}

impl Memory {
    // The pools, caches and allocator warm up over the first minutes (the first soaks: 17 -> 27 MB by
    // minute 7, then level); a leak keeps climbing. So: the second half against the middle, and the
    // whole course a reading per minute (a leak climbs to the end, warming up levels off).
    fn of(rss: &[(f64, u64)], run_s: f64) -> Self {
        let mb = |kib: u64| kib as f64 / 1024.0;
        let half = rss
            .iter()
            .find(|(t, _)| *t >= run_s / 2.0)
            .or(rss.first())
            .map_or(0, |r| r.1);
        let last = rss.last().map_or(0, |r| r.1);
        Memory {
            half: mb(half),
            last: mb(last),
            peak: mb(rss.iter().map(|r| r.1).max().unwrap_or(0)),
            growth: last as f64 / half.max(1) as f64,
            per_minute: rss
                .iter()
                .filter(|(t, _)| *t % 60.0 < 5.0)
                .map(|(_, kib)| format!("{:.0}", mb(*kib)))
                .collect(),
        }
    }

    /// Whether it stayed flat over the second half (within +10 %).
    fn flat(&self) -> &'static str {
        if self.growth <= 1.10 {
            "met"
        } else {
            "missed"
        }
    }
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
                .args(["--server", &base])
                .env("WATTLAS_TOKEN", &token)
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

    let memory = Memory::of(&rss, run_s as f64);
    let mut rows = vec![
        (
            format!("Soak: {COLLECTORS} collector processes x {GPUS} simulated GPUs at 100 ms (twice the demo fleet), jobs of the cap experiment, {minutes} min, release server"),
            format!("{stored} of {emitted} samples stored ({} missing); {jobs} jobs", emitted - stored),
        ),
        (
            "Server memory during the soak (RSS every 5 s)".to_owned(),
            format!(
                "{:.0} MB at half time, **{:.0} MB** at the end ({:+.0} % over the second half), peak {:.0} MB; target flat over the second half (within +10 %): {}",
                memory.half,
                memory.last,
                (memory.growth - 1.0) * 100.0,
                memory.peak,
                memory.flat()
            ),
        ),
    ];
    rows.push((
        "Server RSS at each minute of the soak, MB".to_owned(),
        memory.per_minute.join(", "),
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

/// Distinct simulated nodes whose seconds the soak's collectors send (node `n` sends template
/// `n % TEMPLATES`'s, its own node id and times).
const TEMPLATES: u32 = 128;
/// Samples a collector sends per second: 8 GPUs every 100 ms.
const NODE_SAMPLES_PER_S: f64 = 80.0;

/// The binary soak (`wattlas-bench --soak-rate MINUTES SAMPLES_PER_S`): the release server in its own
/// process, with its background tasks (rollups, job energy; not settling, see below) running, takes
/// binary batches from as many collectors as the rate needs (8 GPUs at 100 ms each: 12,500 for
/// 1,000,000 samples/s), each sending its last second once a second, in real time (open loop, one
/// request in flight each; latency from when each batch was due): the rollup sees what a real
/// fleet's makes it do. Every batch is a second of a simulated minute repeated with its times moved
/// on (the frame's base time patched: no re-encoding in the sender). Reports the rate taken, latency
/// and the server's memory minute by minute, the CPU of server, PostgreSQL and sender, the rollup's
/// work and backlog, and the samples stored (raw and settled) against those sent: each once.
///
/// `chaos` (`--chaos MINUTES SAMPLES_PER_S`): the same, with a fault every seventh of the run, in turn:
/// the server killed with SIGKILL and started again on its address, PostgreSQL stopped and started
/// (`scripts/db down`, `up`), and every collector killed with its batch in flight (started again a
/// second later, it sends that batch again, as a collector's spool does). Senders keep their batch
/// through refusals and broken connections, as collectors do; each fault's recovery time and the p99 of
/// the minute after it are reported, and every sample acknowledged must be stored once.
pub async fn soak_rate(
    base_url: &str,
    minutes: u64,
    rate: f64,
    chaos: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    use crate::ingest::simulate;

    let (db, url) = fresh_db(base_url, "wattlas_bench_soak_rate").await?;
    // Settling is left out: its rate is measured by `--storage`, and a soak shorter than an hour plus
    // its delay would not settle anything. The rollups and the other tasks run as in service.
    let (server, base) = start_server(&url, false).await?;
    let http = reqwest::Client::new();
    post(
        &http,
        &base,
        ADMIN,
        "/api/v1/sites",
        serde_json::json!({"name": "bench", "timezone": "UTC"}),
    )
    .await;
    let server = std::sync::Arc::new(tokio::sync::Mutex::new(server));
    // A kill of every collector: cuts the requests in flight (`killed`) and makes each send its last
    // batch again (`kills`, counted).
    let killed = std::sync::Arc::new(tokio::sync::Notify::new());
    let kills = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let nodes = (rate / NODE_SAMPLES_PER_S).ceil() as u32;
    let mut tokens = vec![String::new(); nodes as usize];
    let mut registering = tokio::task::JoinSet::new();
    for n in 0..nodes {
        let (http, base) = (http.clone(), base.clone());
        registering.spawn(async move {
            let created = post(
                &http,
                &base,
                ADMIN,
                "/api/v1/nodes",
                serde_json::json!({"name": format!("bench{n}"), "site": "bench"}),
            )
            .await;
            created["token"]
                .as_str()
                .map(|t| (n, t.to_owned()))
                .context("node token")
        });
        // A few at a time: the server hashes each token.
        while registering.len() >= 16 || (n + 1 == nodes && !registering.is_empty()) {
            let (n, token) = registering.join_next().await.context("registration")???;
            tokens[n as usize] = token;
        }
    }
    let run_s = minutes as i64 * 60;
    let template_s: i64 = 60;
    // A collector's second is sent a minute or two after it began (its samples all in the past).
    let t_base = chrono::Utc::now().duration_trunc(chrono::Duration::minutes(1))?
        - chrono::Duration::minutes(1);
    let sim = simulate(TEMPLATES.min(nodes), 8, template_s, t_base);
    let mut frames: Vec<Vec<(Vec<u8>, usize, u64)>> = Vec::new();
    for (n, node) in sim.iter().enumerate() {
        let mut node_frames = Vec::new();
        for batch in node {
            let body = crate::ingest::batch_of(n, 8, batch);
            let frame = wattlas_protocol::wire::encode_batch(&body).context("binary frame")?;
            // Where the frame's base time is: after the magic, the metadata's length and itself.
            let meta_len = u32::from_le_bytes(frame[4..8].try_into()?) as usize;
            node_frames.push((frame, 8 + meta_len, batch.len() as u64));
        }
        frames.push(node_frames);
    }
    let frames = std::sync::Arc::new(frames);
    // What whole collectors offer (the rate asked, rounded up to a collector).
    let rate = f64::from(nodes) * NODE_SAMPLES_PER_S;
    eprintln!(
        "soak: {nodes} collectors x 8 GPUs, a binary batch of their last second each second ({rate:.0} samples/s offered) for {minutes} min"
    );
    // Each collector's batches: one a second for the run.
    let every = Duration::from_secs(1);
    let batches = run_s;

    let pid = server.lock().await.pid();
    let (pg_before, server_before, me_before) = (
        crate::postgres_cpu(),
        crate::proc_usage(pid)?.0,
        crate::proc_usage(std::process::id())?.0,
    );
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for (n, token) in tokens.iter().enumerate() {
        let (http, token, frames) = (http.clone(), token.clone(), frames.clone());
        let (killed, kills) = (killed.clone(), kills.clone());
        let url = format!("{base}/api/v1/ingest/gpu");
        let first = start + every.mul_f64(n as f64 / f64::from(nodes));
        tasks.push(tokio::spawn(async move {
            // (seconds since the start when it was sent, latency in ms) of each batch; samples sent.
            let mut sent = Vec::with_capacity(batches as usize);
            let (mut samples, mut stored, mut again) = (0u64, 0u64, 0u64);
            // Sends answered 503, retried after an error, cut by a kill.
            let mut counts = [0u64; 3];
            let count = |counts: &mut [u64; 3], c: [u64; 3]| {
                for (total, n) in counts.iter_mut().zip(c) {
                    *total += n;
                }
            };
            let (mut seen_kill, mut last) = (0u64, None);
            for k in 0..batches {
                let due = first + every * k as u32;
                tokio::time::sleep_until(due).await;
                let (frame, at, n) = &frames[n % frames.len()][(k % template_s) as usize];
                let mut body = frame.clone();
                let t0 = i64::from_le_bytes(body[*at..*at + 8].try_into()?);
                let moved = t0 + (k / template_s) * template_s * 1000;
                body[*at..*at + 8].copy_from_slice(&moved.to_le_bytes());
                // Killed and started again (chaos): the collector's spool still holds the batch it
                // sent last (acknowledged, but not yet removed when it was killed): sent again, it
                // must store nothing.
                let kill = kills.load(std::sync::atomic::Ordering::SeqCst);
                if kill != seen_kill {
                    seen_kill = kill;
                    if let Some(last) = last.take() {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let (answer, c) = send(&http, &url, &token, last, chaos, &killed).await?;
                        count(&mut counts, c);
                        again += answer["stored"].as_u64().context("stored")?;
                    }
                }
                let (answer, c) = send(&http, &url, &token, body.clone(), chaos, &killed).await?;
                count(&mut counts, c);
                last = Some(body);
                stored += answer["stored"].as_u64().context("stored")?;
                samples += n;
                sent.push((
                    (due - start).as_secs_f64(),
                    due.elapsed().as_secs_f64() * 1000.0,
                ));
            }
            Ok::<_, anyhow::Error>((sent, samples, stored, again, counts))
        }));
    }
    // The faults, in turn, every seventh of the run: (what, seconds into the run, recovered at).
    let faults = chaos.then(|| {
        let (server, killed, kills, http, base, url) = (
            server.clone(),
            killed.clone(),
            kills.clone(),
            http.clone(),
            base.clone(),
            url.clone(),
        );
        tokio::spawn(async move {
            let bind = base.trim_start_matches("http://").to_owned();
            let every = Duration::from_secs(run_s as u64) / 7;
            let mut done = Vec::new();
            let mut server_cpu = 0.0;
            for k in 1..=6u32 {
                tokio::time::sleep_until(start + every * k).await;
                let at = start.elapsed().as_secs_f64();
                let what = match k % 3 {
                    1 => {
                        let mut s = server.lock().await;
                        server_cpu += crate::proc_usage(s.pid()).map_or(0.0, |u| u.0);
                        s.kill();
                        *s = crate::pages::start_server_at(&url, false, &bind).await?.0;
                        "server killed (SIGKILL) and started again"
                    }
                    2 => {
                        for step in ["down", "up"] {
                            let out = tokio::process::Command::new("bash")
                                .args(["scripts/db", step])
                                .output()
                                .await?;
                            anyhow::ensure!(out.status.success(), "scripts/db {step} failed");
                        }
                        "PostgreSQL stopped and started (scripts/db down, up)"
                    }
                    _ => {
                        kills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        killed.notify_waiters();
                        "every collector killed with its batch in flight"
                    }
                };
                // Recovered: the server says it is ready (the database answers).
                while !http
                    .get(format!("{base}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                done.push((what, at, start.elapsed().as_secs_f64()));
            }
            Ok::<_, anyhow::Error>((done, server_cpu))
        })
    });
    // The server's memory every 5 s while the collectors send.
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let watch = Instant::now();
    while tasks.iter().any(|t| !t.is_finished()) {
        // (A restarted server's memory starts again; a reading during its restart is skipped.)
        if let Ok(kib) = rss_kib(server.lock().await.pid()) {
            rss.push((watch.elapsed().as_secs_f64(), kib));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let mut sent = Vec::new();
    let (mut samples, mut answered, mut stored_again) = (0u64, 0u64, 0u64);
    let [mut refused, mut retried, mut cut] = [0u64; 3];
    for t in tasks {
        let (s, n, stored, again, [r, e, c]) = t.await??;
        sent.extend(s);
        samples += n;
        answered += stored;
        stored_again += again;
        refused += r;
        retried += e;
        cut += c;
    }
    let (faults, killed_server_cpu) = match faults {
        Some(f) => f.await??,
        None => (Vec::new(), 0.0),
    };
    let pid = server.lock().await.pid();
    let secs = start.elapsed().as_secs_f64();
    let cpu = (
        crate::postgres_cpu_since(&pg_before),
        crate::proc_usage(pid)?.0 + killed_server_cpu - server_before,
        crate::proc_usage(std::process::id())?.0 - me_before,
    );
    let stored: i64 = sqlx::query_scalar(
        "select (select coalesce(sum(n_samples), 0) from gpu_raw) + (select coalesce(sum(n_samples), 0) from gpu_settled)",
    )
    .fetch_one(&db)
    .await?;
    let settled: i64 =
        sqlx::query_scalar("select coalesce(sum(n_samples), 0)::int8 from gpu_settled")
            .fetch_one(&db)
            .await?;
    // What the rollup task had left when the senders stopped: ranges of raw data not yet in minutes.
    let (pending, behind): (i64, Option<f64>) = sqlx::query_as(
        "select count(*), extract(epoch from now() - min(t_from))::float8 from rollup_pending",
    )
    .fetch_one(&db)
    .await?;
    // The rollup's work: GPU-minutes it computed, against the GPU-minutes of data rolled up.
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await?
        .text()
        .await?;
    let computed: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("wattlas_maintenance_work_total{task=\"rollup_gpu_minutes\"} ")
        })
        .and_then(|v| v.parse().ok())
        .context("rollup_gpu_minutes on /metrics")?;
    let rolled: i64 = sqlx::query_scalar("select count(*) from gpu_minute")
        .fetch_one(&db)
        .await?;
    let db_bytes: i64 = sqlx::query_scalar("select pg_database_size(current_database())")
        .fetch_one(&db)
        .await?;
    drop(server);
    db.close().await;

    let memory = Memory::of(&rss, run_s as f64);
    // After each fault: the batches due in the minute from its recovery.
    let after: Vec<String> = faults
        .iter()
        .map(|(what, at, back)| {
            let mut ms: Vec<f64> = sent
                .iter()
                .filter(|(due, _)| *due >= *back && *due < back + 60.0)
                .map(|s| s.1)
                .collect();
            ms.sort_by(f64::total_cmp);
            format!(
                "{what} at {:.0} s: ready again after {:.1} s, p99 of the next minute {:.0} ms",
                at,
                back - at,
                percentile(&ms, 0.99)
            )
        })
        .collect();
    // Latency per minute of the run: p50 / p99 of the batches due in it.
    let mut by_minute: Vec<Vec<f64>> = vec![Vec::new(); minutes as usize + 1];
    for (at, ms) in &sent {
        by_minute[((*at / 60.0) as usize).min(minutes as usize)].push(*ms);
    }
    let minute_p99: Vec<String> = by_minute
        .iter_mut()
        .filter(|m| !m.is_empty())
        .map(|m| {
            m.sort_by(f64::total_cmp);
            format!("{:.0}", percentile(m, 0.99))
        })
        .collect();
    let mut all: Vec<f64> = sent.iter().map(|s| s.1).collect();
    all.sort_by(f64::total_cmp);
    let taken = samples as f64 / secs;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut rows = vec![
        (
            format!("Soak: {nodes} collectors x 8 GPUs in real time (a binary batch of each one's last second every second), {rate:.0} samples/s offered, {minutes} min, release server in its own process with its rollup and job-energy tasks"),
            format!(
                "**{taken:.0} samples/s** taken; {stored} of {samples} samples stored ({} missing, {} answered as stored{}, {settled} settled); database {:.1} GB; target 1,000,000 samples/s, every sample once: {}",
                samples as i64 - stored,
                answered,
                if chaos {
                    " (a batch stored whose answer a fault cut is answered as stored 0 when sent again)"
                } else {
                    ""
                },
                db_bytes as f64 / 1e9,
                if stored as u64 == samples && (chaos || answered == samples) { "every sample once" } else { "MISSED" }
            ),
        ),
        (
            "Batch latency over the soak (from when each was due)".to_owned(),
            format!(
                "p50 {:.1} ms, p99 **{:.1} ms**, max {:.0} ms; p99 by minute: {}; {refused} requests answered 503 (a full queue, or in chaos the database away) and sent again after Retry-After",
                percentile(&all, 0.5),
                percentile(&all, 0.99),
                all.last().copied().unwrap_or(f64::NAN),
                minute_p99.join(", ")
            ),
        ),
        (
            "The rollup task (raw blocks to GPU-minutes) when the senders stopped".to_owned(),
            format!(
                "{pending} ranges of raw data waiting{} (it takes data in 5-minute steps once 90 s old); {rolled} GPU-minutes rolled up, {computed:.0} computed for them ({:.2} each)",
                behind.map_or(String::new(), |s| format!(
                    ", the oldest from {:.1} min before",
                    s / 60.0
                )),
                computed / rolled.max(1) as f64
            ),
        ),
        (
            "Where the CPU went".to_owned(),
            format!(
                "server {:.0} core-s, PostgreSQL {:.0} core-s, the senders {:.0} core-s, in {secs:.0} s on {cores:.0} cores: {:.0} % of the machine",
                cpu.1,
                cpu.0,
                cpu.2,
                (cpu.0 + cpu.1 + cpu.2) / (secs * cores) * 100.0
            ),
        ),
        (
            "Server memory (RSS every 5 s)".to_owned(),
            format!(
                "{:.0} MB at half time, **{:.0} MB** at the end ({:+.0} % over the second half); by minute: {}; target flat over the second half (within +10 %): {}",
                memory.half,
                memory.last,
                (memory.growth - 1.0) * 100.0,
                memory.per_minute.join(", "),
                memory.flat()
            ),
        ),
    ];
    if chaos {
        rows[0].0 = rows[0].0.replacen("Soak:", "Chaos soak:", 1);
        rows.insert(
            1,
            (
                format!("Faults ({} in {minutes} min)", faults.len()),
                format!(
                    "{}; the senders kept each batch until it was stored: {retried} sends retried after a broken connection or an error, {cut} cut by a collector's kill and sent again; after each kill every collector sent its last acknowledged batch again, and {stored_again} of those samples were stored again (0: each once). Every acknowledged sample stored once: {}. (CPU: PostgreSQL's processes that ended in its restart are not counted.)",
                    after.join("; "),
                    if stored as u64 == samples && stored_again == 0 { "yes" } else { "NO" }
                ),
            ),
        );
    }
    Ok(rows)
}

/// One batch sent until stored, as a collector does: after a 503 it waits the Retry-After; in chaos a
/// broken connection or any other answer is retried after 500 ms, and a kill of the collectors
/// (`killed`) cuts the request, sent again a second later. The answer, and the sends (answered 503,
/// retried, cut).
async fn send(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Vec<u8>,
    chaos: bool,
    killed: &tokio::sync::Notify,
) -> anyhow::Result<(serde_json::Value, [u64; 3])> {
    let [mut refused, mut retried, mut cut] = [0u64; 3];
    // A full queue answers 503 with Retry-After: the collector keeps the batch and
    // sends it again then, as here (its later seconds wait behind it). In chaos a broken
    // connection or any other answer is retried too (the collector spools), and a killed
    // collector sends its batch again once started (a second later).
    let answer: serde_json::Value = loop {
        let request = async {
            let r = crate::ingest::answer(
                http,
                url,
                token,
                wattlas_protocol::wire::BATCH_CONTENT_TYPE,
                false,
                body.clone(),
            )
            .await?;
            let status = r.status();
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let json = if status.is_success() {
                Some(r.json::<serde_json::Value>().await?)
            } else {
                None
            };
            Ok::<_, anyhow::Error>((status, wait, json))
        };
        let outcome = if chaos {
            tokio::select! {
                r = request => Some(r),
                () = killed.notified() => None,
            }
        } else {
            Some(request.await)
        };
        match outcome {
            Some(Ok((_, _, Some(json)))) => break json,
            Some(Ok((status, wait, None)))
                if status == reqwest::StatusCode::SERVICE_UNAVAILABLE =>
            {
                refused += 1;
                tokio::time::sleep(Duration::from_secs(wait.unwrap_or(1))).await;
            }
            Some(Ok((status, ..))) if !chaos => {
                anyhow::bail!("ingest answered {status}")
            }
            Some(Err(e)) if !chaos => return Err(e),
            None => {
                cut += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some(_) => {
                retried += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    Ok((answer, [refused, retried, cut]))
}
