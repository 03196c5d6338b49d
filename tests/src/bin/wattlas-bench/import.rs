//! History import: a generated nvidia-smi log (8 GPUs, 100 ms, the common
//! `--query-gpu=timestamp,index,power.draw,utilization.gpu,memory.used --format=csv` layout) imported by
//! the real collector binary into a server, end to end: samples/s until the last batch is committed,
//! the importer's peak RSS, and every line stored once. Beside it, in the same run, the importer's parser
//! reading the same file alone on one core (no JSON, no HTTP, no database): the import's own limit.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{TimeZone, Utc};

use crate::{collector_bin, proc_usage, InProcess, ADMIN};

/// Writes a log of about `bytes` bytes; returns its samples.
fn generate(path: &std::path::Path, bytes: u64) -> anyhow::Result<u64> {
    let f = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    writeln!(
        w,
        "timestamp, index, power.draw [W], utilization.gpu [%], memory.used [MiB]"
    )?;
    let t0 = Utc
        .with_ymd_and_hms(2025, 3, 1, 0, 0, 0)
        .single()
        .context("t0")?
        .naive_utc();
    let mut written = 0u64;
    let mut samples = 0u64;
    let mut poll = 0i64;
    while written < bytes {
        for gpu in 0..8i64 {
            let t = t0 + chrono::Duration::milliseconds(poll * 100 + gpu * 3);
            let power = 150.0 + ((poll * 7 + gpu * 13) % 100) as f64 + 0.25 * gpu as f64;
            let line = format!(
                "{}, {gpu}, {power:.2} W, {} %, {} MiB\n",
                t.format("%Y/%m/%d %H:%M:%S%.3f"),
                (poll + gpu) % 101,
                30_000 + gpu
            );
            w.write_all(line.as_bytes())?;
            written += line.len() as u64;
            samples += 1;
        }
        poll += 1;
    }
    w.flush()?;
    Ok(samples)
}

/// Runs the importer to its end, its peak RSS (KiB) read from /proc while it runs.
async fn run_importer(cmd: &mut std::process::Command) -> anyhow::Result<(f64, u64)> {
    let t0 = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Ok((_, hwm)) = proc_usage(pid) {
            peak = peak.max(hwm);
        }
        if child.try_wait()?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "import failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok((t0.elapsed().as_secs_f64(), peak))
}

/// The import rows of the report.
pub async fn import(base_url: &str, bytes: u64) -> anyhow::Result<Vec<(String, String)>> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("gpus.csv");
    let samples = tokio::task::block_in_place(|| generate(&log, bytes))?;
    let size_mb = std::fs::metadata(&log)?.len() as f64 / 1e6;

    let server = InProcess::start(base_url, "wattlas_bench_import", |_| {}).await?;
    let (db, base) = (server.db.clone(), server.base.clone());
    let bin = collector_bin()?;
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["import", "nvidia-smi"])
        .arg(&log)
        .args(["--node", "hist01", "--site", "bench", "--timezone", "UTC"])
        .args(["--server", &base])
        .env("WATTLAS_TOKEN", ADMIN)
        .env("RUST_LOG", "warn");
    let (e2e_s, rss_kib) = run_importer(&mut cmd).await?;
    let stored: i64 = sqlx::query_scalar("select coalesce(sum(n_samples), 0)::int8 from gpu_raw")
        .fetch_one(&db)
        .await?;
    server.stop().await;
    // The parser alone, on this thread.
    let t0 = Instant::now();
    let parsed = tokio::task::block_in_place(|| -> anyhow::Result<u64> {
        let opts = wattlas_collector::import::nvidia_smi::Options::new(chrono_tz::UTC);
        let f = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&log)?);
        let mut n = 0u64;
        wattlas_collector::import::nvidia_smi::stream(f, &opts, 20_000, |s, _| {
            n += s.len() as u64;
            Ok(())
        })?;
        Ok(n)
    })?;
    let parse_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(parsed == samples, "parsed {parsed} of {samples}");
    let rate = samples as f64 / e2e_s;
    Ok(vec![
        (
            format!("History import: a {size_mb:.0} MB nvidia-smi log (8 GPUs, 100 ms, {samples} lines) by the real importer into a server, end to end"),
            format!(
                "**{rate:.0} samples/s** ({e2e_s:.1} s), {stored} of {samples} stored, importer peak RSS **{:.0} MB**; target >= 300,000 samples/s and < 200 MB",
                rss_kib as f64 / 1024.0
            ),
        ),
        (
            "History import: the same file through the importer's parser alone, one core (its limit)".into(),
            format!(
                "about {:.0} samples/s ({parse_s:.1} s); end to end is {:.0} % of it",
                samples as f64 / parse_s,
                e2e_s.recip() / parse_s.recip() * 100.0
            ),
        ),
    ])
}
