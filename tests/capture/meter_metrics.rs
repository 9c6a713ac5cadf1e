//! End to end: `migwatt meter capture --metrics` serves live Prometheus metrics while an
//! emulated meter is captured; scrapes agree with the samples written, and slow, stuck or
//! malformed clients change nothing about the capture.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use datasets::samples::{read_samples, SampleRow};

/// A running `meter capture --metrics 127.0.0.1:0`.
struct Capture {
    child: Child,
    addr: SocketAddr,
    stderr: std::thread::JoinHandle<String>,
}

impl Capture {
    /// Start capturing `port` (`NAME=DEVICE`) into `dir/data` with `extra` options.
    fn start(dir: &Path, port: &str, extra: &[&str]) -> Capture {
        let mut child = Command::new(bin())
            .args(["meter", "capture", "--settle", "50ms", "--port", port])
            .arg("--out-dir")
            .arg(dir.join("data"))
            .args(["--metrics", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn capture");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(err).lines() {
                let line = line.unwrap_or_default();
                if let Some((_, rest)) = line.split_once("metrics on http://") {
                    let addr = rest.trim_end_matches("/metrics").parse::<SocketAddr>();
                    let _ = tx.send(addr.expect("a socket address"));
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        // A hang guard, not a performance limit.
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("no metrics address: {}", stderr.join().unwrap());
            }
        };
        assert!(addr.ip().is_loopback());
        Capture {
            child,
            addr,
            stderr,
        }
    }

    /// Wait for the capture to end; its exit status and stderr.
    fn finish(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().expect("wait capture");
        (status, self.stderr.join().unwrap())
    }
}

/// One HTTP exchange over a plain TCP connection: status code, head and body.
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    // Hang guards only.
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(request).expect("send request");
    s.shutdown(Shutdown::Write).expect("half-close");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read response");
    let text = String::from_utf8(out).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (code, head.to_string(), body.to_string())
}

/// A scrape: every sample line as `name{labels}` -> value, and the raw text.
struct Scrape {
    values: HashMap<String, f64>,
    text: String,
}

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("{key} not in scrape:\n{}", self.text))
    }
}

/// `GET /metrics`; None if the server closed without answering (connection cap reached).
fn try_scrape(addr: SocketAddr) -> Option<Scrape> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nAccept: text/plain\r\n\r\n")
        .ok()?;
    s.shutdown(Shutdown::Write).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    if out.is_empty() {
        return None;
    }
    let (head, body) = out.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let values = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("NAME VALUE");
            (k.to_string(), v.parse::<f64>().expect("a number"))
        })
        .collect();
    Some(Scrape {
        values,
        text: body.to_string(),
    })
}

fn scrape(addr: SocketAddr) -> Scrape {
    try_scrape(addr).expect("an answer to GET /metrics")
}

/// Samples of `host` in sequence order.
fn samples_of(dir: &Path, host: &str) -> Vec<SampleRow> {
    let mut rows: Vec<SampleRow> = read_samples(dir)
        .unwrap()
        .into_iter()
        .filter(|r| r.host == host)
        .collect();
    rows.sort_by_key(|r| r.seq);
    rows
}

/// Energy of consecutive samples by trapezoids on the monotonic clock, J; intervals that end
/// in a sample after a gap are not counted.
fn trapezoid_j(rows: &[SampleRow]) -> f64 {
    let mut e = 0.0;
    for w in rows.windows(2) {
        if w[1].gap_before_ns.is_none() {
            let (w0, w1) = (w[0].watts().unwrap(), w[1].watts().unwrap());
            e += (w0 + w1) / 2.0 * ((w[1].mono_ns - w[0].mono_ns) as f64 / 1e9);
        }
    }
    e
}

#[test]
fn a_scrape_during_capture_agrees_with_the_samples_written() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(
        dir.path(),
        "meter0",
        &[
            "--speed",
            "20",
            "--profile",
            "bursts:idle=100,peak=150,period=2,burst=1,start=0",
            "--faults",
            "nul=0.1,junk=0.05,truncate=0.05",
            "--seed",
            "3",
        ],
    );
    let report = dir.path().join("report.json");
    let cap = Capture::start(
        dir.path(),
        &format!("src={}", emu.path.display()),
        &["--duration", "6s", "--report", report.to_str().unwrap()],
    );
    let key = |name: &str| format!("{name}{{host=\"src\"}}");
    let mut first = None;
    wait_until("30 samples in a scrape", || {
        let s = scrape(cap.addr);
        let enough = s.values.get(&key("migwatt_samples_total")) >= Some(&30.0);
        first = Some(s);
        enough
    });
    let first = first.unwrap();
    let later = scrape(cap.addr);
    let (status, stderr) = cap.finish();
    assert!(status.success(), "{stderr}");

    // Every family is declared with HELP and TYPE, with its unit in the name.
    for (name, kind) in [
        ("migwatt_power_watts", "gauge"),
        ("migwatt_voltage_volts", "gauge"),
        ("migwatt_current_amperes", "gauge"),
        ("migwatt_power_factor_ratio", "gauge"),
        ("migwatt_energy_joules_total", "counter"),
        ("migwatt_samples_total", "counter"),
        ("migwatt_rejected_fragments_total", "counter"),
        ("migwatt_gaps_total", "counter"),
        ("migwatt_last_sample_age_seconds", "gauge"),
        ("migwatt_meter_info", "gauge"),
    ] {
        assert!(
            first.text.contains(&format!("\n# TYPE {name} {kind}\n"))
                || first.text.starts_with(&format!("# HELP {name} ")),
            "{name} {kind} not declared:\n{}",
            first.text
        );
        assert!(first.text.contains(&format!("# HELP {name} ")), "{name}");
    }

    // The scrape is a consistent snapshot: its last sample is sample n-1 of the dataset.
    let rows = samples_of(&dir.path().join("data"), "src");
    let n = first.get(&key("migwatt_samples_total")) as usize;
    assert!(rows.len() >= n, "{} rows, scrape said {n}", rows.len());
    let last = &rows[n - 1];
    assert_eq!(
        first.get(&key("migwatt_power_watts")),
        last.fields[0].unwrap()
    );
    assert_eq!(
        first.get(&key("migwatt_voltage_volts")),
        last.fields[1].unwrap()
    );
    assert_eq!(
        first.get(&key("migwatt_current_amperes")),
        last.fields[2].unwrap()
    );
    assert_eq!(
        first.get(&key("migwatt_power_factor_ratio")),
        last.fields[13].unwrap()
    );
    let want_j = trapezoid_j(&rows[..n]);
    let got_j = first.get(&key("migwatt_energy_joules_total"));
    assert!(want_j > 0.0);
    assert!(
        (got_j - want_j).abs() <= 1e-9 * want_j,
        "energy {got_j} J, samples give {want_j} J"
    );
    assert_eq!(first.get(&key("migwatt_gaps_total")), 0.0);
    assert!(rows[..n].iter().all(|r| r.gap_before_ns.is_none()));
    let age = first.get(&key("migwatt_last_sample_age_seconds"));
    assert!(age.is_finite() && age >= 0.0, "{age}");

    // The info metric names the meter that wrote the samples.
    let info = first
        .values
        .keys()
        .find(|k| k.starts_with("migwatt_meter_info{host=\"src\","))
        .unwrap_or_else(|| panic!("no info metric:\n{}", first.text));
    assert_eq!(first.get(info), 1.0);
    let label = |l: &str| {
        let start = info.find(&format!("{l}=\"")).unwrap() + l.len() + 2;
        info[start..].split('"').next().unwrap().to_string()
    };
    assert_eq!(label("meter_id"), last.meter_id);
    let firmware = label("firmware");
    let (version, build) = firmware.split_once(" (").expect("firmware as X.Y (BUILD)");
    assert!(
        last.meter_id
            .ends_with(&format!("-fw{version}-{}", build.trim_end_matches(')'))),
        "{firmware} vs {}",
        last.meter_id
    );

    // Counters only grow; rejected fragments never exceed what the capture finally reported.
    for name in ["migwatt_samples_total", "migwatt_energy_joules_total"] {
        assert!(later.get(&key(name)) >= first.get(&key(name)), "{name}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let by_kind = &report["meters"][0]["rejected_by_kind"];
    let mut rejected_seen = 0.0;
    for (k, v) in &later.values {
        if let Some(rest) = k.strip_prefix("migwatt_rejected_fragments_total{host=\"src\",kind=\"")
        {
            let kind = rest.trim_end_matches("\"}").replace('_', " ");
            let total = by_kind[&kind].as_f64().unwrap_or(0.0);
            assert!(*v <= total, "{kind}: scraped {v}, final {total}");
            rejected_seen += v;
        }
    }
    assert!(rejected_seen > 0.0, "faults were injected:\n{}", later.text);

    // And the capture itself lost nothing.
    let sent = emu.stop();
    assert_eq!(
        captured_watts(&dir.path().join("data"), "src"),
        expected_watts(&sent)
    );
}

#[test]
fn stuck_scrapers_do_not_delay_a_single_sample() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(
        dir.path(),
        "meter0",
        &[
            "--speed",
            "20",
            "--profile",
            "bursts:idle=80,peak=120,period=1,burst=0.5,start=0",
        ],
    );
    // Long enough for the exporter to time out the stuck clients (5 s) well before the end.
    let cap = Capture::start(
        dir.path(),
        &format!("src={}", emu.path.display()),
        &["--duration", "15s"],
    );
    let samples = |s: &Scrape| s.get("migwatt_samples_total{host=\"src\"}");
    wait_until("the first samples", || samples(&scrape(cap.addr)) >= 5.0);

    let mut stuck = Vec::new();
    // More clients that connect and never send nor read than the exporter serves at once.
    for _ in 0..80 {
        stuck.push(TcpStream::connect(cap.addr).unwrap());
    }
    // Partial requests that stall.
    for _ in 0..10 {
        let mut s = TcpStream::connect(cap.addr).unwrap();
        s.write_all(b"GET /metr").unwrap();
        stuck.push(s);
    }
    // Whole requests whose responses are never read.
    for _ in 0..5 {
        let mut s = TcpStream::connect(cap.addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        stuck.push(s);
    }
    // Scraping resumes (once stuck clients time out) and the counts kept growing meanwhile.
    let before = samples(&scrape_eventually(cap.addr));
    wait_until("samples to keep coming", || {
        try_scrape(cap.addr).is_some_and(|s| samples(&s) > before + 10.0)
    });

    let (status, stderr) = cap.finish();
    drop(stuck);
    assert!(status.success(), "{stderr}");
    let sent = emu.stop();
    let data = dir.path().join("data");
    let want = expected_watts(&sent);
    assert!(want.len() > 60, "only {} records sent", want.len());
    assert_eq!(captured_watts(&data, "src"), want);
    // No sample came late enough to count as a gap.
    let rows = samples_of(&data, "src");
    assert!(rows
        .iter()
        .all(|r| r.flags == 0 && r.gap_before_ns.is_none()));
    assert!(
        stderr.contains(" 0 gaps") && !stderr.contains("gap of") && !stderr.contains("gap:"),
        "{stderr}"
    );
}

/// Scrape, retrying while the exporter is at its connection cap.
fn scrape_eventually(addr: SocketAddr) -> Scrape {
    let mut got = None;
    wait_until("a scrape to be answered", || {
        got = try_scrape(addr);
        got.is_some()
    });
    got.unwrap()
}

#[test]
fn malformed_requests_get_4xx_and_the_capture_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(
        dir.path(),
        "meter0",
        &["--speed", "20", "--profile", "constant:123.4"],
    );
    let cap = Capture::start(
        dir.path(),
        &format!("src={}", emu.path.display()),
        &["--duration", "5s"],
    );
    let samples = |s: &Scrape| s.get("migwatt_samples_total{host=\"src\"}");
    wait_until("the first samples", || samples(&scrape(cap.addr)) >= 5.0);
    let before = samples(&scrape(cap.addr));

    let mut oversized = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    oversized.extend(std::iter::repeat_n(b'x', 64 * 1024));
    oversized.extend_from_slice(b"\r\n\r\n");
    let cases: Vec<(&[u8], u16)> = vec![
        (b"garbage\r\n\r\n", 400),
        (b"\x00\xff\xfe\x16\x03\x01\r\n\r\n", 400),
        (b"GET /metrics HTTP/9.9\r\n\r\n", 400),
        (b"GET /metrics\r\n\r\n", 400),
        (b"GET metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            405,
        ),
        (b"GET /nope HTTP/1.1\r\n\r\n", 404),
        (&oversized, 431),
    ];
    for (request, want) in &cases {
        let (code, head, body) = http(cap.addr, request);
        assert_eq!(
            code,
            *want,
            "{:?} -> {head}\n{body}",
            String::from_utf8_lossy(&request[..request.len().min(60)])
        );
    }
    // A request cut short by the client.
    let mut s = TcpStream::connect(cap.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");

    // The exporter still answers and the capture went on.
    wait_until("samples after the bad requests", || {
        samples(&scrape(cap.addr)) > before + 5.0
    });
    let (status, stderr) = cap.finish();
    assert!(status.success(), "{stderr}");
    let sent = emu.stop();
    let got = captured_watts(&dir.path().join("data"), "src");
    assert!(got.len() > 40, "only {} samples", got.len());
    assert!(got.iter().all(|w| *w == 123.4));
    assert_eq!(got, expected_watts(&sent));
}

#[test]
fn a_metrics_port_in_use_is_a_clear_error_before_any_meter_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(bin())
        .args(["meter", "capture", "--port"])
        .arg(format!("src={}", dir.path().join("no-meter").display()))
        .arg("--out-dir")
        .arg(dir.path().join("data"))
        .args(["--metrics", &addr.to_string(), "--duration", "1s"])
        .output()
        .expect("run capture");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr}")) && stderr.contains("in use"),
        "{stderr}"
    );
    // It failed before opening the meter.
    assert!(!stderr.contains("cannot open"), "{stderr}");
}
