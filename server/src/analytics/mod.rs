//! The papers' maths as pure functions: no I/O, no SQL. Callers fetch; these explain.

pub(crate) mod calibration;
pub(crate) mod carbon;
pub(crate) mod closure;
pub mod energy;
pub(crate) mod facility;
pub(crate) mod node_energy;
pub(crate) mod powercap;
pub(crate) mod progress;
pub mod pue;
pub mod sharing;
pub(crate) mod statement;
pub(crate) mod uncertainty;
pub mod units;
