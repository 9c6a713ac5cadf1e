//! End-to-end tests of the binary's conventions, one module per concern (one test binary:
//! each binary links polars).

#[path = "../common/mod.rs"]
mod common;

mod exit_status;
mod flags;
mod snapshots;
