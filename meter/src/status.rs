//! Live state of a capture's sources, published by capture on a watch channel that status
//! displays and the exporter read.

use std::collections::BTreeMap;

use tokio::sync::watch;

/// Live state of one source.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MeterStatus {
    /// Host name.
    pub name: String,
    /// Source kind, e.g. `wattsup`.
    pub kind: String,
    /// Where the source is (device path, URL).
    pub device: String,
    /// `connecting`, `logging`, `reconnecting`, `stopped`.
    pub state: String,
    /// The source's identity (`meter_id` in samples).
    pub meter_id: Option<String>,
    /// Line speed of a serial source, baud.
    pub baud: Option<u32>,
    /// Last power reading, W.
    pub watts: Option<f64>,
    /// Last voltage reading, V.
    pub volts: Option<f64>,
    /// Last current reading, A.
    pub amps: Option<f64>,
    /// Last power factor, ratio 0..1.
    pub power_factor: Option<f64>,
    /// Energy since the capture started, J: the energy counter's increase for sources that
    /// keep one, else trapezoids over consecutive samples on the host's monotonic clock;
    /// intervals across a gap are not counted (nothing is bridged).
    pub energy_j_total: f64,
    /// Firmware or version the source reported, e.g. `3.14 (200612211910)`.
    pub firmware: Option<String>,
    /// Host monotonic clock (CLOCK_MONOTONIC) at the last sample, ns.
    pub last_sample_mono_ns: Option<i64>,
    /// Samples captured.
    pub samples: u64,
    /// Gaps recorded.
    pub gaps: u64,
    /// Rejected fragments, total.
    pub rejected: u64,
    /// Rejected fragments by kind (only kinds seen).
    pub rejected_by_kind: BTreeMap<String, u64>,
    /// Every kind of rejection the source may report (exported at 0 until seen).
    #[serde(skip)]
    pub reject_kinds: &'static [&'static str],
    /// Connections opened.
    pub connections: u32,
    /// Last error, if any.
    pub last_error: Option<String>,
}

/// What readers of a capture's status hold: the latest statuses of every source, in the
/// order the sources were given.
pub type StatusFeed = watch::Receiver<Vec<MeterStatus>>;
