//! A chart route's answer.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::charts::{ChartError, Rendered};
use crate::error::AppError;

/// A chart route's answer: the SVG, never cached (charts show live data); a drawing error is ours.
pub(crate) fn svg_response(rendered: Rendered) -> Result<Response, AppError> {
    let svg = rendered.map_err(ChartError::from)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}
