//! Raw sample blocks: storing a batch exactly once per sample, and reading samples back.
//!
//! Idempotency is per sample, not per request: collectors retry, spools replay, and logs are re-imported
//! in other groupings. Each batch is stored under a per-node advisory lock; blocks already holding any of
//! the batch's (GPU, time) pairs are decoded and those samples are left out. In steady streaming a new
//! batch starts after the node's last block ends, so the overlap query finds nothing and nothing is
//! decoded. A block's samples lie within one aligned five-minute window, which bounds every search.

use std::collections::{BTreeMap, HashSet};

use sqlx::{PgPool, Postgres, Transaction};

use crate::codec::{self, RawSample};
use crate::db::ts;

/// Blocks hold samples of one aligned window of this length, so overlap searches are bounded.
pub const BLOCK_WINDOW_MS: i64 = 300_000;

/// Advisory-lock namespace for ingest ("WATT").
const INGEST_LOCK: i32 = 0x5741_5454;

/// What storing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// Samples stored now.
    pub stored: u64,
    /// Samples already present (or repeated inside the batch), not stored again.
    pub duplicates: u64,
}

/// Stores a node's samples, each (GPU, millisecond) at most once, inside the caller's transaction.
pub async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    node_id: i32,
    mut samples: Vec<RawSample>,
) -> Result<Stored, super::Error> {
    let received = samples.len() as u64;
    samples.sort_by_key(|s| (s.t_ms, s.gpu));
    samples.dedup_by_key(|s| (s.t_ms, s.gpu));
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Ok(Stored::default());
    };
    let (min_ms, max_ms) = (first.t_ms, last.t_ms);

    sqlx::query("select pg_advisory_xact_lock($1, $2)")
        .bind(INGEST_LOCK)
        .bind(node_id)
        .execute(&mut **tx)
        .await?;

    let overlapping: Vec<(chrono::DateTime<chrono::Utc>, Vec<u8>)> = sqlx::query_as(
        r#"select t_start, data
        from gpu_raw
        where node_id = $1
            and t_start >= $2
            and t_start <= $3
            and t_end >= $4"#,
    )
    .bind(node_id)
    .bind(ts(window_start(min_ms)))
    .bind(ts(max_ms))
    .bind(ts(min_ms))
    .fetch_all(&mut **tx)
    .await?;
    if !overlapping.is_empty() {
        let mut present = HashSet::new();
        let mut decoded = Vec::new();
        for (t_start, data) in &overlapping {
            decoded.clear();
            codec::decode(t_start.timestamp_millis(), data, &mut decoded)?;
            present.extend(decoded.iter().map(|s| (s.gpu, s.t_ms)));
        }
        samples.retain(|s| !present.contains(&(s.gpu, s.t_ms)));
    }
    let stored = samples.len() as u64;
    if stored > 0 {
        let blocks = blocks(&samples);
        let t_start: Vec<_> = blocks.iter().map(|b| ts(b.t_start_ms)).collect();
        let t_end: Vec<_> = blocks.iter().map(|b| ts(b.t_end_ms)).collect();
        let n: Vec<i32> = blocks.iter().map(|b| b.n_samples).collect();
        let data: Vec<&[u8]> = blocks.iter().map(|b| b.data.as_slice()).collect();
        // The block and its pending rollup range in one statement.
        sqlx::query(
            r#"with block as (
                insert into gpu_raw (node_id, t_start, t_end, n_samples, data)
                select $1, * from unnest($2::timestamptz[], $3::timestamptz[], $4::int[], $5::bytea[])
                returning node_id, t_start, t_end
            )
            insert into rollup_pending (node_id, t_from, t_to)
            select node_id, t_start, t_end
            from block"#,
        )
        .bind(node_id)
        .bind(&t_start)
        .bind(&t_end)
        .bind(&n)
        .bind(&data)
        .execute(&mut **tx)
        .await?;
    }
    Ok(Stored {
        stored,
        duplicates: received - stored,
    })
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
    node_id: i32,
    gpus: &[u32],
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<RawSample>, super::Error> {
    let rows: Vec<(chrono::DateTime<chrono::Utc>, Vec<u8>)> = sqlx::query_as(
        r#"select t_start, data
        from gpu_raw
        where node_id = $1
            and t_start >= $2
            and t_start < $3
            and t_end >= $4"#,
    )
    .bind(node_id)
    .bind(ts(window_start(from_ms)))
    .bind(ts(to_ms))
    .bind(ts(from_ms))
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

/// Number of raw samples stored for a node (all time still retained): for tests and the admin pages.
pub async fn count(db: &PgPool, node_id: i32) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        r#"select coalesce(sum(n_samples), 0)::int8
        from gpu_raw
        where node_id = $1"#,
    )
    .bind(node_id)
    .fetch_one(db)
    .await
}
