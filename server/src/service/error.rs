//! What a service call can fail with, in the domain's words.

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
    /// Too busy now: retry later (503 with Retry-After).
    #[error("{0}")]
    Busy(String),
    /// The store.
    #[error(transparent)]
    Db(#[from] crate::db::Error),
    /// Anything else that is our fault, with its cause chain.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// Whether the database could not be reached (not: it refused or failed the query).
    pub(crate) fn unreachable(&self) -> bool {
        matches!(self, Self::Db(crate::db::Error::Sql(e)) if crate::db::unreachable(e))
    }
}

/// A service result.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An invalid field.
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
    /// Something that should not happen.
    pub(crate) fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{message}"))
    }
}

impl From<crate::names::NameError> for Error {
    fn from(e: crate::names::NameError) -> Self {
        Self::invalid(e.field, e.message)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}
