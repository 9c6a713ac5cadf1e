//! Limits of the figures a hypervisor log may state (sizes, times and units are parsed by
//! `datasets::quantity`, as everywhere else).

/// Largest count (pages, ms, iterations) a log may state; larger values are malformed.
/// Keeps arithmetic on logged values far from overflow (2^40 pages = 4 PiB of 4 KiB pages).
pub const MAX_COUNT: u64 = 1 << 40;

/// Largest byte figure a log may state (2^53, exact in a JSON number).
pub const MAX_BYTES: u64 = 1 << 53;

/// Parse a non-negative integer count no larger than [`MAX_COUNT`].
pub fn parse_count(s: &str) -> Option<u64> {
    s.trim().parse::<u64>().ok().filter(|v| *v <= MAX_COUNT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_bounded() {
        assert_eq!(parse_count(" 4096 "), Some(4096));
        assert_eq!(parse_count(&MAX_COUNT.to_string()), Some(MAX_COUNT));
        assert_eq!(parse_count(&(MAX_COUNT + 1).to_string()), None);
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("12 pages"), None);
    }
}
