//! Unit parsing at the edges: sizes with binary or decimal suffixes, timestamps.

/// Parse a size such as `123`, `1.5 MiB`, `32M`, `2GiB`, `100 kB` into bytes.
/// Binary suffixes (KiB, MiB, GiB, TiB and the bare K, M, G, T) are powers of 1024; `kB`,
/// `MB`, `GB`, `TB` are powers of 1000. Returns None for anything else.
pub fn parse_size_bytes(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.trim().parse().ok()?;
    let unit = unit.trim();
    let unit = unit.strip_suffix("/s").unwrap_or(unit);
    let mult = match unit {
        "" | "B" | "b" | "bytes" => 1.0,
        "K" | "k" | "KiB" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TiB" => 1024f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    let out = v * mult;
    (out.is_finite() && out >= 0.0).then_some(out)
}

/// Largest count (pages, ms, iterations) a log may state; larger values are malformed.
/// Keeps arithmetic on logged values far from overflow (2^40 pages = 4 PiB of 4 KiB pages).
pub const MAX_COUNT: u64 = 1 << 40;

/// Largest byte figure a log may state (2^53, exact in a JSON number).
pub const MAX_BYTES: u64 = 1 << 53;

/// Parse a non-negative integer count no larger than [`MAX_COUNT`].
pub fn parse_count(s: &str) -> Option<u64> {
    s.trim().parse::<u64>().ok().filter(|v| *v <= MAX_COUNT)
}

/// Parse a timestamp line: RFC 3339 (`2026-11-25T14:00:00.5Z`, also with a space instead of
/// `T`, as `date --rfc-3339=ns` prints) into UTC ns.
pub fn parse_utc_ns(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() < 19 || s.len() > 40 {
        return None;
    }
    let t = if s.as_bytes().get(10) == Some(&b' ') {
        let mut b = s.to_string();
        b.replace_range(10..11, "T");
        b
    } else {
        s.to_string()
    };
    chrono::DateTime::parse_from_rfc3339(&t)
        .ok()?
        .timestamp_nanos_opt()
}

/// Parse `YYYY-MM-DD HH:MM:SS[.fff]` (a log prefix, taken as UTC) into UTC ns.
pub fn parse_naive_utc_ns(s: &str) -> Option<i64> {
    let s = s.trim();
    let fmt = if s.contains('.') || s.contains(',') {
        "%Y-%m-%d %H:%M:%S%.f"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    let s = s.replace(',', ".");
    chrono::NaiveDateTime::parse_from_str(&s, fmt)
        .ok()?
        .and_utc()
        .timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size_bytes("123"), Some(123.0));
        assert_eq!(parse_size_bytes("1.5 MiB"), Some(1.5 * 1048576.0));
        assert_eq!(parse_size_bytes("32M"), Some(32.0 * 1048576.0));
        assert_eq!(parse_size_bytes("100 kB"), Some(100_000.0));
        assert_eq!(parse_size_bytes("8 MiB/s"), Some(8.0 * 1048576.0));
        assert_eq!(parse_size_bytes("12 parsecs"), None);
        assert_eq!(parse_size_bytes(""), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_utc_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            parse_utc_ns("1970-01-01 00:00:02.000000001+00:00"),
            Some(2_000_000_001)
        );
        assert_eq!(
            parse_naive_utc_ns("1970-01-01 00:01:00"),
            Some(60_000_000_000)
        );
        assert_eq!(parse_utc_ns("Job type: Completed"), None);
    }
}
