//! Counters of a run, for logs, `/metrics` and tests.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;

/// Counters of a run, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Samples read from the source.
    pub sampled: AtomicU64,
    /// Samples delivered (server committed).
    pub delivered: AtomicU64,
    /// Samples refused by the server for good.
    pub rejected: AtomicU64,
    /// GPU reads that failed.
    pub source_errors: AtomicU64,
    /// Sampling ticks skipped because the sampling thread was held up past them.
    pub skipped_ticks: AtomicU64,
    /// CPU and DRAM counters found but unreadable (root-only since the 2020 RAPL advisory).
    pub rapl_unreadable: AtomicU64,
    /// Readings of a readable CPU or DRAM counter that failed.
    pub rapl_errors: AtomicU64,
    /// When the server last committed a batch, ms since the epoch (0: not yet).
    pub last_push_ms: AtomicU64,
    /// Steps of the node's wall clock the sample stamps slewed over (`clock`).
    pub clock_steps: AtomicU64,
    /// Sample stamps minus the wall clock, ms, as of the last poll (non-zero while a step is slewed).
    pub stamp_offset_ms: Arc<AtomicI64>,
}
