//! Training progress reports of jobs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgPool;
use wattlas_protocol::ProgressReport;

/// Stores reports (a step reported again replaces the earlier one); returns how many rows changed.
pub(crate) async fn upsert(
    db: &PgPool,
    job_id: &str,
    reports: &[ProgressReport],
) -> sqlx::Result<u64> {
    let step: Vec<i64> = reports.iter().map(|r| r.step).collect();
    let time: Vec<DateTime<Utc>> = reports.iter().map(|r| r.time).collect();
    let metrics: Vec<Json<&BTreeMap<String, f64>>> =
        reports.iter().map(|r| Json(&r.metrics)).collect();
    let done = sqlx::query(
        r#"insert into job_progress (job_id, step, time, metrics)
        select $1, * from unnest($2::int8[], $3::timestamptz[], $4::jsonb[])
        on conflict (job_id, step) do update
        set time = excluded.time, metrics = excluded.metrics"#,
    )
    .bind(job_id)
    .bind(&step)
    .bind(&time)
    .bind(&metrics)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A job's reports by step.
pub(crate) async fn list(db: &PgPool, job_id: &str) -> sqlx::Result<Vec<ProgressReport>> {
    type Row = (i64, DateTime<Utc>, Json<BTreeMap<String, f64>>);
    let rows: Vec<Row> = sqlx::query_as(
        r#"select step, time, metrics
        from job_progress
        where job_id = $1
        order by step"#,
    )
    .bind(job_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(step, time, metrics)| ProgressReport {
            time,
            step,
            metrics: metrics.0,
        })
        .collect())
}
