//! Crash-safe storage of captured samples.
//!
//! Each host's samples go to a segment: a hidden write-ahead journal
//! (`host=H/date=D/.seg-<first utc ns>-<pid>.wal`, one text line per sample, appended as the
//! sample arrives and fsynced at least every flush interval) that is turned into a Parquet file
//! (`seg-<first utc ns>-<pid>.parquet`, written atomically) when the segment closes: after the
//! segment length, at a date change, and on exit. After `kill -9` at any moment every
//! Parquet file is complete (atomic rename) and the journal holds every sample written to it;
//! [`recover`] turns leftover journals into Parquet, and sets aside (never drops) any line it
//! cannot read, under `DIR/_setaside/`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use datasets::samples::{partition_dir, write_samples_file, SampleRow, FIELD_COUNT};
use datasets::DatasetError;
use nix::fcntl::{Flock, FlockArg};

/// First line of every journal written now.
const MAGIC: &str = "# migwatt samples journal v2";
/// What every journal's first line starts with, whatever its version.
const MAGIC_ANY: &str = "# migwatt samples journal v";
/// Columns of a v1 journal line (before sources had kinds): still recovered.
const COLUMNS_V1: usize = 7 + FIELD_COUNT;
/// Columns of a journal line: v1's, then energy counter (J), source kind and source
/// interval (ns).
const COLUMNS: usize = COLUMNS_V1 + 3;

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Filesystem error on a named path.
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing a Parquet segment failed.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A Parquet file just written does not hold the journal's samples: the journal is kept.
    #[error("{path}: written, but reading it back {problem}; the journal {journal} is kept")]
    NotVerified {
        path: PathBuf,
        journal: PathBuf,
        problem: String,
    },
    /// A host name that cannot be a folder name.
    #[error(transparent)]
    Name(#[from] datasets::names::NameError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// UTC date (YYYY-MM-DD) of a UTC ns timestamp.
pub fn utc_date(utc_ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(utc_ns)
        .format("%Y-%m-%d")
        .to_string()
}

fn encode_line(r: &SampleRow) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "{},{},{},{},{},{},{}",
        r.meter_id,
        r.utc_ns,
        r.mono_ns,
        r.seq,
        r.connection,
        r.gap_before_ns.map(|g| g.to_string()).unwrap_or_default(),
        r.flags
    );
    for f in r.fields.iter().chain([&r.energy_counter_j]) {
        s.push(',');
        if let Some(v) = f {
            // Rust prints the shortest string that parses back to the same f64.
            let _ = write!(s, "{v}");
        }
    }
    // Kind and interval go after the counter: the numeric columns keep their v1 places.
    let _ = write!(
        s,
        ",{},{}",
        r.source_kind.as_deref().unwrap_or_default(),
        r.source_interval_ns
            .map(|i| i.to_string())
            .unwrap_or_default()
    );
    s.push('\n');
    s
}

fn decode_line(host: &str, line: &str) -> Option<SampleRow> {
    let f: Vec<&str> = line.split(',').collect();
    if f.len() != COLUMNS && f.len() != COLUMNS_V1 {
        return None;
    }
    let opt_f64 = |s: &str| -> Option<Option<f64>> {
        if s.is_empty() {
            Some(None)
        } else {
            s.parse::<f64>().ok().filter(|v| v.is_finite()).map(Some)
        }
    };
    let mut fields = [None; FIELD_COUNT];
    for (i, v) in f[7..COLUMNS_V1].iter().enumerate() {
        fields[i] = opt_f64(v)?;
    }
    let (mut energy_counter_j, mut source_kind, mut source_interval_ns) = (None, None, None);
    if f.len() == COLUMNS {
        energy_counter_j = opt_f64(f[COLUMNS_V1])?;
        let kind = f[COLUMNS_V1 + 1];
        if !kind.is_empty() {
            // Kinds are lower-case words with `+` (`redfish+https`).
            if !kind.chars().all(|c| c.is_ascii_lowercase() || c == '+') {
                return None;
            }
            source_kind = Some(kind.to_string());
        }
        let interval = f[COLUMNS_V1 + 2];
        if !interval.is_empty() {
            source_interval_ns = Some(interval.parse::<i64>().ok().filter(|&i| i >= 0)?);
        }
    }
    Some(SampleRow {
        host: host.to_string(),
        meter_id: f[0].to_string(),
        utc_ns: f[1].parse().ok()?,
        mono_ns: f[2].parse().ok()?,
        seq: f[3].parse().ok()?,
        connection: f[4].parse().ok()?,
        gap_before_ns: if f[5].is_empty() {
            None
        } else {
            Some(f[5].parse().ok()?)
        },
        flags: f[6].parse().ok()?,
        fields,
        source_kind,
        source_interval_ns,
        energy_counter_j,
    })
}

/// An open segment of one host.
struct Segment {
    wal_path: PathBuf,
    parquet_path: PathBuf,
    file: Flock<File>,
    rows: Vec<SampleRow>,
    date: String,
    opened: Instant,
    dirty: bool,
}

/// Writes one host's samples: journal first, Parquet when a segment closes.
pub struct HostWriter {
    out_dir: PathBuf,
    host: String,
    segment_len: Duration,
    seg: Option<Segment>,
    /// Samples made durable in Parquet so far.
    pub samples_written: u64,
    /// Parquet files written.
    pub files_written: Vec<PathBuf>,
}

impl HostWriter {
    /// A writer for `host` under `out_dir`, closing segments after `segment_len`.
    pub fn new(out_dir: &Path, host: &str, segment_len: Duration) -> Self {
        HostWriter {
            out_dir: out_dir.to_path_buf(),
            host: host.to_string(),
            segment_len,
            seg: None,
            samples_written: 0,
            files_written: Vec::new(),
        }
    }

    /// Append one sample (written to the journal at once; fsynced by [`HostWriter::sync`]).
    pub fn append(&mut self, row: SampleRow) -> Result<(), JournalError> {
        let date = utc_date(row.utc_ns);
        let rotate = match &self.seg {
            Some(s) => s.date != date || s.opened.elapsed() >= self.segment_len,
            None => false,
        };
        if rotate {
            self.close_segment()?;
        }
        if self.seg.is_none() {
            self.open_segment(&row, date)?;
        }
        let seg = self.seg.as_mut().expect("segment opened above");
        let line = encode_line(&row);
        seg.file
            .write_all(line.as_bytes())
            .map_err(io(&seg.wal_path))?;
        seg.rows.push(row);
        seg.dirty = true;
        Ok(())
    }

    fn open_segment(&mut self, first: &SampleRow, date: String) -> Result<(), JournalError> {
        // The host becomes a folder name: never one that leaves the dataset.
        datasets::names::check_name("host name", &self.host)?;
        let dir = partition_dir(&self.out_dir, &self.host, &date);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let stem = format!("seg-{}-{}", first.utc_ns, std::process::id());
        let wal_path = dir.join(format!(".{stem}.wal"));
        let parquet_path = dir.join(format!("{stem}.parquet"));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&wal_path)
            .map_err(io(&wal_path))?;
        writeln!(file, "{MAGIC} host={}", self.host).map_err(io(&wal_path))?;
        file.sync_all().map_err(io(&wal_path))?;
        datasets::io::sync_dir(&dir)?;
        // The lock tells `recover` in another process that this journal is live.
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            JournalError::Io {
                path: wal_path.clone(),
                source: std::io::Error::from(e),
            }
        })?;
        self.seg = Some(Segment {
            wal_path,
            parquet_path,
            file,
            rows: Vec::new(),
            date,
            opened: Instant::now(),
            dirty: false,
        });
        Ok(())
    }

    /// Make everything appended so far durable (fdatasync of the journal).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if let Some(seg) = &mut self.seg {
            if seg.dirty {
                seg.file.sync_data().map_err(io(&seg.wal_path))?;
                seg.dirty = false;
            }
        }
        Ok(())
    }

    /// Close the current segment: write its Parquet file atomically, then drop the journal.
    pub fn close_segment(&mut self) -> Result<(), JournalError> {
        let Some(seg) = self.seg.take() else {
            return Ok(());
        };
        seg.file.sync_data().map_err(io(&seg.wal_path))?;
        if !seg.rows.is_empty() {
            write_samples_file(&seg.parquet_path, &self.host, &seg.rows)?;
            verify_written(&seg.parquet_path, &seg.wal_path, &seg.rows)?;
            self.samples_written += seg.rows.len() as u64;
            self.files_written.push(seg.parquet_path.clone());
        }
        // Only now, its samples read back from the Parquet file, is the journal redundant.
        fs::remove_file(&seg.wal_path).map_err(io(&seg.wal_path))?;
        if let Some(dir) = seg.wal_path.parent() {
            datasets::io::sync_dir(dir)?;
        }
        Ok(())
    }

    /// Rows in the open segment (not yet in Parquet).
    pub fn pending(&self) -> usize {
        self.seg.as_ref().map_or(0, |s| s.rows.len())
    }
}

/// Key of a sample within one host's journal: (utc_ns, seq, mono_ns).
type SampleKey = (i64, u64, i64);

fn key(r: &SampleRow) -> SampleKey {
    (r.utc_ns, r.seq, r.mono_ns)
}

/// Check that every one of `rows` is in the Parquet file at `path`, as written: the condition
/// for dropping the journal that holds them.
fn verify_written(path: &Path, journal: &Path, rows: &[SampleRow]) -> Result<(), JournalError> {
    let not_verified = |problem: String| JournalError::NotVerified {
        path: path.to_path_buf(),
        journal: journal.to_path_buf(),
        problem,
    };
    let back = datasets::samples::read_samples_file(path)
        .map_err(|e| not_verified(format!("failed: {e}")))?;
    let present: std::collections::HashMap<SampleKey, &SampleRow> =
        back.iter().map(|r| (key(r), r)).collect();
    let missing = rows
        .iter()
        .filter(|r| present.get(&key(r)).is_none_or(|b| b.fields != r.fields))
        .count();
    if missing > 0 {
        return Err(not_verified(format!(
            "lacks {missing} of the journal's {} samples",
            rows.len()
        )));
    }
    Ok(())
}

/// What [`recover`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecoveryReport {
    /// Journals turned into Parquet files.
    pub recovered_files: Vec<PathBuf>,
    /// Samples recovered.
    pub recovered_samples: u64,
    /// Journals whose samples were all in their Parquet file already, read back (a crash
    /// between the rename and the delete).
    pub already_written: u64,
    /// Journals skipped because a running capture holds them.
    pub live: Vec<PathBuf>,
    /// Unreadable lines moved aside: (journal, line number, where they went).
    pub set_aside: Vec<(PathBuf, usize, PathBuf)>,
    /// Files moved aside whole: (the file, where it went, why).
    pub set_aside_files: Vec<(PathBuf, PathBuf, String)>,
    /// Journals that had lost their header line (their first line is a sample).
    pub lost_headers: Vec<PathBuf>,
    /// Stale temporary files removed.
    pub removed_temp: u64,
}

/// A new file under `root/_setaside/` mirroring `original`'s place under `root`, named
/// `name` (with `-2`, `-3`... before the extension if taken: nothing set aside is replaced).
fn set_aside_path(root: &Path, original: &Path, name: &str) -> Result<PathBuf, JournalError> {
    let rel = original.strip_prefix(root).unwrap_or(original);
    let dir = root
        .join("_setaside")
        .join(rel.parent().unwrap_or(Path::new("")));
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let (stem, ext) = match name.split_once('.') {
        Some((s, e)) => (s.to_string(), format!(".{e}")),
        None => (name.to_string(), String::new()),
    };
    let mut candidate = dir.join(name);
    let mut n = 2;
    while fs::symlink_metadata(&candidate).is_ok() {
        candidate = dir.join(format!("{stem}-{n}{ext}"));
        n += 1;
    }
    Ok(candidate)
}

/// Move a file aside whole (rename; the folder is synced).
fn move_aside(root: &Path, file: &Path, name: &str) -> Result<PathBuf, JournalError> {
    let dest = set_aside_path(root, file, name)?;
    fs::rename(file, &dest).map_err(io(file))?;
    if let Some(d) = dest.parent() {
        datasets::io::sync_dir(d)?;
    }
    if let Some(d) = file.parent() {
        datasets::io::sync_dir(d)?;
    }
    Ok(dest)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            if e.file_name() != "_setaside" {
                walk(&p, out)?;
            }
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn pid_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Turn every journal left under `dir` by a crashed capture into Parquet. Journals held by a
/// running capture are left alone. Lines that cannot be read are moved to `dir/_setaside/`.
pub fn recover(dir: &Path) -> Result<RecoveryReport, JournalError> {
    let mut report = RecoveryReport::default();
    if !dir.exists() {
        return Ok(report);
    }
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(io(dir))?;
    files.sort();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(rest) = name.strip_prefix('.').filter(|_| name.contains(".tmp-")) {
            // `.NAME.tmp-PID`: a half-written Parquet file of a dead writer; its rows are
            // still in the journal, so the temporary file carries nothing.
            let pid = rest
                .rsplit("tmp-")
                .next()
                .and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|p| !pid_alive(p)) {
                fs::remove_file(&path).map_err(io(&path))?;
                report.removed_temp += 1;
            }
            continue;
        }
        if !(name.starts_with(".seg-") && name.ends_with(".wal")) {
            continue;
        }
        recover_one(dir, &path, &name, &mut report)?;
    }
    Ok(report)
}

fn recover_one(
    root: &Path,
    wal: &Path,
    name: &str,
    report: &mut RecoveryReport,
) -> Result<(), JournalError> {
    let file = File::open(wal).map_err(io(wal))?;
    let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
        report.live.push(wal.to_path_buf());
        return Ok(());
    };
    let bytes = fs::read(wal).map_err(io(wal))?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.split_inclusive('\n').collect();
    // Only a header line is consumed as the header: a journal whose header was lost starts
    // with a sample, and that sample is recovered like the others.
    let (header_host, body) = match all.first() {
        Some(l) if l.starts_with(MAGIC_ANY) => {
            let h = l.trim_end().rsplit("host=").next().unwrap_or_default();
            (Some(h.to_string()), 1)
        }
        Some(_) => {
            report.lost_headers.push(wal.to_path_buf());
            (None, 0)
        }
        None => (None, 0),
    };
    let path_host = wal
        .ancestors()
        .filter_map(|p| p.file_name()?.to_str()?.strip_prefix("host="))
        .map(str::to_string)
        .next();
    let valid = |h: &String| datasets::names::check_name("host name", h).is_ok();
    let Some(host) = path_host
        .filter(valid)
        .or_else(|| header_host.filter(valid))
    else {
        // No host to file the samples under: the journal goes aside whole, untouched.
        let dest = move_aside(root, wal, name.trim_start_matches('.'))?;
        report.set_aside_files.push((
            wal.to_path_buf(),
            dest,
            "no host=NAME folder and no readable header: host unknown".into(),
        ));
        return Ok(());
    };
    let mut rows = Vec::new();
    let mut bad = String::new();
    let mut first_bad = None;
    for (i, line) in all.iter().enumerate().skip(body) {
        // A line without its newline is the tail torn by the crash.
        let row = line.strip_suffix('\n').and_then(|l| decode_line(&host, l));
        match row {
            Some(r) => rows.push(r),
            None => {
                first_bad.get_or_insert(i + 1);
                bad.push_str(line);
                if !line.ends_with('\n') {
                    bad.push('\n');
                }
            }
        }
    }
    let stem = name
        .trim_start_matches('.')
        .trim_end_matches(".wal")
        .to_string();
    let parquet = wal.with_file_name(format!("{stem}.parquet"));
    if fs::symlink_metadata(&parquet).is_ok() {
        // A crash between the rename and the delete, or a damaged file: the journal goes
        // only once every one of its samples is read back from the Parquet file.
        match datasets::samples::read_samples_file(&parquet) {
            Ok(existing) => {
                let have: std::collections::HashSet<SampleKey> = existing.iter().map(key).collect();
                let missing: Vec<SampleRow> = rows
                    .iter()
                    .filter(|r| !have.contains(&key(r)))
                    .cloned()
                    .collect();
                if missing.is_empty() {
                    report.already_written += 1;
                } else {
                    // Both sets of samples, in one file written over the old one.
                    let mut union = existing;
                    union.extend(missing.iter().cloned());
                    union.sort_by_key(|r| (r.utc_ns, r.seq));
                    write_samples_file(&parquet, &host, &union)?;
                    verify_written(&parquet, wal, &union)?;
                    report.recovered_samples += missing.len() as u64;
                    report.recovered_files.push(parquet.clone());
                }
            }
            Err(e) => {
                let dest = move_aside(root, &parquet, &format!("{stem}.parquet"))?;
                report.set_aside_files.push((
                    parquet.clone(),
                    dest,
                    format!("unreadable: {}", datasets::error_chain(&e)),
                ));
                write_recovered(&parquet, wal, &host, &rows, report)?;
            }
        }
    } else if !rows.is_empty() {
        write_recovered(&parquet, wal, &host, &rows, report)?;
    }
    if let Some(line) = first_bad {
        let dest = set_aside_path(root, wal, &format!("{stem}.unreadable-lines.txt"))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .map_err(io(&dest))?;
        f.write_all(bad.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io(&dest))?;
        report.set_aside.push((wal.to_path_buf(), line, dest));
    }
    fs::remove_file(wal).map_err(io(wal))?;
    if let Some(d) = wal.parent() {
        datasets::io::sync_dir(d)?;
    }
    Ok(())
}

/// Write a journal's samples as its Parquet file and read them back.
fn write_recovered(
    parquet: &Path,
    wal: &Path,
    host: &str,
    rows: &[SampleRow],
    report: &mut RecoveryReport,
) -> Result<(), JournalError> {
    if rows.is_empty() {
        return Ok(());
    }
    write_samples_file(parquet, host, rows)?;
    verify_written(parquet, wal, rows)?;
    report.recovered_samples += rows.len() as u64;
    report.recovered_files.push(parquet.to_path_buf());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::samples::read_samples;

    fn row(i: u64) -> SampleRow {
        let mut fields = [None; FIELD_COUNT];
        fields[0] = Some(100.0 + i as f64 / 10.0);
        fields[2] = Some(0.378);
        SampleRow {
            host: "h1".into(),
            meter_id: "wattsup-PRO".into(),
            utc_ns: 1_764_000_000_000_000_000 + i as i64 * 1_000_000_000,
            mono_ns: 5_000 + i as i64,
            seq: i,
            connection: 1,
            gap_before_ns: (i == 3).then_some(2_000_000_000),
            flags: u32::from(i == 3),
            fields,
            source_kind: Some(
                if i.is_multiple_of(2) {
                    "wattsup"
                } else {
                    "rapl"
                }
                .into(),
            ),
            source_interval_ns: (i != 4).then_some(1_000_000_000),
            energy_counter_j: (i % 2 == 1).then_some(262_143.328_85 + i as f64),
        }
    }

    #[test]
    fn lines_round_trip_exactly() {
        for i in 0..10 {
            let r = row(i);
            let l = encode_line(&r);
            assert_eq!(decode_line("h1", l.trim_end()).unwrap(), r);
        }
    }

    #[test]
    fn v1_journal_lines_are_still_read() {
        // A line as a v1 journal held it (no kind, interval or counter).
        let line = "wattsup-PRO,1764000000000000000,5000,0,1,,0,100,,0.378,,,,,,,,,,,,,,,";
        let r = decode_line("h1", line).unwrap();
        assert_eq!(r.fields[0], Some(100.0));
        assert_eq!(r.fields[2], Some(0.378));
        assert_eq!(
            (r.source_kind, r.source_interval_ns, r.energy_counter_j),
            (None, None, None)
        );
        assert!(decode_line("h1", &format!("{line},x")).is_none());
        assert!(decode_line("h1", &format!("{line},,Bad Kind,")).is_none());
    }

    #[test]
    fn closed_segments_become_parquet_and_journals_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HostWriter::new(dir.path(), "h1", Duration::from_secs(3600));
        for i in 0..5 {
            w.append(row(i)).unwrap();
        }
        w.sync().unwrap();
        w.close_segment().unwrap();
        let back = read_samples(dir.path()).unwrap();
        assert_eq!(back, (0..5).map(row).collect::<Vec<_>>());
        let mut all = Vec::new();
        walk(dir.path(), &mut all).unwrap();
        assert!(all.iter().all(|p| !p.to_string_lossy().ends_with(".wal")));
    }

    #[test]
    fn recovery_rebuilds_parquet_and_sets_aside_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HostWriter::new(dir.path(), "h1", Duration::from_secs(3600));
        for i in 0..4 {
            w.append(row(i)).unwrap();
        }
        w.sync().unwrap();
        let wal = w.seg.as_ref().unwrap().wal_path.clone();
        // Simulate a crash mid-line: the process dies, the lock goes with it.
        std::mem::forget(w);
        let mut f = OpenOptions::new().append(true).open(&wal).unwrap();
        f.write_all(b"wattsup-PRO,17640000").unwrap();
        drop(f);
        // A forgotten writer still holds its lock in this process: release it by reopening.
        let rep = {
            // flock locks belong to the open file description; the forgotten one is leaked,
            // so emulate the dead process by copying the journal to a fresh name.
            let copy = wal.with_file_name(".seg-1-999999.wal");
            fs::copy(&wal, &copy).unwrap();
            fs::remove_file(&wal).unwrap();
            recover(dir.path()).unwrap()
        };
        assert_eq!(rep.recovered_samples, 4);
        assert_eq!(rep.set_aside.len(), 1);
        assert_eq!(rep.set_aside[0].1, 6);
        let aside = fs::read_to_string(&rep.set_aside[0].2).unwrap();
        assert_eq!(aside, "wattsup-PRO,17640000\n");
        assert_eq!(read_samples(dir.path()).unwrap().len(), 4);
        // Nothing left to recover the second time.
        let again = recover(dir.path()).unwrap();
        assert_eq!(again.recovered_samples, 0);
    }

    #[test]
    fn live_journals_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HostWriter::new(dir.path(), "h1", Duration::from_secs(3600));
        w.append(row(0)).unwrap();
        let rep = recover(dir.path()).unwrap();
        assert_eq!(rep.live.len(), 1);
        assert_eq!(rep.recovered_samples, 0);
        w.close_segment().unwrap();
    }

    /// A journal as a killed capture leaves it, under a name no lock of this process holds.
    fn dead_journal(dir: &Path, rows: &[SampleRow], header: bool) -> PathBuf {
        let d = partition_dir(dir, "h1", &utc_date(rows[0].utc_ns));
        fs::create_dir_all(&d).unwrap();
        let wal = d.join(format!(".seg-{}-999999.wal", rows[0].utc_ns));
        let mut text = String::new();
        if header {
            text += &format!("{MAGIC} host=h1\n");
        }
        for r in rows {
            text += &encode_line(r);
        }
        fs::write(&wal, text).unwrap();
        wal
    }

    #[test]
    fn a_journal_without_its_header_loses_no_sample() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (0..5).map(row).collect();
        let wal = dead_journal(dir.path(), &rows, false);
        let rep = recover(dir.path()).unwrap();
        assert_eq!(rep.recovered_samples, 5, "{rep:?}");
        assert_eq!(rep.lost_headers, vec![wal.clone()]);
        assert!(rep.set_aside.is_empty(), "{rep:?}");
        assert_eq!(read_samples(dir.path()).unwrap(), rows);
        assert!(!wal.exists());
    }

    #[test]
    fn a_journal_outside_any_host_folder_is_set_aside_whole() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join(".seg-1-999999.wal");
        let text = encode_line(&row(0));
        fs::write(&wal, &text).unwrap();
        let rep = recover(dir.path()).unwrap();
        assert_eq!(rep.recovered_samples, 0);
        let (from, to, why) = &rep.set_aside_files[0];
        assert_eq!(from, &wal);
        assert!(why.contains("host unknown"), "{why}");
        assert_eq!(fs::read_to_string(to).unwrap(), text);
        assert!(!wal.exists());
    }

    #[test]
    fn a_corrupt_parquet_of_the_same_stem_is_set_aside_and_the_journal_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (0..4).map(row).collect();
        let wal = dead_journal(dir.path(), &rows, true);
        let parquet = wal.with_file_name(format!("seg-{}-999999.parquet", rows[0].utc_ns));
        fs::write(&parquet, b"PAR1 not really").unwrap();
        let rep = recover(dir.path()).unwrap();
        assert_eq!(rep.recovered_samples, 4, "{rep:?}");
        assert_eq!(rep.already_written, 0);
        let (from, to, why) = &rep.set_aside_files[0];
        assert_eq!(from, &parquet);
        assert!(why.starts_with("unreadable"), "{why}");
        assert_eq!(fs::read(to).unwrap(), b"PAR1 not really");
        assert_eq!(read_samples(dir.path()).unwrap(), rows);
        assert!(!wal.exists());
    }

    #[test]
    fn a_parquet_missing_some_journal_samples_gets_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (0..6).map(row).collect();
        let wal = dead_journal(dir.path(), &rows, true);
        let parquet = wal.with_file_name(format!("seg-{}-999999.parquet", rows[0].utc_ns));
        write_samples_file(&parquet, "h1", &rows[..3]).unwrap();
        let rep = recover(dir.path()).unwrap();
        assert_eq!(rep.recovered_samples, 3, "{rep:?}");
        assert_eq!(read_samples(dir.path()).unwrap(), rows);
        // All present already: the journal is redundant, verified.
        let wal = dead_journal(dir.path(), &rows, true);
        let rep = recover(dir.path()).unwrap();
        assert_eq!(
            (rep.already_written, rep.recovered_samples),
            (1, 0),
            "{rep:?}"
        );
        assert!(!wal.exists());
    }

    #[test]
    fn a_host_that_would_leave_the_dataset_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HostWriter::new(dir.path(), "../../evil", Duration::from_secs(3600));
        let e = w.append(row(0)).unwrap_err().to_string();
        assert!(e.contains("host name '../../evil'"), "{e}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            /// Whatever happens to a journal's lines, every sample line that is intact ends in
            /// Parquet and every other line in the set-aside file: nothing is dropped.
            #[test]
            fn recovery_keeps_every_line(
                n in 1usize..8,
                header in any::<bool>(),
                junk in proptest::collection::vec((0usize..10, "[ -~]{0,20}"), 0..4),
                torn in 0usize..12,
            ) {
                let dir = tempfile::tempdir().unwrap();
                let rows: Vec<_> = (0..n as u64).map(row).collect();
                let wal = dead_journal(dir.path(), &rows, header);
                let mut lines: Vec<String> = fs::read_to_string(&wal)
                    .unwrap()
                    .split_inclusive('\n')
                    .map(str::to_string)
                    .collect();
                let start = usize::from(header);
                for (at, text) in &junk {
                    let at = start + at % (lines.len() + 1 - start);
                    lines.insert(at, format!("{text}\n"));
                }
                let mut text = lines.concat();
                text.truncate(text.len() - (torn % 4).min(text.len()));
                fs::write(&wal, &text).unwrap();
                let rep = recover(dir.path()).unwrap();
                let back = read_samples(dir.path()).map(|r| r.len()).unwrap_or(0);
                let aside: usize = rep
                    .set_aside
                    .iter()
                    .map(|(_, _, p)| fs::read_to_string(p).unwrap().lines().count())
                    .sum();
                let body = text.split_inclusive('\n').count() - start;
                prop_assert_eq!(back + aside, body, "{:?}", rep);
                prop_assert!(!wal.exists());
            }
        }
    }
}
