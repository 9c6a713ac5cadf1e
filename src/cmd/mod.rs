//! One module per command family; each parses nothing itself beyond its clap types and calls
//! library functions.

pub mod calibrate;
pub mod campaign;
pub mod datasets;
pub mod demo;
pub mod energy;
pub mod meter;
pub mod predict;
pub mod train;

/// The output guard of one command: its inputs (each with the option naming it) are protected
/// for as long as the returned value lives, and its outputs are checked before any work, so a
/// bad `--out` fails at once and no output replaces an input or lands inside an input folder.
pub fn guard_io(
    inputs: &[(&str, &std::path::Path)],
    outputs: &[(&str, &std::path::Path)],
) -> anyhow::Result<::datasets::io::InputsProtected> {
    let protected = ::datasets::io::protect_inputs(inputs.iter().copied());
    ::datasets::io::check_outputs(outputs)?;
    Ok(protected)
}
