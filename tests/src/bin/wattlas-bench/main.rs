//! `wattlas-bench [--quick] [--out FILE]`: measurements side by side in one run, against the machine's
//! own limit. `scripts/bench` runs it; `--quick` is the smoke run inside `scripts/test` (it asserts
//! nothing about speed); the full run writes its table into BENCHMARKS.md.
//!
//! 1. Storage: bytes per raw sample on disk (table + indexes) for simulated GPUs at 100 ms, as Wattlas
//!    stores them (blocks) and as a naive one-row-per-sample table of the same fields, both loaded by
//!    binary COPY; then settled (settled.rs): packed GPU-hours beside Prometheus's TSDB of the same
//!    samples, simulated and real.
//! 2. Ingest: samples/s end to end (concurrent simulated collectors -> HTTP -> TimescaleDB, committed),
//!    beside the same samples loaded by binary COPY into the same table (the limit), with their ratio
//!    and the p50/p99 latency of a batch.
//! 3. Collector: CPU and RSS of the real collector binary with 8 simulated GPUs.
//! 4. Pages and API at scale (pages.rs): p50/p95 of each page on a seeded database, served by the
//!    server binary in its own process.
//!
//! `--soak MINUTES` runs only the long mode (soak.rs): sustained ingest from real collectors with the
//! server's memory and the pages' latency watched throughout.

/// The server's allocator (see `server/src/main.rs`): the bench runs the server in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod import;
mod ingest;
mod pages;
mod seed;
mod settled;
mod soak;
mod vm;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

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
        ])
        .env("WATTLAS_TOKEN", ADMIN)
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
            // 128 collectors, each one request in flight as real ones: with 16, each node's
            // batches (serialised by its ingest lock) bounded the rate, not the server (2026-11-30:
            // JSON 177,008 samples/s with 16, 375,815 with 128; binary 484,177 and 589,470).
            ingest_nodes: 128,
            ingest_seconds: 60,
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
    if let Some(i) = args.iter().position(|a| a == "--soak-rate") {
        let minutes: u64 = args
            .get(i + 1)
            .and_then(|m| m.parse().ok())
            .context("--soak-rate MINUTES SAMPLES_PER_S")?;
        let rate: f64 = args
            .get(i + 2)
            .and_then(|m| m.parse().ok())
            .context("--soak-rate MINUTES SAMPLES_PER_S")?;
        let rows = soak::soak_rate(&base_url, minutes, rate, false).await?;
        write_table(&rows, &format!("soak-rate, {minutes} min"), out.as_deref())?;
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--vm") {
        let wattlas_only = args.get(i + 1).is_some_and(|a| a == "wattlas");
        let rows = vm::versus(&base_url, wattlas_only).await?;
        write_table(&rows, "beside VictoriaMetrics", out.as_deref())?;
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--chaos") {
        let minutes: u64 = args
            .get(i + 1)
            .and_then(|m| m.parse().ok())
            .context("--chaos MINUTES SAMPLES_PER_S")?;
        let rate: f64 = args
            .get(i + 2)
            .and_then(|m| m.parse().ok())
            .context("--chaos MINUTES SAMPLES_PER_S")?;
        let rows = soak::soak_rate(&base_url, minutes, rate, true).await?;
        write_table(&rows, &format!("chaos, {minutes} min"), out.as_deref())?;
        return Ok(());
    }
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
    if args.iter().any(|a| a == "--storage") {
        let mut rows = vec![ingest::storage(&base_url, &sizes).await?];
        rows.extend(settled::settled(&base_url, &sizes).await?);
        write_table(&rows, "storage", out.as_deref())?;
        return Ok(());
    }
    if args.iter().any(|a| a == "--pages") {
        let scale = if quick {
            pages::Scale::quick()
        } else {
            pages::Scale::full()
        };
        let rows = pages::pages(&base_url, &scale).await?;
        write_table(&rows, "pages", out.as_deref())?;
        return Ok(());
    }
    if args.iter().any(|a| a == "--ingest") {
        let rows = ingest::ingest(&base_url, &sizes).await?;
        write_table(&rows, "ingest", out.as_deref())?;
        return Ok(());
    }
    let mut report = Vec::new();

    let storage = ingest::storage(&base_url, &sizes).await?;
    report.push(storage.clone());
    report.extend(settled::settled(&base_url, &sizes).await?);
    let ingest = ingest::ingest(&base_url, &sizes).await?;
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

/// Prints the rows as a table headed with the mode, the date and the machine; with `out`, files it in
/// that file (BENCHMARKS.md): under "Latest runs" it replaces the last table of the same kind of run
/// (full, storage, ingest, import, pages, soak) and goes on top, and "History" gets a row of its
/// headline figures (the bold ones) on top.
fn write_table(report: &[(String, String)], mode: &str, out: Option<&str>) -> anyhow::Result<()> {
    let machine = machine();
    let date = Utc::now().format("%Y-%m-%d");
    let mut table = format!(
        "### {mode}, {date}\n\nMachine: {machine}\n\n| measurement | value |\n| --- | --- |\n"
    );
    for (k, v) in report {
        table.push_str(&format!("| {k} | {v} |\n"));
    }
    println!("{table}");
    let Some(path) = out else { return Ok(()) };
    let old = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(
        path,
        file_run(&old, mode, &date.to_string(), &machine, &table, report),
    )?;
    Ok(())
}

const LATEST: &str = "\n## Latest runs\n";
const HISTORY: &str = "\n## History\n";
const HISTORY_HEAD: &str =
    "| date | run | machine | headline figures |\n| --- | --- | --- | --- |\n";

/// BENCHMARKS.md with a new run filed (see `write_table`).
fn file_run(
    old: &str,
    mode: &str,
    date: &str,
    machine: &str,
    table: &str,
    report: &[(String, String)],
) -> String {
    let (intro, rest) = old.split_once(LATEST).unwrap_or((
        "# Benchmarks\n\nRatios compare figures measured in the same run.\n",
        "",
    ));
    let (latest, history) = rest.split_once(HISTORY).unwrap_or((rest, ""));
    let kind = |title: &str| title.split([',', ' ']).next().unwrap_or("").to_owned();
    let this = kind(mode);
    let mut sections: Vec<String> = vec![table.to_owned()];
    for section in latest.split("\n### ").filter(|s| !s.trim().is_empty()) {
        let section = section.trim_start_matches("### ").trim_matches('\n');
        if kind(section) != this {
            sections.push(format!("### {section}\n"));
        }
    }
    let headline: Vec<String> = report
        .iter()
        .filter_map(|(label, value)| {
            let bold: Vec<&str> = value.split("**").skip(1).step_by(2).collect();
            (!bold.is_empty()).then(|| {
                let short = label.split([':', '(']).next().unwrap_or(label).trim();
                format!("{short}: {}", bold.join(" / "))
            })
        })
        .collect();
    let cpu = machine.split(" GiB").next().unwrap_or(machine);
    let row = format!(
        "| {date} | {mode} | {cpu} GiB | {} |\n",
        headline.join("; ").replace('|', "/")
    );
    let rows = history
        .split_once(HISTORY_HEAD)
        .map_or(history.trim_start_matches('\n'), |(_, rows)| rows);
    format!(
        "{}\n{LATEST}\n{}{HISTORY}\n{HISTORY_HEAD}{row}{rows}",
        intro.trim_end(),
        sections.join("\n")
    )
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

#[cfg(test)]
mod tests {
    use super::file_run;

    #[test]
    fn a_run_replaces_its_kind_on_top_and_heads_the_history() {
        let old = "# Benchmarks\n\nIntro.\n\n## Latest runs\n\n### storage, 2026-11-29\n\nold storage\n\n\
                   ### ingest, 2026-11-28\n\nold ingest\nits note\n\n## History\n\n\
                   | date | run | machine | headline figures |\n| --- | --- | --- | --- |\n\
                   | 2026-11-29 | storage | m | Storage: **3** |\n";
        let report = vec![
            (
                "Ingest end to end (16 clients)".to_owned(),
                "**500** samples/s, p99 **9 ms**".to_owned(),
            ),
            ("Where the CPU went".to_owned(), "no bold".to_owned()),
        ];
        let new = file_run(
            old,
            "ingest",
            "2026-11-30",
            "2 cores, 24 GiB, pg",
            "### ingest, 2026-11-30\n\nnew table\n",
            &report,
        );
        let latest = new.split("## History").next().expect("latest");
        assert!(
            latest.starts_with(
                "# Benchmarks\n\nIntro.\n\n## Latest runs\n\n### ingest, 2026-11-30\n\nnew table\n"
            ),
            "{new}"
        );
        assert!(
            latest.contains("### storage, 2026-11-29\n\nold storage"),
            "{new}"
        );
        assert!(!new.contains("old ingest"), "{new}");
        let history = new.split("## History").nth(1).expect("history");
        let rows: Vec<&str> = history
            .lines()
            .filter(|l| l.starts_with("| 2026"))
            .collect();
        assert_eq!(
            rows,
            [
                "| 2026-11-30 | ingest | 2 cores, 24 GiB | Ingest end to end: 500 / 9 ms |",
                "| 2026-11-29 | storage | m | Storage: **3** |"
            ]
        );
        // Filing into an empty file makes both parts.
        let fresh = file_run(
            "",
            "pages",
            "2026-11-30",
            "m",
            "### pages, 2026-11-30\n\nt\n",
            &[],
        );
        assert!(
            fresh.contains("## Latest runs\n\n### pages, 2026-11-30")
                && fresh.contains("| 2026-11-30 | pages |"),
            "{fresh}"
        );
    }
}
