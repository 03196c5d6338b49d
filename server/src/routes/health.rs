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
        Ok((pending, oldest)) => {
            let mut body = json!({ "status": "ready", "rollup_pending": pending, "rollup_oldest_pending": oldest });
            // With a read replica: degraded (still 200) while it lags or cannot be reached.
            if state.config.read_database_url.is_some() {
                let limit = state.config.replica_lag_degraded_s as f64;
                match db::replica_lag_s(&state.read_db).await {
                    Ok(lag) => {
                        body["replica_lag_s"] = json!(lag);
                        if lag.is_some_and(|l| l > limit) {
                            body["status"] = json!("degraded: the read replica lags");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the read replica does not answer");
                        body["status"] = json!("degraded: the read replica does not answer");
                    }
                }
            }
            (StatusCode::OK, ApiJson(body))
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                ApiJson(json!({ "status": "database unavailable" })),
            )
        }
    }
}
