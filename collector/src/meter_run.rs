//! `wattlas-collector meter`: reads a facility meter every interval and pushes the readings through the
//! disk spool, like GPU samples. The simulated site can first backfill history.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use tokio::sync::Notify;
use wattlas_protocol::{FacilityBatch, FacilityReading};

use crate::meter::Meter;
use crate::run::Stats;
use crate::spool::{Entry, Spool, SpoolError};
use crate::uplink::deliver_loop;
use crate::uplink::Uplink;

/// Settings of `meter`.
#[derive(Debug, Clone)]
pub(crate) struct MeterRun {
    /// Server base URL.
    pub server: String,
    /// Meter token (or admin, with `meter` and `site`).
    pub token: String,
    /// Meter name (required with the admin token).
    pub meter: Option<String>,
    /// Site (with the admin token, a new meter is created there).
    pub site: Option<String>,
    /// Seconds between readings.
    pub interval_s: u64,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Spool bound, bytes.
    pub spool_max_bytes: u64,
    /// Stop after this long.
    pub run_seconds: Option<f64>,
}

/// Readings of `site` at every `interval_s` boundary over `[from, to)`.
pub(crate) fn backfill(
    meter: &crate::meter::simulated::SimulatedSite,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    interval_s: u64,
) -> Vec<FacilityReading> {
    let step = chrono::Duration::seconds(interval_s.max(1) as i64);
    let mut t = from.duration_trunc(step).unwrap_or(from);
    let mut out = Vec::new();
    while t < to {
        out.push(meter.reading_at(t));
        t += step;
    }
    out
}

/// Reads and pushes until `shutdown`.
pub(crate) async fn run(
    config: MeterRun,
    mut meter: Meter,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SpoolError> {
    let spool = Arc::new(Mutex::new(Spool::open(
        &config.spool_dir,
        config.spool_max_bytes,
    )?));
    let wake = Arc::new(Notify::new());
    let delivering = Arc::new(AtomicBool::new(true));
    let uplink = Uplink::new(&config.server, &config.token).map_err(|e| SpoolError::Corrupt {
        path: config.spool_dir.clone(),
        reason: e.to_string(),
    })?;
    let stats = Arc::new(Stats::default());
    let uplink_task = tokio::spawn(deliver_loop(
        uplink,
        spool.clone(),
        stats,
        wake.clone(),
        delivering.clone(),
    ));
    let step = chrono::Duration::seconds(config.interval_s.max(1) as i64);
    let reading_loop = async {
        loop {
            // Read on interval boundaries, so re-sent readings share their time and are stored once.
            let now = Utc::now();
            let next = now.duration_trunc(step).unwrap_or(now) + step;
            tokio::time::sleep((next - now).to_std().unwrap_or(Duration::ZERO)).await;
            match meter.read(next).await {
                Ok(r) => {
                    let batch = FacilityBatch {
                        meter: config.meter.clone(),
                        site: config.site.clone(),
                        readings: vec![r],
                    };
                    match spool.lock() {
                        Ok(mut s) => {
                            if let Err(e) = s.push(&Entry::Facility(batch)) {
                                tracing::error!(error = %e, "cannot spool a meter reading");
                            }
                        }
                        Err(_) => return,
                    }
                    wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "meter read failed; next try at the next interval")
                }
            }
        }
    };
    let limit = async {
        match config.run_seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = reading_loop => {},
        () = shutdown => {},
        () = limit => {},
    }
    for _ in 0..40 {
        if spool.lock().map(|s| s.is_empty()).unwrap_or(true) {
            break;
        }
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delivering.store(false, Ordering::SeqCst);
    wake.notify_one();
    let _ = uplink_task.await;
    Ok(())
}
