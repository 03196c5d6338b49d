//! Storage and ingest: bytes per raw sample as Wattlas stores them (blocks) beside a naive row per
//! sample, both by binary COPY; and samples/s end to end through HTTP beside binary COPY of the same
//! blocks (the machine's limit).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgPool;
use wattlas_collector::source::simulated::{GpuModel, SimConfig, SimulatedSource};
use wattlas_collector::source::Source;
use wattlas_protocol::{GpuBatch, GpuIdentity, GpuSample};
use wattlas_server::codec::RawSample;

use super::*;

/// Simulated GPUs of `nodes` nodes, `seconds` of 100 ms polls from `t0`: per node, per second, the samples.
pub(crate) fn simulate(
    nodes: u32,
    gpus: u32,
    seconds: i64,
    t0: DateTime<Utc>,
) -> Vec<Vec<Vec<GpuSample>>> {
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
                trace: false,
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

/// A simulated node's (`bench{n}`'s) second of samples as its collector sends it.
pub(crate) fn batch_of(n: usize, gpus: u32, samples: &[GpuSample]) -> GpuBatch {
    GpuBatch {
        node: None,
        gpus: (0..gpus)
            .map(|i| GpuIdentity {
                index: i,
                uuid: format!("GPU-bench-{n}-{i}"),
                model: "A100".into(),
                default_power_limit_w: Some(250.0),
                keep_known: false,
            })
            .collect(),
        samples: samples.to_vec(),
        dropped_samples_total: Some(0),
        clock_steps: None,
        node_energy: vec![],
        node_cpus: None,
        dropped_ranges: Vec::new(),
    }
}

pub(crate) fn raw(samples: &[GpuSample]) -> Vec<RawSample> {
    let known: HashSet<u32> = samples.iter().map(|s| s.gpu).collect();
    wattlas_server::service::ingest::checks::validate_samples(
        samples,
        &known,
        "bench",
        Utc::now() + chrono::Duration::days(3650),
    )
    .unwrap_or_default()
}

/// PostgreSQL binary COPY writer.
pub(crate) struct Copy(Vec<u8>);

impl Copy {
    pub(crate) fn new() -> Self {
        let mut b = b"PGCOPY\n\xff\r\n\0".to_vec();
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        Copy(b)
    }
    pub(crate) fn row(&mut self, fields: i16) {
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
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0
    }
}

/// Blocks as the server makes them: per node, per batch, split on 5-minute windows.
pub(crate) fn blocks(node_id: i32, batch: &[RawSample], copy: &mut Copy) {
    for b in wattlas_server::db::samples::blocks(batch) {
        copy.row(5);
        copy.field(&node_id.to_be_bytes());
        copy.ts(b.t_start_ms);
        copy.ts(b.t_end_ms);
        copy.field(&b.n_samples.to_be_bytes());
        copy.field(&b.data);
    }
}

pub(crate) async fn copy_in(db: &PgPool, statement: &str, data: Vec<u8>) -> anyhow::Result<u64> {
    let mut conn = db.acquire().await?;
    let mut copy = conn.copy_in_raw(statement).await?;
    for chunk in data.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    Ok(copy.finish().await?)
}

pub(crate) async fn storage(base_url: &str, sizes: &Sizes) -> anyhow::Result<(String, String)> {
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

pub(crate) async fn ingest(base_url: &str, sizes: &Sizes) -> anyhow::Result<Vec<(String, String)>> {
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
    let mut frames: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut copy = Copy::new();
    for (n, node) in sim.iter().enumerate() {
        let mut node_bodies = Vec::new();
        let mut node_frames = Vec::new();
        for batch in node {
            samples_total += batch.len() as u64;
            let body = batch_of(n, sizes.gpus_per_node, batch);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&serde_json::to_vec(&body)?)?;
            node_bodies.push(gz.finish()?);
            node_frames.push(wattlas_protocol::wire::encode_batch(&body).context("binary frame")?);
            blocks(n as i32 + 1, &raw(batch), &mut copy);
        }
        bodies.push(node_bodies);
        frames.push(node_frames);
    }
    let json_bytes: usize = bodies.iter().flatten().map(Vec::len).sum();
    let frame_bytes: usize = frames.iter().flatten().map(Vec::len).sum();
    let (pg_before, me_before) = (postgres_cpu(), proc_usage(std::process::id())?.0);
    let json_leg = Leg {
        content_type: "application/json",
        gzip: true,
        clients_per_node: 1,
    };
    let json_bodies = bodies.clone();
    let (http_secs, mut latencies) = json_leg.push(&http, &base, &tokens, bodies).await?;
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

    // The same batches in the binary form, by the same clients (one per collector), then by four a
    // collector (each node's seconds split between four: the same requests with more of them in
    // flight), into the emptied table each time.
    let mut binary = Vec::new();
    for clients_per_node in [1usize, 4] {
        sqlx::query("truncate gpu_raw, rollup_pending")
            .execute(&db)
            .await?;
        let (pg_before, me_before) = (postgres_cpu(), proc_usage(std::process::id())?.0);
        let leg = Leg {
            content_type: wattlas_protocol::wire::BATCH_CONTENT_TYPE,
            gzip: false,
            clients_per_node,
        };
        let (secs, mut lat) = leg.push(&http, &base, &tokens, frames.clone()).await?;
        let cpu = (
            postgres_cpu_since(&pg_before),
            proc_usage(std::process::id())?.0 - me_before,
        );
        let stored: i64 = sqlx::query_scalar("select sum(n_samples)::int8 from gpu_raw")
            .fetch_one(&db)
            .await?;
        anyhow::ensure!(
            stored as u64 == samples_total,
            "binary stored {stored} of {samples_total}"
        );
        lat.sort();
        binary.push((clients_per_node, secs, lat, cpu));
    }
    // JSON + gzip at the target's load (300,000 samples/s: the batch p99 target is for a server at
    // that load, not one pushed past what it can take), into the emptied table.
    sqlx::query("truncate gpu_raw, rollup_pending")
        .execute(&db)
        .await?;
    let samples_per_body =
        samples_total as f64 / (sizes.ingest_nodes as f64 * sizes.ingest_seconds as f64);
    let (paced_rate, paced_latencies) = paced(
        &json_leg,
        &http,
        &base,
        &tokens,
        json_bodies,
        samples_per_body,
        JSON_TARGET,
    )
    .await?;
    let stored: i64 = sqlx::query_scalar("select sum(n_samples)::int8 from gpu_raw")
        .fetch_one(&db)
        .await?;
    anyhow::ensure!(
        stored as u64 == samples_total,
        "paced JSON stored {stored} of {samples_total}"
    );
    let paced_pct = |p: f64| {
        paced_latencies
            .get(
                ((paced_latencies.len() as f64 * p) as usize)
                    .min(paced_latencies.len().saturating_sub(1)),
            )
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };
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

    // The same samples by Prometheus remote write (snappy protobuf of dcgm-exporter's power and energy
    // series, a request per node per second as Prometheus batches them), into the emptied table.
    sqlx::query("truncate gpu_raw").execute(&db).await?;
    let mut writes: Vec<Vec<Vec<u8>>> = Vec::new();
    for (n, node) in sim.iter().enumerate() {
        writes.push(node.iter().map(|batch| remote_write(n, batch)).collect());
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for bodies in writes {
        let (http, url) = (http.clone(), format!("{base}/api/v1/write"));
        tasks.push(tokio::spawn(async move {
            for body in bodies {
                let r = http
                    .post(&url)
                    .bearer_auth(crate::ADMIN)
                    .header("content-type", "application/x-protobuf")
                    .header("content-encoding", "snappy")
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(
                    r.status().is_success(),
                    "remote write answered {}",
                    r.status()
                );
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let rw_secs = started.elapsed().as_secs_f64();
    let stored: i64 = sqlx::query_scalar("select coalesce(sum(n_samples), 0)::int8 from gpu_raw")
        .fetch_one(&db)
        .await?;
    anyhow::ensure!(
        stored as u64 == samples_total,
        "remote write stored {stored} of {samples_total}"
    );
    let rw_rate = samples_total as f64 / rw_secs;
    server.stop().await;
    let http_rate = samples_total as f64 / http_secs;
    let copy_rate = samples_total as f64 / copy_secs;
    Ok(vec![
        (
            format!("Ingest end to end: {} collectors x {} GPUs, {} s of 100 ms samples each ({samples_total} samples), 1 s batches, HTTP + gzip, committed", sizes.ingest_nodes, sizes.gpus_per_node, sizes.ingest_seconds),
            format!("**{http_rate:.0} samples/s** ({:.0} GPUs at 100 ms); batch latency p50 {:.1} ms, p99 {:.1} ms; target >= 100,000", http_rate / 10.0, pct(0.5).as_secs_f64() * 1000.0, pct(0.99).as_secs_f64() * 1000.0).replace("target >= 100,000", "target >= 300,000 with gzip"),
        ),
        (
            format!("The same JSON + gzip batches sent on a schedule at the target's load ({JSON_TARGET:.0} samples/s offered; latency from when each batch was due)"),
            format!("{paced_rate:.0} samples/s taken; batch p50 {:.1} ms, p99 **{:.1} ms**, max {:.1} ms; target p99 <= 100 ms: {}", paced_pct(0.5), paced_pct(0.99), paced_pct(1.0), if paced_pct(0.99) <= 100.0 { "met" } else { "missed" }),
        ),
        (
            "Where the CPU went in the end-to-end run".to_owned(),
            format!(
                "PostgreSQL {pg_cpu:.1} core-s, the bench process (server and load generator, one runtime) {me_cpu:.1} core-s, in {http_secs:.1} s on {cores:.0} cores: {:.0} % of the machine busy",
                (pg_cpu + me_cpu) / (http_secs * cores) * 100.0
            ),
        ),
        (
            format!("The same batches in the binary form (`application/vnd.wattlas.batch`: {:.1} bytes a sample on the wire, gzip'd JSON {:.1}), 16 clients", frame_bytes as f64 / samples_total as f64, json_bytes as f64 / samples_total as f64).replace("16 clients", &format!("{} clients (one per collector; target >= 1,000,000 samples/s)", sizes.ingest_nodes)),
            binary_row(&binary[0], samples_total, http_rate, cores),
        ),
        (
            format!("The same, {} clients (each node's seconds split between four)", sizes.ingest_nodes * 4),
            binary_row(&binary[1], samples_total, http_rate, cores),
        ),
        (
            "The same samples by Prometheus remote write (snappy protobuf, power and energy series per GPU, a write per node per second)".to_owned(),
            format!("{rw_rate:.0} samples/s, **{:.0} %** of the JSON path's rate in the same run", rw_rate / http_rate * 100.0),
        ),
        (
            "Binary COPY of the same blocks into the same table (the limit)".to_owned(),
            format!("{copy_rate:.0} samples/s; end to end is **{:.0} %** of it (binary, four clients a collector: **{:.0} %**); target >= 80 %", http_rate / copy_rate * 100.0, samples_total as f64 / binary[1].1 / copy_rate * 100.0),
        ),
    ])
}

/// The JSON + gzip throughput target, samples/s.
const JSON_TARGET: f64 = 300_000.0;

/// A binary leg's row: rate, its ratio to JSON's, latency, CPU.
fn binary_row(
    leg: &(usize, f64, Vec<Duration>, (f64, f64)),
    samples_total: u64,
    json_rate: f64,
    cores: f64,
) -> String {
    let (_, secs, lat, (pg, me)) = leg;
    let rate = samples_total as f64 / secs;
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };
    format!(
        "**{rate:.0} samples/s** ({:.0} % of JSON's); batch p50 {:.1} ms, p99 {:.1} ms; PostgreSQL {pg:.1} core-s, bench process {me:.1} core-s: {:.0} % of the machine",
        rate / json_rate * 100.0,
        pct(0.5),
        pct(0.99),
        (pg + me) / (secs * cores) * 100.0
    )
}

/// One way of pushing the pre-built request bodies: their content type, whether gzip'd, and how many
/// clients share each node's requests (each takes every n-th).
struct Leg {
    content_type: &'static str,
    gzip: bool,
    clients_per_node: usize,
}

impl Leg {
    /// Sends every body, each client in order; the elapsed time and every request's latency.
    async fn push(
        &self,
        http: &reqwest::Client,
        base: &str,
        tokens: &[String],
        bodies: Vec<Vec<Vec<u8>>>,
    ) -> anyhow::Result<(f64, Vec<Duration>)> {
        let mut clients: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
        for (node_bodies, token) in bodies.into_iter().zip(tokens) {
            let mut split: Vec<Vec<Vec<u8>>> = vec![Vec::new(); self.clients_per_node];
            for (i, b) in node_bodies.into_iter().enumerate() {
                split[i % self.clients_per_node].push(b);
            }
            clients.extend(split.into_iter().map(|b| (token.clone(), b)));
        }
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (token, bodies) in clients {
            let http = http.clone();
            let url = format!("{base}/api/v1/ingest/gpu");
            let (content_type, gzip) = (self.content_type, self.gzip);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for body in bodies {
                    let t = Instant::now();
                    send(&http, &url, &token, content_type, gzip, body).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await??);
        }
        Ok((started.elapsed().as_secs_f64(), latencies))
    }
}

/// One ingest request as a collector sends it; its answer, refused unless 2xx.
pub(crate) async fn send(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    content_type: &str,
    gzip: bool,
    body: Vec<u8>,
) -> anyhow::Result<reqwest::Response> {
    let r = answer(http, url, token, content_type, gzip, body).await?;
    anyhow::ensure!(r.status().is_success(), "ingest answered {}", r.status());
    Ok(r)
}

/// One ingest request as a collector sends it; its answer, whatever its status.
pub(crate) async fn answer(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    content_type: &str,
    gzip: bool,
    body: Vec<u8>,
) -> reqwest::Result<reqwest::Response> {
    let mut request = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", content_type);
    if gzip {
        request = request.header("content-encoding", "gzip");
    }
    request.body(body).send().await
}

/// Latency at a given load, as collectors make it: each sends its batches on a schedule (open loop,
/// `rate` samples/s over all of them) whether or not the server keeps up, one request in flight; a
/// batch's latency runs from when it was due, so a server falling behind shows as the wait it causes
/// (not hidden by senders slowing down with it). Returns the achieved rate and the latencies.
async fn paced(
    leg: &Leg,
    http: &reqwest::Client,
    base: &str,
    tokens: &[String],
    bodies: Vec<Vec<Vec<u8>>>,
    samples_per_body: f64,
    rate: f64,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let clients = bodies.len();
    let per_client_every = Duration::from_secs_f64(clients as f64 * samples_per_body / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for (c, (bodies, token)) in bodies.into_iter().zip(tokens).enumerate() {
        let (http, token) = (http.clone(), token.clone());
        let url = format!("{base}/api/v1/ingest/gpu");
        let (content_type, gzip) = (leg.content_type, leg.gzip);
        // Collectors' seconds do not start together: spread over one period.
        let first = start + per_client_every.mul_f64(c as f64 / clients as f64);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for (k, body) in bodies.into_iter().enumerate() {
                let due = first + per_client_every * k as u32;
                tokio::time::sleep_until(due).await;
                send(&http, &url, &token, content_type, gzip, body).await?;
                latencies.push(due.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort();
    Ok((latencies.len() as f64 * samples_per_body / secs, latencies))
}

/// One node's second of samples as a Prometheus remote write of dcgm-exporter series.
pub(crate) fn remote_write(node: usize, batch: &[GpuSample]) -> Vec<u8> {
    use std::collections::BTreeMap;
    use wattlas_server::service::remote_write::{encode, Label, Sample, TimeSeries, WriteRequest};
    let mut by_gpu: BTreeMap<u32, Vec<&GpuSample>> = BTreeMap::new();
    for s in batch {
        by_gpu.entry(s.gpu).or_default().push(s);
    }
    let mut timeseries = Vec::new();
    for (gpu, samples) in by_gpu {
        let labels = |name: &str| {
            [
                ("__name__", name.to_owned()),
                ("gpu", gpu.to_string()),
                ("UUID", format!("GPU-bench-{node}-{gpu}")),
                ("modelName", "A100".to_owned()),
                ("Hostname", format!("bench{node}")),
            ]
            .into_iter()
            .map(|(n, v)| Label {
                name: n.into(),
                value: v,
            })
            .collect::<Vec<_>>()
        };
        timeseries.push(TimeSeries {
            labels: labels("DCGM_FI_DEV_POWER_USAGE"),
            samples: samples
                .iter()
                .map(|s| Sample {
                    value: s.power_w,
                    timestamp: s.time.timestamp_millis(),
                })
                .collect(),
        });
        timeseries.push(TimeSeries {
            labels: labels("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"),
            samples: samples
                .iter()
                .filter_map(|s| {
                    s.energy_mj.map(|e| Sample {
                        value: e as f64,
                        timestamp: s.time.timestamp_millis(),
                    })
                })
                .collect(),
        });
    }
    encode(&WriteRequest { timeseries })
}
