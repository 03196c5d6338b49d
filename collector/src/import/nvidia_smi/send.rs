//! Sending a log while it is read: one thread parses, batches go to the server two at a time, and at
//! most a few batches are held in memory, whatever the size of the file.

use std::path::Path;

use tokio::task::JoinSet;
use wattlas_protocol::{GpuBatch, GpuIdentity, GpuSample, IngestResult};

use super::{stream, Options, StreamError, Summary};
use crate::uplink::{Delivery, Uplink};

/// Samples per request (about 2.5 MB of JSON, well inside the server's body limit).
pub(crate) const BATCH: usize = 20_000;

/// Requests in flight: one being stored while the next is encoded and sent.
const IN_FLIGHT: usize = 2;

/// What the server did with an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// Samples stored now.
    pub stored: u64,
    /// Samples the server already had.
    pub duplicates: u64,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The file (strict mode, a header that cannot be used, or reading it).
    #[error("{0}")]
    File(String),
    /// The server refused a batch; earlier batches are stored (a re-import stores only what is missing).
    #[error("server refused the import: {0}")]
    Server(String),
}

fn read(
    path: &Path,
    opts: &Options,
    batch: usize,
    sink: impl FnMut(Vec<GpuSample>, Vec<GpuIdentity>) -> Result<(), String>,
) -> Result<Summary, SendError> {
    let f = std::fs::File::open(path)
        .map_err(|e| SendError::File(format!("opening {}: {e}", path.display())))?;
    stream(
        std::io::BufReader::with_capacity(1 << 16, f),
        opts,
        batch,
        sink,
    )
    .map_err(|e| match e {
        StreamError::Sink(why) => SendError::Server(why),
        other => SendError::File(format!("{}: {other}", path.display())),
    })
}

async fn post(uplink: Uplink, batch: GpuBatch) -> Result<Delivered, String> {
    match uplink
        .post_json(
            &format!("{}?source=import", wattlas_protocol::paths::INGEST_GPU),
            &batch,
        )
        .await
    {
        (Delivery::Done, Some(body)) => {
            let r: IngestResult = serde_json::from_str(&body)
                .map_err(|e| format!("unexpected answer from the server: {e}"))?;
            Ok(Delivered {
                stored: r.stored,
                duplicates: r.duplicates,
            })
        }
        (Delivery::Done, None) => Err("empty answer from the server".into()),
        (Delivery::Rejected(why) | Delivery::Retry(why), _) => Err(why),
    }
}

/// Imports the log at `path` for `node`. With `strict`, the whole file is checked first and nothing is
/// sent if any line is bad.
pub(crate) async fn import(
    uplink: &Uplink,
    node: &str,
    path: &Path,
    opts: &Options,
) -> Result<(Summary, Delivered), SendError> {
    if opts.strict {
        let (p, o) = (path.to_owned(), opts.clone());
        tokio::task::spawn_blocking(move || read(&p, &o, usize::MAX / 2, |_, _| Ok(())))
            .await
            .map_err(|e| SendError::File(e.to_string()))??;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<GpuSample>, Vec<GpuIdentity>)>(IN_FLIGHT);
    let (p, o) = (path.to_owned(), opts.clone());
    let reader = tokio::task::spawn_blocking(move || {
        read(&p, &o, BATCH, |samples, gpus| {
            tx.blocking_send((samples, gpus))
                .map_err(|_| "the upload stopped".to_owned())
        })
    });
    let mut delivered = Delivered::default();
    let mut in_flight = JoinSet::new();
    let mut failure = None;
    while let Some((samples, gpus)) = rx.recv().await {
        let batch = GpuBatch {
            node: Some(node.to_owned()),
            gpus,
            samples,
            dropped_samples_total: None,
            clock_steps: None,
            node_energy: vec![],
            node_cpus: None,
            dropped_ranges: Vec::new(),
        };
        in_flight.spawn(post(uplink.clone(), batch));
        if in_flight.len() >= IN_FLIGHT {
            match in_flight.join_next().await {
                Some(Ok(Ok(d))) => {
                    delivered.stored += d.stored;
                    delivered.duplicates += d.duplicates;
                }
                Some(Ok(Err(why))) => {
                    failure = Some(why);
                    break;
                }
                Some(Err(e)) => {
                    failure = Some(e.to_string());
                    break;
                }
                None => {}
            }
        }
    }
    drop(rx);
    while let Some(r) = in_flight.join_next().await {
        match r {
            Ok(Ok(d)) => {
                delivered.stored += d.stored;
                delivered.duplicates += d.duplicates;
            }
            Ok(Err(why)) => {
                failure.get_or_insert(why);
            }
            Err(e) => {
                failure.get_or_insert(e.to_string());
            }
        }
    }
    let summary = reader.await.map_err(|e| SendError::File(e.to_string()));
    if let Some(why) = failure {
        return Err(SendError::Server(why));
    }
    Ok((summary??, delivered))
}
