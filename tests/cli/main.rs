//! End-to-end tests of the binary on files: its conventions, and each command on recorded or
//! generated data (no live meter, no QEMU). Modules, not binaries: each test binary links
//! polars, so the integration tests live in three (cli, capture, migration).

#[path = "../common/mod.rs"]
mod common;

mod calibrate_ingest;
mod datasets_check;
mod demo;
mod energy_cli;
mod exit_status;
mod flags;
mod hostile;
mod meter_decode;
mod mismatched;
mod predict_cli;
mod report_browser;
mod snapshots;
mod train_cli;
