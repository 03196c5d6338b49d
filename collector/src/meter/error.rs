//! What a meter read can fail with.

/// Errors of a meter read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MeterError {
    /// The meter could not be reached or answered with an error.
    #[error("meter read failed: {0}")]
    Read(String),
    /// The meter answered with values that are not powers.
    #[error("meter gave an implausible reading: {0}")]
    Implausible(String),
}
