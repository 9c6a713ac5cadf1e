//! A tiny unit algebra for coefficient files: products and quotients of unit symbols
//! (`J/B`, `s/B`, `1/s`, `B/s`, `1`), enough to check that a coefficient's unit is the
//! target's unit divided by its feature's unit. Symbols are opaque (no `MB` = 1e6 `B`).

use std::collections::BTreeMap;
use std::fmt;

/// A unit as a product of symbols with integer exponents (`J/B` = J^1 B^-1).
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

impl Unit {
    /// The dimensionless unit `1`.
    pub fn one() -> Self {
        Unit::default()
    }

    /// Parse `A*B/C^2` (symbols: letters, digits other than a leading digit, `_`, `%`).
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
                let ok = sym.chars().next().is_some_and(|c| !c.is_ascii_digit())
                    && sym
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '%');
                if !ok {
                    return Err(err(&format!("'{sym}' is not a unit symbol")));
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

    #[test]
    fn parses_and_divides() {
        let j = Unit::parse("J").unwrap();
        let b = Unit::parse("B").unwrap();
        assert_eq!(j.div(&b).to_string(), "J/B");
        assert_eq!(
            Unit::one().div(&Unit::parse("B/s").unwrap()).to_string(),
            "s/B"
        );
        assert_eq!(
            Unit::one().div(&Unit::parse("s").unwrap()).to_string(),
            "1/s"
        );
        assert_eq!(Unit::parse("J*s/B/s").unwrap().to_string(), "J/B");
        assert_eq!(Unit::parse("m^2/s^2").unwrap().to_string(), "m^2/s^2");
        assert!(Unit::parse("1").unwrap().is_one());
        assert!(Unit::parse("").is_err());
        assert!(Unit::parse("J//B").is_err());
        assert!(Unit::parse("2x").is_err());
    }

    #[test]
    fn infers_units_from_names() {
        assert_eq!(unit_from_column_name("v_mig_bytes"), Some("B"));
        assert_eq!(unit_from_column_name("dirty_rate_bytes_per_s"), Some("B/s"));
        assert_eq!(unit_from_column_name("e_mig_j"), Some("J"));
        assert_eq!(unit_from_column_name("duration_s"), Some("s"));
        assert_eq!(unit_from_column_name("gamma"), Some("1"));
        assert_eq!(unit_from_column_name("x1"), None);
    }

    proptest! {
        #[test]
        fn display_round_trips(exps in proptest::collection::btree_map("[A-Za-z][a-z]{0,2}", -3i32..4, 0..4)) {
            let mut u = Unit::one();
            for (s, e) in exps { if e != 0 { u.exponents.insert(s, e); } }
            let back = Unit::parse(&u.to_string()).unwrap();
            prop_assert_eq!(back, u.clone());
            prop_assert!(u.div(&u).is_one());
        }
    }
}
