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

use super::settled::{self, REAL_TRACE};
use super::*;
use wattlas_protocol::GpuSample;
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

/// What VictoriaMetrics did with the requests.
struct VmLeg {
    secs: f64,
    cpu: f64,
    cpu_settled: f64,
    stored: f64,
    bytes: u64,
}

/// What Wattlas did with them.
struct WattlasLeg {
    secs: f64,
    server_cpu: f64,
    pg_cpu: f64,
    /// Wattlas samples stored.
    stored: i64,
    /// The live blocks' table with its indexes after a checkpoint.
    live_bytes: i64,
    /// The settled blocks' table (every hour settled, no live block left), with its indexes.
    settled_bytes: i64,
}

/// The same requests for both: what they hold.
struct Workload {
    /// What they are, for the table.
    what: String,
    bodies: Arc<Vec<Vec<u8>>>,
    /// Nodes named (each registered by a first write, outside the measurement).
    nodes: usize,
    series_samples: u64,
    gpu_samples: u64,
}

impl Workload {
    /// Requests of (node, samples of one node's second), interleaved by second as a fleet's come.
    fn new(what: String, requests: Vec<(usize, u64, Vec<GpuSample>)>) -> Self {
        let mut requests = requests;
        requests.sort_by_key(|(node, second, _)| (*second, *node));
        let nodes = requests.iter().map(|r| r.0).max().map_or(0, |n| n + 1);
        let (mut series_samples, mut gpu_samples) = (0, 0);
        let bodies = requests
            .iter()
            .map(|(node, _, batch)| {
                gpu_samples += batch.len() as u64;
                series_samples += batch.len() as u64
                    + batch.iter().filter(|s| s.energy_mj.is_some()).count() as u64;
                ingest::remote_write(*node, batch)
            })
            .collect();
        Workload {
            what,
            bodies: Arc::new(bodies),
            nodes,
            series_samples,
            gpu_samples,
        }
    }

    fn wire_bytes(&self) -> usize {
        self.bodies.iter().map(Vec::len).sum()
    }
}

/// A minute of 500 nodes' simulated dcgm-exporter series (power and energy), stamped minutes ago.
fn simulated() -> Workload {
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(3);
    let sim = ingest::simulate(NODES, 8, SECONDS, t0);
    let requests = sim
        .into_iter()
        .enumerate()
        .flat_map(|(n, node)| {
            node.into_iter()
                .enumerate()
                .map(move |(s, batch)| (n, s as u64, batch))
        })
        .collect();
    Workload::new(
        format!("{NODES} nodes x 8 GPUs, simulated power and energy series, a minute"),
        requests,
    )
}

/// Nodes (8 GPUs each) and seconds the real trace is replayed as.
const REAL_NODES: usize = 50;
const REAL_SECONDS: i64 = 600;

/// The real trace (`settled::REAL_TRACE`: 20 minutes of two Titan X at 100 ms; no energy counter, so
/// power only) replayed as a fleet's series: each of `REAL_NODES` x 8 GPUs plays ten minutes of
/// one of the trace's two GPUs, from its own offset into the trace (1.5 s apart), with the trace's own
/// timestamps and readings (its jitter, its idle and busy stretches), shifted to end minutes ago.
fn real_trace() -> anyhow::Result<Workload> {
    let trace = settled::read_real_trace()?;
    let by_gpu: Vec<Vec<GpuSample>> = (0..2)
        .map(|g| {
            let mut v: Vec<GpuSample> = trace.iter().filter(|s| s.gpu == g).cloned().collect();
            v.sort_by_key(|s| s.time);
            v
        })
        .collect();
    let span = by_gpu
        .iter()
        .map(|v| {
            v.last()
                .map_or(0, |l| (l.time - v[0].time).num_milliseconds())
        })
        .min()
        .unwrap_or(0);
    let window_ms = REAL_SECONDS * 1000;
    anyhow::ensure!(
        span > window_ms,
        "{REAL_TRACE}: {span} ms, shorter than the replay"
    );
    let gpus = REAL_NODES * 8;
    let step_ms = (span - window_ms) / gpus as i64;
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(REAL_SECONDS / 60 + 3);
    let mut requests: HashMap<(usize, u64), Vec<GpuSample>> = HashMap::new();
    for n in 0..REAL_NODES {
        for g in 0..8u32 {
            let k = n * 8 + g as usize;
            let source = &by_gpu[k % 2];
            let from = source[0].time + chrono::Duration::milliseconds(k as i64 * step_ms);
            for s in source.iter().filter(|s| s.time >= from) {
                let offset = s.time - from;
                if offset.num_milliseconds() >= window_ms {
                    break;
                }
                let mut s = s.clone();
                s.gpu = g;
                s.time = t0 + offset;
                requests
                    .entry((n, offset.num_seconds() as u64))
                    .or_default()
                    .push(s);
            }
        }
    }
    Ok(Workload::new(
        format!(
            "a real trace ({REAL_TRACE}, two Titan X at 100 ms, power only) replayed as {REAL_NODES} nodes x 8 GPUs for {} minutes, each GPU from its own offset",
            REAL_SECONDS / 60
        ),
        requests
            .into_iter()
            .map(|((n, second), batch)| (n, second, batch))
            .collect(),
    ))
}

/// `wattlas_only`: Wattlas's legs alone (`--vm wattlas`, for iterating on Wattlas's cost; its table
/// says so). `WATTLAS_BENCH_PERF=FILE`: `perf record -a -g` over Wattlas's measured send of the
/// simulated requests, into FILE.
pub async fn versus(base_url: &str, wattlas_only: bool) -> anyhow::Result<Vec<(String, String)>> {
    let mut rows = Vec::new();
    for (i, workload) in [simulated(), real_trace()?].into_iter().enumerate() {
        eprintln!(
            "vm: {}: {} requests, {} series samples ({} Wattlas samples), {:.1} MB snappy",
            workload.what,
            workload.bodies.len(),
            workload.series_samples,
            workload.gpu_samples,
            workload.wire_bytes() as f64 / 1e6
        );
        let http = reqwest::Client::new();
        let vm = if wattlas_only {
            None
        } else {
            Some(vm_leg(&http, workload.bodies.clone()).await?)
        };
        let perf = std::env::var_os("WATTLAS_BENCH_PERF").filter(|_| i == 0);
        let w = wattlas_leg(base_url, &http, &workload, perf).await?;
        rows.extend(table(&workload, vm.as_ref(), &w));
    }
    Ok(rows)
}

/// Wattlas: the release server over a fresh database; a site's write token writes, registering the
/// nodes on first sight.
async fn wattlas_leg(
    base_url: &str,
    http: &reqwest::Client,
    workload: &Workload,
    perf: Option<std::ffi::OsString>,
) -> anyhow::Result<WattlasLeg> {
    let (db, url) = fresh_db(base_url, "wattlas_bench_vm").await?;
    let (server, base) = pages::start_server(&url, false).await?;
    post(
        http,
        &base,
        ADMIN,
        "/api/v1/sites",
        serde_json::json!({"name": "bench", "timezone": "UTC"}),
    )
    .await;
    // A site's Prometheus writes with the site's write token, as a site would set it up.
    let token = post(
        http,
        &base,
        ADMIN,
        "/api/v1/sites/bench/write-token",
        serde_json::json!({}),
    )
    .await;
    let token = token["token"]
        .as_str()
        .context("the site's write token")?
        .to_owned();
    // The nodes registered by a first write each (the first second of each), outside the measurement.
    let first: Arc<Vec<Vec<u8>>> = Arc::new(workload.bodies[..workload.nodes].to_vec());
    let write_url = format!("{base}/api/v1/write");
    send_all(http, &write_url, Some(&token), first).await?;
    sqlx::query("truncate gpu_raw, rollup_pending")
        .execute(&db)
        .await?;
    let recorder = match &perf {
        Some(file) => Some(
            std::process::Command::new("perf")
                .args(["record", "-a", "-g", "-q", "-o"])
                .arg(file)
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("perf record (WATTLAS_BENCH_PERF)")?,
        ),
        None => None,
    };
    let pid = server.pid();
    let (pg_before, server_before) = (postgres_cpu(), proc_usage(pid)?.0);
    let secs = send_all(http, &write_url, Some(&token), workload.bodies.clone()).await?;
    let (server_cpu, pg_cpu) = (
        proc_usage(pid)?.0 - server_before,
        postgres_cpu_since(&pg_before),
    );
    if let Some(mut perf) = recorder {
        // perf writes its file on SIGINT.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        perf.wait()?;
    }
    let stored: i64 = sqlx::query_scalar("select coalesce(sum(n_samples), 0)::int8 from gpu_raw")
        .fetch_one(&db)
        .await?;
    sqlx::query("checkpoint").execute(&db).await?;
    let live_bytes: i64 = sqlx::query_scalar("select hypertable_size('gpu_raw')")
        .fetch_one(&db)
        .await?;
    drop(server);
    // Every hour settled as the server's settle task would (the last one before it ended).
    let before = chrono::Utc::now() + chrono::Duration::hours(1);
    for (node, hour) in wattlas_server::db::samples::settleable(&db, before, i64::MAX).await? {
        wattlas_server::db::samples::settle_hour(&db, node, hour).await?;
    }
    sqlx::query("vacuum analyze gpu_settled")
        .execute(&db)
        .await?;
    let (left, settled_samples, settled_bytes): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from gpu_raw), \
            (select coalesce(sum(n_samples), 0)::int8 from gpu_settled), \
            hypertable_size('gpu_settled')",
    )
    .fetch_one(&db)
    .await?;
    anyhow::ensure!(
        left == 0 && settled_samples == stored,
        "settled {settled_samples} of {stored} samples, {left} live blocks left"
    );
    db.close().await;
    Ok(WattlasLeg {
        secs,
        server_cpu,
        pg_cpu,
        stored,
        live_bytes,
        settled_bytes,
    })
}

/// The workload's three rows.
fn table(workload: &Workload, vm: Option<&VmLeg>, w: &WattlasLeg) -> Vec<(String, String)> {
    let series = workload.series_samples as f64;
    let per_m = |cpu: f64| cpu / (series / 1e6);
    let w_rate = series / w.secs;
    let w_cpu = w.server_cpu + w.pg_cpu;
    let ratio = |ours: f64, theirs: f64, less: &str, more: &str| {
        format!(
            "{:.1}x {}",
            (ours / theirs).max(theirs / ours),
            if ours <= theirs { less } else { more }
        )
    };
    let wattlas_stored = format!(
        "Wattlas stored {} Wattlas samples of {} ({})",
        w.stored,
        workload.gpu_samples,
        if w.stored as u64 == workload.gpu_samples {
            "every one"
        } else {
            "MISSED"
        }
    );
    let what = format!(
        "The same {} remote-write requests ({}; a node's second a request; {} series samples = {} Wattlas samples, {:.1} MB snappy), {CONNECTIONS} keep-alive connections from one generator, one receiver at a time",
        workload.bodies.len(),
        workload.what,
        workload.series_samples,
        workload.gpu_samples,
        workload.wire_bytes() as f64 / 1e6
    );
    let Some(vm) = vm else {
        return vec![(
            what,
            format!(
                "Wattlas alone (`--vm wattlas`): **{w_rate:.0}** series samples/s, **{:.2}** core-s per million (server {:.2}, PostgreSQL {:.2}), bytes per series sample {:.2} live, {:.2} settled; {wattlas_stored}",
                per_m(w_cpu),
                per_m(w.server_cpu),
                per_m(w.pg_cpu),
                w.live_bytes as f64 / series,
                w.settled_bytes as f64 / series,
            ),
        )];
    };
    let vm_rate = series / vm.secs;
    vec![
        (
            what,
            format!(
                "VictoriaMetrics {} (Debian) **{vm_rate:.0}** series samples/s, Wattlas **{w_rate:.0}** ({}); stored: VictoriaMetrics {:.0} series samples, {wattlas_stored}",
                vm_version(),
                ratio(w_rate, vm_rate, "slower", "faster"),
                vm.stored,
            ),
        ),
        (
            "Receiver CPU per million series samples (Wattlas: server + PostgreSQL; VictoriaMetrics: its process)".to_owned(),
            format!(
                "VictoriaMetrics {:.2} core-s while taking them ({:.2} with its flush and merge), Wattlas **{:.2}** core-s (server {:.2}, PostgreSQL {:.2}) ({}; target: at or below VictoriaMetrics')",
                per_m(vm.cpu),
                per_m(vm.cpu_settled),
                per_m(w_cpu),
                per_m(w.server_cpu),
                per_m(w.pg_cpu),
                ratio(w_cpu, vm.cpu, "less", "more"),
            ),
        ),
        (
            "Bytes on disk per series sample".to_owned(),
            format!(
                "VictoriaMetrics {:.2} (flushed and merged, its whole data directory); Wattlas **{:.2}** settled (every hour packed, the settled table with its indexes; {}), {:.2} live (the live blocks' table with its indexes after a checkpoint); target: at or below VictoriaMetrics'",
                vm.bytes as f64 / series,
                w.settled_bytes as f64 / series,
                ratio(w.settled_bytes as f64, vm.bytes as f64, "smaller", "larger"),
                w.live_bytes as f64 / series,
            ),
        ),
    ]
}

/// Sends the requests to VictoriaMetrics over a fresh directory: its time, CPU, count and settled size.
async fn vm_leg(http: &reqwest::Client, bodies: Arc<Vec<Vec<u8>>>) -> anyhow::Result<VmLeg> {
    // VictoriaMetrics.
    let vm_dir = std::env::temp_dir().join(format!("wattlas-bench-vm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&vm_dir);
    let (vm, vm_base) = start_vm(&vm_dir).await?;
    let vm_before = proc_usage(vm.pid())?.0;
    let vm_secs = send_all(
        http,
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

    Ok(VmLeg {
        secs: vm_secs,
        cpu: vm_cpu,
        cpu_settled: vm_cpu_settled,
        stored: vm_stored,
        bytes: vm_bytes,
    })
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
