//! Charts as SVG, drawn with plotters: titles, axis labels with units, legends.

pub mod inline;
pub mod power;
pub mod powercap;
pub mod progress;
pub mod pue;
pub mod statement;

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;

/// What every chart renderer returns.
pub type Rendered = Result<String, Box<dyn std::error::Error + Send + Sync>>;

/// A chart that could not be drawn, with plotters' cause.
#[derive(Debug, thiserror::Error)]
#[error("drawing a chart")]
pub struct ChartError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl From<Box<dyn std::error::Error + Send + Sync>> for ChartError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self(e)
    }
}

impl From<ChartError> for AppError {
    fn from(e: ChartError) -> Self {
        Self::Internal(anyhow::Error::new(e))
    }
}

/// A chart route's answer: the SVG, never cached (charts show live data); a drawing error is ours.
pub fn svg_response(rendered: Rendered) -> Result<Response, AppError> {
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
