//! Power that follows what the hosts do: host activity read from `/proc`, and the linear
//! power model that turns it into watts for emulated meters.
//!
//! **Activity.** While a QEMU migration runs, a [`Sampler`] reads every 200 ms, per host,
//! the CPU time (utime + stime, `/proc/PID/stat`) of that host's QEMU processes, and the
//! bytes through the migration link. The bytes come from migwatt's own relay between the two
//! QEMUs ([`crate::relay`]): QEMU sends and receives the stream with `sendmsg`/`recvmsg`,
//! which `/proc/PID/io` (`wchar`/`rchar`) does not count (measured here: 10,000 bytes through
//! `sendmsg` add 0 to `wchar`), and QEMU's own `transferred` counter is what the model
//! would be tested against. Without a relay (QEMUs started by the user) the link term is
//! unknown and left out (the sample says `link_bytes: null`). The samples are cumulative
//! counters, recorded in the raw migration log as `activity` lines ([`crate::qemu`]), so a
//! replay reproduces them.
//!
//! **Model** ([`PowerModel`]): per host,
//! `P = P_idle + c_cpu x busy_cores + c_net x link_bytes_per_s`,
//! the CPU-linear server power of Fan, Weber and Barroso (ISCA 2007: power grows linearly
//! with CPU utilisation from idle to peak) plus a per-byte network energy term (as in the
//! per-byte NIC energy of Sohan et al., and Kepler's model of node power from CPU and other
//! components). `busy_cores` is CPU-seconds per second of that host's QEMU processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How often the sampler reads `/proc`.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(200);

/// The linear power model of one host.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerModel {
    /// Static power, W.
    pub idle_w: f64,
    /// Power per busy core (CPU-second per second of the host's QEMU processes), W.
    pub cpu_w_per_core: f64,
    /// Energy per byte through the migration link (sent by the source, received by the
    /// destination), J/B.
    pub net_j_per_byte: f64,
}

impl PowerModel {
    /// Power at `busy_cores` and `link_bytes_per_s` (negative or non-finite inputs count as 0).
    pub fn watts(&self, busy_cores: f64, link_bytes_per_s: f64) -> f64 {
        let clean = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
        self.idle_w
            + self.cpu_w_per_core * clean(busy_cores)
            + self.net_j_per_byte * clean(link_bytes_per_s)
    }

    /// The formula with this host's coefficients, for reports.
    pub fn formula(&self) -> String {
        format!(
            "P = {} W + {} W x busy cores + {} J/MB x link MB/s",
            self.idle_w,
            self.cpu_w_per_core,
            self.net_j_per_byte * 1e6
        )
    }
}

/// One activity sample: cumulative counters at `utc_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActivitySample {
    /// When it was read, UTC ns.
    pub utc_ns: i64,
    /// CPU time of the source's QEMU processes so far, s (None: not found).
    pub source_cpu_s: Option<f64>,
    /// CPU time of the destination's QEMU processes so far, s (None: not found).
    pub destination_cpu_s: Option<f64>,
    /// Bytes forwarded by the link from source to destination so far (None: no relay).
    pub link_bytes: Option<u64>,
}

/// What each host did over one interval between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Interval start, UTC ns.
    pub from_utc_ns: i64,
    /// Interval end, UTC ns.
    pub to_utc_ns: i64,
    /// Busy cores of the source's QEMU processes.
    pub source_cores: f64,
    /// Busy cores of the destination's QEMU processes.
    pub destination_cores: f64,
    /// Link throughput, B/s (0 without a relay).
    pub link_bytes_per_s: f64,
}

/// Per-interval rates of consecutive samples (a counter that goes backwards, e.g. a process
/// that restarted, counts as 0 over that interval).
pub fn rates(samples: &[ActivitySample]) -> Vec<Rates> {
    samples
        .windows(2)
        .filter(|w| w[1].utc_ns > w[0].utc_ns)
        .map(|w| {
            let dt = (w[1].utc_ns - w[0].utc_ns) as f64 / 1e9;
            let d = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b >= a => (b - a) / dt,
                _ => 0.0,
            };
            Rates {
                from_utc_ns: w[0].utc_ns,
                to_utc_ns: w[1].utc_ns,
                source_cores: d(w[0].source_cpu_s, w[1].source_cpu_s),
                destination_cores: d(w[0].destination_cpu_s, w[1].destination_cpu_s),
                link_bytes_per_s: match (w[0].link_bytes, w[1].link_bytes) {
                    (Some(a), Some(b)) if b >= a => (b - a) as f64 / dt,
                    _ => 0.0,
                },
            }
        })
        .collect()
}

/// Errors reading host activity.
#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    /// A `/proc` file could not be read.
    #[error("{path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `/proc` file did not hold what was expected.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// What was expected.
        message: String,
    },
    /// No process listens on a QMP socket.
    #[error("{socket}: no process on this machine listens on this socket (is QEMU on another host, or run by another user?); its CPU time cannot be sampled")]
    NoListener {
        /// The socket.
        socket: String,
    },
}

/// Clock ticks of `/proc/PID/stat`: USER_HZ, which Linux's ABI fixes at 100 on x86 and arm
/// whatever the kernel's own tick rate (sysconf(_SC_CLK_TCK) returns it).
fn clock_ticks_per_s() -> f64 {
    100.0
}

/// CPU time (utime + stime, all threads) of process `pid` so far, s, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Result<f64, ActivityError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|source| ActivityError::Read {
        path: path.clone(),
        source,
    })?;
    cpu_seconds_of_stat(&text, clock_ticks_per_s())
        .map_err(|message| ActivityError::Malformed { path, message })
}

/// utime + stime of a `/proc/PID/stat` line, s. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last `)`.
fn cpu_seconds_of_stat(text: &str, ticks_per_s: f64) -> Result<f64, String> {
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or("expected `PID (COMM) STATE ...`")?;
    // After the command: field 3 (state) is index 0, so utime (14) is 11 and stime (15) 12.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize, name: &str| -> Result<u64, String> {
        f.get(i)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("expected an integer {name} (field {})", i + 3))
    };
    Ok((tick(11, "utime")? + tick(12, "stime")?) as f64 / ticks_per_s)
}

/// The process that listens on the unix socket `socket` (a user-started QEMU's QMP socket):
/// the socket's inode from `/proc/net/unix`, then the process holding `socket:[INODE]`
/// among `/proc/*/fd`.
pub fn listener_pid(socket: &Path) -> Result<u32, ActivityError> {
    let no = || ActivityError::NoListener {
        socket: socket.display().to_string(),
    };
    let want = std::fs::canonicalize(socket).unwrap_or_else(|_| socket.to_path_buf());
    let table = "/proc/net/unix";
    let text = std::fs::read_to_string(table).map_err(|source| ActivityError::Read {
        path: table.into(),
        source,
    })?;
    // Num RefCount Protocol Flags Type St Inode Path; a listening socket has flag 0x10000.
    let inodes: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = Path::new(f.get(7)?);
            let listening = u32::from_str_radix(f.get(3)?, 16).ok()? & 0x10000 != 0;
            (listening && (path == want || path == socket)).then(|| f[6].to_string())
        })
        .collect();
    if inodes.is_empty() {
        return Err(no());
    }
    let links: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let procs = std::fs::read_dir("/proc").map_err(|source| ActivityError::Read {
        path: "/proc".into(),
        source,
    })?;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Processes of other users are unreadable: skipped (the error says so if none fits).
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if links.iter().any(|l| target.as_os_str() == l.as_str()) {
                    return Ok(pid);
                }
            }
        }
    }
    Err(no())
}

/// The processes and the link counter a [`Sampler`] reads.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    /// The source host's QEMU processes.
    pub source_pids: Vec<u32>,
    /// The destination host's QEMU processes.
    pub destination_pids: Vec<u32>,
    /// The relay's forwarded-bytes counter (None: no relay).
    pub link_bytes: Option<Arc<AtomicU64>>,
}

impl Probes {
    /// Read every counter now. A host whose processes are all gone reads None.
    pub fn read(&self) -> ActivitySample {
        let cpu = |pids: &[u32]| {
            let v: Vec<f64> = pids.iter().filter_map(|p| cpu_seconds(*p).ok()).collect();
            (!v.is_empty()).then(|| v.iter().sum())
        };
        ActivitySample {
            utc_ns: crate::qmp::utc_now_ns(),
            source_cpu_s: cpu(&self.source_pids),
            destination_cpu_s: cpu(&self.destination_pids),
            link_bytes: self.link_bytes.as_ref().map(|c| c.load(Ordering::Relaxed)),
        }
    }
}

/// Samples kept for the raw log, shared between the sampler and the collector.
pub type ActivityFeed = Arc<Mutex<Vec<ActivitySample>>>;

/// A thread reading [`Probes`] every [`SAMPLE_PERIOD`], keeping the samples in its feed and
/// handing each interval's [`Rates`] to a callback (the emulated meters). Stops when dropped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Every sample so far.
    pub feed: ActivityFeed,
}

impl Sampler {
    /// Start sampling `probes`.
    pub fn start(probes: Probes, on_rates: Box<dyn FnMut(&Rates) + Send>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let feed: ActivityFeed = Arc::new(Mutex::new(Vec::new()));
        let (s, f) = (stop.clone(), feed.clone());
        let thread = std::thread::Builder::new()
            .name("activity".into())
            .spawn(move || {
                let mut on_rates = on_rates;
                let mut last = probes.read();
                if let Ok(mut v) = f.lock() {
                    v.push(last);
                }
                let mut next = Instant::now() + SAMPLE_PERIOD;
                while !s.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep((next - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    next += SAMPLE_PERIOD;
                    let x = probes.read();
                    if let Some(r) = rates(&[last, x]).first() {
                        on_rates(r);
                    }
                    if let Ok(mut v) = f.lock() {
                        v.push(x);
                    }
                    last = x;
                }
            })
            .ok();
        Sampler { stop, thread, feed }
    }

    /// Every sample so far.
    pub fn samples(&self) -> Vec<ActivitySample> {
        self.feed.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The raw-log line of a sample (type [`crate::qemu::LINE_ACTIVITY`]).
pub fn activity_line(s: &ActivitySample) -> Value {
    serde_json::json!({
        "type": crate::qemu::LINE_ACTIVITY,
        "utc_ns": s.utc_ns,
        "source_cpu_s": s.source_cpu_s,
        "destination_cpu_s": s.destination_cpu_s,
        "link_bytes": s.link_bytes,
    })
}

/// A sample from an `activity` line's object (None: malformed).
pub fn sample_of_line(v: &Value) -> Option<ActivitySample> {
    let cpu = |k: &str| match v.get(k) {
        None | Some(Value::Null) => Some(None),
        Some(x) => x.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(Some),
    };
    Some(ActivitySample {
        utc_ns: v.get("utc_ns")?.as_i64()?,
        source_cpu_s: cpu("source_cpu_s")?,
        destination_cpu_s: cpu("destination_cpu_s")?,
        link_bytes: match v.get("link_bytes") {
            None | Some(Value::Null) => None,
            Some(x) => Some(x.as_u64()?),
        },
    })
}

/// The activity samples of a raw QEMU log, in time order (other lines and malformed ones are
/// skipped: `ingest qemu` reports those).
pub fn activity_of_log(bytes: &[u8]) -> Vec<ActivitySample> {
    let text = String::from_utf8_lossy(bytes);
    let mut out: Vec<ActivitySample> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.get("type").and_then(Value::as_str) == Some(crate::qemu::LINE_ACTIVITY))
        .filter_map(|v| sample_of_line(&v))
        .collect();
    out.sort_by_key(|s| s.utc_ns);
    out.dedup_by_key(|s| s.utc_ns);
    out
}

/// Energy each host draws above idle over `[from, to)` UTC ns under `models`
/// (source, destination), integrating the piecewise-constant rates; J.
pub fn energy_above_idle_j(
    rates: &[Rates],
    models: (&PowerModel, &PowerModel),
    from_utc_ns: i64,
    to_utc_ns: i64,
) -> (f64, f64) {
    let mut e = (0.0, 0.0);
    for r in rates {
        let a = r.from_utc_ns.max(from_utc_ns);
        let b = r.to_utc_ns.min(to_utc_ns);
        if b <= a {
            continue;
        }
        let dt = (b - a) as f64 / 1e9;
        e.0 += (models.0.watts(r.source_cores, r.link_bytes_per_s) - models.0.idle_w) * dt;
        e.1 += (models.1.watts(r.destination_cores, r.link_bytes_per_s) - models.1.idle_w) * dt;
    }
    e
}

/// Busy cores and link rate averaged over a span, per host, for summaries.
pub fn mean_rates(
    rates: &[Rates],
    from_utc_ns: i64,
    to_utc_ns: i64,
) -> BTreeMap<&'static str, f64> {
    let mut acc = BTreeMap::new();
    let mut total = 0.0;
    for r in rates {
        let a = r.from_utc_ns.max(from_utc_ns);
        let b = r.to_utc_ns.min(to_utc_ns);
        if b <= a {
            continue;
        }
        let dt = (b - a) as f64 / 1e9;
        total += dt;
        *acc.entry("source_cores").or_insert(0.0) += r.source_cores * dt;
        *acc.entry("destination_cores").or_insert(0.0) += r.destination_cores * dt;
        *acc.entry("link_bytes_per_s").or_insert(0.0) += r.link_bytes_per_s * dt;
    }
    if total > 0.0 {
        for v in acc.values_mut() {
            *v /= total;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: PowerModel = PowerModel {
        idle_w: 100.0,
        cpu_w_per_core: 12.0,
        net_j_per_byte: 0.45e-6,
    };

    #[test]
    fn idle_when_idle_and_the_documented_line_otherwise() {
        assert_eq!(M.watts(0.0, 0.0), 100.0);
        assert!((M.watts(1.5, 10e6) - (100.0 + 18.0 + 4.5)).abs() < 1e-9);
        assert_eq!(M.watts(-1.0, f64::NAN), 100.0);
        assert!(M.formula().contains("12 W x busy cores"), "{}", M.formula());
    }

    proptest! {
        #[test]
        fn power_is_monotone_in_cpu_and_bytes(
            c in 0.0f64..64.0, dc in 0.0f64..8.0, b in 0.0f64..1e10, db in 0.0f64..1e9,
            idle in 0.0f64..1000.0, k in 0.0f64..100.0, j in 0.0f64..1e-5,
        ) {
            let m = PowerModel { idle_w: idle, cpu_w_per_core: k, net_j_per_byte: j };
            prop_assert!(m.watts(c + dc, b) >= m.watts(c, b));
            prop_assert!(m.watts(c, b + db) >= m.watts(c, b));
            prop_assert!(m.watts(c, b) >= idle);
            prop_assert_eq!(m.watts(0.0, 0.0), idle);
        }

        #[test]
        fn stat_lines_with_any_command_name_parse(comm in "[ -~]{0,20}", u in 0u64..1<<40, s in 0u64..1<<40) {
            let line = format!("42 ({comm}) S 1 2 3 4 5 6 7 8 9 10 {u} {s} 0 0 20 0 3 0 99 1000 5 18446744073709551615\n");
            let got = cpu_seconds_of_stat(&line, 100.0).unwrap();
            prop_assert!((got - (u + s) as f64 / 100.0).abs() < 1e-6 * (1.0 + got));
        }
    }

    #[test]
    fn malformed_stat_says_which_field() {
        let e = cpu_seconds_of_stat("42 (q) S 1 2", 100.0).unwrap_err();
        assert!(e.contains("utime (field 14)"), "{e}");
        assert!(cpu_seconds_of_stat("no paren", 100.0).is_err());
    }

    #[test]
    fn this_process_and_a_busy_child_accumulate_cpu_time() {
        let me = std::process::id();
        let a = cpu_seconds(me).unwrap();
        // Burn some CPU in this process.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = cpu_seconds(me).unwrap();
        assert!(b > a, "{a} -> {b}");
        // A child that spins: its CPU time grows while it runs.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("while :; do :; done")
            .spawn()
            .unwrap();
        let pid = child.id();
        let c0 = cpu_seconds(pid).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut c1 = c0;
        while c1 < c0 + 0.05 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            c1 = cpu_seconds(pid).unwrap();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(c1 >= c0 + 0.05, "{c0} -> {c1}");
        assert!(matches!(cpu_seconds(pid), Err(ActivityError::Read { .. })));
    }

    #[test]
    fn the_listener_of_a_unix_socket_is_found_and_a_missing_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // A client connection must not be mistaken for the listener.
        let _c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        assert_eq!(listener_pid(&sock).unwrap(), std::process::id());
        let gone = dir.path().join("none.sock");
        let e = listener_pid(&gone).unwrap_err().to_string();
        assert!(e.contains("none.sock") && e.contains("no process"), "{e}");
    }

    #[test]
    fn rates_and_energy_of_recorded_samples() {
        let s = |t: i64, a: f64, b: f64, n: u64| ActivitySample {
            utc_ns: t * 1_000_000_000,
            source_cpu_s: Some(a),
            destination_cpu_s: Some(b),
            link_bytes: Some(n),
        };
        let samples = [
            s(0, 1.0, 0.0, 0),
            s(1, 2.0, 0.5, 10_000_000),
            s(3, 2.0, 2.5, 10_000_000),
        ];
        let r = rates(&samples);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].source_cores, 1.0);
        assert_eq!(r[0].link_bytes_per_s, 1e7);
        assert_eq!(r[1].destination_cores, 1.0);
        let (es, ed) = energy_above_idle_j(&r, (&M, &M), 0, 3_000_000_000);
        assert!((es - (12.0 + 4.5)).abs() < 1e-9, "{es}");
        assert!((ed - (0.5 * 12.0 + 4.5 + 2.0 * 12.0)).abs() < 1e-9, "{ed}");
        let m = mean_rates(&r, 0, 1_000_000_000);
        assert_eq!(m["source_cores"], 1.0);
        // The log line round-trips, and activity_of_log skips other lines.
        let mut log = String::from("{\"type\":\"start\",\"utc_ns\":0}\n");
        for x in samples.iter().rev() {
            log.push_str(&activity_line(x).to_string());
            log.push('\n');
        }
        assert_eq!(activity_of_log(log.as_bytes()), samples.to_vec());
        // A process that restarted (counter backwards) counts as idle, not negative.
        let back = rates(&[s(0, 5.0, 5.0, 9), s(1, 1.0, 1.0, 3)]);
        assert_eq!(back[0].source_cores, 0.0);
        assert_eq!(back[0].link_bytes_per_s, 0.0);
    }
}
