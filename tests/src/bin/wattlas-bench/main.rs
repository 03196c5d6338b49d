//! `wattlas-bench [--quick] [--out FILE]`: measurements side by side in one run, against the machine's
//! own limit. `scripts/bench` runs it; `--quick` is the smoke run inside `scripts/test` (it asserts
//! nothing about speed); the full run writes its table into BENCHMARKS.md.
//!
//! 1. Storage: bytes per raw sample on disk (table + indexes) for simulated GPUs at 100 ms, as Wattlas
//!    stores them (blocks) and as a naive one-row-per-sample table of the same fields, both loaded by
//!    binary COPY.
//! 2. Ingest: samples/s end to end (concurrent simulated collectors -> HTTP -> TimescaleDB, committed),
//!    beside the same samples loaded by binary COPY into the same table (the limit), with their ratio
//!    and the p50/p99 latency of a batch.
//! 3. Collector: CPU and RSS of the real collector binary with 8 simulated GPUs.
//! 4. Pages and API at scale (pages.rs): p50/p95 of each page on a seeded database, served by the
//!    server binary in its own process.
//!
//! `--soak MINUTES` runs only the long mode (soak.rs): sustained ingest from real collectors with the
//! server's memory and the pages' latency watched throughout.

mod import;
mod pages;
mod soak;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use wattlas_collector::source::simulated::{GpuModel, SimConfig, SimulatedSource};
use wattlas_collector::source::Source;
use wattlas_protocol::{GpuBatch, GpuIdentity, GpuSample};
use wattlas_server::codec::RawSample;

const ADMIN: &str = "bench-admin";

/// Seconds of CPU time of a process (user + system) and its peak RSS in KiB, from /proc.
fn proc_usage(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Linux reports CPU time in clock ticks of 100 Hz on every platform Wattlas runs on.
    Ok((ticks / 100.0, hwm))
}

/// The real collector binary, 8 simulated GPUs at 100 ms pushing to a real server, for `seconds`.
async fn collector(base_url: &str, seconds: u64) -> anyhow::Result<(String, String)> {
    let server = InProcess::start(base_url, "wattlas_bench_collector", |_| {}).await?;
    server
        .post(
            "/api/v1/nodes",
            serde_json::json!({"name": "node8", "site": "bench"}),
        )
        .await?;
    let (db, base) = (server.db.clone(), server.base.clone());
    let bin = collector_bin()?;
    let spool = std::env::temp_dir().join(format!("wattlas-bench-spool-{}", std::process::id()));
    let mut child = std::process::Command::new(bin)
        .args([
            "run",
            "--source",
            "simulated",
            "--node",
            "node8",
            "--server",
            &base,
            "--token",
            ADMIN,
        ])
        .args([
            "--sim-gpus",
            "8",
            "--sim-caps",
            "150,250",
            "--sim-gpus-per-job",
            "4",
            "--sim-job-seconds",
            "600",
        ])
        .arg("--spool-dir")
        .arg(&spool)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    // Let it start up, then measure a steady stretch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, _) = proc_usage(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, rss_kib) = proc_usage(pid)?;
    let wall = t0.elapsed().as_secs_f64();
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let stored: i64 = sqlx::query_scalar("select coalesce(sum(n_samples), 0)::int8 from gpu_raw")
        .fetch_one(&db)
        .await?;
    let _ = std::fs::remove_dir_all(&spool);
    server.stop().await;
    let cpu_pct = (cpu1 - cpu0) / wall * 100.0;
    Ok((
        format!("Collector: 8 simulated GPUs at 100 ms, 1 s batches to a real server, {seconds} s measured"),
        format!("**{cpu_pct:.2} %** of one core, peak RSS **{:.1} MB** ({stored} samples stored); target <= 0.5 % and <= 20 MB", rss_kib as f64 / 1024.0),
    ))
}

struct Sizes {
    nodes: u32,
    gpus_per_node: u32,
    storage_seconds: i64,
    ingest_nodes: u32,
    ingest_seconds: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let sizes = if quick {
        Sizes {
            nodes: 2,
            gpus_per_node: 4,
            storage_seconds: 120,
            ingest_nodes: 2,
            ingest_seconds: 20,
        }
    } else {
        Sizes {
            nodes: 8,
            gpus_per_node: 8,
            storage_seconds: 3600,
            ingest_nodes: 16,
            ingest_seconds: 120,
        }
    };
    let base_url =
        std::env::var("DATABASE_URL").context("DATABASE_URL (scripts/db up prints it)")?;
    let soak_minutes = args
        .iter()
        .position(|a| a == "--soak")
        .map(|i| {
            args.get(i + 1)
                .and_then(|m| m.parse::<u64>().ok())
                .context("--soak MINUTES")
        })
        .transpose()?;
    if let Some(minutes) = soak_minutes {
        let rows = soak::soak(&base_url, minutes).await?;
        write_table(&rows, &format!("soak, {minutes} min"), out.as_deref())?;
        return Ok(());
    }
    let import_bytes: u64 = if quick { 20_000_000 } else { 1_000_000_000 };
    if args.iter().any(|a| a == "--import") {
        let rows = import::import(&base_url, import_bytes).await?;
        write_table(&rows, "import", out.as_deref())?;
        return Ok(());
    }
    let mut report = Vec::new();

    let storage = storage(&base_url, &sizes).await?;
    report.push(storage.clone());
    let ingest = ingest(&base_url, &sizes).await?;
    report.extend(ingest);
    report.push(collector(&base_url, if quick { 5 } else { 60 }).await?);
    report.extend(import::import(&base_url, import_bytes).await?);
    report.extend(
        pages::pages(
            &base_url,
            &if quick {
                pages::Scale::quick()
            } else {
                pages::Scale::full()
            },
        )
        .await?,
    );

    let mode = if quick {
        "quick (smoke; not a measurement)"
    } else {
        "full"
    };
    write_table(&report, mode, out.as_deref())
}

/// Prints the rows as a table headed with the date, the mode and the machine; with `out`, puts it at
/// the top of that file (newest first).
fn write_table(report: &[(String, String)], mode: &str, out: Option<&str>) -> anyhow::Result<()> {
    let machine = machine();
    let mut table = format!(
        "## {} ({mode})\n\nMachine: {machine}\n\n| measurement | value |\n| --- | --- |\n",
        Utc::now().format("%Y-%m-%d")
    );
    for (k, v) in report {
        table.push_str(&format!("| {k} | {v} |\n"));
    }
    println!("{table}");
    if let Some(path) = out {
        let old = std::fs::read_to_string(path).unwrap_or_else(|_| {
            "# Benchmarks\n\nNewest first. Ratios compare figures measured in the same run.\n\n"
                .into()
        });
        let (head, rest) = match old.find("\n## ") {
            Some(i) => old.split_at(i + 1),
            None => (old.as_str(), ""),
        };
        std::fs::write(path, format!("{head}{table}\n{rest}"))?;
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let pg = std::process::Command::new("/usr/lib/postgresql/15/bin/postgres")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB, {pg}, TimescaleDB Apache build")
}

/// A real server in this process over a fresh database, with the site `bench` (UTC).
struct InProcess {
    db: PgPool,
    base: String,
    http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl InProcess {
    async fn start(
        base_url: &str,
        name: &str,
        configure: impl FnOnce(&mut wattlas_server::config::Config),
    ) -> anyhow::Result<InProcess> {
        let (db, _) = fresh_db(base_url, name).await?;
        let mut config = wattlas_server::config::Config::with_admin_token(ADMIN);
        configure(&mut config);
        let state = wattlas_server::state::AppState::new(db.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(wattlas_server::startup::run(listener, state, async move {
            let _ = stopped.await;
        }));
        let s = InProcess {
            db,
            base,
            http: reqwest::Client::new(),
            stop,
            server,
        };
        s.post(
            "/api/v1/sites",
            serde_json::json!({"name": "bench", "timezone": "UTC"}),
        )
        .await?;
        Ok(s)
    }

    /// Posts JSON with the admin token; an error status is an error.
    async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await?
            .error_for_status()?)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
        self.db.close().await;
    }
}

/// The collector binary beside this one.
fn collector_bin() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .context("binary dir")?
        .join("wattlas-collector");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build wattlas-collector first",
        bin.display()
    );
    Ok(bin)
}

/// A fresh database with the migrations applied.
async fn fresh_db(base_url: &str, name: &str) -> anyhow::Result<(PgPool, String)> {
    let (prefix, _) = base_url
        .rsplit_once('/')
        .context("DATABASE_URL without a database")?;
    let mut admin = PgConnection::connect(base_url).await?;
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await?;
    let url = format!("{prefix}/{name}");
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await?;
    wattlas_server::MIGRATOR.run(&pool).await?;
    Ok((pool, url))
}

/// CPU seconds of every PostgreSQL process now, by pid.
fn postgres_cpu() -> HashMap<u32, f64> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|pid| proc_usage(pid).ok().map(|(cpu, _)| (pid, cpu)))
        .collect()
}

/// CPU seconds PostgreSQL spent between two `postgres_cpu` readings (processes started in between
/// count whole; those that ended are lost, which the pool's long-lived connections make rare).
fn postgres_cpu_since(before: &HashMap<u32, f64>) -> f64 {
    postgres_cpu()
        .iter()
        .map(|(pid, now)| now - before.get(pid).copied().unwrap_or(0.0))
        .sum()
}

/// Simulated GPUs of `nodes` nodes, `seconds` of 100 ms polls from `t0`: per node, per second, the samples.
fn simulate(nodes: u32, gpus: u32, seconds: i64, t0: DateTime<Utc>) -> Vec<Vec<Vec<GpuSample>>> {
    // The simulator's own table has the A100.
    let model = GpuModel::named("A100").expect("the simulator knows the A100");
    (0..nodes)
        .map(|n| {
            let mut sim = SimulatedSource::new(SimConfig {
                node: format!("bench{n}"),
                gpus,
                model: model.clone(),
                seed: u64::from(n) + 1,
                caps: vec![150.0, 200.0, 250.0],
                gpus_per_job: 2,
                job_seconds: 900.0,
                jobs_per_group: None,
                user: "bench".into(),
                limits_file: None,
            });
            (0..seconds)
                .map(|s| {
                    (0..10)
                        .flat_map(|k| {
                            // Real pollers jitter by a few ms; so does this one.
                            let jitter = ((s * 7 + k * 13 + i64::from(n)) % 5) - 2;
                            sim.poll(
                                t0 + chrono::Duration::milliseconds(s * 1000 + k * 100 + jitter),
                            )
                            .samples
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn raw(samples: &[GpuSample]) -> Vec<RawSample> {
    let known: HashSet<u32> = samples.iter().map(|s| s.gpu).collect();
    wattlas_server::routes::ingest::validate_samples(
        samples,
        &known,
        "bench",
        Utc::now() + chrono::Duration::days(3650),
    )
    .unwrap_or_default()
}

/// PostgreSQL binary COPY writer.
struct Copy(Vec<u8>);

impl Copy {
    fn new() -> Self {
        let mut b = b"PGCOPY\n\xff\r\n\0".to_vec();
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        Copy(b)
    }
    fn row(&mut self, fields: i16) {
        self.0.extend_from_slice(&fields.to_be_bytes());
    }
    fn field(&mut self, bytes: &[u8]) {
        self.0
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.0.extend_from_slice(bytes);
    }
    fn null(&mut self) {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
    }
    fn ts(&mut self, ms: i64) {
        // Microseconds since 2000-01-01.
        self.field(&((ms - 946_684_800_000) * 1000).to_be_bytes());
    }
    fn opt_f32(&mut self, v: Option<f64>) {
        match v {
            Some(v) => self.field(&(v as f32).to_be_bytes()),
            None => self.null(),
        }
    }
    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0
    }
}

/// Blocks as the server makes them: per node, per batch, split on 5-minute windows.
fn blocks(node_id: i32, batch: &[RawSample], copy: &mut Copy) {
    for b in wattlas_server::db::samples::blocks(batch) {
        copy.row(5);
        copy.field(&node_id.to_be_bytes());
        copy.ts(b.t_start_ms);
        copy.ts(b.t_end_ms);
        copy.field(&b.n_samples.to_be_bytes());
        copy.field(&b.data);
    }
}

async fn copy_in(db: &PgPool, statement: &str, data: Vec<u8>) -> anyhow::Result<u64> {
    let mut conn = db.acquire().await?;
    let mut copy = conn.copy_in_raw(statement).await?;
    for chunk in data.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    Ok(copy.finish().await?)
}

async fn storage(base_url: &str, sizes: &Sizes) -> anyhow::Result<(String, String)> {
    let (db, _) = fresh_db(base_url, "wattlas_bench_storage").await?;
    let t0 = Utc
        .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .context("time")?;
    let gpus = sizes.nodes * sizes.gpus_per_node;
    sqlx::query(
        r#"create table naive_samples (
            node_id int not null, gpu smallint not null, time timestamptz not null,
            power_w real not null, energy_mj bigint, power_limit_w real, util_pct real,
            mem_used_mib real, temp_c real, sm_clock_mhz real,
            primary key (node_id, gpu, time))"#,
    )
    .execute(&db)
    .await?;
    sqlx::query("select create_hypertable('naive_samples', 'time', chunk_time_interval => interval '1 day')").execute(&db).await?;
    let mut total = 0u64;
    // Node by node, to bound memory: a node-hour is 288,000 samples.
    for n in 0..sizes.nodes {
        let mut block_copy = Copy::new();
        let mut naive_copy = Copy::new();
        let sim = simulate(1, sizes.gpus_per_node, sizes.storage_seconds, t0);
        for batch in &sim[0] {
            let r = raw(batch);
            total += r.len() as u64;
            blocks(n as i32 + 1, &r, &mut block_copy);
            for s in &r {
                naive_copy.row(10);
                naive_copy.field(&(n as i32 + 1).to_be_bytes());
                naive_copy.field(&(s.gpu as i16).to_be_bytes());
                naive_copy.ts(s.t_ms);
                naive_copy.field(&(s.power_mw as f32 / 1000.0).to_be_bytes());
                match s.energy_mj {
                    Some(e) => naive_copy.field(&e.to_be_bytes()),
                    None => naive_copy.null(),
                }
                naive_copy.opt_f32(s.limit_mw.map(|v| v as f64 / 1000.0));
                naive_copy.opt_f32(s.util_dpct.map(|v| v as f64 / 10.0));
                naive_copy.opt_f32(s.mem_mib.map(|v| v as f64));
                naive_copy.opt_f32(s.temp_dc.map(|v| v as f64 / 10.0));
                naive_copy.opt_f32(s.sm_mhz.map(|v| v as f64));
            }
        }
        copy_in(
            &db,
            "copy gpu_raw (node_id, t_start, t_end, n_samples, data) from stdin (format binary)",
            block_copy.finish(),
        )
        .await?;
        copy_in(
            &db,
            "copy naive_samples from stdin (format binary)",
            naive_copy.finish(),
        )
        .await?;
    }
    sqlx::query("vacuum analyze").execute(&db).await?;
    let blocks_bytes: i64 = sqlx::query_scalar("select hypertable_size('gpu_raw')")
        .fetch_one(&db)
        .await?;
    let naive_bytes: i64 = sqlx::query_scalar("select hypertable_size('naive_samples')")
        .fetch_one(&db)
        .await?;
    let stored: i64 = sqlx::query_scalar("select sum(n_samples)::int8 from gpu_raw")
        .fetch_one(&db)
        .await?;
    anyhow::ensure!(stored as u64 == total, "stored {stored} of {total} samples");
    let per = blocks_bytes as f64 / total as f64;
    let naive = naive_bytes as f64 / total as f64;
    // Flush what the storage phase wrote, so its checkpoint does not land in the ingest measurement.
    sqlx::query("checkpoint").execute(&db).await?;
    db.close().await;
    Ok((
        format!("Storage: bytes per raw sample, {gpus} GPUs x {} s at 100 ms ({total} samples), table + indexes", sizes.storage_seconds),
        format!("**{per:.1}** (Wattlas blocks) vs {naive:.1} (naive row per sample): {:.1}x smaller; target <= 20", naive / per),
    ))
}

async fn ingest(base_url: &str, sizes: &Sizes) -> anyhow::Result<Vec<(String, String)>> {
    let server = InProcess::start(base_url, "wattlas_bench_ingest", |config| {
        config.rollup_interval_s = 3600;
        config.db_max_connections = 32;
    })
    .await?;
    let (db, base, http) = (server.db.clone(), server.base.clone(), server.http.clone());
    let mut tokens = Vec::new();
    for n in 0..sizes.ingest_nodes {
        let r = server
            .post(
                "/api/v1/nodes",
                serde_json::json!({"name": format!("bench{n}"), "site": "bench"}),
            )
            .await?;
        let v: serde_json::Value = r.json().await?;
        tokens.push(v["token"].as_str().context("token")?.to_owned());
    }
    // Pre-built gzip'd request bodies, so the collectors' side costs nothing during the measurement.
    let t0 = Utc::now() - chrono::Duration::hours(2);
    let sim = simulate(
        sizes.ingest_nodes,
        sizes.gpus_per_node,
        sizes.ingest_seconds,
        t0,
    );
    let mut samples_total = 0u64;
    let mut bodies: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut copy = Copy::new();
    for (n, node) in sim.iter().enumerate() {
        let gpus: Vec<GpuIdentity> = (0..sizes.gpus_per_node)
            .map(|i| GpuIdentity {
                index: i,
                uuid: format!("GPU-bench-{n}-{i}"),
                model: "A100".into(),
                default_power_limit_w: Some(250.0),
                keep_known: false,
            })
            .collect();
        let mut node_bodies = Vec::new();
        for batch in node {
            samples_total += batch.len() as u64;
            let body = GpuBatch {
                node: None,
                gpus: gpus.clone(),
                samples: batch.clone(),
                dropped_samples_total: Some(0),
            };
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&serde_json::to_vec(&body)?)?;
            node_bodies.push(gz.finish()?);
            blocks(n as i32 + 1, &raw(batch), &mut copy);
        }
        bodies.push(node_bodies);
    }
    let (pg_before, me_before) = (postgres_cpu(), proc_usage(std::process::id())?.0);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (bodies, token) in bodies.into_iter().zip(tokens) {
        let http = http.clone();
        let url = format!("{base}/api/v1/ingest/gpu");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for body in bodies {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "ingest answered {}", r.status());
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let http_secs = started.elapsed().as_secs_f64();
    let pg_cpu = postgres_cpu_since(&pg_before);
    let me_cpu = proc_usage(std::process::id())?.0 - me_before;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let stored: i64 = sqlx::query_scalar("select sum(n_samples)::int8 from gpu_raw")
        .fetch_one(&db)
        .await?;
    anyhow::ensure!(
        stored as u64 == samples_total,
        "stored {stored} of {samples_total}"
    );
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };

    // The limit: the same samples, as the same blocks, by binary COPY into the same (emptied) table.
    sqlx::query("truncate gpu_raw").execute(&db).await?;
    let data = copy.finish();
    let started = Instant::now();
    copy_in(
        &db,
        "copy gpu_raw (node_id, t_start, t_end, n_samples, data) from stdin (format binary)",
        data,
    )
    .await?;
    let copy_secs = started.elapsed().as_secs_f64();
    server.stop().await;
    let http_rate = samples_total as f64 / http_secs;
    let copy_rate = samples_total as f64 / copy_secs;
    Ok(vec![
        (
            format!("Ingest end to end: {} collectors x {} GPUs, {} s of 100 ms samples each ({samples_total} samples), 1 s batches, HTTP + gzip, committed", sizes.ingest_nodes, sizes.gpus_per_node, sizes.ingest_seconds),
            format!("**{http_rate:.0} samples/s** ({:.0} GPUs at 100 ms); batch latency p50 {:.1} ms, p99 {:.1} ms; target >= 100,000", http_rate / 10.0, pct(0.5).as_secs_f64() * 1000.0, pct(0.99).as_secs_f64() * 1000.0),
        ),
        (
            "Where the CPU went in the end-to-end run".to_owned(),
            format!(
                "PostgreSQL {pg_cpu:.1} core-s, the bench process (server and load generator, one runtime) {me_cpu:.1} core-s, in {http_secs:.1} s on {cores:.0} cores: {:.0} % of the machine busy",
                (pg_cpu + me_cpu) / (http_secs * cores) * 100.0
            ),
        ),
        (
            "Binary COPY of the same blocks into the same table (the limit)".to_owned(),
            format!("{copy_rate:.0} samples/s; end to end is **{:.0} %** of it; target >= 80 %", http_rate / copy_rate * 100.0),
        ),
    ])
}
