//! The server's own metrics in Prometheus' text format (0.0.4): the counters `metrics::Metrics` keeps,
//! and gauges read from the database at scrape time (rollup backlog, last runs of the background tasks,
//! database round-trip time). `GET /metrics` answers it to operators.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::Utc;

use crate::metrics::{family, label, single};
use crate::service::context::Context;

/// The exposition, now.
pub(crate) async fn exposition(cx: &Context) -> String {
    let m = &cx.metrics;
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
    single(
        &mut out,
        "wattlas_identities_recalled_total",
        "counter",
        "Requests identified from this server's memory of recently confirmed tokens and sessions while the database was unreachable.",
        cx.metrics.identities_recalled.load(Ordering::Relaxed),
    );
    let w = &cx.writers.stats;
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
        .fetch_one(&cx.db)
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
        "Database connections of the pool, by cx.",
    );
    let (size, idle) = (cx.db.size(), cx.db.num_idle());
    let _ = writeln!(out, "wattlas_db_pool_connections{{state=\"idle\"}} {idle}");
    let _ = writeln!(
        out,
        "wattlas_db_pool_connections{{state=\"busy\"}} {}",
        (size as usize).saturating_sub(idle)
    );
    if cx.reads.has_replica() {
        // NaN: not known (no probe has reached both yet).
        let lag = cx.reads.staleness().map_or(f64::NAN, |d| d.as_secs_f64());
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
        let (replica, primary) = cx.reads.served();
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
        if let Ok((pending, oldest)) = crate::db::rollups::lag(&cx.db).await {
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
        .fetch_all(&cx.db)
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
    out
}

/// The rollup's backlog: ranges pending and the oldest one's start (the database answers).
pub(crate) async fn rollup_lag(
    cx: &Context,
) -> Result<(i64, Option<chrono::DateTime<Utc>>), crate::service::Error> {
    Ok(crate::db::rollups::lag(&cx.db).await?)
}
