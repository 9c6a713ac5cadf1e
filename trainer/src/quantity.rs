//! Parsing of sizes, rates and durations with units at the CLI edge (`1GiB`, `800Mbit/s`,
//! `60MB/s`, `300ms`), into SI base units (bytes, bytes/s, seconds). Also the SI factor of
//! the simple unit strings coefficient files use (`B`, `MB/s`, `J/MB`).

/// A quantity that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}': {problem}")]
pub struct QuantityError {
    /// The text that was parsed.
    pub text: String,
    /// What was expected.
    pub problem: String,
}

fn err(text: &str, problem: &str) -> QuantityError {
    QuantityError {
        text: text.to_string(),
        problem: problem.to_string(),
    }
}

/// Split `12.5MiB` into (12.5, "MiB").
fn split_number(text: &str) -> Result<(f64, &str), QuantityError> {
    let t = text.trim();
    let end = t
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')))
        .map_or(t.len(), |(i, _)| i);
    // An 'e' starting a unit (none of ours do) would be eaten; our units start with k,K,M,G,T,B,b,s,m,u,n.
    let (num, unit) = t.split_at(end);
    let v: f64 = num
        .parse()
        .map_err(|_| err(text, "expected a number followed by a unit"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(err(text, "expected a finite non-negative number"));
    }
    Ok((v, unit.trim()))
}

/// Bytes per unit of a data size symbol (`B`, `kB`, `MiB`, `Mbit`, `Gb`...).
pub fn size_factor(unit: &str) -> Option<f64> {
    let (prefix, bits) = if let Some(p) = unit.strip_suffix("bit") {
        (p, true)
    } else if let Some(p) = unit.strip_suffix('B') {
        (p, false)
    } else if let Some(p) = unit.strip_suffix('b') {
        (p, true)
    } else {
        return None;
    };
    let m = match prefix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some(if bits { m / 8.0 } else { m })
}

/// Seconds per unit of a time symbol (`s`, `ms`, `us`, `ns`, `min`, `h`).
pub fn time_factor(unit: &str) -> Option<f64> {
    Some(match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "ns" => 1e-9,
        "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    })
}

/// Largest size accepted, bytes (1 EiB): beyond any guest, and far from where the models'
/// arithmetic overflows.
pub const MAX_SIZE_BYTES: f64 = (1u64 << 60) as f64;
/// Largest rate accepted, bytes/s (1 EB/s).
pub const MAX_RATE_BYTES_PER_S: f64 = 1e18;
/// Longest duration accepted, s (about 31 years).
pub const MAX_DURATION_S: f64 = 1e9;

/// `v` if it is at most `max`, else an error saying the range.
fn at_most(text: &str, v: f64, max: f64, unit: &str) -> Result<f64, QuantityError> {
    if v <= max {
        Ok(v)
    } else {
        Err(err(
            text,
            &format!("{v:e} {unit} is beyond any plausible value (at most {max:e} {unit})"),
        ))
    }
}

/// A size in bytes: `4096`, `128MiB`, `1GiB`, `2GB` (at most [`MAX_SIZE_BYTES`]).
pub fn parse_size_bytes(text: &str) -> Result<f64, QuantityError> {
    let (v, unit) = split_number(text)?;
    if unit.is_empty() {
        return at_most(text, v, MAX_SIZE_BYTES, "B");
    }
    let bytes = size_factor(unit).map(|f| v * f).ok_or_else(|| {
        err(
            text,
            "expected a size unit: B, kB, MB, GB, KiB, MiB, GiB, bit, Mbit",
        )
    })?;
    at_most(text, bytes, MAX_SIZE_BYTES, "B")
}

/// A rate in bytes/s: `60MB/s`, `800Mbit/s`, `100Mbps`, `16MiB/s`, or a bare number of bytes/s
/// (at most [`MAX_RATE_BYTES_PER_S`]).
pub fn parse_rate_bytes_per_s(text: &str) -> Result<f64, QuantityError> {
    let r = parse_rate_any(text)?;
    at_most(text, r, MAX_RATE_BYTES_PER_S, "B/s")
}

fn parse_rate_any(text: &str) -> Result<f64, QuantityError> {
    let (v, unit) = split_number(text)?;
    if unit.is_empty() {
        return Ok(v);
    }
    let size = if let Some(s) = unit.strip_suffix("/s") {
        s
    } else if let Some(s) = unit.strip_suffix("bps") {
        // Mbps, Gbps: bits per second by convention.
        return size_factor(&format!("{s}bit"))
            .map(|f| v * f)
            .ok_or_else(|| err(text, "expected a rate unit such as Mbps"));
    } else {
        return Err(err(
            text,
            "expected a rate such as 60MB/s, 800Mbit/s or 100Mbps",
        ));
    };
    size_factor(size)
        .map(|f| v * f)
        .ok_or_else(|| err(text, "expected a rate such as 60MB/s, 800Mbit/s or 100Mbps"))
}

/// A duration in seconds; a bare number is taken in `default_unit` (`ms` for downtime limits).
pub fn parse_duration_s(text: &str, default_unit: &str) -> Result<f64, QuantityError> {
    let (v, unit) = split_number(text)?;
    let unit = if unit.is_empty() { default_unit } else { unit };
    let s = time_factor(unit)
        .map(|f| v * f)
        .ok_or_else(|| err(text, "expected a duration unit: s, ms, us, ns"))?;
    at_most(text, s, MAX_DURATION_S, "s")
}

/// SI factor of a coefficient-file unit made of one numerator and at most one denominator
/// symbol (`B`, `J`, `1`, `MB/s`, `J/MB`, `1/s`, `s/B`): value x factor = value in SI units.
pub fn si_factor(unit: &str) -> Option<f64> {
    let sym = |s: &str| -> Option<f64> {
        let s = s.trim();
        match s {
            "1" | "" => Some(1.0),
            "J" => Some(1.0),
            "kJ" => Some(1e3),
            "Wh" => Some(3600.0),
            _ => size_factor(s).or_else(|| time_factor(s)),
        }
    };
    let mut parts = unit.split('/');
    let num = sym(parts.next()?)?;
    let mut f = num;
    for d in parts {
        f /= sym(d)?;
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_examples() {
        assert_eq!(parse_size_bytes("1GiB").unwrap(), 1073741824.0);
        assert_eq!(parse_size_bytes("128MiB").unwrap(), 134217728.0);
        assert_eq!(parse_size_bytes("4096").unwrap(), 4096.0);
        assert_eq!(parse_size_bytes("2GB").unwrap(), 2e9);
        assert_eq!(parse_rate_bytes_per_s("800Mbit/s").unwrap(), 1e8);
        assert_eq!(parse_rate_bytes_per_s("60MB/s").unwrap(), 6e7);
        assert_eq!(parse_rate_bytes_per_s("100Mbps").unwrap(), 12.5e6);
        assert_eq!(parse_rate_bytes_per_s("16MiB/s").unwrap(), 16777216.0);
        assert!((parse_duration_s("300", "ms").unwrap() - 0.3).abs() < 1e-15);
        assert_eq!(parse_duration_s("2s", "ms").unwrap(), 2.0);
        assert_eq!(si_factor("J/MB"), Some(1e-6));
        assert_eq!(si_factor("MB/s"), Some(1e6));
        assert_eq!(si_factor("1/s"), Some(1.0));
        assert_eq!(si_factor("page"), None);
    }

    #[test]
    fn rejects_garbage_naming_what_was_expected() {
        for bad in ["", "MB", "1XB", "-1MB", "1MB/h", "abc", "1.2.3GB"] {
            assert!(parse_size_bytes(bad).is_err() || parse_rate_bytes_per_s(bad).is_err());
        }
        let e = parse_rate_bytes_per_s("60MB").unwrap_err().to_string();
        assert!(e.contains("60MB") && e.contains("expected"), "{e}");
    }

    proptest! {
        #[test]
        fn size_round_trips(v in 0u32..1_000_000, i in 0usize..8) {
            let units = ["B", "kB", "MB", "GB", "KiB", "MiB", "GiB", "Mbit"];
            let f = size_factor(units[i]).unwrap();
            let got = parse_size_bytes(&format!("{v}{}", units[i])).unwrap();
            prop_assert!((got - v as f64 * f).abs() <= 1e-9 * got.max(1.0));
            let r = parse_rate_bytes_per_s(&format!("{v}{}/s", units[i])).unwrap();
            prop_assert_eq!(r, got);
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            // Whatever the text, a parse either fails or gives a finite, non-negative value.
            for v in [
                parse_size_bytes(&s),
                parse_rate_bytes_per_s(&s),
                parse_duration_s(&s, "ms"),
            ]
            .into_iter()
            .flatten()
            {
                prop_assert!(v.is_finite() && v >= 0.0, "{s:?} -> {v}");
            }
        }
    }
}
