//! Sites' hourly carbon-intensity series.

use crate::ids::SiteId;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use wattlas_protocol::CarbonPoint;

/// Stores points (a time stored again takes the new value); returns how many were new or changed.
pub(crate) async fn upsert(
    db: impl sqlx::PgExecutor<'_>,
    site_id: SiteId,
    points: &[CarbonPoint],
) -> sqlx::Result<u64> {
    let time: Vec<DateTime<Utc>> = points.iter().map(|p| p.time).collect();
    let g: Vec<f64> = points.iter().map(|p| p.g_per_kwh).collect();
    let done = sqlx::query(
        r#"insert into carbon_intensity (site_id, time, g_per_kwh)
        select $1, * from unnest($2::timestamptz[], $3::float8[])
        on conflict (site_id, time) do update
        set g_per_kwh = excluded.g_per_kwh
        where carbon_intensity.g_per_kwh <> excluded.g_per_kwh"#,
    )
    .bind(site_id)
    .bind(&time)
    .bind(&g)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Mean intensity of each UTC hour with values in `[from, to)`: hour start (ms) -> g/kWh.
pub(crate) async fn hourly(
    db: &PgPool,
    site_id: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<BTreeMap<i64, f64>> {
    let rows: Vec<(DateTime<Utc>, f64)> = sqlx::query_as(
        r#"select time_bucket('1 hour', time) as hour, avg(g_per_kwh)
        from carbon_intensity
        where site_id = $1
            and time >= $2
            and time < $3
        group by hour"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(h, g)| (h.timestamp_millis(), g))
        .collect())
}
