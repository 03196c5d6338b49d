//! Facility meters, their readings, and the hourly PUE of a site.

use crate::ids::{MeterId, SiteId};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use wattlas_protocol::FacilityReading;

/// A meter row with its site.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Meter {
    /// Id.
    pub id: MeterId,
    /// Unique name.
    pub name: String,
    /// Site id.
    pub site_id: SiteId,
    /// Site name.
    pub site: String,
    /// ISO/IEC 30134-2 category.
    pub category: String,
}

const METER_COLUMNS: &str = r#"select m.id, m.name, m.site_id, s.name as site, m.category
        from meters m
        join sites s on s.id = m.site_id"#;

/// Creates a meter; `None` when the name is taken.
pub(crate) async fn create(
    db: &PgPool,
    name: &str,
    site_id: SiteId,
    category: &str,
    token_digest: &[u8],
) -> sqlx::Result<Option<MeterId>> {
    sqlx::query_scalar(
        r#"insert into meters (name, site_id, category, token_sha256)
        values ($1, $2, $3, $4)
        on conflict (name) do nothing
        returning id"#,
    )
    .bind(name)
    .bind(site_id)
    .bind(category)
    .bind(token_digest)
    .fetch_optional(db)
    .await
}

/// The meter a token digest belongs to: its token, or the one it replaced while in its grace
/// (`db::tokens`).
pub(crate) async fn by_token_digest(db: &PgPool, digest: &[u8]) -> sqlx::Result<Option<Meter>> {
    super::tokens::end_grace(db, super::tokens::Holder::Meters, digest).await?;
    sqlx::query_as(&format!(
        "{METER_COLUMNS}\n        where {}",
        super::tokens::matches("m")
    ))
    .bind(digest)
    .fetch_optional(db)
    .await
}

/// A meter by name.
pub(crate) async fn by_name(db: &PgPool, name: &str) -> sqlx::Result<Option<Meter>> {
    sqlx::query_as(&format!("{METER_COLUMNS}\n        where m.name = $1"))
        .bind(name)
        .fetch_optional(db)
        .await
}

/// Meters of a site (all sites when `None`), by name.
pub(crate) async fn list(db: &PgPool, site_id: Option<SiteId>) -> sqlx::Result<Vec<Meter>> {
    sqlx::query_as(&format!(
        "{METER_COLUMNS}\n        where $1::int is null or m.site_id = $1\n        order by m.name"
    ))
    .bind(site_id)
    .fetch_all(db)
    .await
}

#[derive(sqlx::FromRow)]
struct ReadingRow {
    time: DateTime<Utc>,
    it_kw: Option<f64>,
    total_kw: Option<f64>,
    it_kwh: Option<f64>,
    total_kwh: Option<f64>,
    pue: Option<f64>,
}

/// A meter's latest reading.
pub(crate) async fn last_reading(
    db: &PgPool,
    meter_id: MeterId,
) -> sqlx::Result<Option<FacilityReading>> {
    let row: Option<ReadingRow> = sqlx::query_as(
        r#"select time, it_kw, total_kw, it_kwh, total_kwh, pue
        from facility_readings
        where meter_id = $1
        order by time desc
        limit 1"#,
    )
    .bind(meter_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| FacilityReading {
        time: r.time,
        it_kw: r.it_kw,
        total_kw: r.total_kw,
        it_kwh: r.it_kwh,
        total_kwh: r.total_kwh,
        pue: r.pue,
    }))
}

/// Stores readings, each (meter, time) once; returns how many were new.
pub(crate) async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    meter_id: MeterId,
    readings: &[FacilityReading],
) -> sqlx::Result<u64> {
    let time: Vec<DateTime<Utc>> = readings.iter().map(|r| r.time).collect();
    let col = |f: fn(&FacilityReading) -> Option<f64>| {
        readings.iter().map(f).collect::<Vec<Option<f64>>>()
    };
    let stored = sqlx::query(
        r#"insert into facility_readings (meter_id, time, it_kw, total_kw, it_kwh, total_kwh, pue)
        select $1, * from unnest($2::timestamptz[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::float8[])
        on conflict (meter_id, time) do nothing"#,
    )
    .bind(meter_id)
    .bind(&time)
    .bind(col(|r| r.it_kw))
    .bind(col(|r| r.total_kw))
    .bind(col(|r| r.it_kwh))
    .bind(col(|r| r.total_kwh))
    .bind(col(|r| r.pue))
    .execute(&mut **tx)
    .await?;
    sqlx::query("update meters set last_seen = now() where id = $1")
        .bind(meter_id)
        .execute(&mut **tx)
        .await?;
    Ok(stored.rows_affected())
}

/// One hour of a site's PUE.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub(crate) struct Hour {
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    /// Mean of the readings' PUE.
    pub mean_pue: f64,
    /// IT-energy-weighted PUE.
    pub weighted_pue: f64,
    /// Readings.
    pub readings: i64,
}

/// Hourly PUE of a site over `[from, to)`. Hours start at `origin` plus whole hours, so that for a zone
/// with a half-hour offset they are still local hours. Each reading's PUE: total / IT power; for counters,
/// the interval since the meter's previous reading (at most an hour long), counted in the hour the
/// interval starts in; else the reading's own PUE.
pub(crate) async fn hourly(
    db: &PgPool,
    site_id: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    origin: DateTime<Utc>,
) -> sqlx::Result<Vec<Hour>> {
    sqlx::query_as(
        r#"with readings as (
            select case when r.it_kwh is not null then lag(r.time) over w else r.time end as time,
                -- A PUE outside 1..10 or a weight over 10 GW (readings stored before ingest bounded
                -- them) is left out: it cannot overflow the sums and turn every page of the site into
                -- a 500. Comparisons are written without products, which could overflow themselves.
                case
                    when r.it_kw is not null and r.it_kw > 0 and r.total_kw / 10 <= r.it_kw
                        and r.it_kw <= 1e7 then r.total_kw / r.it_kw
                    when r.it_kwh is not null then
                        case when r.time - lag(r.time) over w <= interval '1 hour'
                                  and r.it_kwh - lag(r.it_kwh) over w > 0
                                  and r.it_kwh - lag(r.it_kwh) over w <= 1e7
                                  and (r.total_kwh - lag(r.total_kwh) over w) / 10
                                      <= r.it_kwh - lag(r.it_kwh) over w
                             then (r.total_kwh - lag(r.total_kwh) over w) / (r.it_kwh - lag(r.it_kwh) over w) end
                    when r.pue between 1 and 10 then r.pue
                end as pue,
                case
                    when r.it_kw is not null then r.it_kw
                    when r.it_kwh is not null then r.it_kwh - lag(r.it_kwh) over w
                    else 1.0
                end as it_weight
            from facility_readings r
            join meters m on m.id = r.meter_id
            where m.site_id = $1
                and r.time >= $2 - interval '1 hour'
                and r.time < $3 + interval '1 hour'
            window w as (partition by r.meter_id order by r.time)
        )
        select time_bucket('1 hour', time, $4::timestamptz) as hour,
            avg(pue) as mean_pue,
            coalesce(sum(pue * it_weight) / nullif(sum(it_weight), 0), avg(pue)) as weighted_pue,
            count(*) as readings
        from readings
        where time >= $2
            and time < $3
            and pue between 1 and 10
        group by hour
        order by hour"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .bind(origin)
    .fetch_all(db)
    .await
}

/// Deletes a meter's readings in `[from, to)` (an admin removing a broken meter's data); how many.
pub(crate) async fn delete_readings(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    meter_id: MeterId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        r#"delete from facility_readings
        where meter_id = $1
            and time >= $2
            and time < $3"#,
    )
    .bind(meter_id)
    .bind(from)
    .bind(to)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Replaces a meter's token digest, the old one kept in its grace (`db::tokens`); `false` when there
/// is no such meter.
pub(crate) async fn set_token(db: &PgPool, name: &str, token_digest: &[u8]) -> sqlx::Result<bool> {
    super::tokens::replace(db, super::tokens::Holder::Meters, name, token_digest).await
}
