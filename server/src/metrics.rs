//! Self-observability: counters the server keeps in memory and `GET /metrics` exposes in Prometheus'
//! text format (0.0.4), with gauges read from the database at scrape time (rollup backlog, last runs of
//! the background tasks, database round-trip time). `/metrics` is public like `/readyz`: it holds
//! counts, no names, jobs or tokens.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::state::AppState;

/// What the server counts.
#[derive(Default)]
pub struct Metrics {
    batches: AtomicU64,
    samples_stored: AtomicU64,
    samples_duplicate: AtomicU64,
    readings_stored: AtomicU64,
    /// Reads of a job's allocations, and integrations of a job's energy over its samples: a job page
    /// costs one of each at most.
    allocation_reads: AtomicU64,
    /// Remote-write samples of series Wattlas does not store, and GPU timestamps without power.
    remote_write_ignored: AtomicU64,
    remote_write_without_power: AtomicU64,
    /// Remote-write series dropped over a per-series limit, by reason.
    remote_write_dropped: [AtomicU64; 2],
    energy_integrations: AtomicU64,
    /// Refused writes by route and HTTP status.
    rejected: Mutex<BTreeMap<(String, u16), u64>>,
    /// Sign-ins by outcome (accepted, refused, limited, busy).
    sign_ins: Mutex<BTreeMap<&'static str, u64>>,
    /// Background work done by this process, by task.
    maintenance: Mutex<BTreeMap<&'static str, u64>>,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_default() += 1;
}

impl Metrics {
    /// A GPU batch was committed.
    pub fn ingested(&self, stored: u64, duplicates: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.samples_stored.fetch_add(stored, Ordering::Relaxed);
        self.samples_duplicate
            .fetch_add(duplicates, Ordering::Relaxed);
    }

    /// Facility readings were committed.
    pub fn readings(&self, stored: u64) {
        self.readings_stored.fetch_add(stored, Ordering::Relaxed);
    }

    /// A remote write was taken: samples of series ignored, GPU timestamps without power.
    pub fn remote_write(&self, ignored: u64, without_power: u64) {
        self.remote_write_ignored
            .fetch_add(ignored, Ordering::Relaxed);
        self.remote_write_without_power
            .fetch_add(without_power, Ordering::Relaxed);
    }

    /// Series of a remote write dropped: more labels than the limit, a label longer than it.
    pub fn remote_write_dropped(&self, too_many_labels: u64, label_too_long: u64) {
        self.remote_write_dropped[0].fetch_add(too_many_labels, Ordering::Relaxed);
        self.remote_write_dropped[1].fetch_add(label_too_long, Ordering::Relaxed);
    }

    /// A job's allocations were read.
    pub fn allocation_read(&self) {
        self.allocation_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// A job's energy was integrated over its samples.
    pub fn energy_integration(&self) {
        self.energy_integrations.fetch_add(1, Ordering::Relaxed);
    }

    /// `(allocation reads, energy integrations)` so far.
    pub fn job_reads(&self) -> (u64, u64) {
        (
            self.allocation_reads.load(Ordering::Relaxed),
            self.energy_integrations.load(Ordering::Relaxed),
        )
    }

    /// A sign-in ended so.
    pub fn sign_in(&self, outcome: &'static str) {
        bump(&self.sign_ins, outcome);
    }

    /// A background task did `n` pieces of work (ranges, nodes, job summaries, chunks).
    pub fn maintenance(&self, task: &'static str, n: u64) {
        *self
            .maintenance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(task)
            .or_default() += n;
    }

    /// Background work done by this process so far, by task.
    pub fn maintenance_work(&self) -> BTreeMap<&'static str, u64> {
        self.maintenance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Counts the refusals (4xx, 5xx) of the write routes it wraps, by route and status.
pub async fn count_rejections(
    State(state): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    // The route's template, whole (a nested router strips its prefix from the URI, not from this):
    // bounded label values. Set on every request of a route layer.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || request.uri().path().to_owned(),
            |m| m.as_str().to_owned(),
        );
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        bump(&state.metrics.rejected, (route, status.as_u16()));
    }
    response
}

/// Label values are ours (routes, outcomes, task names), but escape them as the format asks anyway.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family of one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Whether the request carries the metrics token or the admin token (what Prometheus scrapes with).
pub fn operator_token(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<(), crate::error::AppError> {
    let sent = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let allowed = [&state.config.metrics_token, &state.config.admin_token]
        .into_iter()
        .flatten()
        .any(|t| {
            use secrecy::ExposeSecret;
            use subtle::ConstantTimeEq;
            !sent.is_empty() && bool::from(t.expose_secret().as_bytes().ct_eq(sent.as_bytes()))
        });
    if allowed {
        Ok(())
    } else {
        Err(crate::error::AppError::unauthorized(
            "the metrics token (WATTLAS_METRICS_TOKEN) or the admin token is required",
        ))
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    // Counters of sign-ins and refusals are for operators, not for anyone who asks.
    if let Err(e) = operator_token(&state, &headers) {
        return e.into_response();
    }
    let m = &state.metrics;
    let mut out = String::new();
    single(
        &mut out,
        "wattlas_ingest_batches_total",
        "counter",
        "GPU sample batches committed.",
        m.batches.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "wattlas_ingest_samples_total",
        "counter",
        "GPU samples in committed batches, stored or already present.",
    );
    let _ = writeln!(
        out,
        "wattlas_ingest_samples_total{{outcome=\"stored\"}} {}",
        m.samples_stored.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "wattlas_ingest_samples_total{{outcome=\"duplicate\"}} {}",
        m.samples_duplicate.load(Ordering::Relaxed)
    );
    single(
        &mut out,
        "wattlas_facility_readings_total",
        "counter",
        "Facility meter readings stored.",
        m.readings_stored.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "wattlas_remote_write_ignored_samples_total",
        "counter",
        "Remote-write samples of series Wattlas does not store (not DCGM power, energy, utilisation, memory, temperature, clocks).",
        m.remote_write_ignored.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "wattlas_remote_write_without_power_total",
        "counter",
        "GPU timestamps of remote writes without a power sample (no sample made of them).",
        m.remote_write_without_power.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "wattlas_remote_write_dropped_series_total",
        "counter",
        "Remote-write series dropped over a per-series limit (labels per series, label length), by reason.",
    );
    for (reason, n) in ["too_many_labels", "label_too_long"]
        .iter()
        .zip(&m.remote_write_dropped)
    {
        let n = n.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "wattlas_remote_write_dropped_series_total{{reason=\"{reason}\"}} {n}"
        );
    }
    let (allocation_reads, integrations) = m.job_reads();
    single(
        &mut out,
        "wattlas_job_allocation_reads_total",
        "counter",
        "Reads of a job's allocations (a job page makes one).",
        allocation_reads,
    );
    single(
        &mut out,
        "wattlas_job_energy_integrations_total",
        "counter",
        "Integrations of a job's energy over its samples (a job page makes one at most).",
        integrations,
    );
    let w = &state.writers.stats;
    single(
        &mut out,
        "wattlas_ingest_commits_total",
        "counter",
        "Transactions in which the ingest writers stored GPU batches (group commit: many batches each under load).",
        w.groups.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "wattlas_ingest_committed_batches_total",
        "counter",
        "GPU batches stored by the ingest writers (over commits: the mean group).",
        w.batches.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "wattlas_ingest_queue_full_total",
        "counter",
        "GPU batches answered 503 because the ingest queue was full (the collector retries).",
        w.refused.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "wattlas_maintenance_work_total",
        "counter",
        "Background work done by this process: pending raw ranges rolled up (rollup), GPU-minutes they recomputed (rollup_gpu_minutes), nodes' CPU and DRAM rolled up (node_energy), job summaries computed (job_energy), raw chunks dropped (retention), node-hours settled (settle), budget crossings recorded and delivered (budgets).",
    );
    let work = m.maintenance_work();
    for task in [
        "rollup",
        "rollup_gpu_minutes",
        "node_energy",
        "job_energy",
        "retention",
        "settle",
        "budgets",
    ] {
        let n = work.get(task).copied().unwrap_or(0);
        let _ = writeln!(out, "wattlas_maintenance_work_total{{task=\"{task}\"}} {n}");
    }
    family(
        &mut out,
        "wattlas_rejected_requests_total",
        "counter",
        "Refused writes to the ingest routes, by route and HTTP status.",
    );
    for ((route, status), n) in m
        .rejected
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        let _ = writeln!(
            out,
            "wattlas_rejected_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
            label(route)
        );
    }
    family(
        &mut out,
        "wattlas_sign_ins_total",
        "counter",
        "Sign-in attempts by outcome (accepted, refused, limited, busy).",
    );
    for (outcome, n) in m
        .sign_ins
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        let _ = writeln!(out, "wattlas_sign_ins_total{{outcome=\"{outcome}\"}} {n}");
    }

    // From the database, at scrape time.
    let started = Instant::now();
    let ping = sqlx::query_scalar::<_, i32>("select 1")
        .fetch_one(&state.db)
        .await;
    single(
        &mut out,
        "wattlas_db_up",
        "gauge",
        "Whether the database answered this scrape.",
        u8::from(ping.is_ok()),
    );
    family(
        &mut out,
        "wattlas_db_pool_connections",
        "gauge",
        "Database connections of the pool, by state.",
    );
    let (size, idle) = (state.db.size(), state.db.num_idle());
    let _ = writeln!(out, "wattlas_db_pool_connections{{state=\"idle\"}} {idle}");
    let _ = writeln!(
        out,
        "wattlas_db_pool_connections{{state=\"busy\"}} {}",
        (size as usize).saturating_sub(idle)
    );
    if state.reads.has_replica() {
        // NaN: not known (no probe has reached both yet).
        let lag = state
            .reads
            .staleness()
            .map_or(f64::NAN, |d| d.as_secs_f64());
        single(
            &mut out,
            "wattlas_replica_lag_seconds",
            "gauge",
            "How far the read replica may be behind the primary, at most (WAL replayed against the primary's position when probed).",
            format!("{lag:.3}"),
        );
        family(
            &mut out,
            "wattlas_reads_total",
            "counter",
            "Reads that may lag, by the pool that served them (the primary while the replica is beyond its bound).",
        );
        let (replica, primary) = state.reads.served();
        let _ = writeln!(out, "wattlas_reads_total{{pool=\"replica\"}} {replica}");
        let _ = writeln!(out, "wattlas_reads_total{{pool=\"primary\"}} {primary}");
    }
    if ping.is_ok() {
        single(
            &mut out,
            "wattlas_db_round_trip_seconds",
            "gauge",
            "Time of a trivial query at this scrape (pool acquire included).",
            format!("{:.6}", started.elapsed().as_secs_f64()),
        );
        if let Ok((pending, oldest)) = crate::db::rollups::lag(&state.db).await {
            single(
                &mut out,
                "wattlas_rollup_pending_ranges",
                "gauge",
                "Ranges of raw samples not yet rolled up (exact up to 10,000, PostgreSQL's live-row estimate above).",
                pending,
            );
            let lag = oldest.map_or(0.0, |t| {
                ((Utc::now() - t).num_milliseconds() as f64 / 1000.0).max(0.0)
            });
            single(
                &mut out,
                "wattlas_rollup_lag_seconds",
                "gauge",
                "Age of the oldest raw data not yet rolled up (0 when none).",
                format!("{lag:.3}"),
            );
        }
        if let Ok(runs) = sqlx::query_as::<_, (String, chrono::DateTime<Utc>)>(
            "select task, last_run from maintenance_runs order by task",
        )
        .fetch_all(&state.db)
        .await
        {
            family(
                &mut out,
                "wattlas_task_last_run_timestamp_seconds",
                "gauge",
                "When each background task (rollup, retention, energy) last completed.",
            );
            for (task, at) in runs {
                let _ = writeln!(
                    out,
                    "wattlas_task_last_run_timestamp_seconds{{task=\"{}\"}} {:.3}",
                    label(&task),
                    at.timestamp_millis() as f64 / 1000.0
                );
            }
        }
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Resident memory of a process now (`/proc/PID/status`, VmRSS), KiB; `None` for this process. `None`
/// where it cannot be read (not Linux, the process gone).
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/status".to_owned(),
        |p| format!("/proc/{p}/status"),
    );
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
