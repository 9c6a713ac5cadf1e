//! Helpers shared by the end-to-end tests: run the real binary's emulator and capture.
#![allow(dead_code)]

pub mod qemu;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meter::emulator::SentRecord;

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("migwatt")
}

/// An emulator process on a pty, with a stable link path and a sent log.
pub struct Emulator {
    pub child: Child,
    pub path: PathBuf,
    pub sent_log: PathBuf,
}

impl Emulator {
    /// Start `migwatt meter emulate` with `args`, linked at `dir/name`.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Emulator {
        let link = dir.join(name);
        let sent_log = dir.join(format!("{name}.sent.jsonl"));
        let mut child = Command::new(bin())
            .args(["meter", "emulate", "--link"])
            .arg(&link)
            .arg("--sent-log")
            .arg(&sent_log)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("emulator prints its device path");
        assert_eq!(PathBuf::from(line.trim()), link);
        Emulator {
            child,
            path: link,
            sent_log,
        }
    }

    /// Every record generated so far.
    pub fn sent(&self) -> Vec<SentRecord> {
        read_sent(&self.sent_log)
    }

    /// Stop with SIGINT and wait.
    pub fn stop(mut self) -> Vec<SentRecord> {
        interrupt(&self.child);
        let _ = self.child.wait();
        read_sent(&self.sent_log)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send SIGINT to a child.
pub fn interrupt(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal");
}

/// Parse a sent log; a torn last line (the emulator still writing) is ignored.
pub fn read_sent(path: &Path) -> Vec<SentRecord> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Watts of the records a capture should have received intact, in order.
pub fn expected_watts(sent: &[SentRecord]) -> Vec<f64> {
    sent.iter()
        .filter(|r| r.expected_intact())
        .map(|r| r.watts)
        .collect()
}

/// Watts of every captured sample of `host`, in capture order.
pub fn captured_watts(dir: &Path, host: &str) -> Vec<f64> {
    datasets::samples::read_samples(dir)
        .unwrap()
        .into_iter()
        .filter(|s| s.host == host)
        .map(|s| s.watts().expect("watts present"))
        .collect()
}

/// Wait until `f` holds, polling; panics with `what` after a generous limit (a hang guard,
/// not a performance assertion).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Validate one coefficient file against the JSON Schema in the repository, then load it.
pub fn validate_coefficient_file(p: &Path) {
    let schema: serde_json::Value = serde_json::from_str(trainer::coef::SCHEMA_JSON).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{}: {errors:?}", p.display());
    trainer::coef::load(p).unwrap();
}

/// Validate every coefficient file (`v<N>.json`) under `dir`; returns how many there were.
pub fn validate_coefficient_files(dir: &Path) -> usize {
    let mut n = 0;
    for p in files_under(dir) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('v') && name.ends_with(".json") {
            validate_coefficient_file(&p);
            n += 1;
        }
    }
    n
}

/// Every file below `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
