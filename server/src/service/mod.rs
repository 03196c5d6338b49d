//! The domain between `routes` (HTTP) and `db` (SQL): job views and their charging, listing, coverage,
//! timing, progress, power-cap comparisons, and the registration of sites and meters. Handlers,
//! statements, maintenance and the CLI call it; it never sees a request or a response.
//!
//! It answers its own `Error`, which says what went wrong in the domain's words (not found, an invalid
//! field, not comparable); `From<Error> for AppError` (in `error`, the web edge's) is the one place that turns those into
//! statuses. This file only names the parts; the error is `error`'s, name checks are `text`'s.

pub(crate) mod budgets;
pub(crate) mod calibration;
pub mod caller;
pub(crate) mod closure;
pub(crate) mod comparisons;
pub(crate) mod context;
pub mod error;
pub mod fleet;
pub mod ingest;
pub mod jobs;
pub(crate) mod meters;
pub(crate) mod nodes;
pub(crate) mod observe;
pub mod overview;
pub(crate) mod password;
pub mod progress;
pub mod pue;
pub mod remote_write;
pub(crate) mod scope2;
pub(crate) mod sites;
pub(crate) mod stale;
pub(crate) mod text;
pub(crate) mod tokens;
pub mod users;
pub(crate) mod webhooks;

pub(crate) use context::Context;
pub(crate) use error::{Error, Result};
pub(crate) use text::{check_user_name, csv_cell};
