//! Delivery of spool entries to the server over HTTP, gzip'd, with the node's bearer token.

use std::io::Write;
use std::time::Duration;

use flate2::write::GzEncoder;
use reqwest::StatusCode;
use wattlas_protocol::{paths, ApiError};

use crate::spool::Entry;

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The server committed it (or already had it).
    Done,
    /// The server refused it for good (4xx): retrying cannot help.
    Rejected(String),
    /// Not delivered now (network, 5xx, 408, 429): try again later.
    Retry(String),
}

/// An HTTP client for one server and token.
#[derive(Debug, Clone)]
pub struct Uplink {
    client: reqwest::Client,
    server: String,
    token: String,
}

impl Uplink {
    /// A client with connect and request timeouts, so a dead server never hangs the collector.
    pub fn new(server: &str, token: &str) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("wattlas-collector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            server: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// Posts JSON (gzip'd) and classifies the answer.
    pub async fn post_json<T: serde::Serialize>(
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
        let response = self
            .client
            .post(format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(body)
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
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
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
    pub async fn send(&self, entry: &Entry) -> Delivery {
        match entry {
            Entry::Gpu(batch) => self.post_json(paths::INGEST_GPU, batch).await.0,
            Entry::JobStart(job) => self.post_json(paths::JOBS, job).await.0,
            Entry::Facility(batch) => self.post_json(paths::INGEST_FACILITY, batch).await.0,
            Entry::JobEnd { id, body } => self.post_json(&paths::job_end(id), body).await.0,
        }
    }
}
