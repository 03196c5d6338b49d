//! The staff overview's questions: energy since a time by user or by a tag, jobs not yet summarised,
//! running jobs, a site's GPU energy since a time, and meters gone quiet.

use crate::ids::SiteId;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The IT energy of the jobs started in `[since, until)` per user (or per value of tag `tag`), counted
/// up to `until` from each job's stored energy per hour (so a month's bars stop at the same hour as
/// the month's other figures, `until` being an hour's start): (name, kWh), largest first.
pub(crate) async fn energy_by(
    db: &PgPool,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    tag: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<(String, f64, Option<f64>, Option<f64>)>> {
    // Each hour's share of its job's bound in proportion to its energy (issue 35); absent where a
    // job's summary has no bound.
    sqlx::query_as(
        r#"select key.name, (sum(h.v::float8) / 3.6e6)::float8,
            (sum(h.v::float8 * e.it_low / nullif(e.it_energy_kwh, 0))
                filter (where e.it_energy_kwh > 0) / 3.6e6
                + case when bool_and(e.it_low is not null) then 0 end)::float8,
            (sum(h.v::float8 * e.it_high / nullif(e.it_energy_kwh, 0))
                filter (where e.it_energy_kwh > 0) / 3.6e6
                + case when bool_and(e.it_high is not null) then 0 end)::float8
        from jobs j
        join job_energy e on e.job_id = j.id
        cross join lateral jsonb_each_text(e.it_j_by_hour) h(k, v)
        cross join lateral (select case when $3::text is null then j.user_name else j.tags ->> $3 end as name) key
        where j.start_time >= $1 and j.start_time < $2
            and h.k::bigint >= $4 and h.k::bigint < $5 and key.name is not null
        group by key.name
        having sum(h.v::float8) > 0
        order by 2 desc, key.name
        limit $6"#,
    )
    .bind(since)
    .bind(until)
    .bind(tag)
    .bind(since.timestamp_millis())
    .bind(until.timestamp_millis())
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Jobs started in `[since, until)` without a summary or with a stale one.
pub(crate) async fn unsummarised_between(
    db: &PgPool,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        r#"select count(*)
        from jobs j
        left join job_energy e on e.job_id = j.id
        where j.start_time >= $1 and j.start_time < $2
            and (e.job_id is null or e.stale)"#,
    )
    .bind(since)
    .bind(until)
    .fetch_one(db)
    .await
}

/// Jobs started at or after `since` without a summary or with a stale one.
pub(crate) async fn unsummarised(db: &PgPool, since: DateTime<Utc>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        r#"select count(*)
        from jobs j
        left join job_energy e on e.job_id = j.id
        where j.start_time >= $1 and (e.job_id is null or e.stale)"#,
    )
    .bind(since)
    .fetch_one(db)
    .await
}

/// Running jobs: (id, user, start, GPUs, IT energy so far in kWh), most energy first.
pub(crate) async fn running(
    db: &PgPool,
    limit: i64,
) -> sqlx::Result<Vec<(String, String, DateTime<Utc>, i32, f64)>> {
    sqlx::query_as(
        r#"select j.id, j.user_name, j.start_time, coalesce(e.gpu_count, 0), coalesce(e.it_energy_kwh, 0)::float8
        from jobs j
        left join job_energy e on e.job_id = j.id
        where j.end_time is null
        order by e.it_energy_kwh desc nulls last, j.start_time
        limit $1"#,
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A site's GPU energy in rolled-up hours `[since, until)`, J.
pub(crate) async fn site_gpu_energy_between(
    db: &PgPool,
    site_id: SiteId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> sqlx::Result<f64> {
    sqlx::query_scalar(
        r#"select coalesce(sum(h.energy_j), 0)::float8
        from gpu_hour h
        join nodes n on n.id = h.node_id
        where n.site_id = $1 and h.hour >= $2 and h.hour < $3"#,
    )
    .bind(site_id)
    .bind(since)
    .bind(until)
    .fetch_one(db)
    .await
}

/// A site's meters: (name, time of its last reading).
pub(crate) async fn meters(
    db: &PgPool,
    site_id: SiteId,
) -> sqlx::Result<Vec<(String, Option<DateTime<Utc>>)>> {
    sqlx::query_as(
        r#"select m.name, (select max(r.time) from facility_readings r where r.meter_id = m.id)
        from meters m
        where m.site_id = $1
        order by m.name"#,
    )
    .bind(site_id)
    .fetch_all(db)
    .await
}

/// Where the rollup's last run left every minute before rolled up (`maintenance`), if any.
pub(crate) async fn rolled_up_to(db: &PgPool) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        r#"select (detail ->> 'taken_to')::timestamptz
        from maintenance_runs
        where task = 'rollup'"#,
    )
    .fetch_optional(db)
    .await
    .map(Option::flatten)
}

/// Per site with raw data waiting for the rollup: (site id, the oldest waiting time).
pub(crate) async fn rollup_waits_since(db: &PgPool) -> sqlx::Result<Vec<(SiteId, DateTime<Utc>)>> {
    sqlx::query_as(
        r#"select n.site_id, min(p.t_from)
        from rollup_pending p
        join nodes n on n.id = p.node_id
        group by n.site_id"#,
    )
    .fetch_all(db)
    .await
}

/// A site's GPU energy per `bucket_s` bucket of rolled-up minutes over `[from, to)`: (bucket, J).
pub(crate) async fn site_gpu_energy_by_bucket(
    db: &PgPool,
    site_id: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_s: i32,
) -> sqlx::Result<Vec<(DateTime<Utc>, f64)>> {
    sqlx::query_as(
        r#"select time_bucket(make_interval(secs => $4), m.minute) as b, sum(m.energy_j)::float8
        from gpu_minute m
        join nodes n on n.id = m.node_id
        where n.site_id = $1 and m.minute >= $2 and m.minute < $3
        group by b
        order by b"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .bind(f64::from(bucket_s))
    .fetch_all(db)
    .await
}
