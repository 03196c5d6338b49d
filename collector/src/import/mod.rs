//! Importers of what a site already has: nvidia-smi logs, sacct job history, meter exports.

pub mod cli;
pub mod lines;
pub mod meter;
pub mod nvidia_smi;
pub mod sacct;

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;

/// Server and token of an import.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Server base URL.
    #[arg(long, env = "WATTLAS_SERVER")]
    pub server: String,
    /// Bearer token: admin (nvidia-smi and sacct history), or the meter's (a meter's export).
    #[arg(long, env = "WATTLAS_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// `key=value` tags.
pub(crate) fn tags(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for t in list {
        let (k, v) = t
            .split_once('=')
            .with_context(|| format!("--tag '{t}': expected key=value"))?;
        map.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(map)
}
