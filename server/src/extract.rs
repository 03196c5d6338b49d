//! Our own extractors, whose rejections are `AppError`s: a malformed body gets a JSON error that says
//! what is wrong, not axum's default plain text.

// The one module that wraps axum's own extractors (clippy.toml keeps them out of everything else).
#![allow(clippy::disallowed_types)]

use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// JSON body; rejections become `AppError` with axum's status (400, 413, 415, 422 -> 400). A string with
/// a NUL character (which PostgreSQL cannot store in text) is refused naming its field.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::http::StatusCode;
        refuse_unread_encoding(req.headers())?;
        if !json_content_type(req.headers()) {
            return Err(AppError::Client(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with content-type application/json".to_owned(),
            ));
        }
        let bytes = body_bytes(req, state).await?;
        if bytes.windows(6).any(|w| w == b"\\u0000") {
            if let Some(field) = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| nul_path(&v, String::new()))
            {
                return Err(AppError::bad_request(format!(
                    "{field}: contains a NUL character"
                )));
            }
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// 415 for a content encoding other than gzip (which the decompression layer has undone).
fn refuse_unread_encoding(headers: &axum::http::HeaderMap) -> Result<(), AppError> {
    match headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.eq_ignore_ascii_case("identity"))
    {
        Some(e) => Err(AppError::Client(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content-encoding: '{e}' is not read here (gzip is)"),
        )),
        None => Ok(()),
    }
}

/// The whole body, within the size limit.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, AppError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            AppError::Client(e.status(), "request body is over the size limit".to_owned())
        } else {
            AppError::Client(e.status(), e.body_text())
        }
    })
}

/// A GPU batch as JSON, or in the binary form (`wattlas_protocol::wire`, content type
/// `application/vnd.wattlas.batch`): the batch, and for the binary form its samples in stored units
/// (the batch's own `samples` then empty). Refusals name the field as JSON's do.
pub(crate) struct IngestBody(
    pub wattlas_protocol::GpuBatch,
    pub Option<Vec<crate::codec::RawSample>>,
);

impl<S: Send + Sync> FromRequest<S> for IngestBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use wattlas_protocol::wire;
        let binary = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.trim().eq_ignore_ascii_case(wire::BATCH_CONTENT_TYPE));
        if !binary {
            let ApiJson(batch) = ApiJson::from_request(req, state).await?;
            return Ok(Self(batch, None));
        }
        refuse_unread_encoding(req.headers())?;
        let bytes = body_bytes(req, state).await?;
        let (batch, samples) = wire::decode_batch(&bytes).map_err(|e| match e {
            // A later collector's block format: 415, on which collectors send JSON instead (whose
            // fields a server that does not know them ignores), not 400, which drops the batch.
            wire::WireError::Block(crate::codec::CodecError::Version(v)) => AppError::Client(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "body: block format {v} is not read by this server (formats {} and {}): \
                     send the batch as JSON",
                    crate::codec::VERSION,
                    crate::codec::VERSION_SOURCES
                ),
            ),
            e => AppError::bad_request(format!("body: {e}")),
        })?;
        // As for JSON bodies, only a frame holding an escaped NUL is looked through for its field.
        if bytes.windows(6).any(|w| w == b"\\u0000") {
            let meta = serde_json::to_value(&batch).map_err(AppError::internal)?;
            if let Some(field) = nul_path(&meta, String::new()) {
                return Err(AppError::bad_request(format!(
                    "{field}: contains a NUL character"
                )));
            }
        }
        Ok(Self(batch, Some(samples)))
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for ApiJson<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `application/json` or `application/*+json`, as axum's own `Json` accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// The path (`tags.k`, `gpus[0].uuid`) of the first string or key holding a NUL character.
fn nul_path(v: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains('\0') => {
            Some(if at.is_empty() { "body".into() } else { at })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                Some(path.replace('\0', "\\0"))
            } else {
                nul_path(item, path)
            }
        }),
        _ => None,
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    use axum::http::StatusCode;
    let status = match rejection.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        s => s,
    };
    AppError::Client(status, rejection.body_text())
}

/// The first query parameter whose value (or name) holds an encoded NUL character.
fn nul_in_query(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find(|pair| pair.to_ascii_lowercase().contains("%00"))
        .map(|pair| pair.split('=').next().unwrap_or("query").to_owned())
}

/// A query's rejection as our errors say it: the parameter first ("slowdown_pct: invalid float
/// literal"), not axum's "Failed to deserialize query string: ...".
fn query_error(text: &str) -> String {
    text.strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text)
        .to_owned()
}

/// The parameters that carry dates or years.
const DATE_PARAMS: [&str; 10] = [
    "from", "to", "week", "year", "start", "end", "since", "until", "day", "month",
];

/// The first date parameter whose year lies outside `wattlas_protocol::PLAUSIBLE_YEARS`, with a
/// message naming it.
fn date_out_of_range(query: Option<&str>) -> Option<String> {
    for (key, value) in form_urlencoded::parse(query?.as_bytes()) {
        if !DATE_PARAMS.contains(&key.as_ref()) {
            continue;
        }
        let value = value.trim();
        let year = if key == "year" {
            value.parse::<i64>().ok()
        } else {
            year_of_date(value)
        };
        // (Dates such as -4713-01-01 answered 500: issue 33, N8.)
        let years = wattlas_protocol::PLAUSIBLE_YEARS;
        let plausible = i64::from(*years.start())..=i64::from(*years.end());
        if let Some(year) = year.filter(|y| !plausible.contains(y)) {
            return Some(format!(
                "{key}: {value} is outside the years {} to {} (year {year})",
                years.start(),
                years.end()
            ));
        }
    }
    None
}

/// The year of a value written as a date (`YYYY-MM-DD...`, with a sign or more digits), if it is one.
fn year_of_date(value: &str) -> Option<i64> {
    let (sign, rest) = match value.as_bytes().first()? {
        b'-' => (-1, &value[1..]),
        b'+' => (1, &value[1..]),
        _ => (1, value),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let after = rest.as_bytes().get(digits..digits + 3)?;
    if digits < 4 || after[0] != b'-' || !after[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Past i64's digits, it is out of range in any case.
    Some(rest[..digits].parse::<i64>().map_or(i64::MAX, |y| sign * y))
}

/// Path parameters; rejections become 400/404 JSON errors.
#[derive(Debug, Clone)]
pub(crate) struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.path().to_ascii_lowercase().contains("%00") {
            return Err(AppError::bad_request("path: contains a NUL character"));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|e: PathRejection| AppError::Client(e.status(), e.body_text()))
    }
}

/// Query string; rejections become 400 JSON errors naming the parameter.
#[derive(Debug, Clone)]
pub(crate) struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(name) = nul_in_query(parts.uri.query()) {
            return Err(AppError::bad_request(format!(
                "{name}: contains a NUL character"
            )));
        }
        if let Some(message) = date_out_of_range(parts.uri.query()) {
            return Err(AppError::bad_request(message));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e: QueryRejection| AppError::bad_request(query_error(&e.body_text())))
    }
}

impl<T: DeserializeOwned> Query<T> {
    /// Parses a URI's query exactly as the extractor does (the fuzz target and `routes::queries`).
    pub(crate) fn try_from_uri(uri: &axum::http::Uri) -> Result<Self, AppError> {
        if let Some(name) = nul_in_query(uri.query()) {
            return Err(AppError::bad_request(format!(
                "{name}: contains a NUL character"
            )));
        }
        if let Some(message) = date_out_of_range(uri.query()) {
            return Err(AppError::bad_request(message));
        }
        axum::extract::Query::<T>::try_from_uri(uri)
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e| AppError::bad_request(query_error(&e.body_text())))
    }
}

/// A page's query string: rejections become the HTML error page naming the parameter (with the page
/// header), not the API's JSON.
#[derive(Debug, Clone)]
pub(crate) struct PageQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PageQuery<T> {
    type Rejection = crate::error::PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(crate::error::PageError)
    }
}

/// A page's form body (`application/x-www-form-urlencoded`); rejections become error pages.
#[derive(Debug, Clone)]
pub(crate) struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = crate::error::PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::new(body), state)
            .await
            .map_err(|e| crate::error::PageError(AppError::Client(e.status(), e.body_text())))?;
        if let Some(name) = nul_in_query(std::str::from_utf8(&bytes).ok()) {
            return Err(crate::error::PageError(AppError::bad_request(format!(
                "{name}: contains a NUL character"
            ))));
        }
        axum::Form::<T>::from_request(Request::from_parts(parts, bytes.into()), state)
            .await
            .map(|axum::Form(v)| Self(v))
            .map_err(|e: FormRejection| {
                crate::error::PageError(AppError::Client(e.status(), e.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_known_by_their_shape_and_bounded_by_their_year() {
        assert_eq!(year_of_date("2026-12-06"), Some(2026));
        assert_eq!(year_of_date("2026-12-06T10:00:00Z"), Some(2026));
        assert_eq!(year_of_date("-4713-01-01"), Some(-4713));
        assert_eq!(year_of_date("+275760-09-13"), Some(275_760));
        assert_eq!(year_of_date("99999999999999999999-01-01"), Some(i64::MAX));
        assert_eq!(year_of_date("2026"), None);
        assert_eq!(year_of_date("12-06"), None);
        assert_eq!(year_of_date("2026-x"), None);
        assert_eq!(
            date_out_of_range(Some("from=2026-01-01&to=2026-02-01")),
            None
        );
        assert_eq!(
            date_out_of_range(Some("q=0001-01-01")),
            None,
            "not a date parameter"
        );
        let e = date_out_of_range(Some("from=2026-01-01&year=-4714")).expect("refused");
        assert!(e.starts_with("year: -4714 is outside"), "{e}");
        let e = date_out_of_range(Some("to=%2B275760-01-01")).expect("refused");
        assert!(e.starts_with("to: +275760-01-01"), "{e}");
    }
}
