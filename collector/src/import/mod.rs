//! Importers of existing logs.

pub mod nvidia_smi;
