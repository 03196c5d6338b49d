//! `/healthz` (the process is up) and `/readyz` (the database answers).

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::db;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Always 200 while the process serves.
pub async fn healthz() -> ApiJson<serde_json::Value> {
    ApiJson(json!({ "status": "ok" }))
}

/// 200 with the rollup lag when the database answers; 503 otherwise.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, ApiJson<serde_json::Value>) {
    match db::rollups::lag(&state.db).await {
        Ok((pending, oldest)) => (
            StatusCode::OK,
            ApiJson(
                json!({ "status": "ready", "rollup_pending": pending, "rollup_oldest_pending": oldest }),
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                ApiJson(json!({ "status": "database unavailable" })),
            )
        }
    }
}
