//! End-to-end tests that migrate: `calibrate run` on replayed and live campaigns, real QEMU
//! migrations with verification, the pre-migration probe, and the accuracy-campaign recorder
//! (`predict_campaign`, run on demand by bench/accuracy/campaign.sh, not by test-all.sh).

#[path = "../common/mod.rs"]
mod common;

mod calibrate_run;
mod predict_campaign;
mod qemu_migrate;
mod qemu_probe;
