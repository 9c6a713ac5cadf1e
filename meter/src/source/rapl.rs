//! RAPL energy counters through the Linux powercap sysfs tree, as a [`PowerSource`].
//!
//! The kernel lays RAPL out under `/sys/class/powercap` as zones `intel-rapl:N` (one per
//! package, named `package-N`, or the platform zone `psys`) with subzones `intel-rapl:N:M`
//! (`core`, `uncore`, `dram`); each holds `name`, `energy_uj` (a counter that wraps at
//! `max_energy_range_uj`) and `max_energy_range_uj`. AMD processors use the same tree.
//!
//! What is counted: the `psys` zone alone where the platform has one (it covers the whole
//! SoC and would count the packages twice), else every package plus its `dram` subzone
//! (the package counter does not include memory). The counter written with each reading is
//! the sum, in J, with every zone's wrap-around undone within a connection; its power field
//! is the mean power since the previous read (the first read of a connection is the
//! counter's origin and yields no sample) (the counter's difference over the
//! interval), so that the exporter and the baseline see watts. It is energy that RAPL
//! measures: the source declares [`Measures::EnergyCounter`] and integration uses the
//! counter's difference directly.
//!
//! Reading the counters needs root on kernels since 5.10 (energy_uj is mode 0400 after
//! CVE-2020-8694); a counter that cannot be read is an error naming its file.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use datasets::samples::FIELD_COUNT;

use super::{
    BoxFuture, Identity, Measures, PowerSource, Reading, Session, SourceError, SourceEvent,
    SourceOptions,
};

/// Where the kernel puts the powercap tree.
pub const DEFAULT_ROOT: &str = "/sys/class/powercap";

/// RAPL counters of the powercap tree under `root`.
#[derive(Debug, Clone)]
pub struct Rapl {
    root: PathBuf,
    interval: Duration,
}

impl Rapl {
    /// The counters under `root`, read every `opts.interval_s`.
    pub fn new(root: impl Into<PathBuf>, opts: &SourceOptions) -> Self {
        Rapl {
            root: root.into(),
            interval: Duration::from_secs(u64::from(opts.interval_s.max(1))),
        }
    }
    /// The same counters read every `interval` (for sub-second polling).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
    /// The powercap root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// One counted zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// Folder name, e.g. `intel-rapl:0:2`.
    pub id: String,
    /// The zone's `name`, e.g. `package-0`, `dram`, `psys`.
    pub name: String,
    /// Its `energy_uj` file.
    energy_path: PathBuf,
    /// Counter range, µJ: the counter goes back to 0 after this value.
    pub max_energy_range_uj: u64,
}

/// Zone numbers of a folder name `intel-rapl:N` or `intel-rapl:N:M`.
fn zone_numbers(dir_name: &str) -> Option<Vec<u32>> {
    let rest = dir_name.strip_prefix("intel-rapl:")?;
    rest.split(':').map(|n| n.parse().ok()).collect()
}

fn read_trimmed(path: &Path) -> Result<String, SourceError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| SourceError::Open {
            location: path.display().to_string(),
            source: Box::new(source),
        })
}

fn read_uj(path: &Path) -> Result<u64, SourceError> {
    let s = read_trimmed(path)?;
    s.parse().map_err(|_| {
        SourceError::NoReply(format!(
            "{}: {s:?} is not a counter (expected a whole number of µJ)",
            path.display()
        ))
    })
}

/// The zones to count under `root` (see the module documentation), in folder order.
pub fn discover(root: &Path) -> Result<Vec<Zone>, SourceError> {
    let entries = std::fs::read_dir(root).map_err(|source| SourceError::Open {
        location: root.display().to_string(),
        source: Box::new(source),
    })?;
    let mut all = Vec::new();
    for e in entries {
        let e = e?;
        let id = e.file_name().to_string_lossy().into_owned();
        let Some(nums) = zone_numbers(&id) else {
            continue;
        };
        let dir = e.path();
        let name = read_trimmed(&dir.join("name"))?;
        all.push((nums, id, dir, name));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let has_psys = all
        .iter()
        .any(|(nums, _, _, name)| nums.len() == 1 && name == "psys");
    let wanted = |nums: &[u32], name: &str| -> bool {
        if has_psys {
            nums.len() == 1 && name == "psys"
        } else {
            (nums.len() == 1 && name.starts_with("package")) || (nums.len() == 2 && name == "dram")
        }
    };
    let mut zones = Vec::new();
    for (nums, id, dir, name) in all {
        if !wanted(&nums, &name) {
            continue;
        }
        let range_path = dir.join("max_energy_range_uj");
        let max_energy_range_uj = read_uj(&range_path)?;
        if max_energy_range_uj == 0 {
            return Err(SourceError::NoReply(format!(
                "{}: a range of 0 µJ cannot hold a counter",
                range_path.display()
            )));
        }
        zones.push(Zone {
            id,
            name,
            energy_path: dir.join("energy_uj"),
            max_energy_range_uj,
        });
    }
    if zones.is_empty() {
        return Err(SourceError::NoReply(format!(
            "{}: no RAPL package or psys zone (intel-rapl:N with name package-N or psys): \
             is the intel_rapl_msr module loaded?",
            root.display()
        )));
    }
    Ok(zones)
}

/// Increase of a counter from `prev` to `now` (µJ) that wraps after `max_uj`: a counter
/// that went back wrapped once (polled far more often than it wraps: minutes at full load).
pub fn counter_increase_uj(prev: u64, now: u64, max_uj: u64) -> u64 {
    if now >= prev {
        now - prev
    } else {
        // It counted up to max_uj, went to 0, and on to now.
        max_uj.saturating_sub(prev) + now + 1
    }
}

impl PowerSource for Rapl {
    fn kind(&self) -> &'static str {
        super::spec::RAPL_KIND
    }
    fn location(&self) -> String {
        self.root.display().to_string()
    }
    fn measures(&self) -> Measures {
        Measures::EnergyCounter
    }
    fn native_interval(&self) -> Duration {
        self.interval
    }
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Session>, SourceError>> {
        Box::pin(async move {
            let zones = discover(&self.root)?;
            Ok(Box::new(RaplSession {
                root: self.root.clone(),
                interval: self.interval,
                zones,
                last_uj: Vec::new(),
                total_uj: 0,
                last: None,
                ticker: None,
                pending: VecDeque::new(),
            }) as Box<dyn Session>)
        })
    }
}

struct RaplSession {
    root: PathBuf,
    interval: Duration,
    zones: Vec<Zone>,
    /// Raw counters at the previous read, per zone.
    last_uj: Vec<u64>,
    /// Sum of the zones' counters with wrap-around undone, µJ (an integer: no rounding
    /// drift however long the capture).
    total_uj: u128,
    /// Monotonic time (ns) and counter (µJ) of the previous reading.
    last: Option<(i64, u128)>,
    ticker: Option<tokio::time::Interval>,
    pending: VecDeque<SourceEvent>,
}

impl RaplSession {
    /// Read every zone once and turn it into a reading.
    fn read(&mut self) -> Result<Reading, SourceError> {
        // Read all zones first: an error leaves the state as it was.
        let now: Vec<u64> = self
            .zones
            .iter()
            .map(|z| read_uj(&z.energy_path))
            .collect::<Result<_, _>>()?;
        if self.last_uj.is_empty() {
            self.total_uj = now.iter().map(|&v| u128::from(v)).sum();
        } else {
            for ((z, &prev), &cur) in self.zones.iter().zip(&self.last_uj).zip(&now) {
                self.total_uj += u128::from(counter_increase_uj(prev, cur, z.max_energy_range_uj));
            }
        }
        self.last_uj = now;
        let mut fields = [None; FIELD_COUNT];
        let mut r = Reading::stamped_now(fields);
        if let Some((t0, e0)) = self.last {
            let dt_s = (r.mono_ns - t0) as f64 / 1e9;
            if dt_s > 0.0 {
                fields[0] = Some((self.total_uj - e0) as f64 / 1e6 / dt_s);
            }
        }
        r.fields = fields;
        r.energy_counter_j = Some(self.total_uj as f64 / 1e6);
        self.last = Some((r.mono_ns, self.total_uj));
        Ok(r)
    }
}

impl Session for RaplSession {
    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, SourceError>> {
        Box::pin(async move {
            let names: Vec<String> = self
                .zones
                .iter()
                .map(|z| format!("{} ({})", z.name, z.id))
                .collect();
            let ids: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
            Ok(Identity {
                meter_id: format!("rapl-{}", ids.join("+")),
                description: format!(
                    "RAPL energy counters under {}: {}",
                    self.root.display(),
                    names.join(", ")
                ),
                firmware: None,
                baud: None,
            })
        })
    }
    fn start(&mut self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(async move {
            // The first read is the counter's origin, not a sample: every sample then carries
            // both the counter and the mean power since the previous read.
            self.read()?;
            self.ticker = Some(super::poll_ticker(self.interval));
            Ok(())
        })
    }
    fn next_event(&mut self) -> BoxFuture<'_, Result<SourceEvent, SourceError>> {
        Box::pin(async move {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            let Some(t) = self.ticker.as_mut() else {
                return Err(SourceError::Closed);
            };
            // Cancel-safe: a tick that is dropped is taken by the next call.
            t.tick().await;
            Ok(SourceEvent::Reading(self.read()?))
        })
    }
    fn take_pending(&mut self) -> Vec<SourceEvent> {
        self.pending.drain(..).collect()
    }
    fn stop(mut self: Box<Self>) -> BoxFuture<'static, Vec<SourceEvent>> {
        Box::pin(async move { self.pending.drain(..).collect() })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    /// A powercap tree laid out as the kernel does: zones under
    /// `devices/virtual/powercap/intel-rapl/`, subzones inside their zone, and a symlink per
    /// zone and subzone in `class/powercap`. Returns the class folder (the source's root).
    pub(crate) struct FakePowercap {
        pub dir: tempfile::TempDir,
    }

    impl FakePowercap {
        /// Zones as (id, name, max range µJ).
        pub(crate) fn new(zones: &[(&str, &str, u64)]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let devices = dir.path().join("devices/virtual/powercap/intel-rapl");
            let class = dir.path().join("class/powercap");
            fs::create_dir_all(&devices).unwrap();
            fs::create_dir_all(&class).unwrap();
            fs::write(devices.join("enabled"), "1\n").unwrap();
            std::os::unix::fs::symlink(&devices, class.join("intel-rapl")).unwrap();
            for (id, name, max) in zones {
                let nums = zone_numbers(id).unwrap();
                let parent = if nums.len() == 2 {
                    devices.join(format!("intel-rapl:{}", nums[0]))
                } else {
                    devices.clone()
                };
                let zdir = parent.join(id);
                fs::create_dir_all(&zdir).unwrap();
                fs::write(zdir.join("name"), format!("{name}\n")).unwrap();
                fs::write(zdir.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
                fs::write(zdir.join("energy_uj"), "0\n").unwrap();
                fs::write(zdir.join("enabled"), "1\n").unwrap();
                fs::write(zdir.join("constraint_0_name"), "long_term\n").unwrap();
                std::os::unix::fs::symlink(&zdir, class.join(id)).unwrap();
            }
            FakePowercap { dir }
        }
        pub(crate) fn root(&self) -> PathBuf {
            self.dir.path().join("class/powercap")
        }
        /// Set a zone's counter as the kernel would show it.
        pub(crate) fn set(&self, id: &str, uj: u64) {
            let path = self.root().join(id).join("energy_uj");
            // Write then rename: the source never sees a half-written number.
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, format!("{uj}\n")).unwrap();
            fs::rename(&tmp, &path).unwrap();
        }
        pub(crate) fn set_raw(&self, id: &str, text: &str) {
            fs::write(self.root().join(id).join("energy_uj"), text).unwrap();
        }
    }

    fn server() -> FakePowercap {
        FakePowercap::new(&[
            ("intel-rapl:0", "package-0", 262_143_328_850),
            ("intel-rapl:0:0", "core", 262_143_328_850),
            ("intel-rapl:0:1", "dram", 65_712_999_613),
            ("intel-rapl:1", "package-1", 262_143_328_850),
        ])
    }

    #[test]
    fn packages_and_dram_are_counted_and_psys_alone_when_present() {
        let s = server();
        let ids: Vec<String> = discover(&s.root())
            .unwrap()
            .into_iter()
            .map(|z| z.id)
            .collect();
        assert_eq!(ids, ["intel-rapl:0", "intel-rapl:0:1", "intel-rapl:1"]);
        let laptop = FakePowercap::new(&[
            ("intel-rapl:0", "package-0", 262_143_328_850),
            ("intel-rapl:0:2", "dram", 262_143_328_850),
            ("intel-rapl:1", "psys", 262_143_328_850),
        ]);
        let zones = discover(&laptop.root()).unwrap();
        assert_eq!(zones.len(), 1);
        assert_eq!(
            (zones[0].id.as_str(), zones[0].name.as_str()),
            ("intel-rapl:1", "psys")
        );
    }

    #[test]
    fn wrap_around_counts_through_the_top_of_the_range() {
        assert_eq!(counter_increase_uj(100, 250, 1000), 150);
        // 995 -> 1000 (5), -> 0 (1), -> 9 (9).
        assert_eq!(counter_increase_uj(995, 9, 1000), 15);
        assert_eq!(counter_increase_uj(7, 7, 1000), 0);
    }

    #[tokio::test]
    async fn readings_follow_the_counters_sample_by_sample_through_a_wrap() {
        let s = server();
        let src =
            Rapl::new(s.root(), &SourceOptions::default()).with_interval(Duration::from_millis(20));
        s.set("intel-rapl:0", 1_000_000);
        s.set("intel-rapl:0:1", 500_000);
        s.set("intel-rapl:1", 2_000_000);
        let mut session = src.connect().await.unwrap();
        let id = session.identify().await.unwrap();
        assert_eq!(id.meter_id, "rapl-package-0+dram+package-1");
        session.start().await.unwrap();
        let counter = |e: SourceEvent| match e {
            SourceEvent::Reading(r) => (r.energy_counter_j.unwrap(), r.power_w()),
            e => panic!("{e:?}"),
        };
        // The origin, read by start: 3.5 J.
        let c0 = 3.5;
        // Package 0 wraps: 262_143_328_850 is its top; +10 J past the top.
        let steps: [(u64, u64, u64, f64); 3] = [
            (
                262_000_000_000,
                600_000,
                2_100_000,
                262_000.0 - 1.0 + 0.1 + 0.1,
            ),
            (262_143_328_850, 600_000, 2_100_000, 143.328_85),
            (9_999_999, 700_000, 2_100_000, 10.0 + 0.1),
        ];
        let mut expected = c0;
        for (p0, dram, p1, delta_j) in steps {
            s.set("intel-rapl:0", p0);
            s.set("intel-rapl:0:1", dram);
            s.set("intel-rapl:1", p1);
            let (c, w) = counter(session.next_event().await.unwrap());
            expected += delta_j;
            assert!((c - expected).abs() < 1e-6, "{c} vs {expected}");
            assert!(w.unwrap() > 0.0);
        }
        // A counter that cannot be read is an error naming the file; nothing is lost.
        s.set_raw("intel-rapl:1", "garbage\n");
        let e = session.next_event().await.unwrap_err().to_string();
        assert!(
            e.contains("intel-rapl:1/energy_uj") && e.contains("\"garbage\""),
            "{e}"
        );
        assert!(session.take_pending().is_empty());
        s.set("intel-rapl:1", 2_200_000);
        let (c, _) = counter(session.next_event().await.unwrap());
        assert!((c - (expected + 0.1)).abs() < 1e-6, "{c}");
    }

    #[test]
    fn a_tree_without_rapl_says_what_is_missing() {
        let empty = tempfile::tempdir().unwrap();
        let e = discover(empty.path()).unwrap_err().to_string();
        assert!(e.contains("no RAPL package or psys zone"), "{e}");
        let e = discover(&empty.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot open"), "{e}");
    }

    /// Reads the machine's own powercap tree where it has one.
    #[tokio::test]
    async fn real_powercap_when_present() {
        let root = Path::new(DEFAULT_ROOT);
        let zones = match discover(root) {
            Ok(z) => z,
            Err(e) => {
                eprintln!("skipped: no readable RAPL under {DEFAULT_ROOT} ({e})");
                return;
            }
        };
        let src =
            Rapl::new(root, &SourceOptions::default()).with_interval(Duration::from_millis(200));
        let mut session = src.connect().await.unwrap();
        let id = session.identify().await.unwrap();
        eprintln!("{} ({} zones)", id.description, zones.len());
        session.start().await.unwrap();
        let mut last = None;
        for _ in 0..3 {
            match session.next_event().await {
                Ok(SourceEvent::Reading(r)) => {
                    let c = r.energy_counter_j.unwrap();
                    if let Some(l) = last {
                        assert!(c >= l, "counter went back: {l} -> {c}");
                    }
                    last = Some(c);
                }
                Ok(e) => panic!("{e:?}"),
                Err(e) => {
                    eprintln!("skipped: RAPL counters not readable here ({e})");
                    return;
                }
            }
        }
    }
}
