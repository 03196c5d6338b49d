//! GPU batches in: their checks (`checks`), a node's batch (`gpu`), and the group-commit writers that
//! store them (`writers`). Prometheus remote write is `service::remote_write`, which ends here too.

pub mod checks;
pub(crate) mod gpu;
pub(crate) mod known;
pub(crate) mod writers;

pub(crate) use known::KnownNodes;
pub(crate) use writers::Writers;
