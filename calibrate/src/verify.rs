//! Proof that a migration moved guest memory intact: the guest RAM of the paused source and
//! of the paused destination, compared page by page before the destination runs again.
//!
//! The guest-physical ranges come from the flat view of the system address space (HMP
//! `info mtree -f`, the FlatView that serves AS "memory"): every `ram`, `rom` and `romd`
//! range, so all guest RAM, the firmware and option ROMs. Both sides must show the same
//! ranges. Each range is dumped with QMP `pmemsave` on both sides at once into a named pipe
//! (FIFO) that this process reads while QEMU writes, comparing the two streams 4 KiB page by
//! page as they arrive. Pipes rather than files: nothing as large as guest RAM is written to
//! disk or tmpfs (a 64 GiB guest would need 128 GiB), and reading overlaps dumping. The pages
//! are compared directly (`memcmp` of whole chunks, then of pages where a chunk differs)
//! rather than hashed: both dumps are local, so a comparison is exact and cheaper than
//! hashing both sides.
//!
//! The pipes live in a private folder under the system temporary folder, so the QEMU
//! processes must run on this host with access to it (as the collector's QMP sockets
//! already imply, unless they are forwarded from elsewhere).

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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
/// Bytes read from each side at a time (a multiple of [`PAGE_BYTES`]).
const CHUNK_BYTES: usize = 1 << 20;

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
        out.push(RamRange {
            start: a,
            len_bytes,
            kind: kind.to_string(),
            region: region.split_whitespace().next().unwrap_or("").to_string(),
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
    /// Wall time of the whole check (ranges, dumps, comparison), s.
    pub elapsed_s: f64,
}

impl Verification {
    /// Whether every page matched.
    pub fn verified(&self) -> bool {
        self.diff.mismatch_pages == 0
    }
}

/// Compare all guest RAM of two paused QEMUs (see the module docs).
pub fn compare_guest_ram(src: &mut Qmp, dst: &mut Qmp) -> Result<Verification, CalibrateError> {
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
    stream_ranges(&mut [src, dst], &ranges, &mut |addr, chunks| {
        diff.compare(addr, chunks[0], chunks[1]);
        bytes += chunks[0].len() as u64;
    })?;
    Ok(Verification {
        ranges,
        bytes,
        diff,
        elapsed_s: t0.elapsed().as_secs_f64(),
    })
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
        let got: Vec<(u64, u64, &str, &str)> = r
            .iter()
            .map(|x| (x.start, x.len_bytes, x.kind.as_str(), x.region.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, 0xc3000, "ram", "pc.ram"),
                (0xc3000, 0x25000, "rom", "pc.ram"),
                (0xe8000, 0x8000, "ram", "pc.ram"),
                (0xf0000, 0x10000, "rom", "pc.ram"),
                (0x100000, 0x7f00000, "ram", "pc.ram"),
                (0xfffc0000, 0x40000, "rom", "pc.bios"),
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
