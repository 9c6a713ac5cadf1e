//! Errors and per-line problem reports.

use std::path::PathBuf;

/// A problem found at one line of one log (malformed line, invariant violation, incomplete
/// migration). Parsers collect these instead of failing, so one bad line loses one line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The log file.
    pub path: PathBuf,
    /// Line number, from 1.
    pub line: usize,
    /// What was wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// Errors of ingesting logs and collecting migrations.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// Filesystem error on a named path.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A log held no complete migration.
    #[error("{}: no complete migration found{}", path.display(), summarise(problems))]
    NoMigration {
        /// The log file.
        path: PathBuf,
        /// Problems found while parsing it.
        problems: Vec<Problem>,
    },
    /// Writing a dataset failed.
    #[error(transparent)]
    Dataset(#[from] datasets::DatasetError),
    /// QMP connection or protocol failure.
    #[error("QMP {socket}: {message}")]
    Qmp {
        /// The QMP socket path.
        socket: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A QMP command returned an error.
    #[error("QMP {socket}: command '{command}' failed: {message}")]
    QmpCommand {
        /// The QMP socket path.
        socket: PathBuf,
        /// The command.
        command: String,
        /// QEMU's error description.
        message: String,
    },
    /// Guest memory could not be compared (the comparison itself did not run to the end).
    #[error("memory verification: {0}")]
    Verify(String),
    /// Invalid options.
    #[error("{0}")]
    Usage(String),
    /// Stopped on request (Ctrl-C, SIGTERM) before the work was done.
    #[error("cancelled")]
    Cancelled,
}

fn summarise(problems: &[Problem]) -> String {
    if problems.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = problems.iter().take(5).map(|p| p.to_string()).collect();
    let more = problems.len().saturating_sub(5);
    let tail = if more > 0 {
        format!("\n  ... and {more} more")
    } else {
        String::new()
    };
    format!(":\n  {}{tail}", shown.join("\n  "))
}
