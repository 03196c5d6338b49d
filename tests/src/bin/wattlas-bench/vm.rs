//! Wattlas beside VictoriaMetrics (`wattlas-bench --vm`, issue 34): Debian's `victoria-metrics` and the
//! release server each take the same pre-encoded Prometheus remote-write requests (dcgm-exporter's power
//! and energy series of 500 nodes x 8 GPUs, 10 samples a series a request: one node's second), from one
//! generator with the same number of keep-alive connections, one receiver at a time. Measured for each:
//! series samples a second, the receiver's CPU per million series samples (Wattlas: the server and
//! PostgreSQL; VictoriaMetrics: its one process), and bytes on disk per series sample once written
//! (VictoriaMetrics flushed and merged; Wattlas's live blocks, the table's total size with indexes).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::*;
use wattlas_tests::post;

/// Nodes, and seconds of each, sent.
const NODES: u32 = 500;
const SECONDS: i64 = 60;
/// Keep-alive connections of the generator (Prometheus' remote write runs up to 50 shards).
const CONNECTIONS: usize = 32;

/// Sends every body to `url` over `CONNECTIONS` connections (each takes the next body not yet sent);
/// the wall time.
async fn send_all(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    bodies: Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (http, url, token, bodies, next) = (
            http.clone(),
            url.to_owned(),
            token.map(str::to_owned),
            bodies.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let mut r = http
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .header("content-encoding", "snappy")
                    .header("x-prometheus-remote-write-version", "0.1.0");
                if let Some(t) = &token {
                    r = r.bearer_auth(t);
                }
                let answer = r.body(body.clone()).send().await?;
                anyhow::ensure!(
                    answer.status().is_success(),
                    "{url} answered {}",
                    answer.status()
                );
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// VictoriaMetrics (Debian's binary) on a free port over a fresh directory; its process and base URL.
async fn start_vm(dir: &std::path::Path) -> anyhow::Result<(pages::Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = std::process::Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-loggerLevel=ERROR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting victoria-metrics (Debian package victoria-metrics; scripts/bench installs it)")?;
    let server = pages::Server::from_child(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready = Instant::now();
    while !http
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(30),
            "victoria-metrics did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((server, base))
}

pub async fn versus(base_url: &str) -> anyhow::Result<Vec<(String, String)>> {
    // A minute of 500 nodes' dcgm-exporter series, stamped in the last minutes.
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(3);
    let sim = ingest::simulate(NODES, 8, SECONDS, t0);
    let mut bodies = Vec::new();
    let mut series_samples = 0u64;
    let mut gpu_samples = 0u64;
    for (n, node) in sim.iter().enumerate() {
        for batch in node {
            gpu_samples += batch.len() as u64;
            series_samples +=
                batch.len() as u64 + batch.iter().filter(|s| s.energy_mj.is_some()).count() as u64;
            bodies.push(ingest::remote_write(n, batch));
        }
    }
    // Interleaved by second, as a fleet's writes come.
    let mut order: Vec<usize> = (0..bodies.len()).collect();
    order.sort_by_key(|i| (i % SECONDS as usize, i / SECONDS as usize));
    let bodies: Arc<Vec<Vec<u8>>> =
        Arc::new(order.into_iter().map(|i| bodies[i].clone()).collect());
    let wire_bytes: usize = bodies.iter().map(Vec::len).sum();
    eprintln!(
        "vm: {} requests, {series_samples} series samples ({gpu_samples} Wattlas samples), {:.1} MB snappy",
        bodies.len(),
        wire_bytes as f64 / 1e6
    );
    let http = reqwest::Client::new();

    // VictoriaMetrics.
    let vm_dir = std::env::temp_dir().join(format!("wattlas-bench-vm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&vm_dir);
    let (vm, vm_base) = start_vm(&vm_dir).await?;
    let vm_before = proc_usage(vm.pid())?.0;
    let vm_secs = send_all(
        &http,
        &format!("{vm_base}/api/v1/write"),
        None,
        bodies.clone(),
    )
    .await?;
    let vm_cpu = proc_usage(vm.pid())?.0 - vm_before;
    http.get(format!("{vm_base}/internal/force_flush"))
        .send()
        .await?;
    // What it holds: every series sample (an instant query over the whole span).
    let count: serde_json::Value = http
        .get(format!("{vm_base}/api/v1/query"))
        .query(&[
            (
                "query",
                "sum(count_over_time({__name__=~\"DCGM_FI_DEV_.*\"}[1h]))",
            ),
            ("time", &chrono::Utc::now().timestamp().to_string()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let vm_stored: f64 = count["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .context("victoria-metrics' count")?;
    http.get(format!("{vm_base}/internal/force_merge"))
        .send()
        .await?;
    // Merges run in the background: settled when the size stops changing for 5 s.
    let mut vm_bytes = settled::du(&vm_dir)?.0;
    let settle = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = settled::du(&vm_dir)?.0;
        if now == vm_bytes || settle.elapsed() > Duration::from_secs(120) {
            break;
        }
        vm_bytes = now;
    }
    let vm_cpu_settled = proc_usage(vm.pid())?.0 - vm_before;
    drop(vm);
    let _ = std::fs::remove_dir_all(&vm_dir);

    // Wattlas: the release server over a fresh database; the admin's writes register the nodes.
    let (db, url) = fresh_db(base_url, "wattlas_bench_vm").await?;
    let (server, base) = pages::start_server(&url, false).await?;
    post(
        &http,
        &base,
        ADMIN,
        "/api/v1/sites",
        serde_json::json!({"name": "bench", "timezone": "UTC"}),
    )
    .await;
    // The nodes registered by a first write each, outside the measurement.
    let first: Arc<Vec<Vec<u8>>> =
        Arc::new((0..NODES as usize).map(|n| bodies[n].clone()).collect());
    let write_url = format!("{base}/api/v1/write?site=bench");
    send_all(&http, &write_url, Some(ADMIN), first).await?;
    sqlx::query("truncate gpu_raw").execute(&db).await?;
    let pid = server.pid();
    let (pg_before, server_before) = (postgres_cpu(), proc_usage(pid)?.0);
    let w_secs = send_all(&http, &write_url, Some(ADMIN), bodies.clone()).await?;
    let (w_server, w_pg) = (
        proc_usage(pid)?.0 - server_before,
        postgres_cpu_since(&pg_before),
    );
    let w_cpu = w_server + w_pg;
    let stored: i64 = sqlx::query_scalar("select coalesce(sum(n_samples), 0)::int8 from gpu_raw")
        .fetch_one(&db)
        .await?;
    sqlx::query("checkpoint").execute(&db).await?;
    let w_bytes: i64 = sqlx::query_scalar("select hypertable_size('gpu_raw')")
        .fetch_one(&db)
        .await?;
    drop(server);
    db.close().await;

    let per_m = |cpu: f64| cpu / (series_samples as f64 / 1e6);
    let vm_rate = series_samples as f64 / vm_secs;
    let w_rate = series_samples as f64 / w_secs;
    Ok(vec![
        (
            format!("The same {} remote-write requests ({NODES} nodes x 8 GPUs, dcgm-exporter's power and energy series, 10 samples a series a request; {series_samples} series samples = {gpu_samples} Wattlas samples, {:.1} MB snappy), {CONNECTIONS} keep-alive connections from one generator, one receiver at a time", bodies.len(), wire_bytes as f64 / 1e6),
            format!(
                "VictoriaMetrics {} (Debian) **{vm_rate:.0}** series samples/s, Wattlas **{w_rate:.0}** ({:.1}x {}); stored: VictoriaMetrics {vm_stored:.0}, Wattlas {stored} Wattlas samples of {gpu_samples} ({})",
                vm_version(),
                (vm_rate / w_rate).max(w_rate / vm_rate),
                if w_rate >= vm_rate { "faster" } else { "slower" },
                if stored as u64 == gpu_samples { "every one" } else { "MISSED" }
            ),
        ),
        (
            "Receiver CPU per million series samples (Wattlas: server + PostgreSQL; VictoriaMetrics: its process)".to_owned(),
            format!(
                "VictoriaMetrics {:.2} core-s while taking them ({:.2} with its flush and merge), Wattlas **{:.2}** core-s (server {:.2}, PostgreSQL {:.2}) ({:.1}x {}; target: at or below VictoriaMetrics')",
                per_m(vm_cpu),
                per_m(vm_cpu_settled),
                per_m(w_cpu),
                per_m(w_server),
                per_m(w_pg),
                (per_m(w_cpu) / per_m(vm_cpu)).max(per_m(vm_cpu) / per_m(w_cpu)),
                if w_cpu <= vm_cpu { "less" } else { "more" }
            ),
        ),
        (
            "Bytes on disk per series sample".to_owned(),
            format!(
                "VictoriaMetrics {:.2} (flushed and merged, its whole data directory), Wattlas {:.2} (live blocks: the raw table with its indexes after a checkpoint; settled hours are `--storage`'s) ({:.0}x; target: at or below VictoriaMetrics')",
                vm_bytes as f64 / series_samples as f64,
                w_bytes as f64 / series_samples as f64,
                w_bytes as f64 / vm_bytes.max(1) as f64
            ),
        ),
    ])
}

/// The installed package's version (Debian's build prints none of its own).
fn vm_version() -> String {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "victoria-metrics"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "?".to_owned())
}
