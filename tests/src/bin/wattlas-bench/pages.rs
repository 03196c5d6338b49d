//! Pages and API at scale: a seeded database (64 GPUs, 90 days of per-minute rollups, the last week's raw
//! 100 ms blocks, a year of 5-minute meter readings, 100,000 jobs with their stored energy), the release
//! server binary in its own process, and a load generator on loopback timing each page.
//!
//! The seed is written by SQL, not through the ingest path (which the ingest benchmark measures): 8.3
//! million GPU-minutes would take an hour through HTTP. Each GPU runs one job at a time, so every job's
//! minutes carry its own power cap and power; the jobs' stored energy is then computed by the server's
//! own code, the way the background task computes it.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DurationRound, Utc};

use super::seed::*;
use super::{fresh_db, ADMIN};

/// How big a world to seed and how long to load each page.
pub struct Scale {
    /// Days of per-minute rollups of all 64 GPUs.
    pub days: i64,
    /// Short jobs (1 or 2 GPUs each) before the long job.
    pub jobs: i64,
    /// Researchers; each has jobs / users jobs and three workloads.
    pub users: i64,
    /// Days of the 64-GPU job at the end.
    pub big_days: i64,
    /// Hours of raw 100 ms blocks at the end (the long job's).
    pub raw_hours: i64,
    /// Days of 5-minute meter readings.
    pub meter_days: i64,
    /// Seconds each page is loaded for, per concurrency level.
    pub seconds: f64,
    /// Requests each page gets at least, per concurrency level.
    pub min_requests: usize,
}

impl Scale {
    pub fn full() -> Self {
        Self {
            days: 90,
            jobs: 100_000,
            users: 100,
            big_days: 7,
            raw_hours: 7 * 24,
            meter_days: 365,
            seconds: 5.0,
            min_requests: 5,
        }
    }

    pub fn quick() -> Self {
        Self {
            days: 10,
            jobs: 2_000,
            users: 20,
            big_days: 1,
            raw_hours: 1,
            meter_days: 30,
            seconds: 0.2,
            min_requests: 2,
        }
    }
}

pub(crate) const NODES: i64 = 8;
pub(crate) const GPUS_PER_NODE: i64 = 8;
/// Two-GPU slots: each runs one short job at a time.
pub(crate) const SLOTS: i64 = NODES * GPUS_PER_NODE / 2;
/// Clients of the throughput measurement.
pub(crate) const CLIENTS: usize = 4;

/// Kills the server process when the benchmark ends, however it ends.
pub struct Server(Child);

impl Server {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Another process, killed the same way when the benchmark ends.
    pub fn from_child(child: Child) -> Server {
        Server(child)
    }

    /// SIGKILL: no graceful shutdown, requests in flight are cut.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The release server binary in its own process over `url`, once it answers; its base URL.
/// The release server on `url`; `settle`: whether its settle task runs (the pages' seed settles its
/// hours itself, once they are all written: the task would take the raw template hour away while the
/// seed copies it).
pub async fn start_server(url: &str, settle: bool) -> anyhow::Result<(Server, String)> {
    start_server_at(url, settle, "127.0.0.1:0").await
}

/// `start_server` on `bind` (a restarted server takes its address again).
pub async fn start_server_at(
    url: &str,
    settle: bool,
    bind: &str,
) -> anyhow::Result<(Server, String)> {
    let exe = std::env::current_exe()?
        .parent()
        .context("bench binary without a folder")?
        .join("wattlas-server");
    let log = std::env::temp_dir().join("wattlas-bench-server.log");
    let log_file = std::fs::File::create(&log)?;
    let server = Server(
        Command::new(&exe)
            .env("DATABASE_URL", url)
            .env("WATTLAS_BIND", bind)
            .env("WATTLAS_ADMIN_TOKEN", ADMIN)
            // The binary soak's collectors (12,500 at 1,000,000 samples/s) each keep a connection
            // open, as real ones do: more than the default 1,024 (a fleet that size raises it too, or
            // puts a proxy in front).
            .env("WATTLAS_MAX_CONNECTIONS", "16384")
            // All of them come from 127.0.0.1 here, where a fleet's come from an address each: the
            // per-client bound (256) closed their idle connections under them.
            .env("WATTLAS_MAX_CONNECTIONS_PER_CLIENT", "16384")
            .env(
                "WATTLAS_COMPACT_AFTER_S",
                if settle { "300" } else { "315360000" },
            )
            // The server logs to standard output: its "listening" line says the address.
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} (scripts/bench builds it)", exe.display()))?,
    );
    let addr = wattlas_tests::address_in_log(&log, 0, "wattlas-server listening", "address");
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let ready = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(30),
            "the server did not start: see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((server, base))
}

async fn seconds_of<T>(
    what: &str,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let t = Instant::now();
    let out = f.await?;
    eprintln!("  seeded {what} in {:.1} s", t.elapsed().as_secs_f64());
    Ok(out)
}

pub async fn pages(base_url: &str, scale: &Scale) -> anyhow::Result<Vec<(String, String)>> {
    let (db, url) = fresh_db(base_url, "wattlas_bench_pages").await?;
    let (server, base) = start_server(&url, false).await?;
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    post(
        "/api/v1/sites",
        serde_json::json!({"name": "bench", "timezone": "UTC", "carbon_g_per_kwh": 370.0,
            "price_per_kwh": 0.10, "currency": "USD"}),
    )
    .await?
    .error_for_status()?;
    // The short jobs' nodes, and the long job's own.
    for name in ["bench", "long"] {
        for n in 0..NODES {
            post(
                "/api/v1/nodes",
                serde_json::json!({"name": format!("{name}{n}"), "site": "bench"}),
            )
            .await?
            .error_for_status()?;
        }
    }
    post(
        "/api/v1/meters",
        serde_json::json!({"name": "bench-main", "site": "bench", "category": "PUE1"}),
    )
    .await?
    .error_for_status()?;

    let t_end =
        Utc::now().duration_trunc(chrono::Duration::minutes(1))? - chrono::Duration::minutes(2);
    let t0 = t_end - chrono::Duration::days(scale.days);
    let big_start = t_end - chrono::Duration::days(scale.big_days);
    let small_span = (scale.days - scale.big_days) * 1440;
    let per_slot = (scale.jobs + SLOTS - 1) / SLOTS;
    let period = small_span / per_slot;
    anyhow::ensure!(period >= 4, "too many jobs for the days: {period} min each");
    let seed_started = Instant::now();
    seed_functions(&db, scale, period).await?;
    seconds_of("jobs", seed_jobs(&db, scale, t0, t_end, big_start, period)).await?;
    seconds_of(
        "GPU minutes",
        seed_minutes(&db, scale, t0, small_span, period),
    )
    .await?;
    seconds_of("the long job", seed_long(&db, t0, t_end)).await?;
    seconds_of("raw blocks", seed_raw(&db, scale, big_start)).await?;
    // Hours that ended are settled in service (the settle task); so here, before the pages are timed,
    // on two connections at once.
    let settle_started = Instant::now();
    let raw_before: i64 =
        sqlx::query_scalar("select coalesce(sum(n_samples), 0)::int8 from gpu_raw")
            .fetch_one(&db)
            .await?;
    let hours = wattlas_server::db::samples::settleable(
        &db,
        Utc::now() - chrono::Duration::minutes(5),
        i64::MAX,
    )
    .await?;
    let mut workers = Vec::new();
    for half in hours.chunks(hours.len().div_ceil(2).max(1)) {
        let (db, half) = (db.clone(), half.to_vec());
        workers.push(tokio::spawn(async move {
            let mut samples = 0;
            for (node, hour) in half {
                samples += wattlas_server::db::samples::settle_hour(&db, node, hour)
                    .await?
                    .samples;
            }
            anyhow::Ok(samples)
        }));
    }
    let mut settled_samples = 0;
    for w in workers {
        settled_samples += w.await??;
    }
    let settle_secs = settle_started.elapsed().as_secs_f64();
    let after: i64 = sqlx::query_scalar(
        "select (select coalesce(sum(n_samples), 0) from gpu_raw) + (select coalesce(sum(n_samples), 0) from gpu_settled)",
    )
    .fetch_one(&db)
    .await?;
    anyhow::ensure!(
        after == raw_before,
        "{raw_before} raw samples before settling, {after} after"
    );
    println!("settled {settled_samples} samples in {settle_secs:.1} s");
    seconds_of("meter readings", seed_meter(&db, scale, t_end)).await?;
    let summaries = Instant::now();
    let computed = seconds_of("job energy", seed_energy(&db, &url)).await?;
    let energy_rate = computed as f64 / summaries.elapsed().as_secs_f64();
    sqlx::query("vacuum analyze").execute(&db).await?;
    sqlx::query("checkpoint").execute(&db).await?;
    let seed_secs = seed_started.elapsed().as_secs_f64();
    let (minutes, raw_samples, readings): (i64, i64, i64) = sqlx::query_as(
        r#"select (select count(*) from gpu_minute),
            (select coalesce(sum(n_samples), 0)::int8 from gpu_raw) + (select coalesce(sum(n_samples), 0)::int8 from gpu_settled),
            (select count(*) from facility_readings)"#,
    )
    .fetch_one(&db)
    .await?;
    let db_bytes: i64 = sqlx::query_scalar("select pg_database_size(current_database())")
        .fetch_one(&db)
        .await?;

    let user = "user7";
    let user_jobs = scale.jobs / scale.users;
    // The same depth as the offset page, reached by the cursor a Next link carries.
    let (deep_id, deep_key): (String, Option<f64>) = sqlx::query_as(
        r#"select j.id, e.it_energy_kwh from jobs j left join job_energy e on e.job_id = j.id
        order by e.it_energy_kwh desc nulls last, j.id desc offset $1 limit 1"#,
    )
    .bind(scale.jobs / 2 - 1)
    .fetch_one(&db)
    .await?;
    let deep_cursor = match deep_key {
        Some(k) => format!("after={deep_id}&after_key={k}"),
        None => format!("after={deep_id}"),
    };
    // A statement of a tenth of the jobs: those still running at or after a start time.
    let tenth = scale.jobs / 10;
    let tenth_from: chrono::DateTime<Utc> = sqlx::query_scalar(
        "select end_time from jobs where end_time is not null order by end_time desc offset $1 limit 1",
    )
    .bind(tenth - 1)
    .fetch_one(&db)
    .await?;
    let tenth_from = tenth_from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let tenth_jobs: i64 = sqlx::query_scalar(
        "select count(*) from jobs where end_time is null or end_time >= $1::timestamptz",
    )
    .bind(&tenth_from)
    .fetch_one(&db)
    .await?;
    let workload = "w21";
    let pages: Vec<(String, String, &[u8], f64)> = vec![
        (
            format!("Jobs page, all {} jobs, newest first", scale.jobs + 2),
            "/jobs".into(),
            b"job-",
            50.0,
        ),
        (
            format!("Jobs page filtered by user ({user_jobs} jobs), sorted by energy"),
            format!("/jobs?user={user}&sort=energy"),
            b"job-",
            50.0,
        ),
        (
            "Jobs API filtered by workload tag and power cap".into(),
            format!("/api/v1/jobs?tag=workload:{workload}&cap=200"),
            b"\"it_energy_kwh\"",
            50.0,
        ),
        (
            format!("Jobs page sorted by energy, offset {}", scale.jobs / 2),
            format!("/jobs?sort=energy&offset={}", scale.jobs / 2),
            b"job-",
            50.0,
        ),
        (
            format!(
                "Jobs page sorted by energy, {} jobs deep by the Next link's cursor",
                scale.jobs / 2
            ),
            format!("/jobs?sort=energy&{deep_cursor}"),
            b"job-",
            50.0,
        ),
        (
            format!("Job page of a {}-day 64-GPU job", scale.big_days),
            "/jobs/big".into(),
            b"pretrain-64gpu",
            50.0,
        ),
        (
            "Its power chart (SVG)".into(),
            "/jobs/big/power.svg".into(),
            b"<svg",
            50.0,
        ),
        (
            format!("Job page of a {}-day 64-GPU job", scale.days),
            "/jobs/long".into(),
            b"pretrain-long-64gpu",
            50.0,
        ),
        (
            format!(
                "Its power chart (SVG), {} days of hourly rollups",
                scale.days
            ),
            "/jobs/long/power.svg".into(),
            b"<svg",
            100.0,
        ),
        (
            format!(
                "PUE variation page (Table 1), {} days of 5-minute readings",
                scale.meter_days
            ),
            "/sites/bench/pue".into(),
            b"PUE",
            50.0,
        ),
        (
            format!(
                "Power-cap comparison page, one workload ({} jobs at 3 caps)",
                user_jobs / 3
            ),
            format!("/powercap?tag=workload:{workload}"),
            b"<svg",
            50.0,
        ),
        (
            format!("Energy statement PDF of {user_jobs} jobs"),
            format!("/api/v1/statement?user={user}&format=pdf"),
            b"%PDF",
            2000.0,
        ),
        (
            format!("Energy statement PDF of {tenth_jobs} jobs"),
            format!("/api/v1/statement?from={tenth_from}&format=pdf"),
            b"%PDF",
            2000.0,
        ),
    ];
    let mut report = vec![(
        "Pages at scale: the seed".to_owned(),
        format!(
            "{} GPUs; {minutes} GPU-minutes ({} days); {raw_samples} raw samples ({} h; {settled_samples} of them settled into GPU-hours at {:.0} samples/s on two connections); {readings} meter readings ({} days); {} jobs; database {:.1} GB; seeded in {seed_secs:.0} s (job energy computed at {energy_rate:.0} jobs/s)",
            2 * NODES * GPUS_PER_NODE,
            scale.days,
            scale.raw_hours,
            settled_samples as f64 / settle_secs,
            scale.meter_days,
            scale.jobs + 2,
            db_bytes as f64 / 1e9
        ),
    )];
    for (label, path, expect, target_ms) in pages {
        let url = format!("{base}{path}");
        // One request first: checks the body and warms the caches, as a page viewed before would.
        let first = Instant::now();
        let body = fetch(&http, &url, expect).await?;
        let first_ms = first.elapsed().as_secs_f64() * 1000.0;
        let one = load(&http, &url, 1, scale, expect).await?;
        let many = load(&http, &url, CLIENTS, scale, expect).await?;
        let (p50, p95) = (one.percentile(0.5), one.percentile(0.95));
        // Pages: p95 <= 50 ms with one client and <= 150 ms with four; statements: 2 s with one.
        let target_many = if target_ms < 1000.0 {
            150.0
        } else {
            f64::INFINITY
        };
        let met = if p95 <= target_ms && many.percentile(0.95) <= target_many {
            "met"
        } else {
            "missed"
        };
        report.push((
            format!("{label}: `{path}`"),
            format!(
                "p50 **{p50:.0} ms**, p95 **{p95:.0} ms** ({} requests, 1 client; the first {first_ms:.0} ms); {:.1} req/s with {CLIENTS} clients (p95 {:.0} ms); {:.0} kB; target p95 <= {target_ms:.0} ms{}: {met}",
                one.latencies.len(),
                many.rate(),
                many.percentile(0.95),
                body as f64 / 1000.0,
                if target_many.is_finite() {
                    format!(" (<= {target_many:.0} ms with {CLIENTS})")
                } else {
                    String::new()
                }
            ),
        ));
    }
    let (_, rss_kib) = super::proc_usage(server.0.id())?;
    report.push((
        "Server process after the page loads".into(),
        format!("peak RSS {:.0} MB", rss_kib as f64 / 1024.0),
    ));
    drop(server);
    db.close().await;
    Ok(report)
}

/// Latencies of one load run and its wall time.
struct Run {
    latencies: Vec<f64>,
    wall_s: f64,
}

impl Run {
    fn percentile(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        self.latencies
            .get(i.min(self.latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall_s
    }
}

/// One GET; fails unless it answers 200 with `expect` in its body. Returns the body's size.
pub async fn fetch(http: &reqwest::Client, url: &str, expect: &[u8]) -> anyhow::Result<usize> {
    let r = http.get(url).bearer_auth(ADMIN).send().await?;
    let status = r.status();
    let body = r.bytes().await?;
    anyhow::ensure!(
        status == reqwest::StatusCode::OK,
        "{url} answered {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    anyhow::ensure!(
        body.windows(expect.len()).any(|w| w == expect),
        "{url}: the body lacks {:?}",
        String::from_utf8_lossy(expect)
    );
    Ok(body.len())
}

/// `clients` concurrent clients, each sending its next request when the last is answered, for the
/// scale's seconds and at least its minimum of requests.
async fn load(
    http: &reqwest::Client,
    url: &str,
    clients: usize,
    scale: &Scale,
    expect: &'static [u8],
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, sent) = (http.clone(), url.to_owned(), sent.clone());
        let (secs, min) = (scale.seconds, scale.min_requests);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let k = sent.fetch_add(1, Ordering::Relaxed);
                if k >= min && started.elapsed().as_secs_f64() >= secs {
                    break;
                }
                let t = Instant::now();
                fetch(&http, &url, expect).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Run {
        latencies,
        wall_s: started.elapsed().as_secs_f64(),
    })
}
