//! Background tasks of the server: the rollup task (pending raw ranges -> per-minute rollups), the
//! retention task (`drop_chunks` of raw samples older than the retention period), the job energy
//! task (each job's stored energy summary, which the jobs list sorts and totals on), and the settle task
//! (a node's live blocks of an hour that ended rewritten as one packed block per GPU).
//!
//! Several server processes run them at once on one database, and each piece of work is done once:
//! pending raw ranges are taken with `for update skip locked` (so processes share the rollup), while the
//! node energy rollup, the job energy refresh, settling and retention run in one process at a time (`exclusively`:
//! a session advisory lock, released when the run ends or by PostgreSQL when the process dies); the
//! others skip that run, and find the work done at their next. Each process counts what it did
//! (`wattlas_maintenance_work_total{task}`).

use crate::ids::NodeId;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

use crate::analytics::energy::minute_rollups;
use crate::db::energy::{ceil_minute, floor_minute};
use crate::db::{rollups, samples};
use crate::service::Context;
use crate::service::Error;

/// Pending ranges taken per transaction.
const PENDING_PER_RUN: i64 = 2000;
/// Minutes recomputed per raw fetch, to bound memory when a long import is rolled up.
const MINUTES_PER_FETCH: i64 = 60;
/// The rollup takes raw data up to a multiple of this, ms: a streaming node's pending ranges are
/// rolled up five minutes at a time. New raw data changes the minutes up to the fetch margin (60 s)
/// around it, so a run that took a node's last 10 s recomputed three minutes from five fetched (18
/// GPU-minutes computed per GPU-minute of data); five minutes at a time recompute seven from nine.
/// Readers read raw samples where ranges are pending, so the rollups' delay costs no figure.
pub(crate) const ROLLUP_STEP_MS: i64 = 300_000;

/// Where a rollup run with raw data settled before `settled_before_ms` cuts: the step before it, ms.
pub(crate) fn rollup_cut_ms(settled_before_ms: i64) -> i64 {
    settled_before_ms.div_euclid(ROLLUP_STEP_MS) * ROLLUP_STEP_MS
}

/// Handles of the running background tasks; dropping it stops them, so they end with the server.
pub(crate) struct Tasks {
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// Runs `run` again and again: at once while a run did a full batch (`full` or more), else after
/// `every`; a failed run is logged under `task` and retried after `every`.
fn repeat<F, Fut>(
    cx: &Context,
    task: &'static str,
    every: Duration,
    full: usize,
    run: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Context) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<usize, Error>> + Send,
{
    let cx = cx.clone();
    tokio::spawn(async move {
        loop {
            match run(cx.clone()).await {
                Ok(n) if n >= full => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, task, "maintenance run failed"),
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// Starts the background tasks: rollup, retention, job energy and budgets, settling.
pub(crate) fn spawn(cx: &Context) -> Tasks {
    let often = Duration::from_secs(cx.config.rollup_interval_s.max(1));
    let seldom = Duration::from_secs(cx.config.retention_interval_s.max(1));
    Tasks {
        handles: vec![
            repeat(
                cx,
                "rollup",
                often,
                PENDING_PER_RUN as usize,
                |s| async move { rollup_once(&s).await },
            ),
            repeat(cx, "retention", seldom, usize::MAX, |s| async move {
                retention_once(&s).await
            }),
            // Budgets are checked after each refresh of the jobs' energy they sum, in the same task:
            // each task holds a connection for its lock and takes another to work, so one task more
            // than the pool has connections would wait on itself.
            repeat(
                cx,
                "job_energy",
                often,
                ENERGY_PER_RUN as usize,
                |s| async move {
                    let n = refresh_job_energy(&s, ENERGY_PER_RUN).await?;
                    // The kept totals' rows of changes (of these summaries, and of jobs registered
                    // and ended since) folded into one per key.
                    if let Err(e) = crate::db::jobs::fold_totals(&s.db).await {
                        tracing::warn!(error = %e, "folding the jobs' totals failed");
                    }
                    if let Err(e) = budget_crossings_once(&s).await {
                        tracing::warn!(error = %e, "budget check failed");
                    }
                    Ok(n)
                },
            ),
            // Deliveries wait on receivers (5 s each at most, 8 at once): a task of their own, so no
            // receiver slows the jobs' energy (issue 33, N6).
            repeat(cx, "webhooks", often, usize::MAX, |s| async move {
                webhooks_once(&s).await
            }),
            repeat(
                cx,
                "settle",
                often,
                HOURS_PER_SETTLE_RUN as usize,
                |s| async move { settle_once(&s).await },
            ),
        ],
    }
}

/// Records budget crossings (`service::budgets`), one process at a time: how many.
pub(crate) async fn budget_crossings_once(cx: &Context) -> Result<usize, Error> {
    let done = exclusively(&cx.db, "budgets", || async {
        crate::service::budgets::record_crossings(cx).await
    })
    .await?
    .unwrap_or(0);
    cx.metrics.maintenance("budgets", done as u64);
    Ok(done)
}

/// Posts the budget crossings not delivered yet, one process at a time: how many were delivered.
pub(crate) async fn webhooks_once(cx: &Context) -> Result<usize, Error> {
    // Most runs have nothing to post: one short query, not the lock's connection beside it.
    if !crate::service::budgets::any_due(cx).await? {
        return Ok(0);
    }
    let delivered = exclusively(&cx.db, "webhooks", || async {
        crate::service::budgets::deliver_due(cx).await
    })
    .await?
    .unwrap_or(0);
    // Counted with the crossings, as the budget task's work.
    cx.metrics.maintenance("budgets", delivered as u64);
    Ok(delivered)
}

/// Records budget crossings and posts undelivered ones (`service::budgets`), one process at a time;
/// returns how many crossings it recorded and delivered.
pub async fn budgets_once(cx: &Context) -> Result<usize, Error> {
    Ok(budget_crossings_once(cx).await? + webhooks_once(cx).await?)
}

/// Node-hours settled per run.
const HOURS_PER_SETTLE_RUN: i64 = 32;

/// Settles the node-hours that ended `compact_after_s` ago or earlier (up to `HOURS_PER_SETTLE_RUN`),
/// oldest first; returns how many.
pub(crate) async fn settle_once(cx: &Context) -> Result<usize, Error> {
    let before = Utc::now() - chrono::Duration::seconds(cx.config.compact_after_s as i64);
    settle_before(cx, before).await
}

/// Settles node-hours that ended before `before`.
pub async fn settle_before(cx: &Context, before: chrono::DateTime<Utc>) -> Result<usize, Error> {
    let done = exclusively(&cx.db, "settle", || async {
        let hours = samples::settleable(&cx.db, before, HOURS_PER_SETTLE_RUN).await?;
        let mut total = samples::Settled::default();
        for (node_id, hour) in &hours {
            let s = samples::settle_hour(&cx.db, *node_id, *hour).await?;
            total.blocks += s.blocks;
            total.samples += s.samples;
            total.bytes_before += s.bytes_before;
            total.bytes_after += s.bytes_after;
        }
        if !hours.is_empty() {
            let mut tx = cx.db.begin().await?;
            record_run(
                &mut tx,
                "settle",
                serde_json::json!({
                    "hours": hours.len(),
                    "live_blocks": total.blocks,
                    "samples": total.samples,
                    "bytes_before": total.bytes_before,
                    "bytes_after": total.bytes_after,
                }),
            )
            .await?;
            tx.commit().await?;
        }
        Ok(hours.len())
    })
    .await?
    .unwrap_or(0);
    cx.metrics.maintenance("settle", done as u64);
    Ok(done)
}

/// Rolls up settled pending ranges once; returns how many ranges it took.
pub async fn rollup_once(cx: &Context) -> Result<usize, Error> {
    let settle = chrono::Duration::seconds(cx.config.rollup_settle_s as i64);
    let taken = rollup_settled_before(cx, Utc::now() - settle).await?;
    node_energy_rollup(cx, Utc::now() - settle).await?;
    Ok(taken)
}

/// A session advisory lock on a pooled connection, for the length of one run of a task.
struct Held {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Not unlocked (the run panicked or was cancelled): close the connection, which releases the
        // lock, instead of handing a locked session back to the pool.
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// Runs `work` unless another process (or task) runs `task` now; `None` when it was skipped.
async fn exclusively<T, F, Fut>(db: &PgPool, task: &str, work: F) -> Result<Option<T>, Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    const LOCK: &str = "hashtext('wattlas.maintenance'), hashtext($1)";
    let mut held = Held {
        conn: Some(db.acquire().await?),
    };
    let conn = held.conn.as_mut().expect("held");
    let got: bool = sqlx::query_scalar(&format!("select pg_try_advisory_lock({LOCK})"))
        .bind(task)
        .fetch_one(&mut **conn)
        .await?;
    if !got {
        held.conn.take();
        return Ok(None);
    }
    let out = work().await;
    let conn = held.conn.as_mut().expect("held");
    let unlocked: sqlx::Result<bool> =
        sqlx::query_scalar(&format!("select pg_advisory_unlock({LOCK})"))
            .bind(task)
            .fetch_one(&mut **conn)
            .await;
    if unlocked.is_ok_and(|u| u) {
        held.conn.take();
    }
    out.map(Some)
}

/// Hours of a node's CPU and DRAM readings rolled up per run.
const NODE_ENERGY_HOURS_PER_RUN: i64 = 6;

/// Rolls up nodes' CPU and DRAM readings into minutes up to `settled_before` (from a minute before
/// their mark, so an interval whose closing reading came late is counted whole); returns the nodes.
pub async fn node_energy_rollup(
    cx: &Context,
    settled_before: chrono::DateTime<Utc>,
) -> Result<usize, Error> {
    let rolled = exclusively(&cx.db, "node_energy", || {
        node_energy_rollup_now(cx, settled_before)
    })
    .await?
    .unwrap_or(0);
    cx.metrics.maintenance("node_energy", rolled as u64);
    Ok(rolled)
}

async fn node_energy_rollup_now(
    cx: &Context,
    settled_before: chrono::DateTime<Utc>,
) -> Result<usize, Error> {
    use crate::db::node_energy as ne;
    let margin_ms = cx.config.max_gap_ms.max(60_000);
    let nodes = ne::to_roll_up(&cx.db).await?;
    for (node_id, rolled_to, latest) in &nodes {
        let start = match rolled_to {
            Some(t) => *t,
            None => match ne::earliest(&cx.db, *node_id).await? {
                Some(t) => t,
                None => continue,
            },
        };
        let from_ms = floor_minute(start.timestamp_millis() - margin_ms);
        let upto = (*latest).min(settled_before);
        // Up to the end of the latest settled reading's minute: the minute is partial until the next
        // reading, which rolls it again (the next run starts before the mark). Stopping at the start of
        // that minute instead left the last seconds before a collector went quiet out of every minute.
        let end_ms = if *latest <= settled_before {
            ceil_minute(upto.timestamp_millis())
        } else {
            floor_minute(upto.timestamp_millis())
        };
        let to_ms = end_ms.min(from_ms + NODE_ENERGY_HOURS_PER_RUN * 3_600_000);
        if to_ms <= from_ms {
            continue;
        }
        let zones = ne::zone_readings(
            &cx.db,
            *node_id,
            crate::db::ts(from_ms - margin_ms),
            crate::db::ts(to_ms + margin_ms),
        )
        .await?;
        let mut tx = cx.db.begin().await?;
        for (zone, kind, readings) in &zones {
            let minutes =
                crate::analytics::node_energy::minutes(readings, from_ms, to_ms, margin_ms);
            ne::upsert_minutes(&mut tx, *node_id, zone, *kind, &minutes).await?;
        }
        // Caught up: the mark is the latest reading, so the node is left alone until the next one.
        let caught_up = end_ms == to_ms && *latest <= settled_before;
        let mark = if caught_up {
            *latest
        } else {
            crate::db::ts(to_ms)
        };
        ne::set_rolled_to(&mut tx, *node_id, mark).await?;
        tx.commit().await?;
    }
    Ok(nodes.len())
}

/// Rolls up pending ranges that ended before `settled_before`, taken back to a multiple of
/// [`ROLLUP_STEP_MS`] (tests pass the future to force all).
pub async fn rollup_settled_before(
    cx: &Context,
    settled_before: chrono::DateTime<Utc>,
) -> Result<usize, Error> {
    let max_gap = cx.config.max_gap_ms;
    // Raw data changes the rollups of every minute within the fetch margin of it.
    let margin = crate::analytics::energy::fetch_margin_ms(max_gap);
    let step = rollup_cut_ms(settled_before.timestamp_millis());
    let mut tx = cx.db.begin().await?;
    let pending = rollups::take_pending(&mut tx, crate::db::ts(step), PENDING_PER_RUN).await?;
    let taken = pending.len();
    cx.metrics.maintenance("rollup", taken as u64);
    // Raw data arrived for these ranges: the stored energy of the jobs they touch is out of date.
    let ranges: Vec<_> = pending
        .iter()
        .map(|p| (p.node_id, p.t_from, p.t_to))
        .collect();
    crate::service::stale::nodes_changed(&mut tx, &ranges).await?;
    // Per node, the whole minutes touched by pending raw data (and by the gap bridged into neighbours).
    let mut minutes: BTreeMap<NodeId, Vec<(i64, i64)>> = BTreeMap::new();
    for p in &pending {
        let from = floor_minute(p.t_from.timestamp_millis() - margin);
        let to = ceil_minute(p.t_to.timestamp_millis() + margin + 1);
        minutes.entry(p.node_id).or_default().push((from, to));
    }
    for (node_id, mut ranges) in minutes {
        ranges.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (from, to) in ranges {
            match merged.last_mut() {
                Some(last) if from <= last.1 => last.1 = last.1.max(to),
                _ => merged.push((from, to)),
            }
        }
        for (from, to) in merged {
            let mut start = from;
            while start < to {
                let end = (start + MINUTES_PER_FETCH * 60_000).min(to);
                let raw =
                    samples::fetch(&cx.db, node_id, &[], start - margin, end + margin + 1).await?;
                for gpu_samples in raw.chunk_by(|a, b| a.gpu == b.gpu) {
                    cx.metrics
                        .maintenance("rollup_gpu_minutes", ((end - start) / 60_000) as u64);
                    let rolled = minute_rollups(gpu_samples, start, end, max_gap);
                    rollups::upsert(&mut tx, node_id, gpu_samples[0].gpu, &rolled).await?;
                }
                start = end;
            }
            rollups::refresh_hours(&mut tx, node_id, from, to).await?;
        }
    }
    // Everything before `taken_to` is rolled up: the cut, or the oldest range still waiting (not
    // taken: over the limit, past the oldest hour, or another server's).
    let waiting = rollups::oldest_pending(&mut tx).await?;
    let taken_to = waiting.map_or(step, |t| t.timestamp_millis().min(step));
    record_run(
        &mut tx,
        "rollup",
        serde_json::json!({ "pending_ranges": taken, "taken_to": crate::db::ts(taken_to) }),
    )
    .await?;
    tx.commit().await?;
    Ok(taken)
}

/// Jobs whose stored energy is recomputed per run.
const ENERGY_PER_RUN: i64 = 200;
/// Age after which a running job's stored energy is recomputed, s.
const RUNNING_MAX_AGE_S: f64 = 30.0;

/// Recomputes the stored energy of jobs that have none, are stale, or are running (the jobs list sorts
/// and totals on it); returns how many.
pub async fn refresh_job_energy(cx: &Context, limit: i64) -> Result<usize, Error> {
    let taken = exclusively(&cx.db, "job_energy", || async {
        let jobs = crate::db::jobs::needing_energy(&cx.db, RUNNING_MAX_AGE_S, limit).await?;
        let taken = jobs.len();
        for job in jobs {
            let ctx = crate::service::jobs::JobContext::of(cx, job).await?;
            crate::service::jobs::computed_view(cx, &ctx).await?;
            cx.metrics.maintenance("job_energy", 1);
        }
        Ok(taken)
    })
    .await?;
    Ok(taken.unwrap_or(0))
}

/// Drops raw chunks older than the retention period; rollups stay. Chunks whose samples still wait for
/// the rollup task (an imported log older than the period) stay until they are rolled up.
pub async fn retention_once(cx: &Context) -> Result<usize, Error> {
    let dropped = exclusively(&cx.db, "retention", || {
        retention_now(&cx.db, cx.config.raw_retention_days)
    })
    .await?
    .unwrap_or(0);
    cx.metrics.maintenance("retention", dropped as u64);
    Ok(dropped)
}

/// How long a retention statement waits for its locks. `drop_chunks` locks the tables its hypertable
/// refers to (`node_energy`'s foreign key to `nodes`) even when nothing is old enough to drop; waiting
/// behind a transaction that holds a node's row (an ingest group, an operator's session), every later
/// reader of `nodes` (token lookups, ingest, pages) would wait behind it. Past this it gives up, and the
/// next run tries again.
const RETENTION_LOCK_TIMEOUT: &str = "1s";

/// Runs one `drop_chunks` statement (bind `$1`: the retention in days) within
/// [`RETENTION_LOCK_TIMEOUT`]: the chunks it dropped, or `None` when it gave up waiting for a lock.
async fn drop_chunks(
    db: &PgPool,
    sql: &str,
    retention_days: u32,
) -> Result<Option<Vec<String>>, Error> {
    let mut tx = db.begin().await?;
    sqlx::query(&format!(
        "set local lock_timeout = '{RETENTION_LOCK_TIMEOUT}'"
    ))
    .execute(&mut *tx)
    .await?;
    match sqlx::query_scalar(sql)
        .bind(retention_days as i32)
        .fetch_all(&mut *tx)
        .await
    {
        Ok(dropped) => {
            tx.commit().await?;
            Ok(Some(dropped))
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn retention_now(db: &PgPool, retention_days: u32) -> Result<usize, Error> {
    let statements = [
        (
            "gpu_raw",
            r#"select dropped::text
        from drop_chunks('gpu_raw', older_than => least(
            now() - make_interval(days => $1),
            (select min(t_from) from rollup_pending))) as dropped"#,
        ),
        (
            "gpu_settled",
            r#"select dropped::text
        from drop_chunks('gpu_settled', older_than => least(
            now() - make_interval(days => $1),
            (select min(t_from) from rollup_pending))) as dropped"#,
        ),
        // CPU and DRAM readings go the same way once every node's are rolled up past them.
        (
            "node_energy",
            r#"select dropped::text
        from drop_chunks('node_energy', older_than => least(
            now() - make_interval(days => $1),
            (select min(coalesce(r.rolled_to, '-infinity'::timestamptz))
             from nodes n
             left join node_energy_rollup r on r.node_id = n.id
             where exists (select 1 from node_energy e where e.node_id = n.id)))) as dropped"#,
        ),
    ];
    let mut dropped: Vec<String> = Vec::new();
    let mut waited_out: Vec<&str> = Vec::new();
    for (table, sql) in statements {
        match drop_chunks(db, sql, retention_days).await? {
            Some(chunks) => dropped.extend(chunks),
            None => waited_out.push(table),
        }
    }
    if !waited_out.is_empty() {
        tracing::warn!(
            tables = ?waited_out,
            "retention waited {RETENTION_LOCK_TIMEOUT} for a lock and left these for the next run"
        );
    }
    let mut tx = db.begin().await?;
    record_run(
        &mut tx,
        "retention",
        serde_json::json!({ "dropped_chunks": dropped.len(), "waited_out": waited_out }),
    )
    .await?;
    tx.commit().await?;
    if !dropped.is_empty() {
        tracing::info!(
            chunks = dropped.len(),
            retention_days,
            "dropped raw sample chunks"
        );
    }
    Ok(dropped.len())
}

async fn record_run(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    task: &str,
    detail: serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into maintenance_runs (task, last_run, detail)
        values ($1, now(), $2)
        on conflict (task) do update
        set last_run = excluded.last_run, detail = excluded.detail"#,
    )
    .bind(task)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
