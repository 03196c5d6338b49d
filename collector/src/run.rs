//! `wattlas-collector run`: the sampling thread, the batcher and the uplink, until stopped.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tokio::sync::{mpsc, Notify};
use wattlas_protocol::{GpuBatch, GpuIdentity, GpuSample, JobEnd, NodeEnergyReading};

use crate::config::RunConfig;
use crate::source::{Event, Poll, Source};
use crate::spool::{Entry, Spool, SpoolError};
use crate::uplink::Uplink;

/// Polls buffered between the sampling thread and the batcher (a minute at 100 ms).
const CHANNEL_POLLS: usize = 600;

pub(crate) use crate::stats::Stats;

/// What stops `run` from starting (once running, delivery problems are spooled, never errors).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The spool directory cannot be opened or written.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The HTTP client for the server cannot be built.
    #[error("--server {server}: {source}")]
    Client {
        /// The server URL.
        server: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// `/metrics` cannot listen where asked.
    #[error("--metrics-bind {addr}: {source}")]
    MetricsBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The sampling thread cannot be started.
    #[error("starting the sampling thread: {0}")]
    Thread(std::io::Error),
}

/// Runs the pipeline until `shutdown` resolves (or `run_seconds` pass), then flushes to the spool and
/// gives the uplink a moment to deliver. What is left stays in the spool for the next start.
pub async fn run(
    config: RunConfig,
    source: Box<dyn Source>,
    ledger: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<Arc<Stats>, RunError> {
    let spool = Arc::new(Mutex::new(Spool::open(
        &config.spool_dir,
        config.spool_max_bytes,
    )?));
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    let identities = source.identities();
    let (tx, rx) = mpsc::channel::<Poll>(CHANNEL_POLLS);

    // The node's CPU and DRAM counters, read on the sampling tick every `rapl_interval_ms`; the
    // simulator simulates them where the node has none readable (so a demo shows them).
    let rapl = crate::source::rapl::Rapl::discover(&config.powercap_root);
    let rapl_text = rapl.describe(&config.powercap_root);
    if rapl.unreadable.is_empty() && !rapl.zones.is_empty() {
        tracing::info!("{rapl_text}");
    } else {
        tracing::warn!("{rapl_text}");
    }
    stats
        .rapl_unreadable
        .store(rapl.unreadable.len() as u64, Ordering::Relaxed);
    let node_energy = NodeEnergy {
        rapl,
        every: Duration::from_millis(config.rapl_interval_ms),
    };
    let sampler = {
        let stop = stop.clone();
        let stats = stats.clone();
        let spool = spool.clone();
        let interval = Duration::from_millis(config.interval_ms);
        std::thread::Builder::new()
            .name("wattlas-sampler".into())
            .spawn(move || {
                sample_loop(
                    source,
                    interval,
                    tx,
                    stop,
                    stats,
                    spool,
                    ledger,
                    node_energy,
                )
            })
            .map_err(RunError::Thread)?
    };

    let batcher = tokio::spawn(batch_loop(
        rx,
        spool.clone(),
        config.node.clone(),
        identities,
        config.batch_ms,
        wake.clone(),
    ));
    let uplink = Uplink::new(&config.server, &config.token)
        .map_err(|source| RunError::Client {
            server: config.server.clone(),
            source,
        })?
        .with_stamp_offset(stats.stamp_offset_ms.clone());
    let delivering = Arc::new(AtomicBool::new(true));
    let uplink_task = tokio::spawn(crate::uplink::deliver_loop(
        uplink,
        spool.clone(),
        stats.clone(),
        wake.clone(),
        delivering.clone(),
    ));

    let metrics = match config.metrics_bind {
        Some(addr) => Some(
            crate::metrics::serve(addr, stats.clone(), spool.clone())
                .await
                .map_err(|source| RunError::MetricsBind { addr, source })?,
        ),
        None => None,
    };

    let limit = async {
        match config.run_seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = shutdown => {},
        () = limit => {},
    }
    stop.store(true, Ordering::SeqCst);
    let _ = tokio::task::spawn_blocking(move || sampler.join()).await;
    // The sampler dropped its sender: the batcher flushes what it holds and ends.
    if let Ok(Err(e)) = batcher.await {
        tracing::error!(error = %e, "spool write failed at shutdown");
    }
    // Give the uplink a short while to empty the spool; the rest waits for the next start.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && spool.lock().map(|s| !s.is_empty()).unwrap_or(false) {
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delivering.store(false, Ordering::SeqCst);
    wake.notify_one();
    let _ = uplink_task.await;
    if let Some(m) = metrics {
        m.abort();
    }
    let left = spool.lock().map(|s| s.len()).unwrap_or(0);
    tracing::info!(
        sampled = stats.sampled.load(Ordering::Relaxed),
        delivered = stats.delivered.load(Ordering::Relaxed),
        skipped_ticks = stats.skipped_ticks.load(Ordering::Relaxed),
        spooled_entries = left,
        "collector stopped"
    );
    Ok(stats)
}

/// The node's CPU and DRAM counters and how often to read them.
struct NodeEnergy {
    rapl: crate::source::rapl::Rapl,
    every: Duration,
}

#[allow(clippy::too_many_arguments)]
fn sample_loop(
    mut source: Box<dyn Source>,
    interval: Duration,
    tx: mpsc::Sender<Poll>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    spool: Arc<Mutex<Spool>>,
    ledger: Option<PathBuf>,
    node_energy: NodeEnergy,
) {
    let mut due = Instant::now();
    let mut last_ledger = Instant::now();
    let mut last_energy: Option<Instant> = None;
    // Stamps that follow the monotonic clock, slewed toward the wall clock (`clock`).
    let started = Instant::now();
    let mut clock = crate::clock::StampClock::new();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let polled_at = Instant::now();
        let wall_ms = Utc::now().timestamp_millis();
        let mono_ms =
            i64::try_from(polled_at.duration_since(started).as_millis()).unwrap_or(i64::MAX);
        let steps_before = clock.steps;
        let stamp_ms = clock.stamp(mono_ms, wall_ms);
        stats.clock_steps.store(clock.steps, Ordering::Relaxed);
        stats
            .stamp_offset_ms
            .store(stamp_ms - wall_ms, Ordering::Relaxed);
        let now = Utc
            .timestamp_millis_opt(stamp_ms)
            .single()
            .unwrap_or_else(Utc::now);
        let mut poll = source.poll(now);
        poll.clock_steps = clock.steps - steps_before;
        if poll.clock_steps > 0 {
            tracing::warn!(
                offset_ms = stamp_ms - wall_ms,
                "the wall clock stepped: sample stamps slew to it at 10 ms a second"
            );
        }
        if last_energy.is_none_or(|t| polled_at - t >= node_energy.every) {
            last_energy = Some(polled_at);
            poll.node_energy = if node_energy.rapl.zones.is_empty() {
                source.node_energy(now)
            } else {
                let (readings, errors) = node_energy.rapl.read(now);
                stats.rapl_errors.fetch_add(errors, Ordering::Relaxed);
                readings
            };
        }
        // Absolute ticks, so a slow poll does not shift every later one; but ticks missed while the
        // thread was held up are skipped and counted, never polled in a burst: polls milliseconds
        // apart carry no new information and would share a timestamp.
        due += interval;
        let now = Instant::now();
        if due <= now {
            let behind = ((now - due).as_nanos() / interval.as_nanos().max(1)) as u32 + 1;
            due += interval * behind;
            stats
                .skipped_ticks
                .fetch_add(u64::from(behind), Ordering::Relaxed);
        }
        if due < polled_at + interval / 2 {
            due += interval;
            stats.skipped_ticks.fetch_add(1, Ordering::Relaxed);
        }
        let n = poll.samples.len() as u64;
        stats.sampled.fetch_add(n, Ordering::Relaxed);
        stats
            .source_errors
            .fetch_add(poll.errors, Ordering::Relaxed);
        if let Err(mpsc::error::TrySendError::Full(p)) = tx.try_send(poll) {
            // The batcher is stuck (disk?): count the loss rather than block sampling.
            if let Ok(mut s) = spool.lock() {
                let _ = s.add_dropped(p.samples.len() as u64);
                let _ = s.add_dropped_ranges(crate::spool::ranges_of(&p.samples));
            }
        }
        if let Some(path) = &ledger {
            if last_ledger.elapsed() >= Duration::from_millis(500) {
                write_ledger(path, source.ledger_json());
                last_ledger = Instant::now();
            }
        }
    }
    let events = source.finish(Utc::now());
    if !events.is_empty() {
        let _ = tx.blocking_send(Poll {
            events,
            ..Poll::default()
        });
    }
    if let Some(path) = &ledger {
        write_ledger(path, source.ledger_json());
    }
}

fn write_ledger(path: &PathBuf, json: Option<String>) {
    if let Some(json) = json {
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, path))
            .is_err()
        {
            tracing::warn!(path = %path.display(), "cannot write the simulator ledger");
        }
    }
}

async fn batch_loop(
    mut rx: mpsc::Receiver<Poll>,
    spool: Arc<Mutex<Spool>>,
    node: String,
    identities: Vec<GpuIdentity>,
    batch_ms: u64,
    wake: Arc<Notify>,
) -> Result<(), SpoolError> {
    let mut pending: Vec<GpuSample> = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(batch_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut energy: Vec<NodeEnergyReading> = Vec::new();
    let mut steps: u64 = 0;
    let node_cpus = crate::source::rapl::node_cpus();
    let flush = |pending: &mut Vec<GpuSample>,
                 energy: &mut Vec<NodeEnergyReading>,
                 steps: &mut u64|
     -> Result<(), SpoolError> {
        if pending.is_empty() && energy.is_empty() {
            return Ok(());
        }
        let batch = GpuBatch {
            node: Some(node.clone()),
            gpus: identities.clone(),
            samples: std::mem::take(pending),
            dropped_samples_total: None,
            clock_steps: Some(std::mem::take(steps)).filter(|n| *n > 0),
            node_energy: std::mem::take(energy),
            node_cpus,
            dropped_ranges: Vec::new(),
        };
        let mut s = spool.lock().map_err(|_| poisoned())?;
        let dropped = s.push(&Entry::Gpu(batch))?;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                total = s.dropped_samples(),
                "spool full: dropped the oldest samples"
            );
        }
        wake.notify_one();
        Ok(())
    };
    loop {
        tokio::select! {
            poll = rx.recv() => match poll {
                Some(poll) => {
                    pending.extend(poll.samples);
                    energy.extend(poll.node_energy);
                    steps += poll.clock_steps;
                    if !poll.events.is_empty() {
                        // Keep order: the samples before an event are spooled before it.
                        flush(&mut pending, &mut energy, &mut steps)?;
                        let mut s = spool.lock().map_err(|_| poisoned())?;
                        for event in poll.events {
                            let entry = match event {
                                Event::JobStart(job) => Entry::JobStart(*job),
                                Event::JobEnd { id, end } => Entry::JobEnd { id, body: JobEnd { end } },
                            };
                            s.push(&entry)?;
                        }
                        wake.notify_one();
                    }
                }
                None => return flush(&mut pending, &mut energy, &mut steps),
            },
            _ = ticker.tick() => flush(&mut pending, &mut energy, &mut steps)?,
        }
    }
}

fn poisoned() -> SpoolError {
    SpoolError::Corrupt {
        path: PathBuf::from("<spool>"),
        reason: "lock poisoned".into(),
    }
}

/// Resolves on Ctrl-C or SIGTERM: how every long-running command is stopped.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
