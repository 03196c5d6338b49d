//! A site's measured energy per UTC hour, term by term (`analytics::closure`): its GPUs' rolled-up
//! hours, its nodes' CPU and DRAM minutes, its jobs' stored energy per hour, its meters' readings; and
//! what makes a period's figures partial (jobs whose summaries are due, data waiting for a rollup).

use crate::ids::{MeterId, SiteId};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::analytics::closure::MeterReading;

/// Every GPU of the site: (hour, J) over `[from, to)`.
pub(crate) async fn gpu_by_hour(
    db: &PgPool,
    site_id: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(DateTime<Utc>, f64)>> {
    sqlx::query_as(
        r#"select h.hour, sum(h.energy_j)::float8
        from gpu_hour h
        join nodes n on n.id = h.node_id
        where n.site_id = $1 and h.hour >= $2 and h.hour < $3
        group by h.hour"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await
}

/// Every node's CPU packages and DRAM: (UTC hour, J) over `[from, to)`.
pub(crate) async fn cpu_dram_by_hour(
    db: &PgPool,
    site_id: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(DateTime<Utc>, f64)>> {
    sqlx::query_as(
        r#"select time_bucket('1 hour', m.minute) as hour, sum(m.energy_j)::float8
        from node_energy_minute m
        join nodes n on n.id = m.node_id
        where n.site_id = $1 and m.kind in ('cpu', 'dram') and m.minute >= $2 and m.minute < $3
        group by hour"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await
}

/// The site's jobs' stored energy: (UTC hour start ms, IT J, GPU J) over `[from, to)`.
pub(crate) async fn jobs_by_hour(
    db: &PgPool,
    site_id: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(i64, f64, f64)>> {
    sqlx::query_as(
        r#"select h.k::bigint as hour, sum(h.v::float8)::float8,
            sum(coalesce((e.gpu_j_by_hour ->> h.k)::float8, 0))::float8
        from jobs j
        join job_energy e on e.job_id = j.id
        cross join lateral jsonb_each_text(e.it_j_by_hour) h(k, v)
        where j.site_id = $1
            and j.start_time < $3 and (j.end_time is null or j.end_time >= $2)
            and h.k::bigint >= $4 and h.k::bigint < $5
        group by 1"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .bind(from.timestamp_millis())
    .bind(to.timestamp_millis())
    .fetch_all(db)
    .await
}

/// The site's jobs overlapping `[from, to)` whose summary is missing or due (not in `jobs_by_hour`
/// as they will be).
pub(crate) async fn jobs_due(
    db: &PgPool,
    site_id: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        r#"select count(*)
        from jobs j
        left join job_energy e on e.job_id = j.id
        where j.site_id = $1
            and j.start_time < $3 and (j.end_time is null or j.end_time >= $2)
            and (e.job_id is null or e.stale)"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .fetch_one(db)
    .await
}

/// The site's meters' readings over `[from - 1 h, to + 1 h]`, per meter in time order.
pub(crate) async fn meter_readings(
    db: &PgPool,
    site_id: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<Vec<MeterReading>>> {
    readings(db, site_id, None, from, to).await
}

/// One meter's readings over `[from - 1 h, to + 1 h]`, in time order (`meter_readings` of one).
pub(crate) async fn one_meter_readings(
    db: &PgPool,
    site_id: SiteId,
    meter_id: MeterId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<MeterReading>> {
    Ok(readings(db, site_id, Some(meter_id), from, to)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// The readings of a site's meters (or of one of them), per meter in time order.
async fn readings(
    db: &PgPool,
    site_id: SiteId,
    meter_id: Option<MeterId>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<Vec<MeterReading>>> {
    type Row = (i32, DateTime<Utc>, Option<f64>, Option<f64>);
    let rows: Vec<Row> = sqlx::query_as(
        r#"select r.meter_id, r.time, r.it_kw, r.it_kwh
        from facility_readings r
        join meters m on m.id = r.meter_id
        where m.site_id = $1
            and ($4::int4 is null or r.meter_id = $4)
            and r.time >= $2 - interval '1 hour'
            and r.time <= $3 + interval '1 hour'
        order by r.meter_id, r.time"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .bind(meter_id)
    .fetch_all(db)
    .await?;
    let mut out: Vec<Vec<MeterReading>> = Vec::new();
    let mut last = None;
    for (meter, time, it_kw, it_kwh) in rows {
        if last != Some(meter) {
            out.push(Vec::new());
            last = Some(meter);
        }
        if let Some(m) = out.last_mut() {
            m.push(MeterReading {
                t_ms: time.timestamp_millis(),
                it_kw,
                it_kwh,
            });
        }
    }
    Ok(out)
}

/// Where the site's node counters are not rolled up yet: the earliest mark among its nodes with
/// readings past their mark.
pub(crate) async fn node_rollup_waits_since(
    db: &PgPool,
    site_id: SiteId,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        r#"select min(coalesce(r.rolled_to, l.first))
        from (select node_id, min(t) as first, max(t) as latest from node_energy group by node_id) l
        join nodes n on n.id = l.node_id
        left join node_energy_rollup r on r.node_id = l.node_id
        where n.site_id = $1 and (r.rolled_to is null or r.rolled_to < l.latest)"#,
    )
    .bind(site_id)
    .fetch_one(db)
    .await
}

/// Utilisation under this, %, is an idle GPU.
pub(crate) const IDLE_UTIL_PCT: f64 = 5.0;

/// A job's allocated GPUs in whole minutes of `[from, to)` at under `IDLE_UTIL_PCT` utilisation.
#[derive(Debug, Clone, Copy, Default, PartialEq, sqlx::FromRow)]
pub(crate) struct Idle {
    /// Their energy, J.
    pub energy_j: f64,
    /// GPU-minutes.
    pub minutes: u64,
    /// Whether any minute of the job's GPUs reported utilisation at all.
    pub reported: bool,
}

/// The allocated GPUs of job `job_id` that sat idle in whole minutes inside `[from, to)`.
pub(crate) async fn idle_allocated(
    db: &PgPool,
    job_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Idle> {
    let (energy_j, minutes, reported): (f64, i64, bool) = sqlx::query_as(
        r#"select coalesce(sum(m.energy_j) filter (where m.util_avg_pct < $4), 0)::float8,
            count(*) filter (where m.util_avg_pct < $4),
            count(m.util_avg_pct) > 0
        from job_allocations a
        join gpu_minute m on m.node_id = a.node_id and m.gpu_index = a.gpu_index
        where a.job_id = $1 and m.minute >= $2 and m.minute <= $3 - interval '1 minute'"#,
    )
    .bind(job_id)
    .bind(from)
    .bind(to)
    .bind(IDLE_UTIL_PCT as f32)
    .fetch_one(db)
    .await?;
    Ok(Idle {
        energy_j,
        minutes: minutes.max(0) as u64,
        reported,
    })
}

/// One job's idle allocated GPUs.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct IdleJob {
    /// Job id.
    pub id: String,
    /// Owner.
    pub user: String,
    /// GPUs.
    pub gpu_count: i32,
    /// The job's IT energy, kWh.
    pub it_energy_kwh: f64,
    /// Its allocated GPUs' energy while idle, kWh.
    pub idle_gpu_energy_kwh: f64,
    /// GPU-minutes idle.
    pub idle_gpu_minutes: i64,
    /// Their share of the job's CO2e (the job's CO2e x idle / IT energy), kg; `None` without carbon
    /// intensity.
    pub idle_co2e_kg: Option<f64>,
}

/// One user's idle allocated GPUs.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct IdleUser {
    /// User.
    pub user: String,
    /// Jobs with idle GPU-minutes.
    pub jobs: i64,
    /// Energy, kWh.
    pub idle_gpu_energy_kwh: f64,
    /// GPU-minutes.
    pub idle_gpu_minutes: i64,
    /// CO2e, kg (jobs without carbon intensity add nothing; see `jobs_without_co2e`).
    pub idle_co2e_kg: f64,
    /// Jobs whose CO2e is unknown (their site has no carbon intensity).
    pub jobs_without_co2e: i64,
}

const IDLE_JOB: &str = r#"j.id, j.user_name as user, e.gpu_count, e.it_energy_kwh,
            (e.summary ->> 'idle_gpu_energy_kwh')::float8 as idle_kwh,
            coalesce((e.summary ->> 'idle_gpu_minutes')::bigint, 0) as idle_minutes,
            case when e.it_energy_kwh > 0
                then (e.summary ->> 'co2e_kg')::float8 * (e.summary ->> 'idle_gpu_energy_kwh')::float8
                    / e.it_energy_kwh end as idle_co2e_kg
        from jobs j
        join job_energy e on e.job_id = j.id
        where j.start_time >= $1 and j.start_time < $2
            and (e.summary ->> 'idle_gpu_energy_kwh')::float8 > 0"#;

/// Jobs started in `[from, to)` whose allocated GPUs sat idle, most idle energy first.
pub(crate) async fn idle_jobs(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<IdleJob>> {
    sqlx::query_as(&format!(
        r#"select i.id, i.user, i.gpu_count, i.it_energy_kwh, i.idle_kwh as idle_gpu_energy_kwh,
            i.idle_minutes as idle_gpu_minutes, i.idle_co2e_kg
        from (select {IDLE_JOB}) i
        order by i.idle_kwh desc, i.id
        limit $3"#
    ))
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The same per user.
pub(crate) async fn idle_by_user(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<IdleUser>> {
    sqlx::query_as(&format!(
        r#"select i.user, count(*) as jobs, sum(i.idle_kwh)::float8 as idle_gpu_energy_kwh,
            sum(i.idle_minutes)::bigint as idle_gpu_minutes,
            coalesce(sum(i.idle_co2e_kg), 0)::float8 as idle_co2e_kg,
            count(*) filter (where i.idle_co2e_kg is null) as jobs_without_co2e
        from (select {IDLE_JOB}) i
        group by i.user
        order by 3 desc, i.user
        limit $3"#
    ))
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(db)
    .await
}
