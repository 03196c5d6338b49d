//! Jobs and their allocations: rows, registration by parts, ends (`rows`); the list (`listing`) and
//! stored energy summaries (`summaries`) beside.

mod listing;
mod rows;
mod summaries;

pub use listing::*;
pub use rows::*;
pub(crate) use summaries::*;
