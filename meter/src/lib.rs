//! Power for migwatt: sources of power readings ([`source`]: the Watts up? PRO over serial
//! and its emulator), capture of any source into the samples dataset ([`capture`], with its
//! crash-safe [`journal`] and Prometheus exporter [`metrics`]), and energy from captured
//! power series ([`energy`]: baseline and integration).
//!
//! The Watts up? PRO specifics: its serial [`protocol`], the streaming [`decoder`], the
//! pseudo-terminal [`emulator`] and serial [`ports`].

pub mod cancel;
pub mod capture;
pub mod clock;
pub mod decoder;
pub mod emulator;
pub mod energy;
pub mod journal;
pub mod metrics;
pub mod ports;
pub mod protocol;
pub mod source;
pub mod status;

pub use cancel::Cancel;
