//! `GET /metrics` (the exposition, for operators' Prometheus) and the count of refused writes by route.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// `GET /metrics`.
pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    // Counters of sign-ins and refusals are for operators, not for anyone who asks.
    if let Err(e) = crate::auth::operator_token(&state, &headers) {
        return e.into_response();
    }
    let out = crate::service::observe::exposition(&state).await;
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Counts the refusals (4xx, 5xx) of the write routes it wraps, by route and status.
pub(crate) async fn count_rejections(
    State(state): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    // The route's template, whole (a nested router strips its prefix from the URI, not from this):
    // bounded label values. Set on every request of a route layer.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || request.uri().path().to_owned(),
            |m| m.as_str().to_owned(),
        );
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        state.metrics.rejected(route, status.as_u16());
    }
    response
}
