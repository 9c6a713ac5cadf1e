//! SIGINT and SIGTERM: a long command installs [`cancel_on_signals`] and stops cleanly at its
//! next checkpoint (temporary files removed, what was published left intact); `main` then
//! exits 130 after SIGINT and 143 after SIGTERM.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::Context as _;
use meter::Cancel;

/// Set when a stop was asked, for library work that takes a plain flag (the trainer).
pub static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that asked the command to stop (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// A flag set by the first SIGINT or SIGTERM (which is remembered for the exit status).
pub fn cancel_on_signals() -> anyhow::Result<Cancel> {
    let cancel = Cancel::new();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    let c = cancel.clone();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            RECEIVED.store(sig, Ordering::SeqCst);
            STOP.store(true, Ordering::SeqCst);
            c.cancel();
        }
    });
    Ok(cancel)
}

/// The signal that stopped the command, if one did.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Its name, for the message.
pub fn name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT (Ctrl-C)",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
