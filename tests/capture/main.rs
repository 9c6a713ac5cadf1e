//! End-to-end tests of live capture: `meter capture` against emulated Watts up? PRO meters on
//! pseudo-terminals, the metrics exporter, energy from a capture, and the Redfish, IPMI, RAPL
//! and Prometheus sources against real servers the tests start.

#[path = "../common/mod.rs"]
mod common;

mod energy_e2e;
mod meter_capture;
mod meter_metrics;
mod sources;
