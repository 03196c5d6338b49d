//! Jobs' stored energy summaries: written when computed, marked stale when their data changes, read
//! by lists while fresh.

use crate::ids::{NodeId, SiteId};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use wattlas_protocol::JobView;

use super::rows::*;

/// Stores a job's freshly computed view as its energy summary.
pub(crate) async fn upsert_energy(
    db: &PgPool,
    view: &JobView,
    it_j_by_hour: &BTreeMap<i64, f64>,
    gpu_j_by_hour: &BTreeMap<i64, f64>,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into job_energy (job_id, computed_at, stale, gpu_count, gpu_hours, it_energy_kwh,
            facility_energy_kwh, power_cap_w, summary, it_j_by_hour, gpu_j_by_hour, it_low, it_high,
            facility_low, facility_high)
        values ($1, now(), false, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
        on conflict (job_id) do update
        set computed_at = excluded.computed_at, stale = false, gpu_count = excluded.gpu_count,
            gpu_hours = excluded.gpu_hours, it_energy_kwh = excluded.it_energy_kwh,
            facility_energy_kwh = excluded.facility_energy_kwh, power_cap_w = excluded.power_cap_w,
            summary = excluded.summary, it_j_by_hour = excluded.it_j_by_hour,
            gpu_j_by_hour = excluded.gpu_j_by_hour, it_low = excluded.it_low,
            it_high = excluded.it_high, facility_low = excluded.facility_low,
            facility_high = excluded.facility_high"#,
    )
    .bind(&view.id)
    .bind(view.gpu_count as i32)
    .bind(f64::from(view.gpu_count) * view.duration_s / 3600.0)
    .bind(view.it_energy_kwh)
    .bind(view.facility_energy_kwh)
    .bind(view.power_cap_w)
    .bind(Json(view))
    .bind(Json(it_j_by_hour))
    .bind(Json(gpu_j_by_hour))
    .bind(view.it_energy_kwh_low)
    .bind(view.it_energy_kwh_high)
    .bind(view.facility_energy_kwh_low)
    .bind(view.facility_energy_kwh_high)
    .execute(db)
    .await?;
    Ok(())
}

/// Jobs whose energy summary is missing, stale, or (running) older than `running_max_age_s`: most
/// needed first.
pub(crate) async fn needing_energy(
    db: &PgPool,
    running_max_age_s: f64,
    limit: i64,
) -> sqlx::Result<Vec<Job>> {
    // Three indexed questions instead of one OR over a join of every job with its summary (0.13 s
    // every few seconds at 100,000 jobs): jobs without a summary (an anti-join), stale summaries (a
    // partial index), running jobs (a partial index).
    sqlx::query_as(&format!(
        r#"with due as (
            (select j.id, null::timestamptz as computed_at
            from jobs j
            where not exists (select 1 from job_energy e where e.job_id = j.id)
            limit $2)
            union all
            (select job_id, computed_at
            from job_energy
            where stale
            order by computed_at
            limit $2)
            union all
            (select j.id, e.computed_at
            from jobs j
            join job_energy e on e.job_id = j.id
            where j.end_time is null
                and not e.stale
                and e.computed_at < now() - make_interval(secs => $1)
            limit $2)
        )
        {JOB_COLUMNS}
        join due on due.id = j.id
        order by due.computed_at nulls first, j.start_time desc
        limit $2"#
    ))
    .bind(running_max_age_s)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Marks stale the energy summaries of jobs on these nodes overlapping these raw time ranges
/// (raw data arrived for them): `(node, from, to)`.
pub(crate) async fn mark_energy_stale(
    tx: &mut Transaction<'_, Postgres>,
    ranges: &[(NodeId, DateTime<Utc>, DateTime<Utc>)],
) -> sqlx::Result<u64> {
    if ranges.is_empty() {
        return Ok(0);
    }
    let node: Vec<NodeId> = ranges.iter().map(|r| r.0).collect();
    let from: Vec<DateTime<Utc>> = ranges.iter().map(|r| r.1).collect();
    let to: Vec<DateTime<Utc>> = ranges.iter().map(|r| r.2).collect();
    let done = sqlx::query(
        r#"update job_energy e
        set stale = true
        from job_allocations a
        join jobs j on j.id = a.job_id
        join unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) as p(node_id, t_from, t_to)
            on a.node_id = p.node_id
        where e.job_id = j.id
            and not e.stale
            and j.start_time <= p.t_to
            and coalesce(j.end_time, 'infinity') >= p.t_from"#,
    )
    .bind(&node)
    .bind(&from)
    .bind(&to)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Marks stale the energy summaries of a site's jobs overlapping `[from, to]` (unbounded where None),
/// widened by an hour each way: facility readings, carbon intensity or the site's settings changed, and
/// each hour's PUE and intensity enter the jobs of that hour.
pub(crate) async fn mark_site_energy_stale(
    tx: &mut Transaction<'_, Postgres>,
    site_id: SiteId,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        r#"update job_energy e
        set stale = true
        from jobs j
        where e.job_id = j.id
            and not e.stale
            and j.site_id = $1
            and j.start_time <= coalesce($3 + interval '1 hour', 'infinity')
            and coalesce(j.end_time, 'infinity') >= coalesce($2 - interval '1 hour', '-infinity')"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// A job's stored view: `(summary, computed_at, stale)`. Stale also while raw data for the job's GPUs
/// and time waits for the rollup task (which marks the summary stale only when it gets there).
pub(crate) async fn stored_energy(
    db: &PgPool,
    id: &str,
) -> sqlx::Result<Option<(Json<JobView>, DateTime<Utc>, bool)>> {
    sqlx::query_as(&format!(
        r#"select e.summary, e.computed_at,
            e.stale or {RAW_PENDING} as stale
        from job_energy e
        join jobs j on j.id = e.job_id
        where e.job_id = $1"#
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The stored IT energy per UTC hour of jobs: job id -> (hour start ms -> J).
pub(crate) async fn energy_by_hour(
    db: &PgPool,
    ids: &[String],
) -> sqlx::Result<std::collections::HashMap<String, BTreeMap<i64, f64>>> {
    let rows: Vec<(String, Json<BTreeMap<i64, f64>>)> = sqlx::query_as(
        r#"select job_id, it_j_by_hour
        from job_energy
        where job_id = any($1)"#,
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(id, h)| (id, h.0)).collect())
}
