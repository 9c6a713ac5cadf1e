//! A cancellation signal shared by long-running work (capture, emulator) and its driver.

use std::sync::Arc;

use tokio::sync::watch;

/// Cloneable cancellation flag: set once, observed by sync code (`is_cancelled`) and async
/// code (`cancelled().await`).
#[derive(Debug, Clone)]
pub struct Cancel(Arc<watch::Sender<bool>>);

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Cancel(Arc::new(watch::channel(false).0))
    }
    /// Ask the work to stop (idempotent).
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
    /// Whether stop was asked.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }
    /// Resolves once stop is asked.
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = rx.wait_for(|v| *v).await;
    }
}
