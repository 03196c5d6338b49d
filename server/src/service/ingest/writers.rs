//! Storing checked GPU batches, and the group commit that stores many at once.
//!
//! A request's batch is checked whole first (`checks`): a refused batch never reaches the store.
//! Live ingest then hands it to a writer through a bounded queue; each writer takes every batch waiting
//! (up to `MAX_GROUP_BATCHES` / `MAX_GROUP_SAMPLES`) and stores them in one transaction with one
//! statement per step for the whole group (`db::samples::insert_many`), then
//! answers each request after the commit. PostgreSQL's cost was per request (BEGIN, lock, overlap
//! read, insert, node update, COMMIT: ~0.7 ms of its CPU for 80 samples); under load it is now per
//! group. With one request waiting the group is that request: no added latency. If a group's
//! transaction fails, its batches are stored again one by one, so one batch cannot fail the others.
//! When the queue is full the request is answered 503 with Retry-After and the collector spools.

use crate::ids::NodeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot};
use wattlas_protocol::{GpuIdentity, NodeEnergyReading};

use crate::codec::RawSample;
use crate::db;
use crate::db::samples::Stored;

/// Batches stored in one transaction at most.
pub(crate) const MAX_GROUP_BATCHES: usize = 256;
/// Samples stored in one transaction at most (a group stops growing past it).
pub(crate) const MAX_GROUP_SAMPLES: usize = 200_000;

/// A node's batch, checked, ready to store.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    /// The node.
    pub node_id: NodeId,
    /// Its GPUs as the batch names them.
    pub gpus: Vec<GpuIdentity>,
    /// Samples, in stored units.
    pub samples: Vec<RawSample>,
    /// CPU and DRAM counter readings.
    pub node_energy: Vec<NodeEnergyReading>,
    /// The node's CPU count, when sent.
    pub node_cpus: Option<u32>,
    /// The collector's count of samples it dropped.
    pub dropped_total: Option<u64>,
    /// The ranges of samples it dropped, by GPU.
    pub dropped_ranges: Vec<wattlas_protocol::DroppedRange>,
    /// The node's clock against the server's when the batch came, ms (positive: the node is behind).
    pub clock_offset_ms: Option<i64>,
    /// Steps of the node's wall clock its collector slewed over while taking these samples.
    pub clock_steps: Option<u64>,
}

/// GPUs last registered per node by this process, so an unchanged list is not upserted per batch.
#[derive(Default)]
pub(crate) struct KnownGpus(Mutex<HashMap<NodeId, Vec<GpuIdentity>>>);

impl KnownGpus {
    fn unchanged(&self, node_id: NodeId, gpus: &[GpuIdentity]) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&node_id)
            .is_some_and(|known| known == gpus)
    }

    fn remember(&self, stored: &[Checked]) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in stored {
            if !c.gpus.is_empty() {
                map.insert(c.node_id, c.gpus.clone());
            }
        }
    }
}

/// Stores checked batches inside the caller's transaction; answers what each stored, in order.
/// `known`: skip registering a node's GPUs when this process registered the same list before.
/// The batches stay the caller's (a failed group is stored again batch by batch): only their samples
/// are copied, once, for the store to sort and deduplicate.
pub(crate) async fn store(
    tx: &mut Transaction<'_, Postgres>,
    batches: &[Checked],
    known: Option<&KnownGpus>,
) -> Result<Vec<Stored>, db::Error> {
    let mut touched: Vec<db::nodes::Touch> = Vec::with_capacity(batches.len());
    let mut samples = Vec::with_capacity(batches.len());
    for c in batches {
        if !c.gpus.is_empty() && !known.is_some_and(|k| k.unchanged(c.node_id, &c.gpus)) {
            db::nodes::register_gpus(tx, c.node_id, &c.gpus).await?;
        }
        if !c.node_energy.is_empty() {
            db::node_energy::insert(tx, c.node_id, &c.node_energy).await?;
            if let Some(earliest) = c.node_energy.iter().map(|r| r.time).min() {
                db::node_energy::rewind(tx, c.node_id, earliest).await?;
            }
        }
        if let Some(cpus) = c.node_cpus {
            db::node_energy::set_node_cpus(tx, c.node_id, cpus).await?;
        }
        if !c.dropped_ranges.is_empty() {
            db::nodes::insert_dropped(tx, c.node_id, &c.dropped_ranges).await?;
            crate::service::stale::samples_dropped(tx, c.node_id, &c.dropped_ranges).await?;
        }
        touched.push(db::nodes::Touch {
            node_id: c.node_id,
            dropped_total: c.dropped_total,
            clock_offset_ms: c.clock_offset_ms,
            clock_steps: c.clock_steps.unwrap_or(0),
        });
        samples.push((c.node_id, c.samples.clone()));
    }
    db::samples::insert_many(tx, samples, touched).await
}

/// Why a batch handed to the writers was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The queue is full: retry later.
    #[error("the ingest queue is full")]
    Busy,
    /// Storing failed.
    #[error(transparent)]
    Db(#[from] db::Error),
}

struct Job {
    batch: Checked,
    reply: oneshot::Sender<Result<Stored, db::Error>>,
}

/// Counts of what the writers did, for `/metrics`.
#[derive(Default)]
pub struct WriterStats {
    /// Transactions committed by the writers.
    pub groups: std::sync::atomic::AtomicU64,
    /// Batches in them.
    pub batches: std::sync::atomic::AtomicU64,
    /// Requests answered 503 because the queue was full.
    pub refused: std::sync::atomic::AtomicU64,
}

/// The queue to the writers; they start with the first batch.
pub struct Writers {
    count: usize,
    capacity: usize,
    queue: OnceLock<mpsc::Sender<Job>>,
    known: Arc<KnownGpus>,
    /// What they did.
    pub stats: Arc<WriterStats>,
}

impl Writers {
    /// `count` writers behind a queue of `capacity` batches.
    pub(crate) fn new(count: usize, capacity: usize) -> Self {
        Self {
            count: count.max(1),
            capacity: capacity.max(1),
            queue: OnceLock::new(),
            known: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// Stores `batch` in the next group a writer commits; answers after the commit.
    pub(crate) async fn store(&self, db: &PgPool, batch: Checked) -> Result<Stored, WriteError> {
        let queue = self.queue.get_or_init(|| self.spawn(db));
        let (reply, answer) = oneshot::channel();
        if queue.try_send(Job { batch, reply }).is_err() {
            self.stats
                .refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(WriteError::Busy);
        }
        match answer.await {
            Ok(result) => Ok(result?),
            // The writer went away (the server is stopping).
            Err(_) => Err(WriteError::Busy),
        }
    }

    fn spawn(&self, db: &PgPool) -> mpsc::Sender<Job> {
        let (tx, rx) = mpsc::channel::<Job>(self.capacity);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..self.count {
            let (rx, db, known, stats) = (
                rx.clone(),
                db.clone(),
                self.known.clone(),
                self.stats.clone(),
            );
            tokio::spawn(async move {
                while let Some(group) = next_group(&rx).await {
                    write_group(&db, &known, &stats, group).await;
                }
            });
        }
        tx
    }
}

/// Waits for a batch, then takes every batch already waiting, within the group's bounds.
async fn next_group(rx: &tokio::sync::Mutex<mpsc::Receiver<Job>>) -> Option<Vec<Job>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut samples = first.batch.samples.len();
    let mut group = vec![first];
    while group.len() < MAX_GROUP_BATCHES && samples < MAX_GROUP_SAMPLES {
        match rx.try_recv() {
            Ok(job) => {
                samples += job.batch.samples.len();
                group.push(job);
            }
            Err(_) => break,
        }
    }
    Some(group)
}

async fn write_group(db: &PgPool, known: &KnownGpus, stats: &WriterStats, group: Vec<Job>) {
    use std::sync::atomic::Ordering::Relaxed;
    let (batches, replies): (Vec<Checked>, Vec<_>) =
        group.into_iter().map(|j| (j.batch, j.reply)).unzip();
    match store_committed(db, &batches, known).await {
        Ok(stored) => {
            stats.groups.fetch_add(1, Relaxed);
            stats.batches.fetch_add(batches.len() as u64, Relaxed);
            known.remember(&batches);
            for (reply, s) in replies.into_iter().zip(stored) {
                let _ = reply.send(Ok(s));
            }
        }
        Err(e) if batches.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, batches = batches.len(), "a group failed; storing its batches one by one");
            for (batch, reply) in batches.iter().zip(replies) {
                let one = std::slice::from_ref(batch);
                let result = store_committed(db, one, known).await;
                if result.is_ok() {
                    stats.groups.fetch_add(1, Relaxed);
                    stats.batches.fetch_add(1, Relaxed);
                    known.remember(one);
                }
                let _ = reply.send(result.map(|mut s| s.pop().unwrap_or_default()));
            }
        }
    }
}

async fn store_committed(
    db: &PgPool,
    batches: &[Checked],
    known: &KnownGpus,
) -> Result<Vec<Stored>, db::Error> {
    let mut tx = db.begin().await?;
    let stored = store(&mut tx, batches, Some(known)).await?;
    tx.commit().await?;
    Ok(stored)
}

impl From<WriteError> for crate::service::error::Error {
    fn from(e: WriteError) -> Self {
        match e {
            // 503 (with Retry-After): the collector keeps the batch and sends it again.
            WriteError::Busy => Self::Busy("the ingest queue is full, retry later".to_owned()),
            WriteError::Db(e) => Self::Db(e),
        }
    }
}
