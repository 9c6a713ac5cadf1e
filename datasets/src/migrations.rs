//! The migrations dataset: one row per live migration, written by `migwatt calibrate ingest`
//! and `migwatt calibrate migrate`.
//!
//! Layout: `DIR/migrations/*.parquet` (one file per ingest or collector run; readers take the
//! whole folder). Units are in the column names: bytes, seconds, UTC nanoseconds, bytes/s.
//! `t_down_s` is the best downtime figure the source had and `t_down_method` says how it was
//! measured (see [`DOWNTIME_METHODS`]); `t_down_reported_s` is the hypervisor's own figure.
//!
//! Schema 1.1.0 added `memory_verified`, `memory_mismatch_pages` (the page-by-page comparison
//! of the paused source's and destination's guest RAM after the migration) and `accelerator`;
//! 1.0.0 files are read with those null. Schema 1.2.0 added the pre-migration probe's
//! `probe_dirty_rate_bytes_per_s`, `probe_hot_set_bytes` and `probe_nonzero_share`
//! (`calibrate probe`); older files are read with those null.

use std::path::Path;

use polars::prelude::*;

use crate::io::{
    col_err, column, parquet_files, read_parquet_checked, DatasetError, DatasetKind, SchemaVersion,
};
use crate::windows::{Role, WindowRow};

/// The migrations dataset kind and version.
pub const MIGRATIONS: DatasetKind = DatasetKind {
    name: "migrations",
    version: SchemaVersion {
        major: 1,
        minor: 2,
        patch: 0,
    },
};

/// Values of `t_down_method` and what each means.
pub const DOWNTIME_METHODS: [(&str, &str); 6] = [
    (
        "guest_stop_resume",
        "source QMP STOP event to destination QMP RESUME event (what the guest sees)",
    ),
    (
        "source_stop_destination_completed",
        "source QMP STOP event to the destination's MIGRATION {status: completed} event: the \
         instant a destination started without -S would run the guest (used when the \
         destination is held paused for verification, so its RESUME comes later)",
    ),
    (
        "qemu_reported",
        "QEMU's query-migrate `downtime` (measured on the source)",
    ),
    ("libvirt_reported", "virsh domjobinfo `Total downtime`"),
    (
        "xen_last_iteration",
        "Xen: time of the last (paused) iteration from xend.log timestamps",
    ),
    (
        "none",
        "no downtime figure (not converged, or the log has none)",
    ),
];

/// One live migration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MigrationRow {
    /// Unique id, `HYPERVISOR-VM-START` (deterministic: re-ingesting a log gives the same id).
    pub migration_id: String,
    /// Hypervisor and its stop rules: `xen3`, `xen4`, `qemu`, `libvirt`.
    pub hypervisor: String,
    /// VM name.
    pub vm: String,
    /// Workload label (e.g. a DaCapo benchmark), if known.
    pub workload: Option<String>,
    /// Guest memory, bytes.
    pub vm_mem_bytes: u64,
    /// Page size, bytes.
    pub page_size_bytes: u64,
    /// Start of the migration, UTC ns (None when the log has no clock).
    pub start_utc_ns: Option<i64>,
    /// End of the migration (guest running on the destination), UTC ns.
    pub end_utc_ns: Option<i64>,
    /// Total migration time, s.
    pub t_mig_s: f64,
    /// Downtime, s (see `t_down_method`).
    pub t_down_s: Option<f64>,
    /// How `t_down_s` was measured: one of [`DOWNTIME_METHODS`].
    pub t_down_method: String,
    /// The hypervisor's own downtime figure, s, when it reports one.
    pub t_down_reported_s: Option<f64>,
    /// Bytes sent for the migration.
    pub v_mig_bytes: u64,
    /// Pages sent as all-zero pages (QEMU `duplicate`), when reported.
    pub zero_pages: Option<u64>,
    /// Number of rounds (QEMU: dirty-sync-count; Xen: iterations including the last).
    pub rounds: u32,
    /// Whether the migration completed (false: cancelled, failed or timed out).
    pub converged: bool,
    /// Final status: `completed`, `cancelled`, `failed`, `incomplete`.
    pub status: String,
    /// Bandwidth limit in force, bytes/s (QEMU max-bandwidth; None = none known).
    pub bandwidth_limit_bytes_per_s: Option<f64>,
    /// Downtime limit in force, s (QEMU downtime-limit).
    pub downtime_limit_s: Option<f64>,
    /// Round cap of the stop rule (Xen 3: 29, Xen 4.6+: 5; None = no cap, QEMU).
    pub max_rounds: Option<u32>,
    /// Cap on total sent as a multiple of guest memory (Xen 3: 3).
    pub max_factor: Option<f64>,
    /// QEMU auto-converge capability (None = not applicable or unknown).
    pub auto_converge: Option<bool>,
    /// Dirtying rate sampled before the migration, bytes/s (the model's D).
    pub pre_dirty_rate_bytes_per_s: Option<f64>,
    /// Length of that sample, s.
    pub pre_dirty_sample_s: Option<f64>,
    /// Source host name (as in the samples dataset's `host=`).
    pub source_host: String,
    /// Destination host name.
    pub destination_host: String,
    /// Whether the paused source's and destination's guest RAM compared equal page by page
    /// after the migration (None: not checked). Schema 1.1.0.
    #[serde(default)]
    pub memory_verified: Option<bool>,
    /// Pages (4 KiB) that differed in that comparison (None: not checked). Schema 1.1.0.
    #[serde(default)]
    pub memory_mismatch_pages: Option<u64>,
    /// Accelerator the source QEMU ran: `kvm`, `tcg` (None: unknown). Schema 1.1.0.
    #[serde(default)]
    pub accelerator: Option<String>,
    /// The probe's dirtying rate D before the migration, bytes/s (None: not probed).
    /// Schema 1.2.0.
    #[serde(default)]
    pub probe_dirty_rate_bytes_per_s: Option<f64>,
    /// The probe's hot set H, bytes (None: not probed, or the dirty set grew linearly).
    /// Schema 1.2.0.
    #[serde(default)]
    pub probe_hot_set_bytes: Option<f64>,
    /// The probe's share of guest RAM pages that are not all zeros (None: not measured).
    /// Schema 1.2.0.
    #[serde(default)]
    pub probe_nonzero_share: Option<f64>,
}

/// Values of `accelerator`.
pub const ACCELERATORS: [&str; 2] = ["kvm", "tcg"];

/// Build the columns of a migrations file.
pub fn migrations_frame(rows: &[MigrationRow]) -> Result<DataFrame, PolarsError> {
    macro_rules! col {
        ($name:literal, $f:expr) => {
            Column::new($name.into(), rows.iter().map($f).collect::<Vec<_>>())
        };
    }
    let cols = vec![
        col!("migration_id", |r| r.migration_id.as_str()),
        col!("hypervisor", |r| r.hypervisor.as_str()),
        col!("vm", |r| r.vm.as_str()),
        col!("workload", |r| r.workload.as_deref()),
        col!("vm_mem_bytes", |r| r.vm_mem_bytes),
        col!("page_size_bytes", |r| r.page_size_bytes),
        col!("start_utc_ns", |r| r.start_utc_ns),
        col!("end_utc_ns", |r| r.end_utc_ns),
        col!("t_mig_s", |r| r.t_mig_s),
        col!("t_down_s", |r| r.t_down_s),
        col!("t_down_method", |r| r.t_down_method.as_str()),
        col!("t_down_reported_s", |r| r.t_down_reported_s),
        col!("v_mig_bytes", |r| r.v_mig_bytes),
        col!("zero_pages", |r| r.zero_pages),
        col!("rounds", |r| r.rounds),
        col!("converged", |r| r.converged),
        col!("status", |r| r.status.as_str()),
        col!("bandwidth_limit_bytes_per_s", |r| r
            .bandwidth_limit_bytes_per_s),
        col!("downtime_limit_s", |r| r.downtime_limit_s),
        col!("max_rounds", |r| r.max_rounds),
        col!("max_factor", |r| r.max_factor),
        col!("auto_converge", |r| r.auto_converge),
        col!("pre_dirty_rate_bytes_per_s", |r| r
            .pre_dirty_rate_bytes_per_s),
        col!("pre_dirty_sample_s", |r| r.pre_dirty_sample_s),
        col!("source_host", |r| r.source_host.as_str()),
        col!("destination_host", |r| r.destination_host.as_str()),
        col!("memory_verified", |r| r.memory_verified),
        col!("memory_mismatch_pages", |r| r.memory_mismatch_pages),
        col!("accelerator", |r| r.accelerator.as_deref()),
        col!("probe_dirty_rate_bytes_per_s", |r| r
            .probe_dirty_rate_bytes_per_s),
        col!("probe_hot_set_bytes", |r| r.probe_hot_set_bytes),
        col!("probe_nonzero_share", |r| r.probe_nonzero_share),
    ];
    DataFrame::new(rows.len(), cols)
}

/// Write a migrations file atomically (temp file, fsync, rename).
pub fn write_migrations_file(path: &Path, rows: &[MigrationRow]) -> Result<(), DatasetError> {
    let mut df = migrations_frame(rows).map_err(|e| DatasetError::Polars {
        path: path.to_path_buf(),
        source: e,
    })?;
    crate::io::write_parquet_atomic(&mut df, path, MIGRATIONS)
}

/// Read every migrations file under `path` (a file or a folder), sorted by start then id.
pub fn read_migrations(path: &Path) -> Result<Vec<MigrationRow>, DatasetError> {
    let files = parquet_files(path)?;
    if files.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut rows = Vec::new();
    // The dataset's own rules, with migration ids unique across the files read.
    let mut rules = crate::check::Rules::of(MIGRATIONS);
    for f in &files {
        let df = read_parquet_checked(f, MIGRATIONS)?;
        let file_rows = rows_of(&df, f)?;
        if let Some(rules) = &mut rules {
            let typed = migrations_frame(&file_rows).map_err(|e| DatasetError::polars(f, e))?;
            rules.check(f, &typed, None)?;
        }
        rows.extend(file_rows);
    }
    rows.sort_by(|a, b| (a.start_utc_ns, &a.migration_id).cmp(&(b.start_utc_ns, &b.migration_id)));
    Ok(rows)
}

/// The integration windows of migrations: one per host (source and destination), each
/// spanning the migration from start to end. Migrations without both times (or with an end
/// not after the start) have no windows and are returned in the second list.
pub fn windows_of(rows: &[MigrationRow]) -> (Vec<WindowRow>, Vec<&MigrationRow>) {
    let mut out = Vec::with_capacity(rows.len() * 2);
    let mut skipped = Vec::new();
    for r in rows {
        match (r.start_utc_ns, r.end_utc_ns) {
            (Some(start), Some(end)) if end > start => {
                for (host, role) in [
                    (&r.source_host, Role::Source),
                    (&r.destination_host, Role::Destination),
                ] {
                    out.push(WindowRow {
                        migration_id: r.migration_id.clone(),
                        host: host.clone(),
                        role,
                        start_utc_ns: start,
                        end_utc_ns: end,
                        v_mig_bytes: r.v_mig_bytes,
                        workload: r.workload.clone(),
                        vm: Some(r.vm.clone()),
                        vm_mem_bytes: Some(r.vm_mem_bytes),
                    });
                }
            }
            _ => skipped.push(r),
        }
    }
    (out, skipped)
}

/// Typed access to the columns of one file, naming file, column and row on errors.
pub(crate) struct Cols<'a> {
    pub(crate) df: &'a DataFrame,
    pub(crate) path: &'a Path,
}

impl Cols<'_> {
    pub(crate) fn get(&self, name: &str, dt: DataType) -> Result<Series, DatasetError> {
        column(self.df, name, self.path)?
            .as_materialized_series()
            .strict_cast(&dt)
            .map_err(|_| col_err(self.path, name, format!("expected {dt}")))
    }
    /// A column added by a minor version: None when the file predates it.
    pub(crate) fn added(&self, name: &str, dt: DataType) -> Result<Option<Series>, DatasetError> {
        if self.df.column(name).is_err() {
            return Ok(None);
        }
        self.get(name, dt).map(Some)
    }
    pub(crate) fn req<T>(&self, v: Option<T>, name: &str, row: usize) -> Result<T, DatasetError> {
        v.ok_or_else(|| {
            col_err(
                self.path,
                name,
                format!("row {row}: null in a required column"),
            )
        })
    }
}

fn rows_of(df: &DataFrame, path: &Path) -> Result<Vec<MigrationRow>, DatasetError> {
    let c = Cols { df, path };
    use DataType::*;
    let id = c.get("migration_id", String)?;
    let hv = c.get("hypervisor", String)?;
    let vm = c.get("vm", String)?;
    let wl = c.get("workload", String)?;
    let mem = c.get("vm_mem_bytes", UInt64)?;
    let page = c.get("page_size_bytes", UInt64)?;
    let start = c.get("start_utc_ns", Int64)?;
    let end = c.get("end_utc_ns", Int64)?;
    let tmig = c.get("t_mig_s", Float64)?;
    let tdown = c.get("t_down_s", Float64)?;
    let tdm = c.get("t_down_method", String)?;
    let tdr = c.get("t_down_reported_s", Float64)?;
    let vmig = c.get("v_mig_bytes", UInt64)?;
    let zero = c.get("zero_pages", UInt64)?;
    let rounds = c.get("rounds", UInt32)?;
    let conv = c.get("converged", Boolean)?;
    let status = c.get("status", String)?;
    let bw = c.get("bandwidth_limit_bytes_per_s", Float64)?;
    let dl = c.get("downtime_limit_s", Float64)?;
    let mr = c.get("max_rounds", UInt32)?;
    let mf = c.get("max_factor", Float64)?;
    let ac = c.get("auto_converge", Boolean)?;
    let pre = c.get("pre_dirty_rate_bytes_per_s", Float64)?;
    let pres = c.get("pre_dirty_sample_s", Float64)?;
    let src = c.get("source_host", String)?;
    let dst = c.get("destination_host", String)?;
    let verified = c.added("memory_verified", Boolean)?;
    let mismatch = c.added("memory_mismatch_pages", UInt64)?;
    let accel = c.added("accelerator", String)?;
    let probe_d = c.added("probe_dirty_rate_bytes_per_s", Float64)?;
    let probe_h = c.added("probe_hot_set_bytes", Float64)?;
    let probe_z = c.added("probe_nonzero_share", Float64)?;
    let s = |x: &Series, i: usize| x.str().ok().and_then(|a| a.get(i)).map(str::to_string);
    let u64_ = |x: &Series, i: usize| x.u64().ok().and_then(|a| a.get(i));
    let u32_ = |x: &Series, i: usize| x.u32().ok().and_then(|a| a.get(i));
    let i64_ = |x: &Series, i: usize| x.i64().ok().and_then(|a| a.get(i));
    let f64_ = |x: &Series, i: usize| x.f64().ok().and_then(|a| a.get(i));
    let b_ = |x: &Series, i: usize| x.bool().ok().and_then(|a| a.get(i));
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        out.push(MigrationRow {
            migration_id: c.req(s(&id, i), "migration_id", i)?,
            hypervisor: c.req(s(&hv, i), "hypervisor", i)?,
            vm: c.req(s(&vm, i), "vm", i)?,
            workload: s(&wl, i),
            vm_mem_bytes: c.req(u64_(&mem, i), "vm_mem_bytes", i)?,
            page_size_bytes: c.req(u64_(&page, i), "page_size_bytes", i)?,
            start_utc_ns: i64_(&start, i),
            end_utc_ns: i64_(&end, i),
            t_mig_s: c.req(f64_(&tmig, i), "t_mig_s", i)?,
            t_down_s: f64_(&tdown, i),
            t_down_method: c.req(s(&tdm, i), "t_down_method", i)?,
            t_down_reported_s: f64_(&tdr, i),
            v_mig_bytes: c.req(u64_(&vmig, i), "v_mig_bytes", i)?,
            zero_pages: u64_(&zero, i),
            rounds: c.req(u32_(&rounds, i), "rounds", i)?,
            converged: c.req(b_(&conv, i), "converged", i)?,
            status: c.req(s(&status, i), "status", i)?,
            bandwidth_limit_bytes_per_s: f64_(&bw, i),
            downtime_limit_s: f64_(&dl, i),
            max_rounds: u32_(&mr, i),
            max_factor: f64_(&mf, i),
            auto_converge: b_(&ac, i),
            pre_dirty_rate_bytes_per_s: f64_(&pre, i),
            pre_dirty_sample_s: f64_(&pres, i),
            source_host: c.req(s(&src, i), "source_host", i)?,
            destination_host: c.req(s(&dst, i), "destination_host", i)?,
            memory_verified: verified.as_ref().and_then(|x| b_(x, i)),
            memory_mismatch_pages: mismatch.as_ref().and_then(|x| u64_(x, i)),
            accelerator: accel.as_ref().and_then(|x| s(x, i)),
            probe_dirty_rate_bytes_per_s: probe_d.as_ref().and_then(|x| f64_(x, i)),
            probe_hot_set_bytes: probe_h.as_ref().and_then(|x| f64_(x, i)),
            probe_nonzero_share: probe_z.as_ref().and_then(|x| f64_(x, i)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(i: i64) -> MigrationRow {
        MigrationRow {
            migration_id: format!("qemu-vm1-{i}"),
            hypervisor: "qemu".into(),
            vm: "vm1".into(),
            workload: (i as u64).is_multiple_of(2).then(|| "h2".to_string()),
            vm_mem_bytes: 134_217_728,
            page_size_bytes: 4096,
            start_utc_ns: Some(1_700_000_000_000_000_000 + i),
            end_utc_ns: (i != 1).then_some(1_700_000_004_000_000_000 + i),
            t_mig_s: 4.25,
            t_down_s: Some(0.059),
            t_down_method: "guest_stop_resume".into(),
            t_down_reported_s: Some(0.047),
            v_mig_bytes: 238_642_426,
            zero_pages: Some(33167),
            rounds: 11,
            converged: i != 1,
            status: if i != 1 { "completed" } else { "cancelled" }.into(),
            bandwidth_limit_bytes_per_s: None,
            downtime_limit_s: Some(0.05),
            max_rounds: None,
            max_factor: None,
            auto_converge: Some(false),
            pre_dirty_rate_bytes_per_s: Some(8.0e6),
            pre_dirty_sample_s: Some(1.0),
            source_host: "src".into(),
            destination_host: "dst".into(),
            memory_verified: (i != 1).then_some(i != 2),
            memory_mismatch_pages: (i != 1).then_some(if i == 2 { 3 } else { 0 }),
            accelerator: Some("tcg".into()),
            probe_dirty_rate_bytes_per_s: None,
            probe_hot_set_bytes: None,
            probe_nonzero_share: None,
        }
    }

    #[test]
    fn migrations_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (0..3).map(row).collect();
        write_migrations_file(&dir.path().join("migrations/a.parquet"), &rows).unwrap();
        let back = read_migrations(dir.path()).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn a_1_0_0_file_reads_with_the_1_1_0_columns_null() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.parquet");
        let rows: Vec<_> = (0..2).map(row).collect();
        let mut df = migrations_frame(&rows).unwrap();
        for c in ["memory_verified", "memory_mismatch_pages", "accelerator"] {
            df = df.drop(c).unwrap();
        }
        let old = DatasetKind {
            name: "migrations",
            version: SchemaVersion {
                major: 1,
                minor: 0,
                patch: 0,
            },
        };
        crate::io::write_parquet_atomic(&mut df, &p, old).unwrap();
        let back = read_migrations(&p).unwrap();
        assert_eq!(back.len(), 2);
        for (b, r) in back.iter().zip(&rows) {
            assert_eq!(b.memory_verified, None);
            assert_eq!(b.memory_mismatch_pages, None);
            assert_eq!(b.accelerator, None);
            assert_eq!(b.v_mig_bytes, r.v_mig_bytes);
        }
        assert!(crate::check::check_path(&p).unwrap().violations.is_empty());
    }

    #[test]
    fn windows_follow_from_migrations_for_both_hosts() {
        let rows: Vec<_> = (0..3).map(row).collect();
        let (w, skipped) = windows_of(&rows);
        // row 1 has no end time
        assert_eq!(w.len(), 4);
        assert_eq!(skipped.len(), 1);
        assert_eq!(w[0].role, Role::Source);
        assert_eq!(w[0].host, "src");
        assert_eq!(w[1].host, "dst");
        assert_eq!(w[1].start_utc_ns, rows[0].start_utc_ns.unwrap());
        assert_eq!(w[1].v_mig_bytes, rows[0].v_mig_bytes);
    }

    #[test]
    fn reading_a_rounds_file_as_migrations_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        let mut df = migrations_frame(&[row(0)]).unwrap();
        crate::io::write_parquet_atomic(&mut df, &p, crate::rounds::ROUNDS).unwrap();
        let err = read_migrations(&p).unwrap_err().to_string();
        assert!(err.contains("'rounds'"), "{err}");
    }

    #[test]
    fn impossible_values_and_duplicates_across_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut neg = row(0);
        neg.t_mig_s = -4.0;
        let mut secs = row(0);
        secs.start_utc_ns = Some(1_700_000_000);
        for (bad, want) in [
            (neg, "column 't_mig_s': -4, expected a finite number >= 0"),
            (secs, "column 'start_utc_ns': 1700000000 is not ns"),
        ] {
            let d = dir.path().join(format!("{}", want.len()));
            write_migrations_file(&d.join("a.parquet"), &[bad]).unwrap();
            let err = read_migrations(&d).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let d = dir.path().join("dup");
        write_migrations_file(&d.join("a.parquet"), &[row(0), row(2)]).unwrap();
        write_migrations_file(&d.join("b.parquet"), &[row(2)]).unwrap();
        let err = read_migrations(&d).unwrap_err().to_string();
        assert!(
            err.contains("b.parquet") && err.contains("duplicate key (migration_id=qemu-vm1-2)"),
            "{err}"
        );
        assert!(err.contains("a.parquet row 1"), "{err}");
    }
}
