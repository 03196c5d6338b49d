//! Settled storage: bytes per sample once hours have settled (one packed block per GPU-hour, as the
//! server's settle task writes them), beside Prometheus's TSDB holding the same samples
//! (`promtool tsdb create-blocks-from openmetrics`, Debian's `prometheus`), on the simulated GPUs of the
//! storage leg and on a real nvidia-smi trace from `../shared/data/real/`.
//!
//! Prometheus gets each field as its own series in the integer units Wattlas stores (mW, mJ, tenths of
//! a percent, MiB, tenths of a degree, MHz): integers are what its XOR encoding compresses best.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::{TimeZone, Utc};
use wattlas_server::codec::{self, RawSample};

use super::ingest::{blocks, copy_in, raw, simulate, Copy};
use super::*;

/// The real trace: 20 minutes of 2 GPUs at 100 ms (power, utilisation, memory).
pub(crate) const REAL_TRACE: &str = "nvidia-smi/titanx-power-trace_2gpu_2025-12-02-20-31-56.csv";

/// The real trace's samples, as the nvidia-smi importer reads them (UTC).
pub(crate) fn read_real_trace() -> anyhow::Result<Vec<wattlas_protocol::GpuSample>> {
    let path = wattlas_tests::manifest_dir()
        .join("../../shared/data/real")
        .join(REAL_TRACE);
    let opts = wattlas_collector::import::nvidia_smi::Options::new(chrono_tz::UTC);
    let file = std::io::BufReader::new(
        std::fs::File::open(&path)
            .with_context(|| format!("{} (../shared beside the checkout)", path.display()))?,
    );
    Ok(wattlas_collector::import::nvidia_smi::parse(file, &opts)?.samples)
}

/// The fields of a sample as Prometheus series: (name, value).
fn fields(s: &RawSample) -> [(&'static str, Option<i64>); 7] {
    [
        ("power_mw", Some(s.power_mw)),
        ("energy_mj", s.energy_mj),
        ("limit_mw", s.limit_mw),
        ("util_dpct", s.util_dpct),
        ("mem_mib", s.mem_mib),
        ("temp_dc", s.temp_dc),
        ("sm_mhz", s.sm_mhz),
    ]
}

/// OpenMetrics text of one family, `wattlas_gpu{node,gpu,field}`, each series in time order.
struct OpenMetrics {
    out: std::io::BufWriter<std::fs::File>,
    values: u64,
}

impl OpenMetrics {
    fn create(path: &Path) -> anyhow::Result<Self> {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        writeln!(out, "# TYPE wattlas_gpu gauge")?;
        Ok(OpenMetrics { out, values: 0 })
    }

    /// A node's samples (sorted by GPU, then time), series by series.
    fn node(&mut self, node: &str, samples: &[RawSample]) -> anyhow::Result<()> {
        for gpu in samples.chunk_by(|a, b| a.gpu == b.gpu) {
            for f in 0..7 {
                for s in gpu {
                    let (name, value) = fields(s)[f];
                    if let Some(v) = value {
                        writeln!(
                            self.out,
                            "wattlas_gpu{{node=\"{node}\",gpu=\"{}\",field=\"{name}\"}} {v} {}.{:03}",
                            s.gpu,
                            s.t_ms.div_euclid(1000),
                            s.t_ms.rem_euclid(1000)
                        )?;
                        self.values += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<u64> {
        writeln!(self.out, "# EOF")?;
        self.out.flush()?;
        Ok(self.values)
    }
}

/// Bytes of all files under `dir`, and of its blocks' `chunks/` files alone. A file or folder gone
/// between the listing and its reading (a store merging its parts meanwhile) counts nothing.
pub(crate) fn du(dir: &Path) -> anyhow::Result<(u64, u64)> {
    let (mut all, mut chunks) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = match entry.metadata() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            meta => meta?,
        };
        if meta.is_dir() {
            let (a, c) = match du(&entry.path()) {
                Err(e)
                    if e.downcast_ref::<std::io::Error>()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
                {
                    continue
                }
                sizes => sizes?,
            };
            all += a;
            chunks += if entry.file_name() == "chunks" { a } else { c };
        } else {
            all += meta.len();
        }
    }
    Ok((all, chunks))
}

/// Builds Prometheus TSDB blocks from the OpenMetrics file; (all bytes, chunk bytes, seconds).
fn promtool(openmetrics: &Path, dir: &Path) -> anyhow::Result<(u64, u64, f64)> {
    let _ = std::fs::remove_dir_all(dir);
    let t0 = Instant::now();
    let out = std::process::Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(openmetrics)
        .arg(dir)
        .output()
        .context("promtool (Debian: apt-get install prometheus)")?;
    anyhow::ensure!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs = t0.elapsed().as_secs_f64();
    let (all, chunks) = du(dir)?;
    Ok((all, chunks, secs))
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wattlas-bench-{name}-{}", std::process::id()))
}

pub(crate) async fn settled(
    base_url: &str,
    sizes: &Sizes,
) -> anyhow::Result<Vec<(String, String)>> {
    let (db, _) = fresh_db(base_url, "wattlas_bench_settled").await?;
    let t0 = Utc
        .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .context("time")?;
    let gpus = sizes.nodes * sizes.gpus_per_node;
    let om_path = scratch("settled.om");
    let mut om = OpenMetrics::create(&om_path)?;
    let mut total = 0u64;
    for n in 0..sizes.nodes {
        let mut copy = Copy::new();
        let mut node = Vec::new();
        for batch in &simulate(1, sizes.gpus_per_node, sizes.storage_seconds, t0)[0] {
            let r = raw(batch);
            blocks(n as i32 + 1, &r, &mut copy);
            node.extend(r);
        }
        total += node.len() as u64;
        node.sort_by_key(|s| (s.gpu, s.t_ms));
        om.node(&format!("bench{n}"), &node)?;
        copy_in(
            &db,
            "copy gpu_raw (node_id, t_start, t_end, n_samples, data) from stdin (format binary)",
            copy.finish(),
        )
        .await?;
    }
    let values = om.finish()?;
    sqlx::query("vacuum analyze gpu_raw").execute(&db).await?;
    let live_bytes: i64 = sqlx::query_scalar("select hypertable_size('gpu_raw')")
        .fetch_one(&db)
        .await?;
    // Settle every node-hour with the server's own function, timed.
    let started = Instant::now();
    let hours =
        wattlas_server::db::samples::settleable(&db, t0 + chrono::Duration::days(30), i64::MAX)
            .await?;
    for (node, hour) in &hours {
        wattlas_server::db::samples::settle_hour(&db, *node, *hour).await?;
    }
    let settle_s = started.elapsed().as_secs_f64();
    sqlx::query("vacuum analyze gpu_settled")
        .execute(&db)
        .await?;
    let settled_bytes: i64 = sqlx::query_scalar("select hypertable_size('gpu_settled')")
        .fetch_one(&db)
        .await?;
    let (left, settled): (i64, i64) = sqlx::query_as(
        "select (select count(*) from gpu_raw), (select coalesce(sum(n_samples), 0)::int8 from gpu_settled)",
    )
    .fetch_one(&db)
    .await?;
    anyhow::ensure!(
        left == 0 && settled as u64 == total,
        "settled {settled} of {total} samples, {left} live blocks left"
    );
    db.close().await;
    let prom_dir = scratch("settled.tsdb");
    let (prom_all, prom_chunks, prom_s) = promtool(&om_path, &prom_dir)?;
    let _ = std::fs::remove_file(&om_path);
    let _ = std::fs::remove_dir_all(&prom_dir);
    let per = |b: u64| b as f64 / total as f64;
    let mut rows = vec![(
        format!("Settled storage: {gpus} GPUs x {} s at 100 ms ({total} samples of 7 fields), bytes per sample on disk", sizes.storage_seconds),
        format!(
            "Wattlas settled (one packed block per GPU-hour, table + TOAST + indexes): **{:.2}**; live 1-s blocks before settling {:.1}; Prometheus TSDB of the same {values} values: {:.2} (chunks alone {:.2}): Wattlas **{:.1}x smaller**; target <= 4 and >= 2x",
            per(settled_bytes as u64),
            per(live_bytes as u64),
            per(prom_all),
            per(prom_chunks),
            prom_all as f64 / settled_bytes as f64
        ),
    )];
    rows.push((
        "Settling (the server's settle task, 1-s live blocks -> packed GPU-hours, decode + encode + write)".into(),
        format!(
            "{:.0} samples/s ({} node-hours in {settle_s:.1} s, one connection); promtool built its blocks at {:.0} samples/s",
            total as f64 / settle_s,
            hours.len(),
            total as f64 / prom_s
        ),
    ));
    rows.push(real_trace()?);
    Ok(rows)
}

/// The real trace: packed bytes (the data alone, as settled) beside live 1-s blocks and Prometheus's
/// chunks (the data alone) of the same readings.
fn real_trace() -> anyhow::Result<(String, String)> {
    let mut samples = raw(&read_real_trace()?);
    samples.sort_by_key(|s| (s.gpu, s.t_ms));
    let readings: u64 = samples
        .iter()
        .map(|s| fields(s).iter().filter(|(_, v)| v.is_some()).count() as u64)
        .sum();
    // Settled: one block per GPU per hour; live: a block per second as a collector would batch.
    let hour = |s: &RawSample| s.t_ms.div_euclid(3_600_000);
    let mut packed = 0u64;
    for gpu_hour in samples.chunk_by(|a, b| a.gpu == b.gpu && hour(a) == hour(b)) {
        packed += codec::encode_packed(gpu_hour[0].t_ms, gpu_hour).len() as u64;
    }
    let mut by_time = samples.clone();
    by_time.sort_by_key(|s| (s.t_ms, s.gpu));
    let mut live = 0u64;
    for second in by_time.chunk_by(|a, b| a.t_ms / 1000 == b.t_ms / 1000) {
        live += codec::encode(second[0].t_ms, second).len() as u64;
    }
    let om_path = scratch("real.om");
    let mut om = OpenMetrics::create(&om_path)?;
    om.node("titanx", &samples)?;
    om.finish()?;
    let prom_dir = scratch("real.tsdb");
    let (_, prom_chunks, _) = promtool(&om_path, &prom_dir)?;
    let _ = std::fs::remove_file(&om_path);
    let _ = std::fs::remove_dir_all(&prom_dir);
    let per = |b: u64| b as f64 / readings as f64;
    Ok((
        format!(
            "Settled storage, a real trace ({REAL_TRACE}: {} samples, {readings} readings of power, utilisation and memory), data bytes per reading",
            samples.len()
        ),
        format!(
            "Wattlas settled **{:.2}**, live 1-s blocks {:.2}; Prometheus TSDB chunks {:.2}: Wattlas **{:.1}x smaller**",
            per(packed),
            per(live),
            per(prom_chunks),
            prom_chunks as f64 / packed as f64
        ),
    ))
}
