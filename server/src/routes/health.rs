//! `/healthz` (the process is up) and `/readyz` (the database answers).

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::db;
use crate::state::AppState;

/// Always 200 while the process serves.
pub async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// 200 with the rollup lag when the database answers; 503 otherwise.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<serde_json::Value>) {
    match db::rollups::lag(&state.db).await {
        Ok((pending, oldest)) => (
            StatusCode::OK,
            axum::Json(
                json!({ "status": "ready", "rollup_pending": pending, "rollup_oldest_pending": oldest }),
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "database unavailable" })),
            )
        }
    }
}
