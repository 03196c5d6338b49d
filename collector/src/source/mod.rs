//! Sample sources: real GPUs through NVML, or simulated ones. A source is polled from one dedicated
//! thread; it never blocks the async runtime.

pub mod dcgm;
pub mod nvml;
pub mod rapl;
pub mod simulated;

use chrono::{DateTime, Utc};
use wattlas_protocol::{GpuIdentity, GpuSample, NewJob, NodeEnergyReading};

/// Something the source noticed besides samples: the simulator's experiment jobs starting and ending.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A job started on this node's GPUs.
    JobStart(Box<NewJob>),
    /// A job ended.
    JobEnd {
        /// Job id.
        id: String,
        /// End time.
        end: DateTime<Utc>,
    },
}

/// What one poll produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Poll {
    /// One sample per GPU that answered.
    pub samples: Vec<GpuSample>,
    /// Events, in order.
    pub events: Vec<Event>,
    /// GPUs that failed to answer this poll (counted, not fatal).
    pub errors: u64,
    /// The node's CPU and DRAM counters, on the ticks they are read.
    pub node_energy: Vec<NodeEnergyReading>,
    /// Steps of the node's wall clock seen on this tick (`clock`).
    pub clock_steps: u64,
}

/// Errors a source can have.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// NVML could not be loaded or initialised (no driver, no GPU).
    #[error("NVML unavailable: {0}")]
    NvmlInit(String),
    /// A query failed.
    #[error("NVML query failed: {0}")]
    Query(String),
    /// dcgm-exporter did not answer as one.
    #[error("dcgm-exporter: {0}")]
    Exporter(String),
}

/// A source of GPU samples.
pub trait Source: Send {
    /// The GPUs, as the server should know them.
    fn identities(&self) -> Vec<GpuIdentity>;
    /// Reads every GPU once, stamped `now`.
    fn poll(&mut self, now: DateTime<Utc>) -> Poll;
    /// Events of the source stopping at `now`: the simulator's running jobs end with it (a simulated
    /// job cannot outlive its simulator; real jobs end in the scheduler's epilog).
    fn finish(&mut self, _now: DateTime<Utc>) -> Vec<Event> {
        Vec::new()
    }
    /// Simulated CPU and DRAM counters, for a node without readable powercap (the simulator has them;
    /// a real source has none: its node's counters come from `rapl`).
    fn node_energy(&mut self, _now: DateTime<Utc>) -> Vec<NodeEnergyReading> {
        Vec::new()
    }
    /// What the source emitted, as JSON, where it keeps such a ledger (the simulator does).
    fn ledger_json(&self) -> Option<String> {
        None
    }
}
