//! Facility meter sources: total facility power and IT power, for measured PUE.
//!
//! `simulated` is a site with the seasonal and day/night shape of the first paper's Figures 4 and 5;
//! `modbus` reads a power meter over Modbus TCP. Readings go through the same disk spool and uplink as
//! GPU samples, so a server outage loses none that fit.

pub mod cli;
pub(crate) mod error;
pub(crate) mod modbus;
pub(crate) mod simulated;

use chrono::{DateTime, Utc};
use wattlas_protocol::FacilityReading;

pub(crate) use error::MeterError;

/// A meter to read.
pub(crate) enum Meter {
    /// The simulated site.
    Simulated(simulated::SimulatedSite),
    /// A Modbus TCP power meter.
    Modbus(modbus::ModbusMeter),
}

impl Meter {
    /// One reading, stamped `now`.
    pub(crate) async fn read(&mut self, now: DateTime<Utc>) -> Result<FacilityReading, MeterError> {
        match self {
            Self::Simulated(s) => Ok(s.reading_at(now)),
            Self::Modbus(m) => m.read(now).await,
        }
    }
}
