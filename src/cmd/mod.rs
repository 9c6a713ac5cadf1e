//! One module per command family; each parses nothing itself beyond its clap types and calls
//! library functions.

pub mod calibrate;
pub mod campaign;
pub mod datasets;
pub mod demo;
pub mod energy;
pub mod meter;
pub mod predict;
pub mod quantity;
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

/// What `--format` picks in every command: the output format (the type of the files a command
/// writes is `--file-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

/// The value parser of a flag that was renamed or replaced: using it is a usage error (exit
/// status 2) that names what to write instead, never a silent change of meaning.
#[derive(Debug, Clone, Copy)]
pub struct Renamed(pub &'static str);

impl clap::builder::TypedValueParser for Renamed {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        _value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let old = arg
            .and_then(|a| a.get_long())
            .map_or(String::new(), |l| format!("--{l} "));
        Err(clap::Error::raw(
            clap::error::ErrorKind::UnknownArgument,
            format!("{old}was replaced: use {}\n", self.0),
        )
        .with_cmd(cmd))
    }
}
