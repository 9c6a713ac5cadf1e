//! Snapshot tests (insta) of what a user reads: the `--help` of every command and subcommand,
//! found by walking the command tree, and the messages and exit statuses of common mistakes.
//! A changed text fails here and writes `tests/cli/snapshots/*.snap.new` to review; accept a
//! deliberate change with `INSTA_UPDATE=always cargo test --test cli snapshots` (or
//! `cargo insta review`).

use std::process::Command;

use super::common::bin;

/// Run the binary from the checkout root with a clean, fixed environment.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    // Help shows the current value of `env` options; error text must not depend on them.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MIGWATT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("COLUMNS", "100").env("NO_COLOR", "1");
    let out = cmd.output().expect("run migwatt");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The subcommand names listed under "Commands:" in a help text (not `help` itself).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_help_text() {
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, Some(0), "migwatt {args:?}: {stderr}");
        assert!(
            stderr.is_empty(),
            "migwatt {args:?} wrote to stderr: {stderr}"
        );
        let name = if path.is_empty() {
            "help".to_owned()
        } else {
            format!("help_{}", path.join("_"))
        };
        insta::assert_snapshot!(name, stdout);
        seen += 1;
        for sub in subcommands(&stdout) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
    }
    // The walk must reach the whole tree (10 top-level commands and their subcommands).
    assert!(
        seen > 25,
        "only {seen} help texts found: the Commands: parser is broken"
    );
}

#[test]
fn subcommands_are_parsed_from_a_help_text() {
    let help = "Usage: migwatt <COMMAND>\n\nCommands:\n  meter      Watts up\n  \
                integrate  Integrate\n             more text\n  help       Print\n\nOptions:\n  -h\n";
    assert_eq!(subcommands(help), ["meter", "integrate"]);
}

/// Common mistakes: the status and both streams, exactly as a user sees them.
#[test]
fn messages_of_common_mistakes() {
    let cases: &[(&str, &[&str])] = &[
        ("no_command", &[]),
        ("unknown_command", &["migrate"]),
        ("renamed_flag", &["evaluate", "--history"]),
        ("renamed_folder_flag", &["predict", "--history", "h"]),
        (
            "rate_given_as_a_size",
            &[
                "predict",
                "--vm-mem",
                "256MiB",
                "--dirty-rate",
                "6MiB/s",
                "--rate",
                "32M",
            ],
        ),
        (
            "size_beyond_any_plausible_value",
            &[
                "predict",
                "--vm-mem",
                "1e308B",
                "--dirty-rate",
                "6MiB/s",
                "--rate",
                "12MiB/s",
            ],
        ),
        (
            "duration_without_unit",
            &["calibrate", "migrate", "--timeout", "120"],
        ),
        (
            "missing_samples_folder",
            &[
                "integrate",
                "--samples-dir",
                "no/such/samples",
                "--windows",
                "no/such/windows.parquet",
                "--p0",
                "hostA=100",
                "--out",
                "no/such/energy.parquet",
            ],
        ),
        (
            "missing_dataset_file",
            &["datasets", "check", "no/such/file.parquet"],
        ),
        (
            "missing_coefficient_folder",
            &["models", "list", "no/such/models"],
        ),
        (
            "missing_campaign_config",
            &["calibrate", "run", "no/such/campaign.toml"],
        ),
        (
            "host_name_leaving_its_folder",
            &[
                "meter",
                "capture",
                "--out-dir",
                "no/such/capture",
                "--port",
                "../evil=/dev/ttyUSB0",
            ],
        ),
    ];
    for (name, args) in cases {
        let (code, stdout, stderr) = run(args);
        let seen = format!(
            "$ migwatt {}\nexit status: {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            args.join(" "),
            code.map_or("signal".to_owned(), |c| c.to_string()),
        );
        insta::assert_snapshot!(format!("error_{name}"), seen);
        assert_ne!(code, Some(0), "{name}: a mistake must not exit 0");
    }
}
