//! One module per command family; each parses nothing itself beyond its clap types and calls
//! library functions.

pub mod calibrate;
pub mod campaign;
pub mod datasets;
pub mod demo;
pub mod energy;
pub mod meter;
pub mod predict;
pub mod train;
