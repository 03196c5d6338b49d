//! `?from_min=&to_min=`: the window of a job a page or chart shows.

use serde::Deserialize;

use crate::error::AppError;

/// `?from_min=&to_min=`: a window of a job, in minutes since its start (default: the whole job).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Window {
    /// Start, minutes since the job's start.
    pub from_min: Option<f64>,
    /// End, minutes since the job's start.
    pub to_min: Option<f64>,
}

impl Window {
    /// The window in ms since the epoch, within the job `[start_ms, end_ms)`.
    pub(crate) fn bounds(&self, start_ms: i64, end_ms: i64) -> Result<(i64, i64), AppError> {
        let at = |field: &str, m: Option<f64>, default: i64| -> Result<i64, AppError> {
            match m {
                None => Ok(default),
                // Clamped to the job before adding: 1e300 minutes made the addition overflow.
                Some(m) if m.is_finite() && m >= 0.0 => {
                    Ok(start_ms + (m * 60_000.0).min((end_ms - start_ms) as f64) as i64)
                }
                Some(m) => Err(AppError::bad_request(format!(
                    "{field}: {m} is not a number of minutes since the job's start"
                ))),
            }
        };
        let from = at("from_min", self.from_min, start_ms)?;
        if from >= end_ms && end_ms > start_ms {
            return Err(AppError::bad_request(format!(
                "from_min: {} is past the job's end",
                self.from_min.unwrap_or_default()
            )));
        }
        let to = at("to_min", self.to_min, end_ms)?;
        if to <= from {
            return Err(AppError::bad_request("to_min: must be after from_min"));
        }
        Ok((from, to))
    }

    /// The query string of this window (empty for the whole job).
    pub(crate) fn query(&self) -> String {
        match (self.from_min, self.to_min) {
            (None, None) => String::new(),
            (f, t) => format!(
                "?{}",
                [
                    f.map(|f| format!("from_min={f}")),
                    t.map(|t| format!("to_min={t}"))
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("&")
            ),
        }
    }
}
