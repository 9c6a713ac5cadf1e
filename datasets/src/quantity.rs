//! Quantities with units: the one parser behind every flag, config key, log figure and
//! coefficient-file unit of migwatt, so that a string means the same everywhere.
//!
//! - Sizes: a number and a unit. `B` is a byte, `bit` or `b` a bit; SI prefixes are powers
//!   of 10 (`k`, `M`, `G`, `T`: `2GB` = 2e9 B), IEC prefixes powers of 2 (`Ki`, `Mi`, `Gi`,
//!   `Ti`: `2GiB` = 2^31 B). `Mbit` = `Mb` = 1e6 bits.
//! - Rates: a size per second, `/s` or `ps`: `32MiB/s`, `32MB/s`, `800Mbit/s`, `100Mbps`,
//!   `60MBps`.
//! - Durations: `ns`, `us`, `ms`, `s`, `m` or `min`, `h`, decimals allowed (`50ms`, `1.5s`,
//!   `2m`).
//! - Times: RFC 3339 (`2026-11-25T10:00:00Z`, also with a space for the `T`) or Unix
//!   seconds (`1700000000.25`).
//!
//! A bare number is refused: the unit is part of the quantity. (Flags and keys whose name
//! carries the unit, such as `--interval-s` or `baseline_s`, take plain numbers and do not
//! come here.) Spellings that meant something else in earlier versions are refused with the
//! spellings to use instead: a prefix without `B` or `bit` (`32M`, which
//! `calibrate migrate --bandwidth` read as MiB) and `K`/`KB` (1000 or 1024?).
//!
//! [`Unit`] is the unit algebra of coefficient files (`J/B`, `s/B`, `1/s`): products and
//! quotients of the symbols above (and `J`, `W`, `Hz`, `V`, `A`, `page`, `1`), so every unit a
//! file passes the check with has an SI factor.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A quantity that does not parse; the message says what was expected. The caller adds which
/// flag or key it was (the text is in [`QuantityError::text`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct QuantityError {
    /// The text that was parsed.
    pub text: String,
    /// What was wrong and what to write instead.
    pub problem: String,
}

fn err(text: &str, problem: impl Into<String>) -> QuantityError {
    QuantityError {
        text: text.to_string(),
        problem: problem.into(),
    }
}

/// What a quantity measures, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Size,
    Rate,
    Duration,
}

impl Kind {
    fn examples(self) -> &'static str {
        match self {
            Kind::Size => "4GiB, 512MiB, 2GB or 4096B",
            Kind::Rate => "32MiB/s, 32MB/s, 800Mbit/s or 100Mbps",
            Kind::Duration => "50ms, 1.5s, 2m or 1h",
        }
    }

    /// `v` with the units a user most likely meant, for "write ... instead".
    fn suggest(self, v: &str, prefix: &str) -> String {
        let p = match prefix {
            "K" | "k" | "Ki" => ("k", "Ki"),
            "M" | "Mi" => ("M", "Mi"),
            "G" | "Gi" => ("G", "Gi"),
            "T" | "Ti" => ("T", "Ti"),
            _ => ("M", "Mi"),
        };
        match self {
            Kind::Size => format!("write {v}{}B or {v}{}B", p.1, p.0),
            Kind::Rate => format!("write {v}{}B/s or {v}{}B/s", p.1, p.0),
            Kind::Duration => format!("write {v}s or {v}ms"),
        }
    }
}

/// Split `12.5MiB` into ("12.5", 12.5, "MiB"); whitespace may separate them.
fn split(text: &str, kind: Kind) -> Result<(&str, f64, &str), QuantityError> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(err(text, "must not be negative"));
    }
    let b = t.as_bytes();
    let mut end = 0;
    while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
        end += 1;
    }
    // An exponent only when digits follow the `e` (no unit starts with `e`).
    if end > 0 && end < b.len() && matches!(b[end], b'e' | b'E') {
        let mut k = end + 1;
        if k < b.len() && matches!(b[k], b'+' | b'-') {
            k += 1;
        }
        if k < b.len() && b[k].is_ascii_digit() {
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            end = k;
        }
    }
    let (num, unit) = t.split_at(end);
    let v: f64 = num.parse().map_err(|_| {
        err(
            text,
            format!("expected a number and a unit, such as {}", kind.examples()),
        )
    })?;
    if !v.is_finite() {
        return Err(err(text, "expected a finite number"));
    }
    Ok((num, v, unit.trim()))
}

/// The prefixes of sizes and their factors.
fn prefix_factor(prefix: &str) -> Option<f64> {
    Some(match prefix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        _ => return None,
    })
}

/// Bytes per `unit` of a size (`B`, `kB`, `MiB`, `Mbit`, `Gb`...), or why not.
fn size_unit(num: &str, unit: &str, kind: Kind) -> Result<f64, String> {
    let (prefix, bits) = if let Some(p) = unit.strip_suffix("bit") {
        (p, true)
    } else if let Some(p) = unit.strip_suffix('B') {
        (p, false)
    } else if let Some(p) = unit.strip_suffix('b') {
        (p, true)
    } else if prefix_factor(unit).is_some() || unit == "K" {
        // `32M`: earlier versions read a bare prefix as MiB in some commands and 10^6 in
        // others; neither is assumed any more.
        return Err(format!(
            "'{unit}' alone is ambiguous (bytes or bits? 1000 or 1024?): {}",
            kind.suggest(num, unit)
        ));
    } else {
        return Err(format!(
            "unknown unit '{unit}': expected a quantity such as {}",
            kind.examples()
        ));
    };
    if prefix == "K" {
        let (rest, per) = (&unit[1..], if kind == Kind::Rate { "/s" } else { "" });
        return Err(format!(
            "'{unit}' is ambiguous: write {num}k{rest}{per} (1000) or {num}Ki{rest}{per} (1024)"
        ));
    }
    let f = prefix_factor(prefix).ok_or_else(|| {
        format!(
            "unknown prefix '{prefix}' in '{unit}': expected k, M, G, T (powers of 10) or Ki, Mi, Gi, Ti (powers of 2)"
        )
    })?;
    Ok(if bits { f / 8.0 } else { f })
}

/// A size in bytes: `4GiB`, `512MiB`, `2GB`, `4096B`, `1.5 MiB`, `800Mbit`.
fn parse_size_bytes_unbounded(text: &str) -> Result<f64, QuantityError> {
    let (num, v, unit) = split(text, Kind::Size)?;
    if unit.is_empty() {
        return Err(err(
            text,
            format!("a size needs a unit: write {num}B, or e.g. {num}MiB or {num}MB"),
        ));
    }
    if unit.ends_with("/s") || unit.ends_with("ps") {
        return Err(err(
            text,
            format!(
                "expected a size, not a rate: drop the per second, e.g. {}",
                Kind::Size.examples()
            ),
        ));
    }
    let f = size_unit(num, unit, Kind::Size).map_err(|p| err(text, p))?;
    Ok(v * f)
}

/// A rate in bytes/s: `32MiB/s`, `32MB/s`, `800Mbit/s`, `100Mbps` (bits), `60MBps` (bytes).
fn parse_rate_bytes_per_s_unbounded(text: &str) -> Result<f64, QuantityError> {
    let (num, v, unit) = split(text, Kind::Rate)?;
    if unit.is_empty() {
        return Err(err(
            text,
            format!(
                "a rate needs a unit: write {num}B/s, or e.g. {num}MiB/s, {num}MB/s or {num}Mbit/s"
            ),
        ));
    }
    let size = unit
        .strip_suffix("/s")
        .or_else(|| unit.strip_suffix("ps"))
        .map(str::trim_end);
    let Some(size) = size else {
        if size_unit(num, unit, Kind::Rate).is_ok() {
            return Err(err(
                text,
                format!("a rate is a size per second: write {num}{unit}/s"),
            ));
        }
        let problem = size_unit(num, unit, Kind::Rate).err().unwrap_or_default();
        return Err(err(text, problem));
    };
    let f = size_unit(num, size, Kind::Rate).map_err(|p| err(text, p))?;
    Ok(v * f)
}

/// Seconds per unit of a duration.
fn time_factor(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    })
}

/// A duration in seconds: `50ms`, `1.5s`, `2m`, `1h`, `250us`.
fn parse_duration_s_unbounded(text: &str) -> Result<f64, QuantityError> {
    let (num, v, unit) = split(text, Kind::Duration)?;
    if unit.is_empty() {
        return Err(err(
            text,
            format!(
                "a duration needs a unit: {}",
                Kind::Duration.suggest(num, "")
            ),
        ));
    }
    let f = time_factor(unit).ok_or_else(|| {
        err(
            text,
            format!("unknown unit '{unit}': expected ns, us, ms, s, m (minutes) or h"),
        )
    })?;
    Ok(v * f)
}

/// Largest size accepted, bytes (2^60: an exabyte; beyond it no plan is finite).
pub const MAX_SIZE_BYTES: f64 = (1u64 << 60) as f64;
/// Largest rate accepted, bytes/s.
pub const MAX_RATE_BYTES_PER_S: f64 = 1e18;
/// Largest duration accepted, s (about 31 years).
pub const MAX_DURATION_S: f64 = 1e9;

/// `v` if at most `max`: a larger value would make a loop or a plan unbounded.
fn at_most(text: &str, v: f64, max: f64, unit: &str) -> Result<f64, QuantityError> {
    if v > max {
        return Err(err(
            text,
            format!("{v:e} {unit} is beyond any plausible value (at most {max:e} {unit})"),
        ));
    }
    Ok(v)
}

/// A size in bytes: `4GiB`, `512MiB`, `2GB`, `4096B`, `800Mbit` (at most [`MAX_SIZE_BYTES`]).
pub fn parse_size_bytes(text: &str) -> Result<f64, QuantityError> {
    at_most(text, parse_size_bytes_unbounded(text)?, MAX_SIZE_BYTES, "B")
}

/// A rate in bytes/s: `32MiB/s`, `800Mbit/s`, `100Mbps` (at most [`MAX_RATE_BYTES_PER_S`]).
pub fn parse_rate_bytes_per_s(text: &str) -> Result<f64, QuantityError> {
    at_most(
        text,
        parse_rate_bytes_per_s_unbounded(text)?,
        MAX_RATE_BYTES_PER_S,
        "B/s",
    )
}

/// A duration in seconds: `50ms`, `1.5s`, `2m`, `1h`, `250us` (at most [`MAX_DURATION_S`]).
pub fn parse_duration_s(text: &str) -> Result<f64, QuantityError> {
    at_most(text, parse_duration_s_unbounded(text)?, MAX_DURATION_S, "s")
}

/// A duration: `50ms`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, QuantityError> {
    let s = parse_duration_s(text)?;
    Duration::try_from_secs_f64(s).map_err(|_| err(text, "too long"))
}

/// A time as UTC ns since the Unix epoch: RFC 3339 (`2026-11-25T10:00:00Z`, the `T` may be
/// a space as `date --rfc-3339=ns` prints, the offset is required) or Unix seconds
/// (`1700000000`, `1700000000.25`).
pub fn parse_utc_ns(text: &str) -> Result<i64, QuantityError> {
    let t = text.trim();
    if !t.is_empty()
        && t.bytes()
            .all(|c| c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return unix_seconds_ns(text, t);
    }
    parse_rfc3339_utc_ns(text)
}

/// RFC 3339 only (see [`parse_utc_ns`]): what a log's timestamp line holds.
pub fn parse_rfc3339_utc_ns(text: &str) -> Result<i64, QuantityError> {
    let t = text.trim();
    let bad = || {
        err(
            text,
            "expected an RFC 3339 time such as 2026-11-25T10:00:00Z or Unix seconds",
        )
    };
    if t.len() < 19 || t.len() > 40 {
        return Err(bad());
    }
    let normal = if t.as_bytes().get(10) == Some(&b' ') {
        let mut s = t.to_string();
        s.replace_range(10..11, "T");
        s
    } else {
        t.to_string()
    };
    chrono::DateTime::parse_from_rfc3339(&normal)
        .map_err(|_| bad())?
        .timestamp_nanos_opt()
        .ok_or_else(|| err(text, "out of range (years 1678 to 2261)"))
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` without a zone (a log line's prefix), taken as UTC.
pub fn parse_naive_utc_ns(text: &str) -> Result<i64, QuantityError> {
    let t = text.trim().replace(',', ".");
    let fmt = if t.contains('.') {
        "%Y-%m-%d %H:%M:%S%.f"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    chrono::NaiveDateTime::parse_from_str(&t, fmt)
        .map_err(|_| err(text, "expected a time such as 2026-11-25 10:00:00.5"))?
        .and_utc()
        .timestamp_nanos_opt()
        .ok_or_else(|| err(text, "out of range (years 1678 to 2261)"))
}

fn unix_seconds_ns(text: &str, t: &str) -> Result<i64, QuantityError> {
    let bad = || {
        err(
            text,
            "expected Unix seconds such as 1700000000.25 or an RFC 3339 time",
        )
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let secs: i64 = whole.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let frac_ns: i64 = format!("{frac:0<9}").parse().unwrap_or(0);
    let frac_ns = if whole.starts_with('-') {
        -frac_ns
    } else {
        frac_ns
    };
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(frac_ns))
        .ok_or_else(|| err(text, "out of range (years 1678 to 2261)"))
}

/// A unit as a product of symbols with integer exponents (`J/B` = J^1 B^-1). Symbols are
/// kept as written (`MB` is not rewritten to `B`), and each has an SI factor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unit {
    exponents: BTreeMap<String, i32>,
}

/// A unit string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unit '{text}': {problem}")]
pub struct UnitError {
    /// The text that was parsed.
    pub text: String,
    /// What was wrong.
    pub problem: String,
}

/// SI factor of one symbol of a coefficient-file unit: sizes (`B`, `MB`, `MiB`, `bit`...),
/// durations (`ns` .. `h`), energy (`J`, `kJ`, `Wh`, `kWh`), power (`W`, `kW`), `Hz`, `V`,
/// `A`, and the counts `page` and `%` (0.01).
pub fn symbol_factor(sym: &str) -> Option<f64> {
    match sym {
        "J" | "W" | "Hz" | "V" | "A" | "page" => Some(1.0),
        "kJ" | "kW" => Some(1e3),
        "Wh" => Some(3600.0),
        "kWh" => Some(3.6e6),
        "%" => Some(0.01),
        "min" | "h" | "ms" | "us" | "ns" | "s" => time_factor(sym),
        _ => size_unit("1", sym, Kind::Size).ok(),
    }
}

impl Unit {
    /// The dimensionless unit `1`.
    pub fn one() -> Self {
        Unit::default()
    }

    /// Parse `A*B/C^2`: symbols of [`symbol_factor`], `1`, integer exponents.
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let err = |problem: &str| UnitError {
            text: text.to_string(),
            problem: problem.to_string(),
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(err("empty"));
        }
        let mut unit = Unit::one();
        let mut sign = 1;
        let mut rest = t;
        loop {
            let end = rest.find(['*', '/']).unwrap_or(rest.len());
            let factor = rest[..end].trim();
            let (sym, exp) = match factor.split_once('^') {
                Some((s, e)) => (
                    s.trim(),
                    e.trim()
                        .parse::<i32>()
                        .map_err(|_| err("exponent is not an integer"))?,
                ),
                None => (factor, 1),
            };
            if sym.is_empty() {
                return Err(err("missing symbol"));
            }
            if sym != "1" {
                if symbol_factor(sym).is_none() {
                    return Err(err(&format!(
                        "'{sym}' is not a unit migwatt converts (B, kB, MiB, bit, s, ms, J, W, page, ...)"
                    )));
                }
                *unit.exponents.entry(sym.to_string()).or_insert(0) += sign * exp;
            }
            if end == rest.len() {
                break;
            }
            sign = if rest.as_bytes()[end] == b'/' { -1 } else { 1 };
            rest = &rest[end + 1..];
        }
        unit.exponents.retain(|_, e| *e != 0);
        Ok(unit)
    }

    /// `self / other`.
    pub fn div(&self, other: &Unit) -> Unit {
        let mut u = self.clone();
        for (s, e) in &other.exponents {
            *u.exponents.entry(s.clone()).or_insert(0) -= e;
        }
        u.exponents.retain(|_, e| *e != 0);
        u
    }

    /// True for the dimensionless unit.
    pub fn is_one(&self) -> bool {
        self.exponents.is_empty()
    }

    /// value x factor = the value in SI units (bytes, seconds, J...): `J/MB` gives 1e-6.
    pub fn si_factor(&self) -> f64 {
        self.exponents
            .iter()
            .map(|(s, e)| symbol_factor(s).unwrap_or(1.0).powi(*e))
            .product()
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |e: i32, s: &str| {
            if e.abs() == 1 {
                s.to_string()
            } else {
                format!("{s}^{}", e.abs())
            }
        };
        let num: Vec<String> = self
            .exponents
            .iter()
            .filter(|(_, e)| **e > 0)
            .map(|(s, e)| part(*e, s))
            .collect();
        let den: Vec<String> = self
            .exponents
            .iter()
            .filter(|(_, e)| **e < 0)
            .map(|(s, e)| part(*e, s))
            .collect();
        if num.is_empty() {
            write!(f, "1")?;
        } else {
            write!(f, "{}", num.join("*"))?;
        }
        for d in den {
            write!(f, "/{d}")?;
        }
        Ok(())
    }
}

/// The SI unit implied by a column name's suffix (`v_mig_bytes` -> `B`), if it has one.
pub fn unit_from_column_name(column: &str) -> Option<&'static str> {
    const SUFFIXES: [(&str, &str); 14] = [
        ("_bytes_per_s", "B/s"),
        ("_pages_per_s", "page/s"),
        ("_bytes", "B"),
        ("_pages", "page"),
        ("_ns", "ns"),
        ("_ms", "ms"),
        ("_s", "s"),
        ("_j", "J"),
        ("_w", "W"),
        ("_hz", "Hz"),
        ("_v", "V"),
        ("_a", "A"),
        ("_ratio", "1"),
        ("_count", "1"),
    ];
    let lower = column.to_ascii_lowercase();
    if matches!(lower.as_str(), "gamma" | "coverage") {
        return Some("1");
    }
    SUFFIXES
        .iter()
        .find(|(s, _)| lower.ends_with(s))
        .map(|(_, u)| *u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn sizes() {
        let ok = |t: &str| parse_size_bytes(t).unwrap();
        assert_eq!(ok("1GiB"), 1073741824.0);
        assert_eq!(ok("128MiB"), 128.0 * MIB);
        assert_eq!(ok("1.5 MiB"), 1.5 * MIB);
        assert_eq!(ok("4096B"), 4096.0);
        assert_eq!(ok("2GB"), 2e9);
        assert_eq!(ok("100 kB"), 1e5);
        assert_eq!(ok("800Mbit"), 1e8);
        assert_eq!(ok("800Mb"), 1e8);
        assert_eq!(ok("8bit"), 1.0);
        assert_eq!(ok("1e3B"), 1000.0);
        assert_eq!(ok("0B"), 0.0);
    }

    #[test]
    fn rates() {
        let ok = |t: &str| parse_rate_bytes_per_s(t).unwrap();
        assert_eq!(ok("32MiB/s"), 32.0 * MIB);
        assert_eq!(ok("32MB/s"), 32e6);
        assert_eq!(ok("800Mbit/s"), 1e8);
        assert_eq!(ok("800Mb/s"), 1e8);
        assert_eq!(ok("100Mbps"), 12.5e6);
        assert_eq!(ok("60MBps"), 60e6);
        assert_eq!(ok("1Gbit/s"), 1.25e8);
        assert_eq!(ok("16 MiB/s"), 16.0 * MIB);
        assert_eq!(ok("16B/s"), 16.0);
    }

    #[test]
    fn durations() {
        let ok = |t: &str| parse_duration_s(t).unwrap();
        assert_eq!(ok("50ms"), 0.05);
        assert_eq!(ok("1.5s"), 1.5);
        assert_eq!(ok("2m"), 120.0);
        assert_eq!(ok("2min"), 120.0);
        assert_eq!(ok("1h"), 3600.0);
        assert_eq!(ok("250us"), 250e-6);
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn old_spellings_are_refused_with_what_to_write() {
        let e = |f: fn(&str) -> Result<f64, QuantityError>, t: &str| f(t).unwrap_err().problem;
        let m = e(parse_rate_bytes_per_s, "32M");
        assert!(m.contains("write 32MiB/s or 32MB/s"), "{m}");
        let m = e(parse_rate_bytes_per_s, "32M/s");
        assert!(m.contains("write 32MiB/s or 32MB/s"), "{m}");
        let m = e(parse_size_bytes, "4G");
        assert!(m.contains("write 4GiB or 4GB"), "{m}");
        let m = e(parse_size_bytes, "4KB");
        assert!(m.contains("4kB (1000)") && m.contains("4KiB (1024)"), "{m}");
        let m = e(parse_rate_bytes_per_s, "16");
        assert!(m.contains("write 16B/s"), "{m}");
        let m = e(parse_size_bytes, "4096");
        assert!(m.contains("write 4096B"), "{m}");
        let m = e(parse_duration_s, "300");
        assert!(m.contains("write 300s or 300ms"), "{m}");
        let m = e(parse_rate_bytes_per_s, "60MB");
        assert!(m.contains("write 60MB/s"), "{m}");
        let m = e(parse_size_bytes, "60MB/s");
        assert!(m.contains("not a rate"), "{m}");
    }

    #[test]
    fn garbage_is_refused_naming_what_was_expected() {
        for bad in [
            "", "MB", "1XB", "-1MB", "abc", "1.2.3GB", "1e", "1 parsec", "NaNB",
        ] {
            let size = parse_size_bytes(bad);
            let rate = parse_rate_bytes_per_s(bad);
            let duration = parse_duration_s(bad);
            assert!(size.is_err(), "size {bad:?}: {size:?}");
            assert!(rate.is_err(), "rate {bad:?}: {rate:?}");
            assert!(duration.is_err(), "duration {bad:?}: {duration:?}");
            assert_eq!(size.unwrap_err().text, bad);
        }
        assert!(parse_rate_bytes_per_s("1MB/h").is_err());
        assert!(parse_duration_s("5 parsecs").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_utc_ns("1970-01-01T00:00:01.5Z").unwrap(),
            1_500_000_000
        );
        assert_eq!(
            parse_utc_ns("1970-01-01 00:00:02.000000001+00:00").unwrap(),
            2_000_000_001
        );
        assert_eq!(
            parse_utc_ns("2023-11-14T23:13:20.5+01:00").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_utc_ns("1700000000").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_utc_ns("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_utc_ns("1700000000.25").unwrap(),
            1_700_000_000_250_000_000
        );
        assert!(parse_rfc3339_utc_ns("1700000000").is_err());
        assert!(parse_utc_ns("yesterday").is_err());
        assert!(parse_utc_ns("Job type: Completed").is_err());
        assert_eq!(
            parse_naive_utc_ns("1970-01-01 00:01:00").unwrap(),
            60e9 as i64
        );
        assert_eq!(
            parse_naive_utc_ns("1970-01-01 00:01:00,5").unwrap(),
            60_500_000_000
        );
    }

    #[test]
    fn units_parse_divide_and_convert() {
        let u = |t: &str| Unit::parse(t).unwrap();
        assert_eq!(u("J").div(&u("B")).to_string(), "J/B");
        assert_eq!(Unit::one().div(&u("B/s")).to_string(), "s/B");
        assert_eq!(Unit::one().div(&u("s")).to_string(), "1/s");
        assert_eq!(u("J*s/B/s").to_string(), "J/B");
        assert_eq!(u("B^2/s^2").to_string(), "B^2/s^2");
        assert!(u("1").is_one());
        assert_eq!(u("J/MB").si_factor(), 1e-6);
        assert_eq!(u("MB/s").si_factor(), 1e6);
        assert_eq!(u("MiB/s").si_factor(), MIB);
        assert_eq!(u("1/s").si_factor(), 1.0);
        assert_eq!(u("page/s").si_factor(), 1.0);
        assert_eq!(u("kWh").si_factor(), 3.6e6);
        for bad in ["", "J//B", "2x", "parsec", "m^2/s^2", "M"] {
            assert!(Unit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn infers_units_from_names() {
        assert_eq!(unit_from_column_name("v_mig_bytes"), Some("B"));
        assert_eq!(unit_from_column_name("dirty_rate_bytes_per_s"), Some("B/s"));
        assert_eq!(unit_from_column_name("e_mig_j"), Some("J"));
        assert_eq!(unit_from_column_name("duration_s"), Some("s"));
        assert_eq!(unit_from_column_name("gamma"), Some("1"));
        assert_eq!(unit_from_column_name("x1"), None);
        for (suffix, unit) in [("_bytes_per_s", "B/s"), ("_pages", "page"), ("_w", "W")] {
            let u = unit_from_column_name(&format!("x{suffix}")).unwrap();
            assert_eq!(u, unit);
            assert!(Unit::parse(u).is_ok(), "{u}");
        }
    }

    proptest! {
        #[test]
        fn every_size_unit_is_also_a_rate_unit(v in 0u32..1_000_000, i in 0usize..10) {
            let units = ["B", "kB", "MB", "GB", "KiB", "MiB", "GiB", "bit", "Mbit", "Gb"];
            let size = parse_size_bytes(&format!("{v}{}", units[i])).unwrap();
            let rate = parse_rate_bytes_per_s(&format!("{v}{}/s", units[i])).unwrap();
            let ps = parse_rate_bytes_per_s(&format!("{v}{}ps", units[i])).unwrap();
            prop_assert_eq!(size, rate);
            prop_assert_eq!(size, ps);
            prop_assert_eq!(size, v as f64 * Unit::parse(units[i]).unwrap().si_factor());
        }

        #[test]
        fn never_panics_and_gives_finite_non_negative_values(s in "\\PC{0,14}") {
            for v in [parse_size_bytes(&s), parse_rate_bytes_per_s(&s), parse_duration_s(&s)]
                .into_iter()
                .flatten()
            {
                prop_assert!(v.is_finite() && v >= 0.0, "{s:?} -> {v}");
            }
            let _ = parse_utc_ns(&s);
            let _ = Unit::parse(&s);
        }

        #[test]
        fn unit_display_round_trips(exps in proptest::collection::btree_map(
            proptest::sample::select(vec!["B", "J", "s", "MB", "page", "W", "ms", "MiB"]),
            -3i32..4,
            0..4,
        )) {
            let mut u = Unit::one();
            for (s, e) in exps {
                if e != 0 {
                    u.exponents.insert(s.to_string(), e);
                }
            }
            let back = Unit::parse(&u.to_string()).unwrap();
            prop_assert_eq!(&back, &u);
            prop_assert!(u.div(&u).is_one());
        }
    }
}
