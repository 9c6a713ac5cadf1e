//! The real-QEMU harness shared by the migration tests and the accuracy campaign: the guest
//! built by scripts/setup-qemu.sh, two TCG QEMU processes, and a rate-limiting relay.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn guest_dir() -> PathBuf {
    let d = std::env::var_os("MIGWATT_QEMU_GUEST_DIR").expect(
        "MIGWATT_QEMU_GUEST_DIR not set: run scripts/setup-qemu.sh and export its last line",
    );
    let d = PathBuf::from(d);
    assert!(
        d.join("vmlinuz").is_file() && d.join("initramfs.cpio.gz").is_file(),
        "{}: no vmlinuz / initramfs.cpio.gz; run scripts/setup-qemu.sh",
        d.display()
    );
    d
}

/// A QEMU process, killed when dropped.
/// A QEMU process, killed on drop.
pub struct Qemu {
    /// The process.
    pub child: Child,
    /// Its serial console log.
    pub serial: PathBuf,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_qemu(
    dir: &Path,
    name: &str,
    rate: u32,
    hot_mib: u32,
    incoming: Option<&Path>,
) -> Qemu {
    let g = guest_dir();
    let serial = dir.join(format!("{name}.serial"));
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg",
        "-cpu",
        "qemu64",
        "-m",
        "128M",
        "-nodefaults",
    ])
    .args(["-display", "none", "-no-reboot"])
    .arg("-kernel")
    .arg(g.join("vmlinuz"))
    .arg("-initrd")
    .arg(g.join("initramfs.cpio.gz"))
    .arg("-append")
    .arg(format!(
        "console=ttyS0 rdinit=/init quiet dirty_pages_per_s={rate} dirty_hot_mib={hot_mib}"
    ))
    .arg("-serial")
    .arg(format!("file:{}", serial.display()))
    .arg("-qmp")
    .arg(format!(
        "unix:{},server=on,wait=off",
        dir.join(format!("{name}.qmp")).display()
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::from(
        std::fs::File::create(dir.join(format!("{name}.stderr"))).unwrap(),
    ));
    if let Some(inc) = incoming {
        cmd.arg("-incoming").arg(format!("unix:{}", inc.display()));
    }
    let child = cmd
        .spawn()
        .expect("qemu-system-x86_64 (run scripts/setup-qemu.sh)");
    Qemu { child, serial }
}

/// Wait until the guest's workload runs (a hang guard, not a timing assertion).
pub fn wait_ready(q: &mut Qemu) {
    let guard = Instant::now() + Duration::from_secs(600);
    loop {
        let text = std::fs::read_to_string(&q.serial).unwrap_or_default();
        if text.contains("dirtier: ready") {
            return;
        }
        if let Ok(Some(st)) = q.child.try_wait() {
            panic!("source QEMU exited ({st}) before the guest was ready:\n{text}");
        }
        assert!(Instant::now() < guard, "guest never became ready:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Accept one connection on `listen`, connect it to `target`, forward source -> destination
/// at `rate` bytes/s and the return path unlimited.
pub fn relay(listen: &Path, target: PathBuf, rate: u64) -> std::thread::JoinHandle<u64> {
    let l = UnixListener::bind(listen).unwrap();
    std::thread::spawn(move || {
        let (mut src, _) = l.accept().unwrap();
        let mut dst = UnixStream::connect(&target).unwrap();
        let (mut src_back, mut dst_back) = (src.try_clone().unwrap(), dst.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut dst_back, &mut src_back);
        });
        let start = Instant::now();
        let mut sent: u64 = 0;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if dst.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let _ = dst.shutdown(std::net::Shutdown::Write);
        sent
    })
}

/// One migration run between two fresh QEMUs joined by a rate-limited relay.
pub struct Migrated {
    /// The run's temporary folder (sockets, serial logs, `out/`); removed on drop.
    pub tmp: tempfile::TempDir,
    /// The collector's output folder (`raw/`, `migrations/`, `rounds/`).
    pub out: PathBuf,
    /// What `migwatt calibrate migrate` printed and returned.
    pub output: std::process::Output,
    /// Bytes the relay forwarded.
    pub relayed: u64,
}

/// Boot source and destination guests dirtying `rate` pages/s over `hot_mib` MiB, relay the
/// migration at `link_bytes_per_s`, and run `migwatt calibrate migrate` with a 50 ms
/// downtime limit, a 1 s pre-migration dirty-rate sample and `extra` arguments.
pub fn migrate_through_relay(
    prefix: &str,
    rate: u32,
    hot_mib: u32,
    link_bytes_per_s: u64,
    extra: &[String],
) -> Migrated {
    use assert_cmd::cargo::CommandCargoExt;
    let tmp = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let d = tmp.path();
    let incoming = d.join("in.sock");
    let relay_sock = d.join("relay.sock");
    let _dst = start_qemu(d, "dst", rate, hot_mib, Some(&incoming));
    let mut src = start_qemu(d, "src", rate, hot_mib, None);
    wait_ready(&mut src);
    let relay = relay(&relay_sock, incoming, link_bytes_per_s);
    let out = d.join("out");
    let output = Command::cargo_bin("migwatt")
        .unwrap()
        .args(["calibrate", "migrate", "--qmp"])
        .arg(d.join("src.qmp"))
        .arg("--dest-qmp")
        .arg(d.join("dst.qmp"))
        .arg("--uri")
        .arg(format!("unix:{}", relay_sock.display()))
        .args(["--downtime-limit", "50ms", "--dirty-rate-sample", "1s"])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    // Stopping the source closes its end of the relay, which then reports its total.
    drop(src);
    let relayed = relay.join().unwrap();
    Migrated {
        tmp,
        out,
        output,
        relayed,
    }
}
