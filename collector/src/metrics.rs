//! `GET /metrics` of a running collector (with `--metrics-bind`), in Prometheus' text format (0.0.4):
//! samples read, delivered, refused and dropped, the spool's depth, and the last successful push.
//! Node exporters scrape it on the node; it holds counts only.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::spool::Spool;
use crate::stats::Stats;

#[derive(Clone)]
struct Shared {
    stats: Arc<Stats>,
    spool: Arc<Mutex<Spool>>,
}

/// The exposition of the stats and the spool now.
pub(crate) fn render(stats: &Stats, spool: &Mutex<Spool>) -> String {
    let (entries, bytes, dropped) = spool
        .lock()
        .map(|s| (s.len(), s.bytes(), s.dropped_samples()))
        .unwrap_or_default();
    let mut out = String::new();
    let mut one = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    one(
        "wattlas_collector_samples_read_total",
        "counter",
        "GPU samples read from the source.",
        n(&stats.sampled),
    );
    one(
        "wattlas_collector_samples_delivered_total",
        "counter",
        "GPU samples the server committed.",
        n(&stats.delivered),
    );
    one(
        "wattlas_collector_samples_rejected_total",
        "counter",
        "GPU samples the server refused for good (kept in the spool's rejected/ folder).",
        n(&stats.rejected),
    );
    one(
        "wattlas_collector_samples_dropped_total",
        "counter",
        "GPU samples dropped because the spool was full (oldest first).",
        dropped.to_string(),
    );
    one(
        "wattlas_collector_source_errors_total",
        "counter",
        "GPU reads that failed.",
        n(&stats.source_errors),
    );
    one(
        "wattlas_collector_skipped_ticks_total",
        "counter",
        "Sampling ticks missed because the sampler was held up past them.",
        n(&stats.skipped_ticks),
    );
    one(
        "wattlas_collector_clock_steps_total",
        "counter",
        "Steps of the node's wall clock (over 1 s) the sample stamps slewed over instead of repeating or skipping time.",
        n(&stats.clock_steps),
    );
    one(
        "wattlas_collector_stamp_offset_ms",
        "gauge",
        "Sample stamps minus the wall clock, ms: non-zero while a step is slewed at 10 ms a second.",
        stats
            .stamp_offset_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            .to_string(),
    );
    one(
        "wattlas_collector_rapl_unreadable_zones",
        "gauge",
        "CPU and DRAM energy counters found but unreadable (root-only since the 2020 RAPL advisory).",
        n(&stats.rapl_unreadable),
    );
    one(
        "wattlas_collector_rapl_read_errors_total",
        "counter",
        "Readings of a readable CPU or DRAM energy counter that failed.",
        n(&stats.rapl_errors),
    );
    one(
        "wattlas_collector_spool_entries",
        "gauge",
        "Batches waiting in the spool.",
        entries.to_string(),
    );
    one(
        "wattlas_collector_spool_bytes",
        "gauge",
        "Bytes waiting in the spool.",
        bytes.to_string(),
    );
    let last = stats.last_push_ms.load(Ordering::Relaxed);
    one(
        "wattlas_collector_last_push_timestamp_seconds",
        "gauge",
        "When the server last committed a batch (0: not since start).",
        format!("{:.3}", last as f64 / 1000.0),
    );
    out
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&shared.stats, &shared.spool),
    )
}

/// Serves `/metrics` on `addr` until the returned task is aborted.
pub(crate) async fn serve(
    addr: SocketAddr,
    stats: Arc<Stats>,
    spool: Arc<Mutex<Spool>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // The address bound (port 0 asks the system for one): tests read it back from this line.
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving /metrics");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Shared { stats, spool });
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    }))
}
