//! Importers of existing logs.

pub mod meter;
pub mod nvidia_smi;
