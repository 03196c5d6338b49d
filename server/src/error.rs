//! The one error type at the HTTP boundary. Client errors carry a message meant for the client; internal
//! errors are logged once with their cause and shown to the client as an opaque message.
//! Under `/api` errors are JSON `{"error": "..."}`; pages get an HTML error page (`PageError`).

use axum::http::{header, StatusCode};
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
    /// Anything else that is our fault.
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    /// 400 with a message.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::Client(StatusCode::BAD_REQUEST, msg.into())
    }
    /// 401 with a message.
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Self::Client(StatusCode::UNAUTHORIZED, msg.into())
    }
    /// 403 with a message.
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Client(StatusCode::FORBIDDEN, msg.into())
    }
    /// 404 with a message.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::Client(StatusCode::NOT_FOUND, msg.into())
    }
    /// 409 with a message.
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::Client(StatusCode::CONFLICT, msg.into())
    }

    /// The status code answered.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Client(status, _) => *status,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) | Self::Codec(_) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The message shown to the client; internal causes are logged here, once.
    fn client_message(&self) -> String {
        match self {
            Self::Client(_, msg) => msg.clone(),
            Self::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                "database unavailable, retry later".to_owned()
            }
            other => {
                tracing::error!(error = ?other, "internal error");
                "internal error".to_owned()
            }
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(e)
            }
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) =>
            {
                Self::Unavailable(e)
            }
            _ => Self::Database(e),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = axum::Json(ApiError {
            error: self.client_message(),
        });
        let mut response = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        response
    }
}

/// An error on an HTML page: the same causes, shown as a page.
#[derive(Debug)]
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = self.0.client_message();
        let page = crate::routes::pages::ErrorPage {
            status: status.as_u16(),
            message,
            nav: crate::auth::session::Nav::default(),
        };
        (status, Html(page.render_or_text())).into_response()
    }
}
