//! Charts as SVG, drawn with plotters: titles, axis labels with units, legends.

pub(crate) mod inline;
pub(crate) mod power;
pub(crate) mod powercap;
pub(crate) mod progress;
pub(crate) mod pue;
pub(crate) mod statement;

/// What every chart renderer returns.
pub(crate) type Rendered = Result<String, Box<dyn std::error::Error + Send + Sync>>;

/// A chart that could not be drawn, with plotters' cause.
#[derive(Debug, thiserror::Error)]
#[error("drawing a chart")]
pub(crate) struct ChartError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl From<Box<dyn std::error::Error + Send + Sync>> for ChartError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self(e)
    }
}
