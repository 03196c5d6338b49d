//! Sensors against meters: the nodes a meter measures and their collectors' energy per hour
//! (`service::calibration`; the meter's readings are `closure::one_meter_readings`).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::ids::{MeterId, NodeId};

/// Sets the nodes meter `meter_id` measures (replacing the set).
pub(crate) async fn set_meter_nodes(
    tx: &mut Transaction<'_, Postgres>,
    meter_id: MeterId,
    nodes: &[NodeId],
) -> sqlx::Result<()> {
    sqlx::query("delete from meter_nodes where meter_id = $1")
        .bind(meter_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        r#"insert into meter_nodes (meter_id, node_id)
        select $1, unnest($2::int4[])"#,
    )
    .bind(meter_id)
    .bind(nodes.iter().map(|n| n.0).collect::<Vec<i32>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The nodes a meter measures: (id, name, the GPU models they hold).
pub(crate) async fn meter_nodes(
    db: &PgPool,
    meter_id: MeterId,
) -> sqlx::Result<Vec<(NodeId, String, Vec<String>)>> {
    sqlx::query_as(
        r#"select n.id, n.name,
            coalesce(array_agg(distinct g.model) filter (where g.model is not null), '{}')
        from meter_nodes mn
        join nodes n on n.id = mn.node_id
        left join gpus g on g.node_id = n.id
        where mn.meter_id = $1
        group by n.id, n.name
        order by n.name"#,
    )
    .bind(meter_id)
    .fetch_all(db)
    .await
}

/// GPUs of these nodes.
pub(crate) async fn gpu_count(db: &PgPool, nodes: &[NodeId]) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from gpus where node_id = any($1)")
        .bind(nodes.iter().map(|n| n.0).collect::<Vec<i32>>())
        .fetch_one(db)
        .await
}

/// The collectors' energy of these nodes per UTC hour of `[from, to)`: (hour, GPU J, CPU and DRAM J,
/// GPU-seconds covered), from the rolled-up hours and minutes.
pub(crate) async fn collectors_by_hour(
    db: &PgPool,
    nodes: &[NodeId],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(DateTime<Utc>, f64, f64, f64)>> {
    sqlx::query_as(
        r#"with g as (
            select h.hour, sum(h.energy_j)::float8 as gpu_j, sum(h.covered_s)::float8 as covered_s
            from gpu_hour h
            where h.node_id = any($1) and h.hour >= $2 and h.hour < $3
            group by h.hour
        ), c as (
            select time_bucket('1 hour', m.minute) as hour, sum(m.energy_j)::float8 as node_j
            from node_energy_minute m
            where m.node_id = any($1) and m.kind in ('cpu', 'dram') and m.minute >= $2 and m.minute < $3
            group by 1
        )
        select g.hour, g.gpu_j, coalesce(c.node_j, 0)::float8, g.covered_s
        from g left join c on c.hour = g.hour
        order by g.hour"#,
    )
    .bind(nodes.iter().map(|n| n.0).collect::<Vec<i32>>())
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await
}
