//! Our own extractors, whose rejections are `AppError`s: a malformed body gets a JSON error that says
//! what is wrong, not axum's default plain text.

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// JSON body; rejections become `AppError` with axum's status (400, 413, 415, 422 -> 400).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    use axum::http::StatusCode;
    let status = match rejection.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        s => s,
    };
    let text = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a body with content-type application/json".to_owned()
        }
        JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            "request body is over the size limit".to_owned()
        }
        other => other.body_text(),
    };
    AppError::Client(status, text)
}

/// Path parameters; rejections become 400/404 JSON errors.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|e: PathRejection| AppError::Client(e.status(), e.body_text()))
    }
}

/// Query string; rejections become 400 JSON errors naming the parameter.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e: QueryRejection| AppError::bad_request(e.body_text()))
    }
}

/// Checks a name that appears in URLs and logs (nodes, meters): 1 to 200 of `A-Z a-z 0-9 - _ .`.
pub fn check_name(field: &str, name: &str) -> Result<(), AppError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "{field}: must be 1 to 200 of A-Z a-z 0-9 - _ ."
        )))
    }
}

/// Checks a user name (the scheduler's): 1 to 200 printable characters without spaces.
pub fn check_user_name(name: &str) -> Result<(), AppError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.chars().any(|c| c.is_control() || c.is_whitespace());
    if valid {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "name: must be 1 to 200 characters without spaces",
        ))
    }
}

/// A page's form body (`application/x-www-form-urlencoded`); rejections become error pages.
#[derive(Debug, Clone)]
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = crate::error::PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| Self(v))
            .map_err(|e: FormRejection| {
                crate::error::PageError(AppError::Client(e.status(), e.body_text()))
            })
    }
}
