//! Scope 2's inputs: sites' contractual instruments (market-based factors for a period) and GPU models'
//! embodied emissions per GPU-hour.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};

use crate::ids::SiteId;

/// A contractual instrument of a site: its factor over `[valid_from, valid_to)`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub(crate) struct Contract {
    /// First instant covered.
    pub valid_from: DateTime<Utc>,
    /// First instant not covered.
    pub valid_to: DateTime<Utc>,
    /// Its emission factor, g CO2e/kWh.
    pub g_per_kwh: f64,
    /// What it is, in words ("PPA, wind farm X, 2026").
    pub instrument: String,
}

/// A site's instruments overlapping `[from, to)`, oldest first.
pub(crate) async fn contracts(
    db: &PgPool,
    site_id: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<Contract>> {
    sqlx::query_as(
        r#"select valid_from, valid_to, g_per_kwh, instrument
        from site_contracts
        where site_id = $1 and valid_from < $3 and valid_to > $2
        order by valid_from"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await
}

/// Whether the site has any instrument at all.
pub(crate) async fn has_contracts(db: &PgPool, site_id: SiteId) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists(select 1 from site_contracts where site_id = $1)")
        .bind(site_id)
        .fetch_one(db)
        .await
}

/// Stores an instrument unless it overlaps another of the site's: whether it was stored.
pub(crate) async fn insert_contract(
    tx: &mut Transaction<'_, Postgres>,
    site_id: SiteId,
    c: &Contract,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        r#"insert into site_contracts (site_id, valid_from, valid_to, g_per_kwh, instrument)
        select $1, $2, $3, $4, $5
        where not exists (
            select 1 from site_contracts
            where site_id = $1 and valid_from < $3 and valid_to > $2
        )"#,
    )
    .bind(site_id)
    .bind(c.valid_from)
    .bind(c.valid_to)
    .bind(c.g_per_kwh)
    .bind(&c.instrument)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes the instrument starting at `valid_from`: the one removed, if any.
pub(crate) async fn delete_contract(
    tx: &mut Transaction<'_, Postgres>,
    site_id: SiteId,
    valid_from: DateTime<Utc>,
) -> sqlx::Result<Option<Contract>> {
    sqlx::query_as(
        r#"delete from site_contracts where site_id = $1 and valid_from = $2
        returning valid_from, valid_to, g_per_kwh, instrument"#,
    )
    .bind(site_id)
    .bind(valid_from)
    .fetch_optional(&mut **tx)
    .await
}

/// A GPU model's embodied emissions.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub(crate) struct Embodied {
    /// The model, as NVML names it.
    pub model: String,
    /// kg CO2e per GPU-hour of use.
    pub kg_per_gpu_hour: f64,
    /// Where the figure comes from.
    pub source: String,
}

/// Sets a model's figure.
pub(crate) async fn set_embodied(
    tx: &mut Transaction<'_, Postgres>,
    e: &Embodied,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into gpu_model_embodied (model, kg_per_gpu_hour, source) values ($1, $2, $3)
        on conflict (model) do update set kg_per_gpu_hour = excluded.kg_per_gpu_hour,
            source = excluded.source"#,
    )
    .bind(&e.model)
    .bind(e.kg_per_gpu_hour)
    .bind(&e.source)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Every model's figure.
pub(crate) async fn embodied(db: &PgPool) -> sqlx::Result<Vec<Embodied>> {
    sqlx::query_as("select model, kg_per_gpu_hour, source from gpu_model_embodied order by model")
        .fetch_all(db)
        .await
}

/// A job's allocated GPUs: how many, and the sum of their models' kg CO2e per GPU-hour over those
/// with a figure (none when some GPU's model has none).
pub(crate) async fn job_embodied_rate(db: &PgPool, job_id: &str) -> sqlx::Result<Option<f64>> {
    let (gpus, with, rate): (i64, i64, Option<f64>) = sqlx::query_as(
        r#"select count(*), count(e.model), sum(e.kg_per_gpu_hour)::float8
        from job_allocations a
        join gpus g on g.node_id = a.node_id and g.gpu_index = a.gpu_index
        left join gpu_model_embodied e on e.model = g.model
        where a.job_id = $1"#,
    )
    .bind(job_id)
    .fetch_one(db)
    .await?;
    Ok((gpus > 0 && with == gpus).then(|| rate.unwrap_or(0.0)))
}
