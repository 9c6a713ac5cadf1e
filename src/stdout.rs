//! Standard output and error that a closed pipe cannot crash: `migwatt models list | head -1`
//! closes stdout after one line, and `println!` would then panic. The `out!`/`outln!` and
//! `err!`/`errln!` macros write through here instead: once a stream is closed, later writes
//! are dropped, the command finishes its work (files are still written) and exits quietly
//! with its own status.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set once stdout refused a write because its reader went away.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Set once stderr refused a write.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
/// `--quiet` / `MIGWATT_QUIET`: no progress messages.
static QUIET: AtomicBool = AtomicBool::new(false);
/// A stdout failure other than a closed pipe (a full disk behind `> file`), reported at exit.
static STDOUT_ERROR: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Write to stdout (see the module docs); `newline` appends `\n`.
pub fn write_out(args: fmt::Arguments<'_>, newline: bool) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let r = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = r {
        record_stdout_error(e);
    }
}

/// Write raw bytes to stdout (see the module docs).
pub fn write_out_bytes(bytes: &[u8]) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        record_stdout_error(e);
    }
}

/// Flush stdout now (a reader waiting for a line, e.g. the emulator's device path).
pub fn flush_out() {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = std::io::stdout().lock().flush() {
        record_stdout_error(e);
    }
}

fn record_stdout_error(e: std::io::Error) {
    STDOUT_CLOSED.store(true, Ordering::Relaxed);
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        let mut slot = STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
    }
}

/// Write to stderr; a closed stderr silences the rest.
pub fn write_err(args: fmt::Arguments<'_>, newline: bool) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let r = err.write_fmt(args).and_then(|()| {
        if newline {
            err.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if r.is_err() {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Turn progress messages off (`--quiet`, `MIGWATT_QUIET`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether progress messages are off.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// At exit: flush stdout, and the failure of a stdout that was not merely closed early.
pub fn finish() -> Option<std::io::Error> {
    flush_out();
    STDOUT_ERROR
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
}

/// `print!` that survives a closed stdout.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::stdout::write_out(format_args!($($t)*), false) };
}

/// `println!` that survives a closed stdout.
#[macro_export]
macro_rules! outln {
    () => { $crate::stdout::write_out(format_args!(""), true) };
    ($($t:tt)*) => { $crate::stdout::write_out(format_args!($($t)*), true) };
}

/// `eprint!` that survives a closed stderr.
#[macro_export]
macro_rules! err {
    ($($t:tt)*) => { $crate::stdout::write_err(format_args!($($t)*), false) };
}

/// A progress line on stderr, unless `--quiet` (results, warnings and errors use `errln!`).
#[macro_export]
macro_rules! progressln {
    ($($t:tt)*) => {
        if !$crate::stdout::quiet() {
            $crate::stdout::write_err(format_args!($($t)*), true)
        }
    };
}

/// `eprintln!` that survives a closed stderr.
#[macro_export]
macro_rules! errln {
    () => { $crate::stdout::write_err(format_args!(""), true) };
    ($($t:tt)*) => { $crate::stdout::write_err(format_args!($($t)*), true) };
}
