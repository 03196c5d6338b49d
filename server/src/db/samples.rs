//! Raw sample blocks: storing a batch exactly once per sample, and reading samples back.
//!
//! Idempotency is per sample, not per request: collectors retry, spools replay, and logs are re-imported
//! in other groupings. Each batch is stored under its node's row lock; blocks already holding any of
//! the batch's (GPU, time) pairs are decoded and those samples are left out. In steady streaming a new
//! batch starts after the node's last block ends, so the overlap query finds nothing and nothing is
//! decoded. A live block's samples lie within one aligned five-minute window, and a settled block's
//! (`gpu_settled`, one GPU's hour, see `compact_hour`) within one hour, which bounds every search.

use crate::ids::NodeId;
use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{PgPool, Postgres, Transaction};

use crate::codec::{self, RawSample};
use crate::db::ts;

/// Blocks hold samples of one aligned window of this length, so overlap searches are bounded.
pub(crate) const BLOCK_WINDOW_MS: i64 = 300_000;

/// What storing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Samples stored now.
    pub stored: u64,
    /// Samples already present (or repeated inside the batch), not stored again.
    pub duplicates: u64,
}

/// Stores several batches (node, samples, what the batch says of its node) in the caller's
/// transaction with one statement per step for all of them (group commit), three in streaming: every
/// node's row locked with its latest stored sample read, the blocks overlapping a batch that reaches
/// back to it (none in streaming), then the new blocks, their pending rollup ranges and every node's
/// row updated (`nodes::Touch`) in one. Each (GPU, millisecond) of a node is stored at most once, also
/// across batches of the same node in the group (the earlier batch stores it, the later counts a
/// duplicate). A node gone since the caller found it refuses the group ([`super::Error::NodeGone`]).
/// Answers what each batch stored, in order.
pub(crate) async fn insert_many(
    tx: &mut Transaction<'_, Postgres>,
    batches: Vec<(NodeId, Vec<RawSample>)>,
    touched: Vec<super::nodes::Touch>,
) -> Result<Vec<Stored>, super::Error> {
    let mut received = Vec::with_capacity(batches.len());
    let mut batches: Vec<(i32, Vec<RawSample>)> = batches
        .into_iter()
        .map(|(node_id, mut samples)| {
            received.push(samples.len() as u64);
            samples.sort_by_key(|s| (s.t_ms, s.gpu));
            samples.dedup_by_key(|s| (s.t_ms, s.gpu));
            (node_id.0, samples)
        })
        .collect();
    // Every node's row, locked in id order (two groups holding the same nodes cannot deadlock; the
    // settle task takes the same lock), with the end of its latest stored block: a row lock re-reads
    // the row as committed by whoever held it before, so what it says is after their blocks.
    let mut nodes: Vec<i32> = batches
        .iter()
        .map(|b| b.0)
        .chain(touched.iter().map(|t| t.node_id.0))
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let locked: Vec<(i32, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        "select id, raw_until from nodes where id = any($1::int[]) order by id for no key update",
    )
    .bind(&nodes)
    .fetch_all(&mut **tx)
    .await?;
    if locked.len() < nodes.len() {
        let gone = nodes
            .iter()
            .find(|n| !locked.iter().any(|(id, _)| id == *n))
            .copied()
            .unwrap_or_default();
        return Err(super::Error::NodeGone(NodeId(gone)));
    }
    let raw_until: HashMap<i32, i64> = locked
        .iter()
        .filter_map(|(id, until)| Some((*id, until.as_ref()?.timestamp_millis())))
        .collect();
    // (batch, node, window start, last, first) of each batch reaching back to its node's latest
    // stored sample: only those can repeat one (a streaming collector's batches never do). Their
    // blocks are read through the indexes, batch by batch (`offset 0` keeps the lateral subquery
    // from being flattened into a join the planner may answer by hashing whole chunks).
    let spans: Vec<(i32, i32, i64, i64, i64)> = batches
        .iter()
        .enumerate()
        .filter_map(|(i, (node_id, samples))| {
            let (first, last) = (samples.first()?.t_ms, samples.last()?.t_ms);
            (first <= *raw_until.get(node_id)?)
                .then(|| (i as i32, *node_id, window_start(first), last, first))
        })
        .collect();
    let mut present: BTreeMap<usize, HashSet<(u32, i64)>> = BTreeMap::new();
    if !spans.is_empty() {
        let overlapping: Vec<(i32, chrono::DateTime<chrono::Utc>, Vec<u8>)> = sqlx::query_as(
            r#"select q.batch, b.t_start, b.data
            from unnest($1::int[], $2::int[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[])
                as q(batch, node_id, window_start, last, first)
            cross join lateral (
                select g.t_start, g.data
                from gpu_raw g
                where g.node_id = q.node_id
                    and g.t_start >= q.window_start
                    and g.t_start <= q.last
                    and g.t_end >= q.first
                union all
                select s.t_start, s.data
                from gpu_settled s
                where s.node_id = q.node_id
                    and s.hour >= time_bucket('1 hour', q.first)
                    and s.hour <= q.last
                    and s.t_end >= q.first
                offset 0
            ) b"#,
        )
        .bind(spans.iter().map(|s| s.0).collect::<Vec<_>>())
        .bind(spans.iter().map(|s| s.1).collect::<Vec<_>>())
        .bind(spans.iter().map(|s| ts(s.2)).collect::<Vec<_>>())
        .bind(spans.iter().map(|s| ts(s.3)).collect::<Vec<_>>())
        .bind(spans.iter().map(|s| ts(s.4)).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await?;
        let mut decoded = Vec::new();
        for (batch, t_start, data) in &overlapping {
            decoded.clear();
            codec::decode(t_start.timestamp_millis(), data, &mut decoded)?;
            present
                .entry(*batch as usize)
                .or_default()
                .extend(decoded.iter().map(|s| (s.gpu, s.t_ms)));
        }
    }
    // What earlier batches of the group store for a node that comes more than once.
    let mut repeated: BTreeMap<i32, HashSet<(u32, i64)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (node_id, _) in &batches {
        if !seen.insert(*node_id) {
            repeated.insert(*node_id, HashSet::new());
        }
    }
    for (i, (node_id, samples)) in batches.iter_mut().enumerate() {
        if let Some(p) = present.get(&i) {
            samples.retain(|s| !p.contains(&(s.gpu, s.t_ms)));
        }
        if let Some(earlier) = repeated.get_mut(node_id) {
            samples.retain(|s| !earlier.contains(&(s.gpu, s.t_ms)));
            earlier.extend(samples.iter().map(|s| (s.gpu, s.t_ms)));
        }
    }
    let mut node: Vec<i32> = Vec::new();
    let mut t_start = Vec::new();
    let mut t_end = Vec::new();
    let mut n: Vec<i32> = Vec::new();
    let mut data: Vec<Vec<u8>> = Vec::new();
    let mut until = vec![None; batches.len()];
    for (i, (node_id, samples)) in batches.iter().enumerate() {
        for b in blocks(samples) {
            until[i] = until[i].max(Some(ts(b.t_end_ms)));
            node.push(*node_id);
            t_start.push(ts(b.t_start_ms));
            t_end.push(ts(b.t_end_ms));
            n.push(b.n_samples);
            data.push(b.data);
        }
    }
    // The blocks, their pending rollup ranges and the nodes' rows in one statement.
    let touch = super::nodes::TouchBinds::new(&touched, until);
    sqlx::query(&format!(
        r#"with block as (
            insert into gpu_raw (node_id, t_start, t_end, n_samples, data)
            select * from unnest($1::int[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::bytea[])
            returning node_id, t_start, t_end
        ), pending as (
            insert into rollup_pending (node_id, t_from, t_to)
            select node_id, t_start, t_end
            from block
        )
        {}"#,
        super::nodes::TOUCH
    ))
    .bind(&node)
    .bind(&t_start)
    .bind(&t_end)
    .bind(&n)
    .bind(&data)
    .bind(&touch.ids)
    .bind(&touch.dropped)
    .bind(&touch.offsets)
    .bind(&touch.steps)
    .bind(&touch.raw_until)
    .execute(&mut **tx)
    .await?;
    Ok(batches
        .iter()
        .zip(received)
        .map(|((_, samples), received)| Stored {
            stored: samples.len() as u64,
            duplicates: received - samples.len() as u64,
        })
        .collect())
}

/// One block as stored: a node's samples within one aligned window, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// First sample time, ms (the row's `t_start`, and the codec's base).
    pub t_start_ms: i64,
    /// Last sample time, ms.
    pub t_end_ms: i64,
    /// Samples in the block.
    pub n_samples: i32,
    /// The encoded samples.
    pub data: Vec<u8>,
}

/// Splits a node's samples into the blocks stored for them: one per aligned window, by time.
pub fn blocks(samples: &[RawSample]) -> Vec<Block> {
    let mut windows: BTreeMap<i64, Vec<RawSample>> = BTreeMap::new();
    for s in samples {
        windows.entry(window_start(s.t_ms)).or_default().push(*s);
    }
    windows
        .values()
        .map(|block| {
            let lo = block.iter().map(|s| s.t_ms).min().unwrap_or_default();
            let hi = block.iter().map(|s| s.t_ms).max().unwrap_or_default();
            Block {
                t_start_ms: lo,
                t_end_ms: hi,
                n_samples: block.len() as i32,
                data: codec::encode(lo, block),
            }
        })
        .collect()
}

fn window_start(t_ms: i64) -> i64 {
    t_ms.div_euclid(BLOCK_WINDOW_MS) * BLOCK_WINDOW_MS
}

/// A node's raw samples with `from_ms <= t < to_ms`, of the given GPUs (all when `gpus` is empty),
/// sorted by GPU then time, each (GPU, time) once.
pub async fn fetch(
    db: &PgPool,
    node_id: NodeId,
    gpus: &[u32],
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<RawSample>, super::Error> {
    let gpu_list: Vec<i32> = gpus.iter().map(|&g| g as i32).collect();
    let rows: Vec<(chrono::DateTime<chrono::Utc>, Vec<u8>)> = sqlx::query_as(
        r#"select t_start, data
        from gpu_raw
        where node_id = $1
            and t_start >= $2
            and t_start < $3
            and t_end >= $4
        union all
        select t_start, data
        from gpu_settled
        where node_id = $1
            and hour >= time_bucket('1 hour', $4)
            and hour < $3
            and t_end >= $4
            and (cardinality($5::int[]) = 0 or gpu_index = any($5))"#,
    )
    .bind(node_id)
    .bind(ts(window_start(from_ms)))
    .bind(ts(to_ms))
    .bind(ts(from_ms))
    .bind(&gpu_list)
    .fetch_all(db)
    .await?;
    let mut out = Vec::new();
    for (t_start, data) in rows {
        codec::decode(t_start.timestamp_millis(), &data, &mut out)?;
    }
    out.retain(|s| {
        s.t_ms >= from_ms && s.t_ms < to_ms && (gpus.is_empty() || gpus.contains(&s.gpu))
    });
    out.sort_by_key(|s| (s.gpu, s.t_ms));
    out.dedup_by_key(|s| (s.gpu, s.t_ms));
    Ok(out)
}

/// Hours (node, hour start) whose live blocks are ready to settle: the hour ended before `before`.
/// Oldest first, at most `limit`.
pub async fn settleable(
    db: &PgPool,
    before: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> sqlx::Result<Vec<(NodeId, chrono::DateTime<chrono::Utc>)>> {
    sqlx::query_as(
        r#"select node_id, time_bucket('1 hour', t_start) as hour
        from gpu_raw
        where t_start < time_bucket('1 hour', $1::timestamptz)
        group by 1, 2
        order by 2, 1
        limit $2"#,
    )
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// What settling an hour did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Live blocks rewritten.
    pub blocks: u64,
    /// Samples in the hour's settled blocks now.
    pub samples: u64,
    /// Bytes of the live blocks rewritten, and of the settled blocks now.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
}

/// Rewrites a node's live blocks of one hour, with the hour's settled blocks if late samples came after
/// an earlier run, into one packed block per GPU, and deletes the live blocks: one transaction under the
/// node's ingest lock, so a crash leaves the hour as it was or wholly settled, and no ingest of the node
/// runs its duplicate check in between. Every (GPU, millisecond) stays once.
pub async fn settle_hour(
    db: &PgPool,
    node_id: NodeId,
    hour: chrono::DateTime<chrono::Utc>,
) -> Result<Settled, super::Error> {
    let mut tx = db.begin().await?;
    // The node's row lock, as ingest takes it.
    sqlx::query("select 1 from nodes where id = $1 for no key update")
        .bind(node_id)
        .execute(&mut *tx)
        .await?;
    let live: Vec<(chrono::DateTime<chrono::Utc>, Vec<u8>)> = sqlx::query_as(
        r#"delete from gpu_raw
        where node_id = $1 and t_start >= $2 and t_start < $2 + interval '1 hour'
        returning t_start, data"#,
    )
    .bind(node_id)
    .bind(hour)
    .fetch_all(&mut *tx)
    .await?;
    if live.is_empty() {
        return Ok(Settled::default());
    }
    let settled: Vec<(chrono::DateTime<chrono::Utc>, Vec<u8>)> =
        sqlx::query_as("select t_start, data from gpu_settled where node_id = $1 and hour = $2")
            .bind(node_id)
            .bind(hour)
            .fetch_all(&mut *tx)
            .await?;
    let mut samples = Vec::new();
    let mut out = Settled {
        blocks: live.len() as u64,
        ..Settled::default()
    };
    for (t_start, data) in settled.iter().chain(&live) {
        out.bytes_before += data.len() as u64;
        codec::decode(t_start.timestamp_millis(), data, &mut samples)?;
    }
    out.bytes_before -= settled.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
    samples.sort_by_key(|s| (s.gpu, s.t_ms));
    samples.dedup_by_key(|s| (s.gpu, s.t_ms));
    let (mut gpu, mut t_start, mut t_end, mut n, mut data) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for group in samples.chunk_by(|a, b| a.gpu == b.gpu) {
        let (first, last) = (group[0].t_ms, group[group.len() - 1].t_ms);
        let block = codec::encode_packed(first, group);
        out.samples += group.len() as u64;
        out.bytes_after += block.len() as u64;
        gpu.push(group[0].gpu as i32);
        t_start.push(ts(first));
        t_end.push(ts(last));
        n.push(group.len() as i32);
        data.push(block);
    }
    sqlx::query(
        r#"insert into gpu_settled (node_id, gpu_index, hour, t_start, t_end, n_samples, data)
        select $1, g, $2, s, e, n, d
        from unnest($3::int[], $4::timestamptz[], $5::timestamptz[], $6::int[], $7::bytea[]) as u(g, s, e, n, d)
        on conflict (node_id, hour, gpu_index) do update
        set t_start = excluded.t_start, t_end = excluded.t_end, n_samples = excluded.n_samples,
            data = excluded.data"#,
    )
    .bind(node_id)
    .bind(hour)
    .bind(&gpu)
    .bind(&t_start)
    .bind(&t_end)
    .bind(&n)
    .bind(&data)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(out)
}
