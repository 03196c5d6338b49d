//! GPU batches in: their checks (`checks`), a node's batch (`gpu`), and the group-commit writers that
//! store them (`writers`). Prometheus remote write is `service::remote_write`, which ends here too.

pub mod checks;
pub mod gpu;
pub mod writers;

pub use writers::{Checked, WriteError, Writers, MAX_GROUP_BATCHES, MAX_GROUP_SAMPLES};
