//! The Watts up? PRO power meter: protocol, streaming decoder, serial capture into the samples
//! dataset, a pseudo-terminal emulator, and (built on captured samples only) baseline and
//! energy integration.

pub mod cancel;
pub mod capture;
pub mod decoder;
pub mod emulator;
pub mod energy;
pub mod journal;
pub mod metrics;
pub mod ports;
pub mod protocol;

pub use cancel::Cancel;
