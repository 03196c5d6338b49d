//! `/healthz` (the process is up) and `/readyz` (the database answers).

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::extract::ApiJson;
use crate::state::AppState;

/// Always 200 while the process serves.
pub(crate) async fn healthz() -> ApiJson<serde_json::Value> {
    ApiJson(json!({ "status": "ok" }))
}

/// 200 with the rollup lag when the database answers, or (degraded) when only the read replica does;
/// 503 otherwise.
pub(crate) async fn readyz(
    State(state): State<AppState>,
) -> (StatusCode, ApiJson<serde_json::Value>) {
    match crate::service::observe::rollup_lag(&state).await {
        Ok((pending, oldest)) => {
            let mut body = json!({ "status": "ready", "rollup_pending": pending, "rollup_oldest_pending": oldest });
            // With a read replica: degraded (still 200) while it lags beyond its bound (reads go to
            // the primary meanwhile) or does not answer.
            if state.reads.has_replica() {
                let staleness = state.reads.staleness().map(|d| d.as_secs_f64());
                body["replica_lag_s"] = json!(staleness);
                body["replica_max_lag_s"] = json!(state.reads.max_lag().as_secs_f64());
                if !state.reads.replica_answering() {
                    body["status"] = json!("degraded: the read replica does not answer");
                } else if staleness.is_none_or(|s| s > state.reads.max_lag().as_secs_f64()) {
                    body["status"] =
                        json!("degraded: the read replica lags; its reads go to the primary");
                }
            }
            (StatusCode::OK, ApiJson(body))
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            // The primary away but the read replica answering (a failover): still 200, degraded,
            // so that a load balancer keeps sending the pages and read APIs, which the replica and
            // the identities this server confirmed serve; writes answer 503 and collectors spool.
            let away = e.unreachable();
            if away && state.reads.has_replica() && state.reads.replica_answering() {
                state.reads.primary_unreachable();
                return (
                    StatusCode::OK,
                    ApiJson(json!({
                        "status": "degraded: the primary does not answer; reads are served from \
                                   the read replica, writes answer 503 (collectors spool)"
                    })),
                );
            }
            (
                StatusCode::SERVICE_UNAVAILABLE,
                ApiJson(json!({ "status": "database unavailable" })),
            )
        }
    }
}
