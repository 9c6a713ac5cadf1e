//! The real-QEMU harness shared by the migration tests and the accuracy campaign: the guest
//! built by scripts/setup-qemu.sh, two QEMU processes (KVM where a guest boots under it, TCG
//! otherwise, decided once per test process), a destination started paused (`-S`) so that
//! the collector can verify its memory before it runs, and a rate-limiting relay.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
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

/// The QEMU binary the tests run.
pub const QEMU: &str = "qemu-system-x86_64";

/// The accelerator of this test process: KVM if the guest boots under it (its console says
/// something within a few seconds), else TCG. Tried once; prints the QEMU version and the
/// choice, so every real-QEMU test's output says what it ran on.
pub fn accel() -> &'static str {
    static ONCE: OnceLock<&'static str> = OnceLock::new();
    ONCE.get_or_init(|| {
        let g = guest_dir();
        let probe: Vec<String> = [
            "-cpu",
            "qemu64",
            "-m",
            "128M",
            "-nodefaults",
            "-no-reboot",
            "-kernel",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([g.join("vmlinuz").display().to_string()])
        .chain(["-initrd".to_string()])
        .chain([g.join("initramfs.cpio.gz").display().to_string()])
        .chain([
            "-append".to_string(),
            "console=ttyS0 rdinit=/init".to_string(),
        ])
        .collect();
        let a = calibrate::accel::choose(QEMU, &probe).as_str();
        eprintln!(
            "real-QEMU tests on: {}; accelerator {a} (KVM tried first)",
            qemu_version()
        );
        a
    })
}

/// `qemu-system-x86_64 --version`, first line.
pub fn qemu_version() -> String {
    Command::new(QEMU)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|e| format!("{QEMU}: {e}"))
}

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

/// Start the test guest dirtying `rate` pages/s over `hot_mib` MiB; with `incoming`, as a
/// paused (`-S`) destination listening there.
pub fn start_qemu(
    dir: &Path,
    name: &str,
    rate: u32,
    hot_mib: u32,
    incoming: Option<&Path>,
) -> Qemu {
    start_qemu_with(dir, name, rate, hot_mib, incoming, &[])
}

/// [`start_qemu`] with extra QEMU arguments (e.g. a gdbstub).
pub fn start_qemu_with(
    dir: &Path,
    name: &str,
    rate: u32,
    hot_mib: u32,
    incoming: Option<&Path>,
    extra: &[String],
) -> Qemu {
    let g = guest_dir();
    let serial = dir.join(format!("{name}.serial"));
    let mut cmd = Command::new(QEMU);
    cmd.args([
        "-accel",
        accel(),
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
    .args(extra)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::from(
        std::fs::File::create(dir.join(format!("{name}.stderr"))).unwrap(),
    ));
    if let Some(inc) = incoming {
        cmd.arg("-incoming")
            .arg(format!("unix:{}", inc.display()))
            .arg("-S");
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
        if text.contains("dirtier: ready") || text.contains("migwatt-workload: ready") {
            return;
        }
        if let Ok(Some(st)) = q.child.try_wait() {
            panic!("source QEMU exited ({st}) before the guest was ready:\n{text}");
        }
        assert!(Instant::now() < guard, "guest never became ready:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Wait until the migrated guest prints a new console line on the destination (its workload's
/// heartbeat): the destination runs a live guest. Panics on a kernel Oops or panic, or when
/// QEMU exits (a hang guard of 3 minutes, not a timing assertion).
pub fn wait_alive(q: &mut Qemu) -> String {
    let before = std::fs::read_to_string(&q.serial).unwrap_or_default().len();
    let guard = Instant::now() + Duration::from_secs(180);
    loop {
        let text = std::fs::read_to_string(&q.serial).unwrap_or_default();
        let new = &text[before.min(text.len())..];
        for bad in ["Oops", "Kernel panic", "BUG:", "general protection"] {
            assert!(!text.contains(bad), "the destination guest broke:\n{text}");
        }
        if new
            .lines()
            .any(|l| l.starts_with("dirtier:") || l.starts_with("migwatt-workload:"))
            && new.ends_with('\n')
        {
            return new.to_string();
        }
        if let Ok(Some(st)) = q.child.try_wait() {
            panic!("destination QEMU exited ({st}) after the migration:\n{text}");
        }
        assert!(
            Instant::now() < guard,
            "the destination guest printed nothing new:\n{text}"
        );
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
    /// The destination QEMU, still running (paused when the check failed).
    pub dst: Qemu,
    /// The collector's output folder (`raw/`, `migrations/`, `rounds/`).
    pub out: PathBuf,
    /// What `migwatt calibrate migrate` printed and returned.
    pub output: std::process::Output,
    /// Bytes the relay forwarded.
    pub relayed: u64,
    /// The run's temporary folder (sockets, serial logs, `out/`); removed on drop, after the
    /// destination QEMU (fields drop in order).
    pub tmp: tempfile::TempDir,
}

/// What a migration run is made of besides the guest and the link.
#[derive(Default)]
pub struct RunSetup {
    /// Extra arguments of `migwatt calibrate migrate`.
    pub migrate_args: Vec<String>,
    /// Extra arguments of the destination QEMU.
    pub dst_qemu_args: Vec<String>,
    /// Leave `--verify` out (it is on by default).
    pub no_verify: bool,
}

/// Boot source and destination guests dirtying `rate` pages/s over `hot_mib` MiB, relay the
/// migration at `link_bytes_per_s`, and run `migwatt calibrate migrate --verify` with a 50 ms
/// downtime limit, a 1 s pre-migration dirty-rate sample and `extra` arguments.
pub fn migrate_through_relay(
    prefix: &str,
    rate: u32,
    hot_mib: u32,
    link_bytes_per_s: u64,
    extra: &[String],
) -> Migrated {
    let setup = RunSetup {
        migrate_args: extra.to_vec(),
        ..RunSetup::default()
    };
    migrate_with_setup(prefix, rate, hot_mib, link_bytes_per_s, &setup)
}

/// [`migrate_through_relay`] with more choices.
pub fn migrate_with_setup(
    prefix: &str,
    rate: u32,
    hot_mib: u32,
    link_bytes_per_s: u64,
    setup: &RunSetup,
) -> Migrated {
    use assert_cmd::cargo::CommandCargoExt;
    let tmp = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let d = tmp.path();
    let incoming = d.join("in.sock");
    let relay_sock = d.join("relay.sock");
    let dst = start_qemu_with(
        d,
        "dst",
        rate,
        hot_mib,
        Some(&incoming),
        &setup.dst_qemu_args,
    );
    let mut src = start_qemu(d, "src", rate, hot_mib, None);
    wait_ready(&mut src);
    let relay = relay(&relay_sock, incoming, link_bytes_per_s);
    let out = d.join("out");
    let mut cmd = Command::cargo_bin("migwatt").unwrap();
    cmd.args(["calibrate", "migrate", "--qmp"])
        .arg(d.join("src.qmp"))
        .arg("--dest-qmp")
        .arg(d.join("dst.qmp"))
        .arg("--uri")
        .arg(format!("unix:{}", relay_sock.display()))
        .args(["--downtime-limit", "50ms", "--dirty-rate-sample", "1s"]);
    if !setup.no_verify {
        cmd.arg("--verify");
    }
    let output = cmd
        .args(&setup.migrate_args)
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    // Stopping the source closes its end of the relay, which then reports its total.
    drop(src);
    let relayed = relay.join().unwrap();
    Migrated {
        dst,
        out,
        output,
        relayed,
        tmp,
    }
}
