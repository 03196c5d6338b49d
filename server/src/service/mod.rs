//! The domain between `routes` (HTTP) and `db` (SQL): job views and their charging, listing, coverage,
//! timing, progress, power-cap comparisons, and the registration of sites and meters. Handlers,
//! statements, maintenance and the CLI call it; it never sees a request or a response.
//!
//! It answers its own `Error`, which says what went wrong in the domain's words (not found, an invalid
//! field, not comparable); `From<Error> for AppError` (in `error`, the web edge's) is the one place that turns those into
//! statuses. This file only names the parts; the error is `error`'s, name checks are `text`'s.

pub mod budgets;
pub mod caller;
pub mod closure;
pub mod comparisons;
pub mod context;
pub mod error;
pub mod fleet;
pub mod ingest;
pub mod jobs;
pub mod meters;
pub mod nodes;
pub mod observe;
pub mod overview;
pub mod password;
pub mod progress;
pub mod pue;
pub mod remote_write;
pub mod sites;
pub mod stale;
pub mod text;
pub mod tokens;
pub mod users;
pub mod webhooks;

pub use context::Context;
pub use error::{Error, Result};
pub use text::{check_name, check_user_name, csv_cell};
