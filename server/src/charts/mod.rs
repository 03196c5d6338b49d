//! Charts as SVG, drawn with plotters: titles, axis labels with units, legends.

pub mod power;
pub mod powercap;
pub mod progress;
pub mod pue;
pub mod statement;
