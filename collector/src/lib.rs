//! Wattlas collector: `source -> bounded channel -> batcher -> spool -> uplink`.
//!
//! A dedicated thread polls the source every 100 ms (NVML calls are blocking FFI); a tokio task batches
//! one second of samples into a spool file on disk; another pushes spool files to the server in order,
//! deleting each only once the server has committed it. An outage costs nothing that fits in the spool;
//! what does not fit is dropped oldest-first, counted, and reported to the server with the next batch.

pub mod cap;
pub mod clock;
pub mod config;
pub mod import;
pub mod meter;
pub mod meter_run;
pub mod metrics;
pub mod run;
pub mod slurm;
pub mod slurm_sync;
pub mod source;
pub mod spool;
pub mod stats;
pub mod uplink;
