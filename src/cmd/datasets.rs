//! `migwatt datasets ...`: validate dataset files against their schemas.

use std::path::PathBuf;
use std::process::ExitCode;

use datasets::check::{check_path, CheckReport};

/// `migwatt datasets` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DatasetsCommand {
    /// Check dataset files (a file or a folder) against their schemas; exit 1 on violations
    ///
    /// Each Parquet file's kind comes from its `migwatt.dataset` metadata. Reports every
    /// missing column, wrong type, null where none is allowed, value outside its unit's range
    /// (e.g. seconds where ns are expected), unsorted timestamp and duplicate key, with
    /// 0-based row numbers.
    Check(CheckArgs),
}

/// Arguments of `datasets check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Dataset file or folder (searched recursively for *.parquet)
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: super::Format,
    /// The same as --format json (the spelling datasets/README.md documented before --format)
    #[arg(long, hide = true, conflicts_with = "format")]
    pub json: bool,
}

/// Run a `datasets` subcommand.
pub fn run(c: DatasetsCommand) -> anyhow::Result<ExitCode> {
    match c {
        DatasetsCommand::Check(a) => check(a),
    }
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = check_path(&a.path)?;
    if a.json || a.format == super::Format::Json {
        outln!("{}", to_json(&report));
    } else {
        for v in &report.violations {
            outln!("{v}");
        }
        let rows: usize = report.files.iter().map(|f| f.rows).sum();
        let mut kinds: Vec<&str> = report
            .files
            .iter()
            .map(|f| f.kind.as_deref().unwrap_or("unknown"))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        outln!(
            "{} file(s), {rows} row(s) ({}): {} violation(s)",
            report.files.len(),
            kinds.join(", "),
            report.violations.len()
        );
    }
    Ok(if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn to_json(r: &CheckReport) -> serde_json::Value {
    serde_json::json!({
        "files": r.files.iter().map(|f| serde_json::json!({
            "file": f.file.display().to_string(),
            "dataset": f.kind,
            "schema_version": f.version,
            "rows": f.rows,
        })).collect::<Vec<_>>(),
        "violations": r.violations.iter().map(|v| serde_json::json!({
            "file": v.file.display().to_string(),
            "row": v.row,
            "column": v.column,
            "problem": v.problem,
        })).collect::<Vec<_>>(),
    })
}
