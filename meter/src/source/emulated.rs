//! An emulated Watts up? PRO as a [`PowerSource`]: the emulator runs on a real
//! pseudo-terminal for as long as the source lives, and the source is the serial
//! [`WattsUp`] pointed at it, so everything below capture is the real serial path.

use std::fmt;
use std::time::Duration;

use super::{BoxFuture, Measures, PowerSource, Session, SourceError, SourceOptions, WattsUp};
use crate::emulator::{self, EmulatorConfig, EmulatorHandle};
use crate::Cancel;

/// A Watts up? PRO emulated on a pseudo-terminal, read through the serial path.
pub struct EmulatedSource {
    // Dropping the handle stops the emulator.
    emulator: EmulatorHandle,
    serial: WattsUp,
}

impl EmulatedSource {
    /// Start an emulator with `config` and read it as a Watts up? PRO with `opts`.
    pub fn start(config: EmulatorConfig, opts: SourceOptions) -> Result<Self, SourceError> {
        let emulator = emulator::start(config, Cancel::new())?;
        let serial = WattsUp::new(emulator.path(), opts);
        Ok(EmulatedSource { emulator, serial })
    }
    /// The emulator's device path (its link, or the pty).
    pub fn device(&self) -> &std::path::Path {
        self.emulator.path()
    }
}

impl fmt::Debug for EmulatedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedSource")
            .field("device", &self.emulator.path())
            .finish_non_exhaustive()
    }
}

impl PowerSource for EmulatedSource {
    fn kind(&self) -> &'static str {
        super::spec::EMULATED_KIND
    }
    fn location(&self) -> String {
        self.serial.location()
    }
    fn measures(&self) -> Measures {
        self.serial.measures()
    }
    fn native_interval(&self) -> Duration {
        self.serial.native_interval()
    }
    fn reject_kinds(&self) -> &'static [&'static str] {
        self.serial.reject_kinds()
    }
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Session>, SourceError>> {
        self.serial.connect()
    }
}
