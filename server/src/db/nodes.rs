//! Nodes (hosts with GPUs, each in a site) and their GPUs.

use crate::ids::{NodeId, SiteId};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use wattlas_protocol::GpuIdentity;

/// A node row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Node {
    /// Id.
    pub id: NodeId,
    /// Unique name.
    pub name: String,
    /// Site id.
    pub site_id: SiteId,
    /// Site name.
    pub site: String,
    /// Time of the last accepted batch.
    pub last_seen: Option<DateTime<Utc>>,
    /// The collector's reported running total of dropped samples.
    pub dropped_samples_total: i64,
    /// Its clock against the server's at its last push that said it, ms (positive: behind).
    pub clock_offset_ms: Option<i32>,
    /// When that was.
    pub clock_checked_at: Option<DateTime<Utc>>,
    /// Steps of its wall clock its collector reported slewing over.
    pub clock_steps: i64,
    /// When the last batch that reported one came.
    pub clock_stepped_at: Option<DateTime<Utc>>,
}

/// A node clock off by more than this is flagged, ms: twenty of its 100 ms sampling intervals.
pub(crate) const CLOCK_WARN_MS: i32 = 2000;

impl Node {
    /// Its clock's offset in words ("2.3 s behind", "in step"), and whether it is flagged.
    pub(crate) fn clock(&self) -> Option<(String, bool)> {
        let steps = match (self.clock_steps, self.clock_stepped_at) {
            (0, _) => String::new(),
            (n, at) => format!(
                "; its wall clock stepped {n} time{}{}, slewed over",
                if n == 1 { "" } else { "s" },
                at.map_or(String::new(), |t| format!(
                    " (last {})",
                    t.format("%Y-%m-%d %H:%M UTC")
                ))
            ),
        };
        let Some(ms) = self.clock_offset_ms else {
            return (!steps.is_empty()).then(|| (format!("offset not said{steps}"), false));
        };
        let words = if ms.abs() < 100 {
            "in step (within 0.1 s)".to_owned()
        } else {
            format!(
                "{:.1} s {}",
                f64::from(ms.abs()) / 1000.0,
                if ms > 0 { "behind" } else { "ahead" }
            )
        };
        let at = self.clock_checked_at.map_or(String::new(), |t| {
            format!(" at {}", t.format("%Y-%m-%d %H:%M UTC"))
        });
        Some((format!("{words}{at}{steps}"), ms.abs() > CLOCK_WARN_MS))
    }
}

const NODE_COLUMNS: &str = r#"select n.id, n.name, n.site_id, s.name as site, n.last_seen, n.dropped_samples_total,
            n.clock_offset_ms, n.clock_checked_at, n.clock_steps, n.clock_stepped_at
        from nodes n
        join sites s on s.id = n.site_id"#;

/// Creates a node with the digest of its token; `None` when the name is taken.
pub(crate) async fn create(
    db: impl sqlx::PgExecutor<'_>,
    name: &str,
    site_id: SiteId,
    token_digest: &[u8],
) -> sqlx::Result<Option<NodeId>> {
    sqlx::query_scalar(
        r#"insert into nodes (name, site_id, token_sha256)
        values ($1, $2, $3)
        on conflict (name) do nothing
        returning id"#,
    )
    .bind(name)
    .bind(site_id)
    .bind(token_digest)
    .fetch_optional(db)
    .await
}

/// Deletes nodes nothing was stored for (a write that registered them was refused); a node with any
/// GPU, sample or job stays.
pub(crate) async fn delete_unused(db: &PgPool, ids: &[NodeId]) -> sqlx::Result<u64> {
    let mut deleted = 0;
    for id in ids {
        // One statement a node: a reference from anywhere (a foreign key) keeps that node only.
        match sqlx::query("delete from nodes where id = $1")
            .bind(id)
            .execute(db)
            .await
        {
            Ok(r) => deleted += r.rows_affected(),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// The node a token digest belongs to: its token, or the one it replaced while that is in its grace
/// (`db::tokens`); with whether this use of a new token ended its predecessor's grace.
pub(crate) async fn by_token_digest(
    db: &PgPool,
    digest: &[u8],
) -> sqlx::Result<Option<(Node, bool)>> {
    let switched = super::tokens::end_grace(db, super::tokens::Holder::Nodes, digest).await?;
    let node: Option<Node> = sqlx::query_as(&format!(
        "{NODE_COLUMNS}\n        where {}",
        super::tokens::matches("n")
    ))
    .bind(digest)
    .fetch_optional(db)
    .await?;
    Ok(node.map(|n| (n, switched)))
}

/// A node by name.
pub(crate) async fn by_name(
    db: impl sqlx::PgExecutor<'_>,
    name: &str,
) -> sqlx::Result<Option<Node>> {
    sqlx::query_as(&format!("{NODE_COLUMNS}\n        where n.name = $1"))
        .bind(name)
        .fetch_optional(db)
        .await
}

/// Nodes by name (those that exist).
pub(crate) async fn by_names(db: &PgPool, names: &[String]) -> sqlx::Result<Vec<Node>> {
    sqlx::query_as(&format!("{NODE_COLUMNS}\n        where n.name = any($1)"))
        .bind(names)
        .fetch_all(db)
        .await
}

/// All nodes by name.
pub(crate) async fn list(db: &PgPool) -> sqlx::Result<Vec<Node>> {
    sqlx::query_as(&format!("{NODE_COLUMNS}\n        order by n.name"))
        .fetch_all(db)
        .await
}

/// Stores the ranges of samples a node's collector dropped; one sent again or widened updates the one
/// stored (by GPU and start), never adds to it.
pub(crate) async fn insert_dropped(
    tx: &mut Transaction<'_, Postgres>,
    node_id: NodeId,
    ranges: &[wattlas_protocol::DroppedRange],
) -> sqlx::Result<()> {
    let gpu: Vec<i32> = ranges.iter().map(|r| r.gpu as i32).collect();
    let from: Vec<DateTime<Utc>> = ranges.iter().map(|r| r.from).collect();
    let to: Vec<DateTime<Utc>> = ranges.iter().map(|r| r.to).collect();
    let samples: Vec<i64> = ranges
        .iter()
        .map(|r| r.samples.min(i64::MAX as u64) as i64)
        .collect();
    sqlx::query(
        r#"insert into dropped_ranges (node_id, gpu_index, t_from, t_to, samples)
        select $1, * from unnest($2::int[], $3::timestamptz[], $4::timestamptz[], $5::int8[])
        on conflict (node_id, gpu_index, t_from) do update
            set t_to = greatest(dropped_ranges.t_to, excluded.t_to),
                samples = greatest(dropped_ranges.samples, excluded.samples),
                reported_at = now()"#,
    )
    .bind(node_id)
    .bind(&gpu)
    .bind(&from)
    .bind(&to)
    .bind(&samples)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Samples dropped within a job's GPUs over `[from, to]`: (samples, GPU-seconds), each range's
/// samples in proportion to its overlap with the span (a range of one sample counts whole where it
/// falls inside).
pub(crate) async fn dropped_for_job(
    db: &PgPool,
    job_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<(f64, f64)> {
    sqlx::query_as(
        r#"with o as (
            select d.samples,
                extract(epoch from d.t_to - d.t_from)::float8 as span_s,
                extract(epoch from least(d.t_to, $3) - greatest(d.t_from, $2))::float8 as overlap_s
            from job_allocations a
            join dropped_ranges d on d.node_id = a.node_id and d.gpu_index = a.gpu_index
            where a.job_id = $1 and d.t_from <= $3 and d.t_to >= $2
        )
        select coalesce(sum(case when span_s > 0 then samples * overlap_s / span_s else samples end), 0)::float8,
            coalesce(sum(overlap_s), 0)::float8
        from o"#,
    )
    .bind(job_id)
    .bind(from)
    .bind(to)
    .fetch_one(db)
    .await
}

/// Records the identities a batch carried (a swapped GPU replaces the old one at its index, except
/// where the identity says `keep_known`: an import's never replaces one) and returns every GPU index
/// the node has: one round trip for a collector's batch.
pub(crate) async fn register_gpus(
    tx: &mut Transaction<'_, Postgres>,
    node_id: NodeId,
    gpus: &[GpuIdentity],
) -> sqlx::Result<Vec<i32>> {
    let (keep, replace): (Vec<&GpuIdentity>, Vec<&GpuIdentity>) =
        gpus.iter().partition(|g| g.keep_known);
    let columns = |gs: &[&GpuIdentity]| {
        (
            gs.iter().map(|g| g.index as i32).collect::<Vec<i32>>(),
            gs.iter().map(|g| g.uuid.clone()).collect::<Vec<String>>(),
            gs.iter().map(|g| g.model.clone()).collect::<Vec<String>>(),
            gs.iter()
                .map(|g| g.default_power_limit_w)
                .collect::<Vec<Option<f64>>>(),
        )
    };
    let (index, uuid, model, limit) = columns(&replace);
    // The outer select sees the table as it was before the insert: the union adds what it wrote.
    let mut known: Vec<i32> = sqlx::query_scalar(
        r#"with up as (
            insert into gpus (node_id, gpu_index, uuid, model, default_power_limit_w)
            select $1, * from unnest($2::int[], $3::text[], $4::text[], $5::float8[])
            on conflict (node_id, gpu_index) do update
            set uuid = excluded.uuid, model = excluded.model,
                default_power_limit_w = excluded.default_power_limit_w, updated_at = now()
            where (gpus.uuid, gpus.model, gpus.default_power_limit_w)
                is distinct from (excluded.uuid, excluded.model, excluded.default_power_limit_w)
            returning gpu_index
        )
        select gpu_index
        from gpus
        where node_id = $1
        union
        select gpu_index
        from up"#,
    )
    .bind(node_id)
    .bind(&index)
    .bind(&uuid)
    .bind(&model)
    .bind(&limit)
    .fetch_all(&mut **tx)
    .await?;
    let missing = |known: &[i32]| gpus.iter().any(|g| !known.contains(&(g.index as i32)));
    if !keep.is_empty() && missing(&known) {
        let (index, uuid, model, limit) = columns(&keep);
        sqlx::query(
            r#"insert into gpus (node_id, gpu_index, uuid, model, default_power_limit_w)
            select $1, * from unnest($2::int[], $3::text[], $4::text[], $5::float8[])
            on conflict (node_id, gpu_index) do nothing"#,
        )
        .bind(node_id)
        .bind(&index)
        .bind(&uuid)
        .bind(&model)
        .bind(&limit)
        .execute(&mut **tx)
        .await?;
    }
    // Another request of the same node registered these GPUs while this statement waited on it: its
    // rows were committed after this statement's snapshot. A new statement sees them.
    if missing(&known) {
        known = sqlx::query_scalar(
            r#"select gpu_index
            from gpus
            where node_id = $1"#,
        )
        .bind(node_id)
        .fetch_all(&mut **tx)
        .await?;
    }
    Ok(known)
}

/// A node's GPUs by index.
pub(crate) async fn gpus(db: &PgPool, node_id: NodeId) -> sqlx::Result<Vec<GpuIdentity>> {
    let rows: Vec<(i32, String, String, Option<f64>)> = sqlx::query_as(
        r#"select gpu_index, uuid, model, default_power_limit_w
        from gpus
        where node_id = $1
        order by gpu_index"#,
    )
    .bind(node_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(index, uuid, model, default_power_limit_w)| GpuIdentity {
            index: index as u32,
            uuid,
            model,
            default_power_limit_w,
            keep_known: false,
        })
        .collect())
}

/// What one batch says of its node beside its samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Touch {
    /// The node.
    pub node_id: NodeId,
    /// Its collector's running count of dropped samples.
    pub dropped_total: Option<u64>,
    /// Its clock against the server's, ms.
    pub clock_offset_ms: Option<i64>,
    /// Steps of its wall clock while the batch's samples were taken.
    pub clock_steps: u64,
}

/// The update of the nodes of several batches, binds `$6` to `$10` ([`TouchBinds`]), written last
/// in `samples::insert_many`'s statement: marks them seen now, keeps the highest dropped-sample count
/// each reported (a node may come more than once), adds the clock steps they report (a batch sent
/// again after its answer was lost adds its steps again: the count is at least the steps) and moves
/// each one's latest stored sample on.
pub(crate) const TOUCH: &str = r#"update nodes n
        set last_seen = now(),
            dropped_samples_total = greatest(n.dropped_samples_total, coalesce(d.dropped, 0)),
            clock_offset_ms = coalesce(d.offset_ms, n.clock_offset_ms),
            clock_checked_at = case when d.offset_ms is null then n.clock_checked_at else now() end,
            clock_steps = n.clock_steps + d.steps,
            clock_stepped_at = case when d.steps > 0 then now() else n.clock_stepped_at end,
            raw_until = greatest(n.raw_until, d.raw_until)
        from (select id, max(dropped) as dropped, (array_agg(offset_ms order by ord desc)
                  filter (where offset_ms is not null))[1] as offset_ms, sum(steps) as steps,
                  max(raw_until) as raw_until
              from unnest($6::int[], $7::int8[], $8::int4[], $9::int8[], $10::timestamptz[])
                  with ordinality as b(id, dropped, offset_ms, steps, raw_until, ord)
              group by id) d
        where n.id = d.id"#;

/// [`TOUCH`]'s binds, in order.
pub(crate) struct TouchBinds {
    pub ids: Vec<NodeId>,
    pub dropped: Vec<Option<i64>>,
    pub offsets: Vec<Option<i32>>,
    pub steps: Vec<i64>,
    pub raw_until: Vec<Option<DateTime<Utc>>>,
}

impl TouchBinds {
    /// `raw_until`: the end of the latest block each batch stored (none stored: `None`), in order.
    pub(crate) fn new(batches: &[Touch], raw_until: Vec<Option<DateTime<Utc>>>) -> Self {
        TouchBinds {
            ids: batches.iter().map(|b| b.node_id).collect(),
            dropped: batches
                .iter()
                .map(|b| b.dropped_total.map(|d| d.min(i64::MAX as u64) as i64))
                .collect(),
            // A node's clock offset, as its last batch in the group measured it (clamped to an int4).
            offsets: batches
                .iter()
                .map(|b| {
                    b.clock_offset_ms
                        .map(|o| o.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
                })
                .collect(),
            steps: batches
                .iter()
                .map(|b| b.clock_steps.min(1_000_000) as i64)
                .collect(),
            raw_until,
        }
    }
}

/// Replaces a node's token digest, the old one kept in its grace (`db::tokens`); `false` when there
/// is no such node.
pub(crate) async fn set_token(db: &PgPool, name: &str, token_digest: &[u8]) -> sqlx::Result<bool> {
    super::tokens::replace(db, super::tokens::Holder::Nodes, name, token_digest).await
}

/// Per node id: its GPUs and their models (`, `-joined).
pub(crate) async fn gpu_summary(
    db: &PgPool,
) -> sqlx::Result<std::collections::HashMap<NodeId, (i64, String)>> {
    let rows: Vec<(NodeId, i64, String)> = sqlx::query_as(
        r#"select node_id, count(*), string_agg(distinct model, ', ')
        from gpus
        group by node_id"#,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(id, n, m)| (id, (n, m))).collect())
}
