//! Facility meter sources: total facility power and IT power, for measured PUE.
//!
//! `simulated` is a site with the seasonal and day/night shape of the first paper's Figures 4 and 5;
//! `modbus` reads a power meter over Modbus TCP. Readings go through the same disk spool and uplink as
//! GPU samples, so a server outage loses none that fit.

pub mod cli;
pub mod error;
pub mod modbus;
pub mod simulated;

use chrono::{DateTime, Utc};
use wattlas_protocol::FacilityReading;

pub use error::MeterError;

/// A meter to read.
pub enum Meter {
    /// The simulated site.
    Simulated(simulated::SimulatedSite),
    /// A Modbus TCP power meter.
    Modbus(modbus::ModbusMeter),
}

impl Meter {
    /// One reading, stamped `now`.
    pub async fn read(&mut self, now: DateTime<Utc>) -> Result<FacilityReading, MeterError> {
        match self {
            Self::Simulated(s) => Ok(s.reading_at(now)),
            Self::Modbus(m) => m.read(now).await,
        }
    }
}
