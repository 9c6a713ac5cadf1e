//! The host clocks every sample is stamped with: UTC wall clock and CLOCK_MONOTONIC, in ns.

/// Host monotonic clock (CLOCK_MONOTONIC), ns: the clock of `mono_ns` in samples.
pub fn mono_ns() -> i64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
        .unwrap_or(0)
}

/// Host wall clock, ns since the Unix epoch (UTC): the clock of `utc_ns` in samples.
pub fn utc_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}
