//! Energy from captured power series: a host's static power P_0 ([`baseline`]) and the
//! energy of every migration window above it ([`integrate`]).
//!
//! Both work on the samples dataset's power series only (through `datasets`), whatever
//! source captured them: nothing here knows a meter, a protocol or a serial port.

pub mod baseline;
pub mod integrate;
