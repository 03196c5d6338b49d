//! The papers' maths as pure functions: no I/O, no SQL. Callers fetch; these explain.

pub mod carbon;
pub mod closure;
pub mod energy;
pub mod facility;
pub mod node_energy;
pub mod powercap;
pub mod progress;
pub mod pue;
pub mod sharing;
pub mod statement;
pub mod units;
