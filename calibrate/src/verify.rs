//! Proof that a migration moved guest memory intact: the guest RAM of the paused source and
//! of the paused destination, compared page by page before the destination runs again.
//!
//! The guest-physical ranges come from the flat view of the system address space (HMP
//! `info mtree -f`, the FlatView that serves AS "memory"): every `ram`, `rom` and `romd`
//! range, so all guest RAM, the firmware and option ROMs. Both sides must show the same
//! ranges. Two ways to read them ([`VerifyMethod`]):
//!
//! - **process memory** (the default when permitted): the QEMU process behind each QMP socket
//!   (the socket's peer credentials), the host address of each range's RAM block (HMP
//!   `info ramblock`, checked against the process's mappings), and the bytes read straight
//!   from `/proc/PID/mem`. QEMU does no work and nothing is copied through it, so this runs
//!   at memory speed; it needs the right to read the QEMU processes' memory (same user and a
//!   ptrace policy that allows it, or root) and QMP sockets served by QEMU itself.
//! - **pmemsave**: each range dumped with QMP `pmemsave` on both sides at once into a named
//!   pipe (FIFO) in a private folder under the temporary folder, read while QEMU writes.
//!   Pipes rather than files: nothing as large as guest RAM is written to disk or tmpfs (a
//!   64 GiB guest would need 128 GiB), and reading overlaps dumping. QEMU copies the memory
//!   1 KiB at a time, so this is several times slower.
//!
//! Either way the pages are compared directly (`memcmp` of whole chunks, then of pages where
//! a chunk differs) rather than hashed: both sides are local, so a comparison is exact and
//! cheaper than hashing both. Both ways need the QEMU processes on this host.

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::qmp::Qmp;
use crate::CalibrateError;

/// Page size of the comparison, bytes (x86 guest pages).
pub const PAGE_BYTES: u64 = 4096;
/// Mismatching pages listed by address (the count covers them all).
pub const MAX_LISTED: usize = 16;
/// Bytes read from each side's pipe at a time (a multiple of [`PAGE_BYTES`]).
const CHUNK_BYTES: usize = 1 << 20;
/// Bytes read from each side's process memory at a time (a multiple of [`PAGE_BYTES`]).
const PROC_CHUNK_BYTES: usize = 4 << 20;

/// One guest-physical range of the system address space backed by RAM or ROM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RamRange {
    /// First guest-physical address.
    pub start: u64,
    /// Length, bytes.
    pub len_bytes: u64,
    /// `ram`, `rom` or `romd`.
    pub kind: String,
    /// The memory region's name (e.g. `pc.ram`, `pc.bios`).
    pub region: String,
    /// Offset of the range's start within that region, bytes.
    pub region_offset: u64,
}

/// Parse HMP `info mtree -f`: the `ram`, `rom` and `romd` ranges of the FlatView serving
/// AS "memory", in address order. Errors say what was missing.
pub fn parse_flat_view(text: &str) -> Result<Vec<RamRange>, String> {
    let mut in_memory_view = false;
    let mut seen_view = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("FlatView #") {
            if in_memory_view {
                break;
            }
            continue;
        }
        let t = line.trim();
        if t.starts_with("AS \"memory\"") {
            in_memory_view = true;
            seen_view = true;
            continue;
        }
        if !in_memory_view {
            continue;
        }
        // 0000000000100000-0000000007ffffff (prio 0, ram): pc.ram @0000000000100000 KVM
        let Some((span, rest)) = t.split_once(' ') else {
            continue;
        };
        let Some((a, b)) = span.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let Some(attrs) = rest.strip_prefix("(prio ") else {
            continue;
        };
        let Some((attrs, region)) = attrs.split_once("): ") else {
            continue;
        };
        let Some((_, kind)) = attrs.split_once(", ") else {
            continue;
        };
        if !matches!(kind, "ram" | "rom" | "romd") {
            continue;
        }
        let Some(len_bytes) = b.checked_sub(a).and_then(|l| l.checked_add(1)) else {
            return Err(format!(
                "range {span}: expected START-END with END >= START"
            ));
        };
        let mut words = region.split_whitespace();
        let name = words.next().unwrap_or("").to_string();
        let region_offset = match words.next().and_then(|w| w.strip_prefix('@')) {
            Some(h) => u64::from_str_radix(h, 16)
                .map_err(|_| format!("range {span}: region offset '@{h}' is not hexadecimal"))?,
            None => 0,
        };
        out.push(RamRange {
            start: a,
            len_bytes,
            kind: kind.to_string(),
            region: name,
            region_offset,
        });
    }
    if !seen_view {
        return Err("no FlatView serving AS \"memory\" in `info mtree -f`".into());
    }
    if out.is_empty() {
        return Err("the FlatView of AS \"memory\" has no ram or rom range".into());
    }
    out.sort_by_key(|r| r.start);
    Ok(out)
}

/// The RAM and ROM ranges of a QEMU's system address space (see [`parse_flat_view`]).
pub fn ram_ranges(q: &mut Qmp) -> Result<Vec<RamRange>, CalibrateError> {
    let (_, text) = q.execute(
        "human-monitor-command",
        Some(json!({"command-line": "info mtree -f"})),
        Duration::from_secs(30),
    )?;
    let text = text.as_str().unwrap_or("");
    parse_flat_view(text)
        .map_err(|m| CalibrateError::Verify(format!("{}: {m}", q.socket().display())))
}

/// How guest RAM is read for the comparison (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifyMethod {
    /// Process memory when permitted, else pmemsave.
    #[default]
    Auto,
    /// Process memory only (an error when not permitted).
    ProcessMemory,
    /// QMP pmemsave through pipes.
    Pmemsave,
}

/// One RAM block of a QEMU process (HMP `info ramblock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamBlock {
    /// Block name (the memory region's, e.g. `pc.ram`).
    pub name: String,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Host virtual address of its first byte in the QEMU process.
    pub hva: u64,
}

/// Parse HMP `info ramblock` (QEMU 8.2 and later print an `HVA` column).
pub fn parse_ramblocks(text: &str) -> Result<Vec<RamBlock>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<&str> = lines
        .next()
        .ok_or("empty `info ramblock`")?
        .split_whitespace()
        .collect();
    // Columns are counted from the right: "Block Name" and sizes such as "4 KiB" are two
    // words each on the left.
    let from_right = |name: &str| {
        head.iter()
            .position(|h| *h == name)
            .map(|i| head.len() - 1 - i)
    };
    let (Some(used), Some(hva)) = (from_right("Used"), from_right("HVA")) else {
        return Err("`info ramblock` has no Used and HVA columns (QEMU before 8.2?)".into());
    };
    let mut out = Vec::new();
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        let hex = |k: usize| {
            w.len()
                .checked_sub(1 + k)
                .and_then(|i| w.get(i))
                .and_then(|x| x.strip_prefix("0x"))
                .and_then(|x| u64::from_str_radix(x, 16).ok())
        };
        match (w.first(), hex(used), hex(hva)) {
            (Some(name), Some(u), Some(h)) => out.push(RamBlock {
                name: name.to_string(),
                used_bytes: u,
                hva: h,
            }),
            _ => return Err(format!("`info ramblock` line not understood: {l}")),
        }
    }
    Ok(out)
}

/// Where one side's ranges are read from in its QEMU process's memory.
struct ProcMem {
    mem: std::fs::File,
    /// Host address of each range's first byte, in range order.
    hva: Vec<u64>,
}

/// Open the memory of the QEMU process behind `q` and locate `ranges` in it; an error says
/// why process memory cannot be used.
fn open_proc_mem(q: &mut Qmp, ranges: &[RamRange]) -> Result<ProcMem, String> {
    let pid = q
        .peer_pid()
        .ok_or("no peer credentials on the QMP socket")?;
    let (_, text) = q
        .execute(
            "human-monitor-command",
            Some(json!({"command-line": "info ramblock"})),
            Duration::from_secs(30),
        )
        .map_err(|e| e.to_string())?;
    let blocks = parse_ramblocks(text.as_str().unwrap_or(""))?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
    let mut mapped: Vec<(u64, u64)> = maps
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect();
    mapped.sort_unstable();
    let mut hva = Vec::with_capacity(ranges.len());
    for r in ranges {
        let b = blocks
            .iter()
            .find(|b| b.name == r.region)
            .ok_or_else(|| format!("no RAM block named {} for {:#x}", r.region, r.start))?;
        let end = r.region_offset.checked_add(r.len_bytes);
        if end.is_none_or(|e| e > b.used_bytes) {
            return Err(format!("{:#x}: beyond RAM block {}", r.start, b.name));
        }
        let at = b.hva + r.region_offset;
        // The socket's peer must be the QEMU that owns these addresses (not a forwarder).
        if !covered(&mapped, at, at + r.len_bytes) {
            return Err(format!(
                "process {pid} does not map RAM block {} at {at:#x}: is the QMP socket forwarded?",
                b.name
            ));
        }
        hva.push(at);
    }
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .map_err(|e| format!("/proc/{pid}/mem: {e}"))?;
    Ok(ProcMem { mem, hva })
}

/// Whether the sorted mappings cover [a, b) without a hole.
fn covered(mapped: &[(u64, u64)], a: u64, b: u64) -> bool {
    let mut at = a;
    for &(s, e) in mapped {
        if s <= at && at < e {
            at = e;
            if at >= b {
                return true;
            }
        }
    }
    at >= b
}

/// Pages compared and the ones that differed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PageDiff {
    /// Pages compared (a range's partial last page counts as one).
    pub pages: u64,
    /// Pages that differed.
    pub mismatch_pages: u64,
    /// Guest-physical addresses of the first differing pages (at most [`MAX_LISTED`]).
    pub first_mismatches: Vec<u64>,
}

impl PageDiff {
    /// Compare `a` and `b` (equal lengths), the bytes at guest-physical `addr` of either side;
    /// `addr` starts a page of the range (chunks are fed at page multiples).
    pub fn compare(&mut self, addr: u64, a: &[u8], b: &[u8]) {
        debug_assert_eq!(a.len(), b.len());
        let page = PAGE_BYTES as usize;
        self.pages += a.len().div_ceil(page) as u64;
        // Whole chunks are nearly always equal: one memcmp, then pages only where it fails.
        if a == b {
            return;
        }
        for (i, (pa, pb)) in a.chunks(page).zip(b.chunks(page)).enumerate() {
            if pa != pb {
                self.mismatch_pages += 1;
                if self.first_mismatches.len() < MAX_LISTED {
                    self.first_mismatches.push(addr + (i * page) as u64);
                }
            }
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verification {
    /// The ranges compared (the same on both sides).
    pub ranges: Vec<RamRange>,
    /// Bytes compared per side.
    pub bytes: u64,
    /// The page comparison.
    pub diff: PageDiff,
    /// Wall time of the whole check (ranges, reading both sides, comparison), s.
    pub elapsed_s: f64,
    /// How the memory was read: `process memory` or `pmemsave`.
    pub method: String,
    /// Why process memory was not used, when `auto` fell back to pmemsave.
    pub fallback_reason: Option<String>,
}

impl Verification {
    /// Whether every page matched.
    pub fn verified(&self) -> bool {
        self.diff.mismatch_pages == 0
    }
}

/// Compare all guest RAM of two paused QEMUs (see the module docs).
pub fn compare_guest_ram(
    src: &mut Qmp,
    dst: &mut Qmp,
    method: VerifyMethod,
) -> Result<Verification, CalibrateError> {
    let t0 = Instant::now();
    let ranges = ram_ranges(src)?;
    let theirs = ram_ranges(dst)?;
    if ranges != theirs {
        return Err(CalibrateError::Verify(format!(
            "the guest memory layouts differ (source {}; destination {}): are both QEMUs started with the same -m and machine?",
            describe(&ranges),
            describe(&theirs)
        )));
    }
    let mut diff = PageDiff::default();
    let mut bytes = 0;
    let mut fallback_reason = None;
    let procs = match method {
        VerifyMethod::Pmemsave => None,
        _ => match (open_proc_mem(src, &ranges), open_proc_mem(dst, &ranges)) {
            (Ok(a), Ok(b)) => Some((a, b)),
            (a, b) => {
                let why = [("source", a.err()), ("destination", b.err())]
                    .into_iter()
                    .filter_map(|(side, e)| e.map(|e| format!("{side}: {e}")))
                    .collect::<Vec<_>>()
                    .join("; ");
                if method == VerifyMethod::ProcessMemory {
                    return Err(CalibrateError::Verify(format!(
                        "cannot read the QEMU processes' memory: {why}"
                    )));
                }
                fallback_reason = Some(why);
                None
            }
        },
    };
    let method = match procs {
        Some((a, b)) => {
            bytes = compare_process_memory(&a, &b, &ranges, &mut diff)?;
            "process memory"
        }
        None => {
            stream_ranges(&mut [src, dst], &ranges, &mut |addr, chunks| {
                diff.compare(addr, chunks[0], chunks[1]);
                bytes += chunks[0].len() as u64;
            })?;
            "pmemsave"
        }
    };
    Ok(Verification {
        ranges,
        bytes,
        diff,
        elapsed_s: t0.elapsed().as_secs_f64(),
        method: method.into(),
        fallback_reason,
    })
}

/// Read every range from both processes' memory, a chunk at a time, the two sides on two
/// threads, and compare them into `diff`; returns the bytes compared per side.
fn compare_process_memory(
    a: &ProcMem,
    b: &ProcMem,
    ranges: &[RamRange],
    diff: &mut PageDiff,
) -> Result<u64, CalibrateError> {
    let mut bytes = 0;
    let read = |p: &ProcMem, i: usize, off: u64, buf: &mut [u8]| {
        p.mem.read_exact_at(buf, p.hva[i] + off).map_err(|e| {
            CalibrateError::Verify(format!(
                "reading guest RAM at {:#x} from the QEMU process: {e}",
                ranges[i].start + off
            ))
        })
    };
    let mut ba = vec![0u8; PROC_CHUNK_BYTES];
    let mut bb = vec![0u8; PROC_CHUNK_BYTES];
    for (i, r) in ranges.iter().enumerate() {
        let mut off = 0u64;
        while off < r.len_bytes {
            let n = (r.len_bytes - off).min(PROC_CHUNK_BYTES as u64) as usize;
            let (xa, xb) = (&mut ba[..n], &mut bb[..n]);
            std::thread::scope(|sc| {
                let t = sc.spawn(|| read(b, i, off, xb));
                let ra = read(a, i, off, xa);
                let rb = t.join().unwrap_or_else(|_| {
                    Err(CalibrateError::Verify("a reader thread panicked".into()))
                });
                ra.and(rb)
            })?;
            diff.compare(r.start + off, &ba[..n], &bb[..n]);
            bytes += n as u64;
            off += n as u64;
        }
    }
    Ok(bytes)
}

fn describe(r: &[RamRange]) -> String {
    r.iter()
        .map(|x| format!("{:#x}+{:#x} {} {}", x.start, x.len_bytes, x.kind, x.region))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A private folder for the pipes, removed on drop.
struct PipeDir(PathBuf);

impl PipeDir {
    fn new() -> Result<PipeDir, CalibrateError> {
        let base = std::env::temp_dir();
        for n in 0..100u32 {
            let p = base.join(format!(
                "migwatt-verify-{}-{}-{n}",
                std::process::id(),
                crate::qmp::utc_now_ns()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(PipeDir(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(CalibrateError::Io { path: p, source }),
            }
        }
        Err(CalibrateError::Verify(format!(
            "{}: cannot create a private folder for the memory dumps",
            base.display()
        )))
    }
}

impl Drop for PipeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One side's dump being read: the pipe and the outcome of its `pmemsave`.
struct Reader {
    side: String,
    pipe: std::fs::File,
    path: PathBuf,
    done: Receiver<Result<(), CalibrateError>>,
    finished: bool,
}

impl Reader {
    /// The `pmemsave` outcome, if it has come: Some(Err) stops the check.
    fn outcome(&mut self) -> Result<bool, CalibrateError> {
        if self.finished {
            return Ok(true);
        }
        match self.done.try_recv() {
            Ok(Ok(())) => {
                self.finished = true;
                Ok(true)
            }
            Ok(Err(e)) => Err(e),
            Err(TryRecvError::Empty) => Ok(false),
            Err(TryRecvError::Disconnected) => Err(CalibrateError::Verify(format!(
                "{}: the dump thread ended without an answer",
                self.side
            ))),
        }
    }

    /// Fill `buf` from the pipe.
    fn fill(&mut self, buf: &mut [u8], range_end: u64) -> Result<(), CalibrateError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut got = 0;
        let mut wait = false;
        while got < buf.len() {
            if wait {
                // Nothing to read: sleep until QEMU writes, with a timeout only to notice a
                // pmemsave that failed before writing anything.
                let mut fds = [PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(200u16));
            }
            wait = true;
            match self.pipe.read(&mut buf[got..]) {
                Ok(0) => {
                    // No writer: not connected yet, or done. Done and short is an error.
                    if self.outcome()? {
                        return Err(CalibrateError::Verify(format!(
                            "{}: the dump of {} ended {} bytes short of {range_end:#x}",
                            self.side,
                            self.path.display(),
                            buf.len() - got
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(n) => {
                    got += n;
                    wait = false;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.outcome()?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CalibrateError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// Dump every range of every side (all sides at once, through pipes) and hand each chunk's
/// bytes of all sides to `on_chunk` with the chunk's guest-physical address. Chunks start at
/// page multiples of their range.
pub fn stream_ranges(
    sides: &mut [&mut Qmp],
    ranges: &[RamRange],
    on_chunk: &mut dyn FnMut(u64, &[&[u8]]),
) -> Result<(), CalibrateError> {
    let dir = PipeDir::new()?;
    let mut bufs: Vec<Vec<u8>> = vec![vec![0u8; CHUNK_BYTES]; sides.len()];
    for (ri, r) in ranges.iter().enumerate() {
        let mut readers = Vec::new();
        let mut jobs = Vec::new();
        for (si, q) in sides.iter_mut().enumerate() {
            let path = dir.0.join(format!("r{ri}-s{si}.fifo"));
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).map_err(|e| {
                CalibrateError::Io {
                    path: path.clone(),
                    source: e.into(),
                }
            })?;
            // Opened before QEMU opens it for writing, non-blocking so that the open does
            // not wait for the writer (and neither does QEMU's).
            let pipe = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(&path)
                .map_err(|source| CalibrateError::Io {
                    path: path.clone(),
                    source,
                })?;
            // A larger pipe lets QEMU write ahead while the other side is read; optional.
            let _ = nix::fcntl::fcntl(&pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
            let (tx, rx) = mpsc::channel();
            readers.push(Reader {
                side: q.socket().display().to_string(),
                pipe,
                path: path.clone(),
                done: rx,
                finished: false,
            });
            jobs.push((&mut **q, path, tx));
        }
        let (start, len) = (r.start, r.len_bytes);
        // pmemsave blocks QEMU's monitor until it has written everything: generous.
        let timeout = Duration::from_secs(60 + 30 * (len >> 30));
        std::thread::scope(|scope| -> Result<(), CalibrateError> {
            for (q, path, tx) in jobs {
                scope.spawn(move || {
                    let args = json!({"val": start, "size": len, "filename": path});
                    let r = q
                        .execute("pmemsave", Some(args), timeout)
                        .map(|_: (i64, Value)| ());
                    let _ = tx.send(r);
                });
            }
            let result = (|| {
                let mut off = 0u64;
                while off < len {
                    let n = (len - off).min(CHUNK_BYTES as u64) as usize;
                    for (rd, buf) in readers.iter_mut().zip(bufs.iter_mut()) {
                        rd.fill(&mut buf[..n], start + len)?;
                    }
                    let views: Vec<&[u8]> = bufs.iter().map(|b| &b[..n]).collect();
                    on_chunk(start + off, &views);
                    off += n as u64;
                }
                for rd in &mut readers {
                    // Wait for pmemsave's reply (an error after the last byte still counts).
                    let deadline = Instant::now() + timeout;
                    while !rd.outcome()? {
                        if Instant::now() > deadline {
                            return Err(CalibrateError::Verify(format!(
                                "{}: no pmemsave reply",
                                rd.side
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                Ok(())
            })();
            if result.is_err() {
                // A QEMU still dumping (or still opening its pipe, which blocks until a reader
                // is there) must get to the end, or its monitor hangs: drain what it writes.
                let mut scratch = vec![0u8; 1 << 16];
                let deadline = Instant::now() + timeout;
                for rd in &mut readers {
                    while !matches!(rd.outcome(), Ok(true) | Err(_)) && Instant::now() < deadline {
                        match rd.pipe.read(&mut scratch) {
                            Ok(0) | Err(_) => std::thread::sleep(Duration::from_millis(1)),
                            Ok(_) => {}
                        }
                    }
                }
            }
            drop(readers);
            result
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MTREE: &str = "FlatView #0
 AS \"I/O\", root: io
 Root memory region: io
  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan

FlatView #3
 AS \"memory\", root: system
 AS \"cpu-memory-0\", root: system
 Root memory region: system
  0000000000000000-00000000000c2fff (prio 0, ram): pc.ram
  00000000000c3000-00000000000e7fff (prio 0, rom): pc.ram @00000000000c3000
  00000000000e8000-00000000000effff (prio 0, ram): pc.ram @00000000000e8000
  00000000000f0000-00000000000fffff (prio 0, rom): pc.ram @00000000000f0000
  0000000000100000-0000000007ffffff (prio 0, ram): pc.ram @0000000000100000 KVM
  00000000fd000000-00000000fdffffff (prio 1, ramd): vfio-bar
  00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic
  00000000fee00000-00000000feefffff (prio 4096, i/o): apic-msi
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios

FlatView #4
 AS \"pci\", root: bus master container
  0000000000000000-0000000007ffffff (prio 0, ram): other
";

    #[test]
    fn the_memory_flat_view_gives_every_ram_and_rom_range() {
        let r = parse_flat_view(MTREE).unwrap();
        let got: Vec<(u64, u64, &str, &str, u64)> = r
            .iter()
            .map(|x| {
                (
                    x.start,
                    x.len_bytes,
                    x.kind.as_str(),
                    x.region.as_str(),
                    x.region_offset,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, 0xc3000, "ram", "pc.ram", 0),
                (0xc3000, 0x25000, "rom", "pc.ram", 0xc3000),
                (0xe8000, 0x8000, "ram", "pc.ram", 0xe8000),
                (0xf0000, 0x10000, "rom", "pc.ram", 0xf0000),
                (0x100000, 0x7f00000, "ram", "pc.ram", 0x100000),
                (0xfffc0000, 0x40000, "rom", "pc.bios", 0),
            ]
        );
        // All of a 128 MiB guest's RAM, and the BIOS.
        let ram: u64 = r
            .iter()
            .filter(|x| x.start < 1 << 32 && x.region == "pc.ram")
            .map(|x| x.len_bytes)
            .sum();
        assert_eq!(ram, 128 << 20);
    }

    #[test]
    fn a_dump_without_the_memory_view_is_an_error() {
        let e = parse_flat_view("FlatView #0\n AS \"I/O\", root: io\n").unwrap_err();
        assert!(e.contains("AS \"memory\""), "{e}");
        let e = parse_flat_view("FlatView #0\n AS \"memory\", root: system\n").unwrap_err();
        assert!(e.contains("no ram"), "{e}");
    }

    #[test]
    fn ram_blocks_and_their_host_addresses_are_read() {
        let text = "              Block Name    PSize              Offset               Used              Total                HVA  RO
                  pc.ram    4 KiB  0x0000000000000000 0x0000000040000000 0x0000000040000000 0x00007f4ea3e00000  rw
    /rom@etc/acpi/tables    4 KiB  0x0000000040080000 0x0000000000020000 0x0000000000200000 0x00007f4f30c00000  ro
                 pc.bios    2 MiB  0x0000000040000000 0x0000000000040000 0x0000000000040000 0x00007f4f31a00000  ro
";
        let b = parse_ramblocks(text).unwrap();
        assert_eq!(
            b[0],
            RamBlock {
                name: "pc.ram".into(),
                used_bytes: 1 << 30,
                hva: 0x7f4ea3e00000
            }
        );
        assert_eq!(
            (b[2].name.as_str(), b[2].used_bytes, b[2].hva),
            ("pc.bios", 0x40000, 0x7f4f31a00000)
        );
        let old = "  Block Name    PSize              Offset               Used              Total\n  pc.ram 4 KiB 0x0 0x1000 0x1000\n";
        assert!(parse_ramblocks(old).unwrap_err().contains("HVA"));
    }

    #[test]
    fn a_range_must_be_mapped_without_a_hole() {
        let maps = [(0x1000, 0x3000), (0x3000, 0x5000), (0x8000, 0x9000)];
        assert!(covered(&maps, 0x1000, 0x5000));
        assert!(covered(&maps, 0x2000, 0x4000));
        assert!(!covered(&maps, 0x4000, 0x8800));
        assert!(!covered(&maps, 0x9000, 0x9001));
    }

    #[test]
    fn differing_pages_are_counted_and_located() {
        let a = vec![7u8; 5 * 4096 + 100];
        let mut b = a.clone();
        b[4096 + 17] ^= 1; // page 1
        b[5 * 4096 + 99] ^= 0x80; // the partial last page
        let mut d = PageDiff::default();
        d.compare(0x10_0000, &a, &b);
        assert_eq!(d.pages, 6);
        assert_eq!(d.mismatch_pages, 2);
        assert_eq!(d.first_mismatches, [0x10_1000, 0x10_5000]);
    }

    #[test]
    fn the_list_of_addresses_is_capped_but_the_count_is_not() {
        let a = vec![0u8; 40 * 4096];
        let b = vec![1u8; 40 * 4096];
        let mut d = PageDiff::default();
        d.compare(0, &a, &b);
        assert_eq!(d.mismatch_pages, 40);
        assert_eq!(d.first_mismatches.len(), MAX_LISTED);
    }

    proptest! {
        /// Whatever the chunking, the differing pages are exactly the pages holding a changed
        /// byte, at their guest-physical addresses.
        #[test]
        fn page_comparison_finds_exactly_the_changed_pages(
            pages in 1usize..48,
            tail in 0usize..4096,
            flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..12),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
            base_page in 0u64..1 << 20,
        ) {
            let len = pages * 4096 + tail;
            let a: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut b = a.clone();
            let mut want = std::collections::BTreeSet::new();
            for (at, x) in &flips {
                let at = at % len;
                b[at] ^= x;
                want.insert(at / 4096);
            }
            want.retain(|p| a[p * 4096..((p + 1) * 4096).min(len)] != b[p * 4096..((p + 1) * 4096).min(len)]);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (pages + 1) * 4096).collect();
            cuts.push(0);
            cuts.push(len);
            cuts.sort_unstable();
            cuts.dedup();
            let base = base_page * 4096;
            let mut d = PageDiff::default();
            for w in cuts.windows(2) {
                d.compare(base + w[0] as u64, &a[w[0]..w[1]], &b[w[0]..w[1]]);
            }
            prop_assert_eq!(d.pages, len.div_ceil(4096) as u64);
            prop_assert_eq!(d.mismatch_pages, want.len() as u64);
            let addrs: Vec<u64> = want.iter().take(MAX_LISTED).map(|p| base + (*p * 4096) as u64).collect();
            prop_assert_eq!(d.first_mismatches, addrs);
        }

        /// The parser never panics on arbitrary text and keeps only well-formed ranges.
        #[test]
        fn mtree_parser_survives_arbitrary_text(lines in proptest::collection::vec(".{0,80}", 0..20)) {
            let text = format!("FlatView #1\n AS \"memory\", root: system\n{}", lines.join("\n"));
            if let Ok(r) = parse_flat_view(&text) {
                for x in r {
                    prop_assert!(x.len_bytes >= 1);
                    prop_assert!(matches!(x.kind.as_str(), "ram" | "rom" | "romd"));
                }
            }
        }
    }
}
