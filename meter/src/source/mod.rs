//! Power sources: what capture reads samples from.
//!
//! A [`PowerSource`] is a configured source (a Watts up? PRO on a serial device, an emulated
//! one, RAPL energy counters, a Prometheus exporter's series, a BMC's Redfish chassis, a BMC
//! over IPMI). [`PowerSource::connect`] opens a
//! [`Session`]; capture then asks it who it is ([`Session::identify`]), starts it
//! ([`Session::start`]) and takes [`SourceEvent`]s ([`Session::next_event`]) until it stops
//! the session or the session fails. Reconnecting with back-off, stall detection, gaps, the
//! journal and the exporter are capture's job and the same for every kind.
//!
//! Sources are named by `KIND:TARGET` spellings ([`SourceSpec`]), e.g.
//! `wattsup:/dev/ttyUSB0` or `emulated:constant:120`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use datasets::samples::FIELD_COUNT;

pub mod emulated;
pub mod http;
pub mod ipmi;
pub mod prometheus;
pub mod rapl;
pub mod redfish;
pub mod spec;
pub mod wattsup;

pub use emulated::EmulatedSource;
pub use ipmi::Ipmi;
pub use prometheus::Prometheus;
pub use rapl::Rapl;
pub use redfish::Redfish;
pub use spec::{NamedSource, SourceSpec, SpecError};
pub use wattsup::WattsUp;

/// A boxed future that can move between threads (the trait's async methods return these so
/// that sources of different kinds can sit behind one `dyn PowerSource`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a source's readings carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measures {
    /// Power, W (the mean over the native interval, or instantaneous).
    Power,
    /// A cumulative energy counter, J (e.g. RAPL); power is its difference over time.
    EnergyCounter,
    /// Both a power reading and an energy counter.
    PowerAndEnergyCounter,
}

impl Measures {
    /// Whether readings carry power.
    pub fn power(self) -> bool {
        matches!(self, Measures::Power | Measures::PowerAndEnergyCounter)
    }
    /// Whether readings carry an energy counter.
    pub fn energy_counter(self) -> bool {
        matches!(
            self,
            Measures::EnergyCounter | Measures::PowerAndEnergyCounter
        )
    }
}

/// Who answered on a connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// Stable identity written as `meter_id` in samples, e.g.
    /// `wattsup-PRO-hw5.2-fw3.14-200612211910`.
    pub meter_id: String,
    /// One line for logs, e.g. `PRO meter, hardware 5.2, firmware 3.14 (...), 115200 baud`.
    pub description: String,
    /// Firmware or version as the source reports it, e.g. `3.14 (200612211910)`.
    pub firmware: Option<String>,
    /// Line speed of a serial source, baud.
    pub baud: Option<u32>,
}

/// One reading, stamped with the host's clocks when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Host wall clock at arrival, ns since the Unix epoch (UTC).
    pub utc_ns: i64,
    /// Host monotonic clock at arrival, ns.
    pub mono_ns: i64,
    /// The samples dataset's record fields (`RECORD_FIELDS` order, SI units); `None` where
    /// the source gives no value. Field 0 is power, W.
    pub fields: [Option<f64>; FIELD_COUNT],
    /// Cumulative energy counter, J, for sources that keep one; monotone (the source undoes
    /// counter wrap-around). `None` for sources that only measure power.
    pub energy_counter_j: Option<f64>,
}

impl Reading {
    /// A reading of `fields` stamped now.
    pub fn stamped_now(fields: [Option<f64>; FIELD_COUNT]) -> Self {
        Reading {
            utc_ns: crate::clock::utc_ns(),
            mono_ns: crate::clock::mono_ns(),
            fields,
            energy_counter_j: None,
        }
    }
    /// Power, W.
    pub fn power_w(&self) -> Option<f64> {
        self.fields[0]
    }
}

/// What a session yields.
#[derive(Debug, Clone, PartialEq)]
// Nearly every event is a reading: boxing it would only add an allocation per reading.
#[allow(clippy::large_enum_variant)]
pub enum SourceEvent {
    /// A reading.
    Reading(Reading),
    /// Input the source could not use (a corrupt record, a bad answer); none of it becomes a
    /// sample. `kind` is one of [`PowerSource::reject_kinds`].
    Rejected {
        /// Label of the kind of rejection, e.g. `truncated`.
        kind: &'static str,
    },
}

/// Why a source could not be reached or stopped answering.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source could not be opened (missing, busy, no permission).
    #[error("cannot open {location}")]
    Open {
        /// Where the source is.
        location: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The source did not answer as a source of its kind does.
    #[error("{0}")]
    NoReply(String),
    /// Reading or writing failed (unplugged, hung up).
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    /// The connection closed (the device went away).
    #[error("port closed (device unplugged?)")]
    Closed,
    /// An emulated source could not start its emulator.
    #[error("starting the emulated meter")]
    Emulator(#[from] crate::emulator::EmulatorError),
}

/// Settings a source reads when it is built from a spelling; each kind uses what applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// Interval asked of sources that take one (the Watts up? logging interval), whole
    /// seconds.
    pub interval_s: u32,
    /// Wait after clearing a meter's memory before starting logging.
    pub settle: Duration,
    /// How long to wait for a reply to a command.
    pub reply_timeout: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            interval_s: 1,
            settle: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(2),
        }
    }
}

/// A source of power readings.
pub trait PowerSource: Send + Sync + fmt::Debug {
    /// The kind as spelled in `KIND:TARGET`, e.g. `wattsup`.
    fn kind(&self) -> &'static str;
    /// Where the source is (a device path, a URL) for logs and status; never credentials.
    fn location(&self) -> String;
    /// What its readings carry.
    fn measures(&self) -> Measures;
    /// Time between readings as the source delivers them (its logging or polling interval).
    fn native_interval(&self) -> Duration;
    /// Labels of the rejections its sessions may report (exported at 0 until seen).
    fn reject_kinds(&self) -> &'static [&'static str] {
        &[]
    }
    /// Open a connection (the device, a login); nothing is asked of the source yet.
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Session>, SourceError>>;
}

/// One connection to a source.
pub trait Session: Send {
    /// Ask the source who it is; once per connection, before [`Session::start`].
    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, SourceError>>;
    /// Start delivering readings at the native interval.
    fn start(&mut self) -> BoxFuture<'_, Result<(), SourceError>>;
    /// The next reading or rejection, in arrival order (readings that arrived while
    /// identifying or starting come first). Cancel-safe: dropping the future loses nothing.
    fn next_event(&mut self) -> BoxFuture<'_, Result<SourceEvent, SourceError>>;
    /// Events received but not yet returned; called after an error, before the session is
    /// dropped, so that nothing received is lost.
    fn take_pending(&mut self) -> Vec<SourceEvent>;
    /// Stop delivering (best effort, bounded in time) and return every event still received.
    fn stop(self: Box<Self>) -> BoxFuture<'static, Vec<SourceEvent>>;
}

/// What a source says about itself and one reading from it (`meter info --source`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceInfo {
    /// Kind, e.g. `rapl`.
    pub kind: &'static str,
    /// Where it is (never credentials).
    pub location: String,
    /// What its readings carry.
    pub measures: Measures,
    /// Its native interval, s.
    pub native_interval_s: f64,
    /// Who answered.
    pub identity: Identity,
    /// Power of the first reading, W.
    pub power_w: Option<f64>,
    /// Energy counter of the first reading, J.
    pub energy_counter_j: Option<f64>,
}

/// The clock of a polled source (RAPL, Prometheus, Redfish, IPMI): first tick one interval
/// from now (the source reads once at start), and a late tick delays the next ones instead
/// of bunching readings.
pub(crate) fn poll_ticker(interval: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Connect to `source`, identify it and take one reading, within `limit` (plus one native
/// interval: a polled source's first reading comes after one).
pub fn probe(source: &dyn PowerSource, limit: Duration) -> Result<SourceInfo, SourceError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let limit = limit + source.native_interval();
    rt.block_on(async {
        let work = async {
            let mut session = source.connect().await?;
            let identity = session.identify().await?;
            session.start().await?;
            let reading = loop {
                match session.next_event().await? {
                    SourceEvent::Reading(r) => break r,
                    SourceEvent::Rejected { .. } => {}
                }
            };
            session.stop().await;
            Ok::<_, SourceError>((identity, reading))
        };
        let (identity, reading) = tokio::time::timeout(limit, work).await.map_err(|_| {
            SourceError::NoReply(format!("no reading within {:.1} s", limit.as_secs_f64()))
        })??;
        Ok(SourceInfo {
            kind: source.kind(),
            location: source.location(),
            measures: source.measures(),
            native_interval_s: source.native_interval().as_secs_f64(),
            identity,
            power_w: reading.power_w(),
            energy_counter_j: reading.energy_counter_j,
        })
    })
}
