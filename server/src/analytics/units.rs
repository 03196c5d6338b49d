//! The one rule for amounts of energy and CO2e shown to people: `wattlas_protocol::units`, shared with
//! the collector's `job show`.

pub use wattlas_protocol::units::{co2e, energy};
