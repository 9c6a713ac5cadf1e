//! migwatt's datasets: every Parquet schema the toolkit writes, with its columns, units and
//! version, and the code that reads, writes and validates them.
//!
//! Only this crate knows column names and Parquet; the other crates exchange typed rows with
//! it. Every file carries its dataset kind and schema version in the Parquet key-value
//! metadata (`migwatt.dataset`, `migwatt.schema_version`); readers refuse unknown majors.

pub mod candidates;
pub mod check;
pub mod energy;
pub mod evaluation;
pub mod examples;
pub mod io;
pub mod migrations;
pub mod names;
pub mod origins;
pub mod quantity;
pub mod residuals;
pub mod rounds;
pub mod samples;
pub mod table;
pub mod windows;

pub use io::{DatasetError, SchemaVersion};

/// An error and its causes on one line, `error: cause: cause` (as anyhow's `{:#}`), for
/// errors kept as text: a message never repeats its cause, so flattening must walk them.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
pub use origins::{OriginRun, Origins};
pub use samples::{SampleRow, FIELD_COUNT, RECORD_FIELDS, SAMPLES};
