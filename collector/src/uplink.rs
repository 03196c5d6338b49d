//! Delivery of spool entries to the server over HTTP with the node's bearer token: GPU batches in the
//! binary form (`wattlas_protocol::wire`, a tenth of gzip'd JSON's CPU on both sides), everything else
//! as gzip'd JSON; and the loop that delivers the spool in order, backing off while the server is away.
//! A server that does not read the binary form (415) gets JSON from then on.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;

use flate2::write::GzEncoder;
use reqwest::StatusCode;
use wattlas_protocol::{paths, ApiError};

use crate::spool::{read_entry, Entry, Spool};
use crate::stats::Stats;

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The server committed it (or already had it).
    Done,
    /// The server refused it for good (4xx): retrying cannot help.
    Rejected(String),
    /// Not delivered now (network, 5xx, 408, 429): try again later.
    Retry(String),
}

/// Where spool entries go: the server over HTTP (`Uplink`), or in tests a scripted stand-in, so that
/// the delivery loop's backoff, rejection and drop accounting run under paused time.
pub(crate) trait Deliver: Send + Sync + 'static {
    /// Delivers one spool entry.
    fn deliver(&self, entry: &Entry) -> impl std::future::Future<Output = Delivery> + Send;
}

impl Deliver for Uplink {
    async fn deliver(&self, entry: &Entry) -> Delivery {
        self.send(entry).await
    }
}

/// An HTTP client for one server and token.
#[derive(Debug, Clone)]
pub(crate) struct Uplink {
    client: reqwest::Client,
    server: String,
    token: String,
    /// Whether GPU batches go in the binary form (until a server refuses it with 415).
    binary: Arc<AtomicBool>,
    /// Sample stamps minus the wall clock, ms (`clock`): added to the clock sent with each push.
    stamp_offset_ms: Arc<AtomicI64>,
}

impl Uplink {
    /// A client with connect and request timeouts, so a dead server never hangs the collector.
    pub(crate) fn new(server: &str, token: &str) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("wattlas-collector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            server: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            binary: Arc::new(AtomicBool::new(true)),
            stamp_offset_ms: Arc::new(AtomicI64::new(0)),
        })
    }

    /// The same client, sending the clock the sampling thread stamps with.
    pub(crate) fn with_stamp_offset(mut self, offset_ms: Arc<AtomicI64>) -> Self {
        self.stamp_offset_ms = offset_ms;
        self
    }

    /// Posts JSON (gzip'd) and classifies the answer.
    pub(crate) async fn post_json<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> (Delivery, Option<String>) {
        let json = match serde_json::to_vec(body) {
            Ok(j) => j,
            Err(e) => return (Delivery::Rejected(format!("cannot serialise: {e}")), None),
        };
        let mut gz = GzEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        let body = match gz.write_all(&json).and_then(|()| gz.finish()) {
            Ok(b) => b,
            Err(e) => return (Delivery::Retry(format!("gzip: {e}")), None),
        };
        let request = self
            .client
            .post(format!("{}{path}", self.server))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(body);
        self.classify(request).await
    }

    /// Posts a GPU batch in the binary form, or as JSON where the batch holds a value the binary form
    /// cannot carry (the server then names it) or the server does not read the binary form.
    pub(crate) async fn post_batch(&self, batch: &wattlas_protocol::GpuBatch) -> Delivery {
        use wattlas_protocol::wire;
        if self.binary.load(Ordering::Relaxed) {
            if let Some(frame) = wire::encode_batch(batch) {
                let request = self
                    .client
                    .post(format!("{}{}", self.server, paths::INGEST_GPU))
                    .header(reqwest::header::CONTENT_TYPE, wire::BATCH_CONTENT_TYPE)
                    .body(frame);
                match self.classify(request).await {
                    (Delivery::Rejected(why), _) if why.starts_with("415") => {
                        tracing::warn!(answer = %why, "the server does not read binary batches; sending JSON");
                        self.binary.store(false, Ordering::Relaxed);
                    }
                    (delivery, _) => return delivery,
                }
            }
        }
        self.post_json(paths::INGEST_GPU, batch).await.0
    }

    /// Sends a request with the token and classifies the answer.
    async fn classify(&self, request: reqwest::RequestBuilder) -> (Delivery, Option<String>) {
        // Our clock as we send, as the samples are stamped (the wall clock plus what the stamps are
        // still slewing over): the server keeps how far this node's clock is from its own.
        let stamps_ms =
            chrono::Utc::now().timestamp_millis() + self.stamp_offset_ms.load(Ordering::Relaxed);
        let response = request
            .header(wattlas_protocol::CLOCK_HEADER, stamps_ms.to_string())
            .bearer_auth(&self.token)
            .send()
            .await;
        match response {
            Err(e) => (Delivery::Retry(e.to_string()), None),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                if status.is_success() {
                    (Delivery::Done, Some(text))
                } else {
                    let msg = serde_json::from_str::<ApiError>(&text)
                        .map(|e| e.error)
                        .unwrap_or(text);
                    let msg = format!("{status}: {msg}");
                    if status.is_client_error()
                        && status != StatusCode::REQUEST_TIMEOUT
                        && status != StatusCode::TOO_MANY_REQUESTS
                    {
                        (Delivery::Rejected(msg), None)
                    } else {
                        (Delivery::Retry(msg), None)
                    }
                }
            }
        }
    }

    /// Gets JSON (`GET`), the server's error message on failure.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, String> {
        let r = self
            .client
            .get(format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let msg = serde_json::from_str::<ApiError>(&text)
                .map(|e| e.error)
                .unwrap_or(text);
            return Err(format!("{status}: {msg}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer: {e}"))
    }

    /// Delivers one spool entry.
    pub(crate) async fn send(&self, entry: &Entry) -> Delivery {
        match entry {
            Entry::Gpu(batch) => self.post_batch(batch).await,
            Entry::JobStart(job) => self.post_json(paths::JOBS, job).await.0,
            Entry::Facility(batch) => self.post_json(paths::INGEST_FACILITY, batch).await.0,
            Entry::JobEnd { id, body } => self.post_json(&paths::job_end(id), body).await.0,
        }
    }
}

/// Delivers spool entries in order until `delivering` turns false.
pub(crate) async fn deliver_loop(
    uplink: impl Deliver,
    spool: Arc<Mutex<Spool>>,
    stats: Arc<Stats>,
    wake: Arc<Notify>,
    delivering: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(250);
    while delivering.load(Ordering::SeqCst) {
        let (item, dropped_total, ranges) = match spool.lock() {
            Ok(mut s) => (s.next_to_send(), s.dropped_samples(), s.pending_ranges()),
            Err(_) => return,
        };
        let Some(item) = item else {
            let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
            continue;
        };
        let entry = match read_entry(&item.path) {
            Ok(Entry::Gpu(mut batch)) => {
                batch.dropped_samples_total = Some(dropped_total);
                batch.dropped_ranges = ranges.clone();
                Entry::Gpu(batch)
            }
            Ok(other) => other,
            Err(e) => {
                tracing::error!(error = %e, "unreadable spool entry set aside");
                if let Ok(mut s) = spool.lock() {
                    let _ = s.reject(item.seq);
                }
                continue;
            }
        };
        match uplink.deliver(&entry).await {
            Delivery::Done => {
                stats
                    .delivered
                    .fetch_add(entry.samples(), Ordering::Relaxed);
                stats.last_push_ms.store(
                    Utc::now().timestamp_millis().max(0) as u64,
                    Ordering::Relaxed,
                );
                if let Ok(mut s) = spool.lock() {
                    if let Err(e) = s.remove(item.seq) {
                        tracing::error!(error = %e, "cannot remove a delivered spool entry");
                    }
                    if matches!(entry, Entry::Gpu(_)) {
                        if let Err(e) = s.ranges_delivered(&ranges) {
                            tracing::error!(error = %e, "cannot record delivered dropped ranges");
                        }
                    }
                }
                backoff = Duration::from_millis(250);
            }
            Delivery::Rejected(why) => {
                stats.rejected.fetch_add(entry.samples(), Ordering::Relaxed);
                tracing::error!(error = %why, file = %item.path.display(), "server refused a spool entry; kept in rejected/");
                if let Ok(mut s) = spool.lock() {
                    let _ = s.reject(item.seq);
                    // The dropped ranges it carried go with it (the server counts the samples as
                    // dropped all the same), lest one it refuses refuse every batch after it.
                    if matches!(entry, Entry::Gpu(_)) && !ranges.is_empty() {
                        tracing::error!(
                            ranges = ranges.len(),
                            "dropped ranges discarded with the refused batch"
                        );
                        let _ = s.ranges_delivered(&ranges);
                    }
                }
            }
            Delivery::Retry(why) => {
                tracing::warn!(error = %why, retry_in_ms = backoff.as_millis() as u64, "server unreachable; spooling");
                if let Ok(mut s) = spool.lock() {
                    s.release(item.seq);
                }
                let _ = tokio::time::timeout(backoff, async {
                    while delivering.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
                .await;
                // Short: a server back from an outage should see the backlog within seconds.
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests;
