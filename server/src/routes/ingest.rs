//! `POST /api/v1/ingest/gpu`: a node's batch of samples, validated whole before anything is stored; and
//! `POST /api/v1/write`, the same for Prometheus remote write. Both parse and authorise here; the checks
//! and the storing are `service::ingest` and `service::remote_write`.

use axum::extract::State;
use axum::http::StatusCode;
use wattlas_protocol::IngestResult;

use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{ApiJson, IngestBody, Query};
use crate::service::{ingest, remote_write};
use crate::state::AppState;

/// `?source=import`: samples of an imported log, which may be older than the raw retention.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct IngestQuery {
    /// `import`, or absent (a live collector).
    pub source: Option<String>,
}

/// Takes a batch: refuses it whole on the first invalid field, stores each sample at most once.
pub(crate) async fn ingest_gpu(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<IngestQuery>,
    headers: axum::http::HeaderMap,
    IngestBody(batch, raw): IngestBody,
) -> Result<ApiJson<IngestResult>, AppError> {
    // The collector's clock when it sent (`Wattlas-Clock`, ms since the epoch) against ours now.
    let clock_offset_ms = headers
        .get(wattlas_protocol::CLOCK_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(|sent| chrono::Utc::now().timestamp_millis().saturating_sub(sent));
    let import = match q.source.as_deref() {
        None => false,
        Some("import") => true,
        Some(other) => {
            return Err(AppError::bad_request(format!(
                "source: '{other}' is not import"
            )))
        }
    };
    let caller = caller.writer()?;
    let stored = ingest::gpu::store(&state, &caller, batch, raw, import, clock_offset_ms).await?;
    Ok(ApiJson(IngestResult {
        stored: stored.stored,
        duplicates: stored.duplicates,
    }))
}

/// `?site=`.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct WriteQuery {
    /// Site in which nodes not seen before are registered (admin token).
    pub site: Option<String>,
}

/// `POST /api/v1/write`: Prometheus remote write 1.0 of dcgm-exporter series (`service::remote_write`).
/// The admin token writes any node (`?site=NAME` registers nodes not seen before in that site); a node's
/// token writes its own node only. Answers as the spec asks: 204 stored, 4xx for what a retry cannot
/// fix (never retried by the sender), 5xx and 503 for what a retry may (retried).
pub(crate) async fn remote_write(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<WriteQuery>,
    body: axum::body::Body,
) -> Result<StatusCode, AppError> {
    // Who writes is known before a byte of the body is read.
    let caller = caller.writer()?;
    if matches!(caller, Caller::Meter { .. } | Caller::User(_)) {
        return Err(AppError::forbidden(
            "only a site's write token, a node's token or the admin token writes GPU series",
        ));
    }
    let body = axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|e| {
            AppError::Client(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body: larger than {} bytes ({e})",
                    state.config.max_body_bytes
                ),
            )
        })?;
    remote_write::store::write(&state, &caller, q.site.as_deref(), body).await?;
    Ok(StatusCode::NO_CONTENT)
}
