//! The one error type at the HTTP boundary. Client errors carry a message meant for the client; server
//! errors keep their cause chain, are shown to the client as an opaque message, and are logged once,
//! with the route that failed, by `log_server_errors`.
//! Under `/api` errors are JSON `{"error": "..."}`; pages get an HTML error page (`PageError`), and a
//! page that renders is a `Page`.

use askama::Template;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use thiserror::Error;
use wattlas_protocol::ApiError;

/// An error answered to an HTTP client.
#[derive(Debug, Error)]
pub enum AppError {
    /// The request is malformed or names something invalid (400, or the status given).
    #[error("{1}")]
    Client(StatusCode, String),
    /// The database is unreachable: retry later (503).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A database error that is our fault, not the client's.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A stored raw block could not be decoded.
    #[error("stored samples are unreadable")]
    Codec(#[from] crate::codec::CodecError),
    /// Anything else that is our fault, with its cause chain.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// 400 with a message.
    pub(crate) fn bad_request(msg: impl Into<String>) -> Self {
        Self::Client(StatusCode::BAD_REQUEST, msg.into())
    }
    /// 401 with a message.
    pub(crate) fn unauthorized(msg: impl Into<String>) -> Self {
        Self::Client(StatusCode::UNAUTHORIZED, msg.into())
    }
    /// 403 with a message.
    pub(crate) fn forbidden(msg: impl Into<String>) -> Self {
        Self::Client(StatusCode::FORBIDDEN, msg.into())
    }
    /// 404 with a message.
    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        Self::Client(StatusCode::NOT_FOUND, msg.into())
    }
    /// 409 with a message.
    pub(crate) fn conflict(msg: impl Into<String>) -> Self {
        Self::Client(StatusCode::CONFLICT, msg.into())
    }
    /// 500 for something that should not happen, with what happened.
    pub(crate) fn internal(msg: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{msg}"))
    }

    /// The status code answered.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Client(status, _) => *status,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) | Self::Codec(_) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The message shown to the client: never a server error's cause.
    fn client_message(&self) -> String {
        match self {
            Self::Client(_, msg) => msg.clone(),
            Self::Unavailable(_) => "database unavailable, retry later".to_owned(),
            _ => "internal error".to_owned(),
        }
    }

    /// What went wrong, for the log: the error and each cause under it, `a: b: c`.
    pub(crate) fn cause_chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        // `Internal` is transparent: its own message is already the first link.
        if let Self::Internal(e) = self {
            out = format!("{e:#}");
            source = None;
        }
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    /// The response, carrying the cause of a server error for `log_server_errors`.
    fn respond(self, body: impl FnOnce(StatusCode, String) -> Response) -> Response {
        let status = self.status();
        let mut response = body(status, self.client_message());
        if status.is_server_error() {
            response
                .extensions_mut()
                .insert(ServerErrorCause(self.cause_chain()));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::unreachable(&e) || crate::db::out_of_resources(&e) {
            Self::Unavailable(e)
        } else {
            Self::Database(e)
        }
    }
}

impl From<crate::db::Error> for AppError {
    fn from(e: crate::db::Error) -> Self {
        match e {
            crate::db::Error::Sql(e) => e.into(),
            crate::db::Error::Codec(e) => e.into(),
            // The sender's retry finds the node anew (or registers it again).
            e @ crate::db::Error::NodeGone(_) => AppError::Client(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Hostname: {e} (removed while this write was stored); send it again"),
            ),
        }
    }
}

impl From<crate::service::error::Error> for AppError {
    fn from(e: crate::service::error::Error) -> Self {
        use crate::service::error::Error;
        match e {
            Error::NotFound(m) | Error::NotComparable(m) => AppError::not_found(m),
            e @ Error::Invalid { .. } => AppError::bad_request(e.to_string()),
            Error::TooMany(m) => AppError::bad_request(m),
            Error::TooLarge(m) => AppError::Client(StatusCode::PAYLOAD_TOO_LARGE, m),
            Error::Forbidden(m) => AppError::Client(StatusCode::FORBIDDEN, m),
            Error::Conflict(m) => AppError::conflict(m),
            Error::Busy(m) => AppError::Client(StatusCode::SERVICE_UNAVAILABLE, m),
            Error::Db(e) => e.into(),
            Error::Internal(e) => AppError::Internal(e),
        }
    }
}

impl From<crate::charts::ChartError> for AppError {
    fn from(e: crate::charts::ChartError) -> Self {
        Self::Internal(anyhow::Error::new(e))
    }
}

impl From<crate::names::NameError> for AppError {
    fn from(e: crate::names::NameError) -> Self {
        crate::service::error::Error::from(e).into()
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        Self::Internal(anyhow::Error::new(e).context("rendering a page"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.respond(|status, message| {
            (status, axum::Json(ApiError { error: message })).into_response()
        })
    }
}

/// The cause of a 5xx answer, from the handler to `log_server_errors`.
#[derive(Debug, Clone)]
pub(crate) struct ServerErrorCause(pub String);

/// Logs each 5xx answer once, with the route that matched and the cause chain (or the status alone
/// where the answer came from elsewhere: a panic, a timeout).
pub(crate) async fn log_server_errors(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |m| m.as_str().to_owned(),
    );
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        let cause = response.extensions().get::<ServerErrorCause>();
        let cause = cause.map_or("", |c| c.0.as_str());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(%method, route, status = status.as_u16(), cause, "unavailable");
        } else {
            tracing::error!(%method, route, status = status.as_u16(), cause, "server error");
        }
    }
    response
}

/// The HTML error page.
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    /// HTTP status.
    pub status: u16,
    /// What went wrong.
    pub message: String,
    /// Header (empty: errors do not look up who is asking).
    pub nav: crate::auth::nav::Nav,
}

impl ErrorPage {
    /// The page, or its message as text if the template fails.
    pub(crate) fn render_or_text(&self) -> String {
        self.render()
            .unwrap_or_else(|_| format!("{} {}", self.status, self.message))
    }
}

/// What an error page said, kept on its response so `auth::error_pages_with_nav` can render it again
/// with the viewer's page header.
#[derive(Debug, Clone)]
pub(crate) struct ErrorPageShown {
    /// HTTP status.
    pub status: u16,
    /// The message shown.
    pub message: String,
}

/// An error on an HTML page: the same causes, shown as a page.
#[derive(Debug)]
pub(crate) struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.respond(|status, message| {
            let page = ErrorPage {
                status: status.as_u16(),
                message,
                nav: crate::auth::nav::Nav::default(),
            };
            let mut response = (status, Html(page.render_or_text())).into_response();
            response.extensions_mut().insert(ErrorPageShown {
                status: page.status,
                message: page.message,
            });
            response
        })
    }
}

/// A page that renders: an askama template answered as HTML, its rendering errors as error pages.
pub(crate) struct Page<T>(pub T);

impl<T: Template> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        match self.0.render() {
            Ok(html) => Html(html).into_response(),
            Err(e) => PageError(e.into()).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// A database that is away answers 503 (retry), however the driver words it: HAProxy with no
    /// primary behind it made sqlx read "unexpected response from SSLRequest", once a 500.
    #[test]
    fn an_unreachable_database_is_unavailable_not_an_error() {
        for e in [
            sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into()),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            sqlx::Error::WorkerCrashed,
        ] {
            let what = format!("{e:?}");
            assert_eq!(
                AppError::from(e).status(),
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "{what}"
            );
        }
        assert_eq!(
            AppError::from(sqlx::Error::RowNotFound).status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn failing() -> Result<(), AppError> {
        let cause = std::io::Error::other("disk on fire");
        Err(AppError::Internal(
            anyhow::Error::new(cause).context("reading job 7"),
        ))
    }

    #[test]
    fn a_server_error_is_logged_once_with_its_route_and_cause_and_hidden_from_the_client() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let app = axum::Router::new()
            .nest(
                "/api/v1",
                axum::Router::new().route("/jobs/{id}", get(failing)),
            )
            .route_layer(axum::middleware::from_fn(log_server_errors));
        let response = tracing::subscriber::with_default(subscriber, || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .block_on(async {
                    let request = axum::http::Request::get("/api/v1/jobs/7")
                        .body(axum::body::Body::empty())
                        .expect("request");
                    let response = app.oneshot(request).await.expect("answer");
                    let status = response.status();
                    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                        .await
                        .expect("body");
                    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
                })
        });
        assert_eq!(response.0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.1, r#"{"error":"internal error"}"#,
            "no cause shown"
        );
        let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("server error")).collect();
        assert_eq!(lines.len(), 1, "logged once: {log}");
        assert!(
            lines[0].contains("route=\"/api/v1/jobs/{id}\"")
                && lines[0].contains("reading job 7: disk on fire"),
            "{log}"
        );
    }
}
