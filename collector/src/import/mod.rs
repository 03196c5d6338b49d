//! Importers of what a site already has: nvidia-smi logs, sacct job history, meter exports.

pub mod cli;
pub mod lines;
pub mod meter;
pub mod nvidia_smi;
pub mod sacct;
