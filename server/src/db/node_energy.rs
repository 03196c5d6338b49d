//! Nodes' CPU and DRAM energy counters (`node_energy`), the CPUs jobs hold on them (`job_node_cpus`), and
//! what a job's share of them is computed from.

use crate::ids::NodeId;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use wattlas_protocol::{NodeEnergyKind, NodeEnergyReading};

use crate::analytics::node_energy::{Occupant, Reading};

/// Stores readings, each (node, zone, time) once: a resent batch changes nothing. Returns how many were
/// new.
pub(crate) async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    node_id: NodeId,
    readings: &[NodeEnergyReading],
) -> sqlx::Result<u64> {
    if readings.is_empty() {
        return Ok(0);
    }
    let zone: Vec<&str> = readings.iter().map(|r| r.zone.as_str()).collect();
    let kind: Vec<&str> = readings.iter().map(|r| kind_name(r.kind)).collect();
    let t: Vec<DateTime<Utc>> = readings.iter().map(|r| r.time).collect();
    let energy: Vec<i64> = readings.iter().map(|r| r.energy_uj as i64).collect();
    let max: Vec<i64> = readings
        .iter()
        .map(|r| r.max_energy_range_uj as i64)
        .collect();
    let done = sqlx::query(
        r#"insert into node_energy (node_id, zone, kind, t, energy_uj, max_uj)
        select $1, * from unnest($2::text[], $3::text[], $4::timestamptz[], $5::int8[], $6::int8[])
        on conflict do nothing"#,
    )
    .bind(node_id)
    .bind(&zone)
    .bind(&kind)
    .bind(&t)
    .bind(&energy)
    .bind(&max)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// The name a kind is stored under.
pub(crate) fn kind_name(kind: NodeEnergyKind) -> &'static str {
    match kind {
        NodeEnergyKind::Cpu => "cpu",
        NodeEnergyKind::Dram => "dram",
        NodeEnergyKind::Psys => "psys",
    }
}

fn kind_of(name: &str) -> NodeEnergyKind {
    match name {
        "cpu" => NodeEnergyKind::Cpu,
        "dram" => NodeEnergyKind::Dram,
        _ => NodeEnergyKind::Psys,
    }
}

/// Each counter of a node over `[from_ms - margin, to_ms + margin]`, in time order: (kind, readings).
pub(crate) async fn readings(
    db: &PgPool,
    node_id: NodeId,
    from_ms: i64,
    to_ms: i64,
    margin_ms: i64,
) -> sqlx::Result<Vec<(NodeEnergyKind, Vec<Reading>)>> {
    Ok(zone_readings(
        db,
        node_id,
        super::ts(from_ms - margin_ms),
        super::ts(to_ms.saturating_add(margin_ms)),
    )
    .await?
    .into_iter()
    .map(|(_, kind, r)| (kind, r))
    .collect())
}

/// The jobs holding GPUs or CPUs of a node at some time in `[from_ms, to_ms)`: (job id, occupant);
/// running jobs end at `i64::MAX`.
pub(crate) async fn occupants(
    db: &PgPool,
    node_id: NodeId,
    from_ms: i64,
    to_ms: i64,
) -> sqlx::Result<Vec<(String, Occupant)>> {
    type Row = (String, DateTime<Utc>, Option<DateTime<Utc>>, Option<i32>);
    let rows: Vec<Row> = sqlx::query_as(
        // The jobs overlapping the window first (by the span index), then which of them hold the node:
        // asking every job of the node for its span read all of them (~25,000 of 100,000 jobs).
        &format!(
            r#"with {}
        select o.id, o.start_time, o.end_time, c.cpus
        from overlapping o
        left join job_node_cpus c on c.job_id = o.id and c.node_id = $1
        left join lateral (
            select 1 as held from job_allocations a where a.job_id = o.id and a.node_id = $1 limit 1
        ) a on true
        where c.job_id is not null or a.held is not null
        order by o.id"#,
            super::OVERLAPPING_JOBS
        ),
    )
    .bind(node_id)
    .bind(super::ts(from_ms))
    .bind(super::ts(to_ms))
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, start, end, cpus)| {
            (
                id,
                Occupant {
                    start_ms: start.timestamp_millis(),
                    end_ms: end.map_or(i64::MAX, |e| e.timestamp_millis()),
                    cpus: cpus.and_then(|c| u32::try_from(c).ok()),
                },
            )
        })
        .collect())
}

/// The logical CPUs of nodes, where their collectors said.
pub(crate) async fn node_cpus(
    db: &PgPool,
    node_ids: &[NodeId],
) -> sqlx::Result<HashMap<NodeId, u32>> {
    let rows: Vec<(NodeId, i32)> =
        sqlx::query_as("select id, cpus from nodes where id = any($1) and cpus is not null")
            .bind(node_ids)
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, c)| u32::try_from(c).ok().map(|c| (id, c)))
        .collect())
}

/// Records a node's logical CPUs.
pub(crate) async fn set_node_cpus(
    tx: &mut Transaction<'_, Postgres>,
    node_id: NodeId,
    cpus: u32,
) -> sqlx::Result<()> {
    sqlx::query("update nodes set cpus = $2 where id = $1 and cpus is distinct from $2")
        .bind(node_id)
        .bind(cpus as i32)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records the CPUs a job holds on a node (the latest registration wins).
pub(crate) async fn set_job_cpus(
    tx: &mut Transaction<'_, Postgres>,
    job_id: &str,
    node_id: NodeId,
    cpus: u32,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into job_node_cpus (job_id, node_id, cpus) values ($1, $2, $3)
        on conflict (job_id, node_id) do update set cpus = excluded.cpus"#,
    )
    .bind(job_id)
    .bind(node_id)
    .bind(cpus as i32)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Nodes whose readings are not all rolled up: (node, rolled up to, latest reading).
pub(crate) async fn to_roll_up(
    db: &PgPool,
) -> sqlx::Result<Vec<(NodeId, Option<DateTime<Utc>>, DateTime<Utc>)>> {
    sqlx::query_as(
        r#"select l.node_id, r.rolled_to, l.latest
        from (select node_id, max(t) as latest from node_energy group by node_id) l
        left join node_energy_rollup r on r.node_id = l.node_id
        where r.rolled_to is null or r.rolled_to < l.latest"#,
    )
    .fetch_all(db)
    .await
}

/// The earliest reading of a node at or after `from` (where its rollup starts when it has none).
pub(crate) async fn earliest(db: &PgPool, node_id: NodeId) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("select min(t) from node_energy where node_id = $1")
        .bind(node_id)
        .fetch_one(db)
        .await
}

/// Stores minutes of one counter, replacing what an earlier rollup stored for them, and moves the
/// node's rollup mark.
pub(crate) async fn upsert_minutes(
    tx: &mut Transaction<'_, Postgres>,
    node_id: NodeId,
    zone: &str,
    kind: NodeEnergyKind,
    minutes: &BTreeMap<i64, f64>,
) -> sqlx::Result<()> {
    if minutes.is_empty() {
        return Ok(());
    }
    let t: Vec<DateTime<Utc>> = minutes.keys().map(|m| super::ts(*m)).collect();
    let e: Vec<f64> = minutes.values().copied().collect();
    sqlx::query(
        r#"insert into node_energy_minute (node_id, zone, kind, minute, energy_j)
        select $1, $2, $3, * from unnest($4::timestamptz[], $5::float8[])
        on conflict (node_id, zone, minute) do update set energy_j = excluded.energy_j"#,
    )
    .bind(node_id)
    .bind(zone)
    .bind(kind_name(kind))
    .bind(&t)
    .bind(&e)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves a node's rollup mark.
pub(crate) async fn set_rolled_to(
    tx: &mut Transaction<'_, Postgres>,
    node_id: NodeId,
    to: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into node_energy_rollup (node_id, rolled_to) values ($1, $2)
        on conflict (node_id) do update set rolled_to = excluded.rolled_to"#,
    )
    .bind(node_id)
    .bind(to)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Readings arrived before a node's rollup mark (an import, a late batch): the mark goes back to them.
pub(crate) async fn rewind(
    tx: &mut Transaction<'_, Postgres>,
    node_id: NodeId,
    earliest: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "update node_energy_rollup set rolled_to = least(rolled_to, $2) where node_id = $1",
    )
    .bind(node_id)
    .bind(earliest)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Each counter's rolled-up minutes of a node over `[from_ms, to_ms)`: (kind, minute start ms -> J).
pub(crate) async fn minutes(
    db: &PgPool,
    node_id: NodeId,
    from_ms: i64,
    to_ms: i64,
) -> sqlx::Result<Vec<(NodeEnergyKind, BTreeMap<i64, f64>)>> {
    let rows: Vec<(String, String, DateTime<Utc>, f64)> = sqlx::query_as(
        r#"select zone, kind, minute, energy_j
        from node_energy_minute
        where node_id = $1 and minute >= $2 and minute < $3
        order by zone, minute"#,
    )
    .bind(node_id)
    .bind(super::ts(from_ms))
    .bind(super::ts(to_ms))
    .fetch_all(db)
    .await?;
    let mut zones: BTreeMap<String, (NodeEnergyKind, BTreeMap<i64, f64>)> = BTreeMap::new();
    for (zone, kind, minute, e) in rows {
        zones
            .entry(zone)
            .or_insert_with(|| (kind_of(&kind), BTreeMap::new()))
            .1
            .insert(minute.timestamp_millis(), e);
    }
    Ok(zones.into_values().collect())
}

/// Each counter's raw readings of a node with their zone names (for the rollup).
pub(crate) async fn zone_readings(
    db: &PgPool,
    node_id: NodeId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(String, NodeEnergyKind, Vec<Reading>)>> {
    let rows: Vec<(String, String, DateTime<Utc>, i64, i64)> = sqlx::query_as(
        r#"select zone, kind, t, energy_uj, max_uj
        from node_energy
        where node_id = $1 and t >= $2 and t <= $3
        order by zone, t"#,
    )
    .bind(node_id)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    let mut zones: BTreeMap<String, (NodeEnergyKind, Vec<Reading>)> = BTreeMap::new();
    for (zone, kind, t, energy_uj, max_uj) in rows {
        zones
            .entry(zone)
            .or_insert_with(|| (kind_of(&kind), Vec::new()))
            .1
            .push(Reading {
                t_ms: t.timestamp_millis(),
                energy_uj,
                max_uj,
            });
    }
    Ok(zones.into_iter().map(|(z, (k, r))| (z, k, r)).collect())
}
