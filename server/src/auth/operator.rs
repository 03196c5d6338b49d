//! The operators' token: what `/metrics` and the fleet's exposition ask of Prometheus.

use crate::state::AppState;

/// Whether the request carries the metrics token or the admin token (what Prometheus scrapes with).
pub(crate) fn operator_token(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<(), crate::error::AppError> {
    let sent = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let allowed = [&state.config.metrics_token, &state.config.admin_token]
        .into_iter()
        .flatten()
        .any(|t| {
            use secrecy::ExposeSecret;
            use subtle::ConstantTimeEq;
            !sent.is_empty() && bool::from(t.expose_secret().as_bytes().ct_eq(sent.as_bytes()))
        });
    if allowed {
        Ok(())
    } else {
        Err(crate::error::AppError::unauthorized(
            "the metrics token (WATTLAS_METRICS_TOKEN) or the admin token is required",
        ))
    }
}
