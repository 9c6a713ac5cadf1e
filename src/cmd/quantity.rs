//! Value parsers of every flag that takes a quantity, all on `datasets::quantity`, each with
//! its own type so that a test can find every such flag (tests/cli: `quantity_flags`).

use std::time::Duration;

use datasets::quantity::{self, QuantityError};

/// A size flag's value (`--vm-mem 4GiB`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    /// Bytes.
    pub bytes: f64,
}

/// A rate flag's value (`--rate 800Mbit/s`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Bytes per second.
    pub bytes_per_s: f64,
}

/// A time flag's value (`--from 2026-11-25T10:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// ns since the Unix epoch.
    pub ns: i64,
}

/// Parse a size (see `datasets::quantity::parse_size_bytes`).
pub fn size(text: &str) -> Result<Size, QuantityError> {
    quantity::parse_size_bytes(text).map(|bytes| Size { bytes })
}

/// Parse a rate (see `datasets::quantity::parse_rate_bytes_per_s`).
pub fn rate(text: &str) -> Result<Rate, QuantityError> {
    quantity::parse_rate_bytes_per_s(text).map(|bytes_per_s| Rate { bytes_per_s })
}

/// Parse a duration (see `datasets::quantity::parse_duration`).
pub fn duration(text: &str) -> Result<Duration, QuantityError> {
    quantity::parse_duration(text)
}

/// Parse a time (see `datasets::quantity::parse_utc_ns`).
pub fn utc(text: &str) -> Result<Utc, QuantityError> {
    quantity::parse_utc_ns(text).map(|ns| Utc { ns })
}

#[cfg(test)]
mod tests {
    use std::any::TypeId;

    use clap::CommandFactory;

    use super::*;

    /// Every flag of the whole CLI whose value is a quantity, with its type.
    fn quantity_flags() -> Vec<(String, &'static str)> {
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, &'static str)>) {
            for arg in cmd.get_arguments() {
                let t = arg.get_value_parser().type_id();
                let kind = if t == TypeId::of::<Size>() {
                    "size"
                } else if t == TypeId::of::<Rate>() {
                    "rate"
                } else if t == TypeId::of::<Duration>() {
                    "duration"
                } else if t == TypeId::of::<Utc>() {
                    "time"
                } else {
                    continue;
                };
                let name = arg.get_long().unwrap_or_else(|| arg.get_id().as_str());
                out.push((format!("{path} --{name}"), kind));
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut out = Vec::new();
        walk(&crate::Cli::command(), "migwatt", &mut out);
        out
    }

    /// The value `flag` of the real argument definition gives for `text` (None: refused).
    fn parse<T: Clone + Send + Sync + 'static>(flag: &str, text: &str) -> Result<T, String> {
        let (path, long) = flag.rsplit_once(" --").unwrap();
        let mut cmd = crate::Cli::command();
        for name in path.split(' ').skip(1) {
            cmd = cmd.find_subcommand(name).unwrap().clone();
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .unwrap()
            .clone()
            .required(false)
            .requires(clap::builder::Resettable::Reset)
            .conflicts_with(clap::builder::Resettable::Reset);
        let id = arg.get_id().clone();
        clap::Command::new("t")
            .arg(arg)
            .try_get_matches_from(["t", &format!("--{long}"), text])
            .map(|m| m.get_one::<T>(id.as_str()).unwrap().clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_quantity_flag_uses_the_one_parser() {
        let flags = quantity_flags();
        let names: Vec<&str> = flags.iter().map(|(f, _)| f.as_str()).collect();
        // The whole surface; a new quantity flag is added here on purpose.
        let expected = [
            "migwatt meter capture --interval",
            "migwatt meter capture --duration",
            "migwatt meter capture --flush-every",
            "migwatt meter capture --segment",
            "migwatt meter capture --stall-timeout",
            "migwatt meter capture --settle",
            "migwatt meter emulate --duration",
            "migwatt meter baseline --from",
            "migwatt meter baseline --to",
            "migwatt calibrate migrate --bandwidth",
            "migwatt calibrate migrate --downtime-limit",
            "migwatt calibrate migrate --timeout",
            "migwatt calibrate migrate --dirty-rate-sample",
            "migwatt calibrate probe --windows",
            // Added on main without this list (train gamma's artefact rule).
            "migwatt train gamma --min-round",
            "migwatt predict --rate",
            "migwatt predict --rate-delta",
            "migwatt predict --rate-min",
            "migwatt predict --rate-max",
            "migwatt predict --downtime-limit",
            "migwatt predict --vm-mem",
            "migwatt predict --dirty-rate",
            "migwatt predict --hot-set",
            "migwatt rank --rate",
            "migwatt rank --rate-delta",
            "migwatt rank --rate-min",
            "migwatt rank --rate-max",
            "migwatt rank --downtime-limit",
            "migwatt evaluate --rate",
            "migwatt evaluate --rate-delta",
            "migwatt evaluate --rate-min",
            "migwatt evaluate --rate-max",
            "migwatt evaluate --downtime-limit",
        ];
        let mut got = names.clone();
        got.sort_unstable();
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert_eq!(got, want);
        // The same string means the same in every flag of a kind, and is refused alike.
        for (flag, kind) in &flags {
            match *kind {
                "size" => {
                    assert_eq!(parse::<Size>(flag, "4GiB").unwrap().bytes, 4294967296.0);
                    assert_eq!(parse::<Size>(flag, "2GB").unwrap().bytes, 2e9);
                    let e = parse::<Size>(flag, "4G").unwrap_err();
                    assert!(e.contains("write 4GiB or 4GB"), "{flag}: {e}");
                }
                "rate" => {
                    assert_eq!(
                        parse::<Rate>(flag, "32MiB/s").unwrap().bytes_per_s,
                        33554432.0
                    );
                    assert_eq!(parse::<Rate>(flag, "100Mbps").unwrap().bytes_per_s, 12.5e6);
                    let e = parse::<Rate>(flag, "32M").unwrap_err();
                    assert!(e.contains("write 32MiB/s or 32MB/s"), "{flag}: {e}");
                    let e = parse::<Rate>(flag, "16").unwrap_err();
                    assert!(e.contains("write 16B/s"), "{flag}: {e}");
                }
                "duration" => {
                    assert_eq!(
                        parse::<Duration>(flag, "1.5s").unwrap(),
                        Duration::from_millis(1500)
                    );
                    assert_eq!(
                        parse::<Duration>(flag, "2m").unwrap(),
                        Duration::from_secs(120)
                    );
                    let e = parse::<Duration>(flag, "300").unwrap_err();
                    assert!(e.contains("write 300s or 300ms"), "{flag}: {e}");
                }
                _ => {
                    assert_eq!(
                        parse::<Utc>(flag, "1700000000.5").unwrap().ns,
                        1_700_000_000_500_000_000
                    );
                    assert!(parse::<Utc>(flag, "noon").is_err());
                }
            }
        }
    }

    #[test]
    fn no_other_flag_takes_a_quantity_as_text() {
        // A flag whose placeholder says it takes a quantity but that is parsed elsewhere (as
        // a String or a bare number) would bypass the one parser.
        fn walk(cmd: &clap::Command, path: &str, bad: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let names = arg.get_value_names().unwrap_or_default();
                let quantity = names
                    .iter()
                    .any(|n| ["SIZE", "RATE", "DURATION", "T"].contains(&n.as_str()));
                let t = arg.get_value_parser().type_id();
                let typed = [
                    TypeId::of::<Size>(),
                    TypeId::of::<Rate>(),
                    TypeId::of::<Duration>(),
                    TypeId::of::<Utc>(),
                ]
                .iter()
                .any(|id| t == *id);
                if quantity && !typed {
                    bad.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), bad);
            }
        }
        let mut bad = Vec::new();
        walk(&crate::Cli::command(), "migwatt", &mut bad);
        assert!(bad.is_empty(), "{bad:?}");
    }
}
