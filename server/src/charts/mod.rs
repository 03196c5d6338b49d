//! Charts as SVG, drawn with plotters: titles, axis labels with units, legends.

pub mod inline;
pub mod power;
pub mod powercap;
pub mod progress;
pub mod pue;
pub mod statement;

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
