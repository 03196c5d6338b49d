//! The domain between `routes` (HTTP) and `db` (SQL): job views and their charging, listing, coverage,
//! timing, progress, power-cap comparisons, and the registration of sites and meters. Handlers,
//! statements, maintenance and the CLI call it; it never sees a request or a response.
//!
//! It answers its own `Error`, which says what went wrong in the domain's words (not found, an invalid
//! field, not comparable); `From<Error> for AppError` is the one place that turns those into statuses.

pub mod budgets;
pub mod closure;
pub mod comparisons;
pub mod fleet;
pub mod ingest;
pub mod jobs;
pub mod meters;
pub mod nodes;
pub mod overview;
pub mod progress;
pub mod pue;
pub mod remote_write;
pub mod sites;
pub mod webhooks;

use thiserror::Error;

/// What a service call can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// Nothing by that name the caller may see.
    #[error("{0}")]
    NotFound(String),
    /// A field of the input is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as the client named it (`allocations[0].gpus`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// It exists already, differently.
    #[error("{0}")]
    Conflict(String),
    /// The request covers more than one answer may hold (narrow it).
    #[error("{0}")]
    TooMany(String),
    /// The request is larger than one may be (send it in parts).
    #[error("{0}")]
    TooLarge(String),
    /// The jobs asked about cannot be compared (one cap only, no cap recorded).
    #[error("{0}")]
    NotComparable(String),
    /// The store.
    #[error(transparent)]
    Db(#[from] crate::db::Error),
    /// Anything else that is our fault, with its cause chain.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A service result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
    /// Something that should not happen.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{message}"))
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<Error> for crate::error::AppError {
    fn from(e: Error) -> Self {
        use crate::error::AppError;
        use axum::http::StatusCode;
        match e {
            Error::NotFound(m) | Error::NotComparable(m) => AppError::not_found(m),
            e @ Error::Invalid { .. } => AppError::bad_request(e.to_string()),
            Error::TooMany(m) => AppError::bad_request(m),
            Error::TooLarge(m) => AppError::Client(StatusCode::PAYLOAD_TOO_LARGE, m),
            Error::Forbidden(m) => AppError::Client(StatusCode::FORBIDDEN, m),
            Error::Conflict(m) => AppError::conflict(m),
            Error::Db(e) => e.into(),
            Error::Internal(e) => AppError::Internal(e),
        }
    }
}

/// Checks a name that appears in URLs and logs (nodes, meters): 1 to 200 of `A-Z a-z 0-9 - _ .`.
pub fn check_name(field: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be 1 to 200 of A-Z a-z 0-9 - _ .",
        ))
    }
}

/// Checks a user name (the scheduler's): 1 to 200 printable characters without spaces.
pub fn check_user_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.chars().any(|c| c.is_control() || c.is_whitespace());
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            "must be 1 to 200 characters without spaces",
        ))
    }
}

/// One CSV cell: quoted where needed, and defused where a spreadsheet would read a formula.
pub fn csv_cell(s: &str) -> String {
    // Spreadsheets skip leading blanks before reading a formula: `  =cmd` is one too.
    let defused = if s.starts_with(['\t', '\r'])
        || s.trim_start_matches([' ', '\t', '\r', '\n', '\u{a0}'])
            .starts_with(['=', '+', '-', '@'])
    {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod csv_tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_defused_behind_blanks_too() {
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("  =HYPERLINK(1)"), "'  =HYPERLINK(1)");
        assert_eq!(csv_cell("\n@SUM(A1)"), "\"'\n@SUM(A1)\"");
        assert_eq!(csv_cell("a - b"), "a - b");
    }
}
