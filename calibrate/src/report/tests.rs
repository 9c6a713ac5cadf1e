//! Rendering from small synthetic campaign folders written with the datasets writers.

use super::*;
use crate::summary::{
    FailedMigration, HostSummary, MigrationCounts, ModelSummary, ProducedFile, SummaryPaths,
    SUMMARY_VERSION,
};
use datasets::energy::{EnergyRow, Format, WindowQualityRow};
use datasets::migrations::MigrationRow;
use datasets::residuals::Residuals;
use datasets::rounds::RoundRow;
use datasets::samples::SampleRow;
use datasets::windows::{Role, WindowRow};
use doc::esc;

// Real coefficient files of the shipped example campaign (their inputs are not needed here).
const ENERGY_COEF: &str = include_str!("../../../datasets/examples/campaign/models/energy/v1.json");
const GAMMA_COEF: &str =
    include_str!("../../../datasets/examples/campaign/models/gamma-qemu/v1.json");

const T0: i64 = 1_795_622_000_000_000_000;
const S: i64 = 1_000_000_000;
const HOSTS: [(&str, &str, f64); 2] = [("source", "hA", 98.0), ("destination", "hB", 101.5)];

fn migration(i: i64) -> MigrationRow {
    MigrationRow {
        migration_id: format!("qemu-vm-{i}"),
        hypervisor: "qemu".into(),
        vm: "vm".into(),
        workload: Some(format!("dirty{}", 256 * (i + 1))),
        vm_mem_bytes: 128 << 20,
        page_size_bytes: 4096,
        start_utc_ns: Some(T0 + (20 + 40 * i) * S),
        end_utc_ns: Some(T0 + (30 + 40 * i) * S),
        t_mig_s: 10.0,
        t_down_s: Some(0.05),
        t_down_method: "guest_stop_resume".into(),
        t_down_reported_s: None,
        v_mig_bytes: (100 + 20 * i as u64) * 1_000_000,
        zero_pages: None,
        rounds: 3,
        converged: i != 3,
        status: if i == 3 { "cancelled" } else { "completed" }.into(),
        bandwidth_limit_bytes_per_s: None,
        downtime_limit_s: Some(0.05),
        max_rounds: None,
        max_factor: None,
        auto_converge: None,
        pre_dirty_rate_bytes_per_s: Some(1e6),
        pre_dirty_sample_s: Some(1.0),
        source_host: "hA".into(),
        destination_host: "hB".into(),
        memory_verified: None,
        memory_mismatch_pages: None,
        accelerator: None,
        probe_dirty_rate_bytes_per_s: None,
        probe_hot_set_bytes: None,
        probe_nonzero_share: None,
    }
}

fn write_samples(dir: &Path) {
    for (_, host, p0) in HOSTS {
        let rows: Vec<SampleRow> = (0..200)
            .map(|k| {
                // Busy inside the migration windows (20..30 s of every 40 s).
                let busy = (k % 40) >= 20 && (k % 40) < 30;
                let mut fields = [None; datasets::FIELD_COUNT];
                fields[0] = Some(p0 + if busy { 25.0 } else { 0.3 * ((k % 3) as f64) });
                SampleRow {
                    host: host.into(),
                    meter_id: "wattsup-test".into(),
                    utc_ns: T0 + k * S,
                    mono_ns: k * S,
                    seq: k as u64,
                    connection: 1,
                    gap_before_ns: None,
                    flags: 0,
                    fields,
                    ..Default::default()
                }
            })
            .collect();
        let part = datasets::samples::partition_dir(&dir.join("samples"), host, "2026-11-25");
        datasets::samples::write_samples_file(&part.join("seg-1.parquet"), host, &rows).unwrap();
    }
}

fn write_model(dir: &Path, name: &str, json: &str, target: &str, unit: &str) {
    let folder = dir.join("models").join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("v1.json"), json).unwrap();
    std::fs::write(folder.join("latest"), "v1.json\n").unwrap();
    let mut origins = datasets::Origins::new();
    origins.push_run(0, 0, 4);
    let r = Residuals {
        model_id: format!("{name}/v1/x"),
        target: target.into(),
        unit: unit.into(),
        origins: &origins,
        observed: &[1.0, 2.0, 3.5, 4.0],
        fitted: &[1.1, 1.8, 3.0, 4.2],
        cv_predicted: None,
    };
    datasets::residuals::write_residuals(&folder.join("v1.residuals.parquet"), &r).unwrap();
}

fn verdicts() -> Vec<Verdict> {
    vec![
        Verdict {
            name: "energy R^2".into(),
            value: Some(0.8389),
            threshold: 0.8,
            comparison: ">=".into(),
            unit: "".into(),
            passed: true,
            detail: "passed by 0.039".into(),
        },
        Verdict {
            name: "energy CV MAPE".into(),
            value: Some(18.93),
            threshold: 15.0,
            comparison: "<=".into(),
            unit: "%".into(),
            passed: false,
            detail: "3.93 points over; run more migrations with larger V_mig".into(),
        },
    ]
}

/// A complete campaign folder: samples, windows, energy, quality, migrations, rounds, models.
fn campaign(dir: &Path, with_gamma: bool) -> CampaignSummary {
    write_samples(dir);
    let migs: Vec<MigrationRow> = (0..4).map(migration).collect();
    for m in &migs {
        datasets::migrations::write_migrations_file(
            &dir.join("migrations")
                .join(format!("{}.parquet", m.migration_id)),
            std::slice::from_ref(m),
        )
        .unwrap();
        let rounds: Vec<RoundRow> = (1..=3)
            .map(|r| RoundRow {
                migration_id: m.migration_id.clone(),
                round: r,
                start_utc_ns: None,
                duration_s: Some(3.0 / f64::from(r)),
                sent_bytes: 1_000_000,
                skipped_pages: 0,
                dirtied_pages: Some(100),
                dirty_rate_bytes_per_s: Some(2e6 * f64::from(r)),
                gamma: Some(0.1 * f64::from(r)),
                last: r == 3,
            })
            .collect();
        datasets::rounds::write_rounds_file(
            &dir.join("rounds")
                .join(format!("{}.parquet", m.migration_id)),
            &rounds,
        )
        .unwrap();
    }
    let (windows, _) = datasets::migrations::windows_of(&migs);
    datasets::windows::write_windows(&dir.join("windows.parquet"), &windows).unwrap();
    let energy: Vec<EnergyRow> = migs
        .iter()
        .take(3)
        .map(|m| EnergyRow {
            migration_id: m.migration_id.clone(),
            v_mig_bytes: m.v_mig_bytes,
            e_source_j: 150.0 + m.v_mig_bytes as f64 / 1e6,
            e_destination_j: 80.0,
            e_mig_j: 230.0 + m.v_mig_bytes as f64 / 1e6,
            coverage: 1.0,
            p0_source_w: 98.0,
            p0_destination_w: 101.5,
            source_host: "hA".into(),
            destination_host: "hB".into(),
            start_utc_ns: m.start_utc_ns.unwrap(),
            end_utc_ns: m.end_utc_ns.unwrap(),
            workload: m.workload.clone(),
            vm: Some(m.vm.clone()),
            vm_mem_bytes: Some(m.vm_mem_bytes),
        })
        .collect();
    datasets::energy::write_energy(&dir.join("energy.parquet"), Format::Parquet, &energy, &[])
        .unwrap();
    let quality: Vec<WindowQualityRow> = windows
        .iter()
        .map(|w| {
            let left_out = w.migration_id == "qemu-vm-3";
            WindowQualityRow {
                migration_id: w.migration_id.clone(),
                host: w.host.clone(),
                role: w.role.as_str().into(),
                start_utc_ns: w.start_utc_ns,
                end_utc_ns: w.end_utc_ns,
                sample_count: 10,
                coverage: if left_out { 0.4 } else { 1.0 },
                largest_gap_s: 0.0,
                interval_s: 1.0,
                p0_w: 98.0,
                energy_j: Some(10.0),
                included: !left_out,
                reason: left_out.then(|| "coverage 0.40 below 0.90".to_string()),
                source_interval_s: Some(1.0),
                shorter_than_source_interval: false,
            }
        })
        .collect();
    datasets::energy::write_window_quality(
        &dir.join("energy.quality.parquet"),
        Format::Parquet,
        &quality,
        &[],
    )
    .unwrap();
    write_model(dir, "energy", ENERGY_COEF, "e_mig_j", "J");
    let mut models = vec![ModelSummary {
        kind: "energy".into(),
        path: "models/energy/v1.json".into(),
        equation: "E_mig [J] = 1.506e-6 J/B * V_mig [B] - 47.62 J".into(),
        r_squared: 0.8389,
        n_rows: 24,
        cv_mape: Some(0.1893),
    }];
    if with_gamma {
        write_model(dir, "gamma-qemu", GAMMA_COEF, "gamma", "1");
        models.push(ModelSummary {
            kind: "gamma".into(),
            path: "models/gamma-qemu/v1.json".into(),
            equation: "gamma = 0.110 T_prev + 5.9e-8 D - 0.718".into(),
            r_squared: 0.1617,
            n_rows: 35,
            cv_mape: None,
        });
    }
    CampaignSummary {
        summary_version: SUMMARY_VERSION.into(),
        name: "unit-campaign".into(),
        hardware_pair: "hA--hB".into(),
        created_at: "2026-11-25T17:00:00Z".into(),
        toolkit_version: "0.1.0".into(),
        hypervisor: "qemu".into(),
        hosts: HOSTS
            .iter()
            .map(|&(role, host, p0)| HostSummary {
                role: role.into(),
                host: host.into(),
                meter: "/dev/null".into(),
                p0_w: Some(p0),
                baseline: None,
                samples: 200,
            })
            .collect(),
        emulated: vec!["Power meters were emulated on pseudo-terminals.".into()],
        real: vec!["QEMU migrations were real.".into()],
        power_model: None,
        paths: SummaryPaths {
            samples_dir: "samples".into(),
            migrations_dir: Some("migrations".into()),
            rounds_dir: Some("rounds".into()),
            windows: "windows.parquet".into(),
            energy: "energy.parquet".into(),
            window_quality: "energy.quality.parquet".into(),
            energy_model: Some("models/energy/v1.json".into()),
            gamma_model: with_gamma.then(|| "models/gamma-qemu/v1.json".into()),
        },
        migrations: MigrationCounts {
            planned: 5,
            done: 4,
            converged: 3,
            failed: vec![FailedMigration {
                migration_id: "qemu-vm-4".into(),
                reason: "destination QEMU exited".into(),
            }],
            ..MigrationCounts::default()
        },
        models,
        verdicts: verdicts(),
        accepted: false,
        files: vec![
            ProducedFile {
                path: "energy.parquet".into(),
                description: "energy per migration".into(),
            },
            ProducedFile {
                path: "windows.parquet".into(),
                description: "migration windows".into(),
            },
        ],
    }
}

/// The text of `<section id="id">` up to its end.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id}"));
    let len = html[start..].find("</section>").expect("section closed");
    &html[start..start + len]
}

/// Relative link targets of a Markdown document (`](<target>)` and `](target)`).
fn md_links(md: &str) -> Vec<String> {
    md.split("](")
        .skip(1)
        .map(|rest| {
            let end = rest.find(')').unwrap_or(rest.len());
            rest[..end]
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .collect()
}

#[test]
fn renders_every_section_plot_and_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    campaign(dir, true).write(dir).unwrap();
    let out = render(dir).unwrap();
    assert_eq!(out.html, dir.join("report.html"));
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let html = std::fs::read_to_string(&out.html).unwrap();

    for id in SECTION_IDS {
        let s = section(&html, id);
        assert!(s.contains("<h2>"), "section {id} has no heading");
        assert!(html.contains(&format!("href=\"#{id}\"")), "no link to {id}");
    }
    let plots = [
        "power-source",
        "power-destination",
        "energy",
        "gamma",
        "residuals-energy",
        "residuals-gamma-qemu",
    ];
    assert_eq!(html.matches("<svg").count(), plots.len());
    for p in plots {
        let at = html
            .find(&format!("data-plot=\"{p}\""))
            .unwrap_or_else(|| panic!("no plot {p}"));
        let fig = &html[at..at + html[at..].find("</figure>").unwrap()];
        assert!(fig.contains("<svg") && fig.contains("<figcaption>"), "{p}");
        assert!(fig.contains("<text"), "{p} has no text");
    }
    for label in ["power [W]", "V_mig [MB]", "E_mig [J]", "gamma observed [1]"] {
        assert!(html.contains(label), "axis label {label} missing");
    }
    // Self-contained: nothing to fetch.
    for bad in ["<script", "<link", "<img", "url(", "@import"] {
        assert!(!html.contains(bad), "report contains {bad}");
    }

    let v = section(&html, "verdicts");
    for verdict in verdicts() {
        let row_at = v.find(&format!("<td>{}</td>", esc(&verdict.name))).unwrap();
        let row = &v[row_at..row_at + v[row_at..].find("</tr>").unwrap()];
        let value = with_unit(verdict.value.unwrap(), &verdict.unit);
        let required = format!(
            "{} {}",
            verdict.comparison,
            with_unit(verdict.threshold, &verdict.unit)
        );
        assert!(row.contains(&value), "{row} lacks {value}");
        assert!(row.contains(&esc(&required)), "{row} lacks {required}");
        assert!(row.contains(if verdict.passed { "PASS" } else { "FAIL" }));
        assert!(row.contains(&esc(&verdict.detail)));
    }
    assert_eq!(with_unit(18.93, "%"), "18.93 %");
    assert!(v.contains("Failed: energy CV MAPE"));
    let summary = section(&html, "summary");
    assert!(summary.contains("NOT ACCEPTED"));
    assert!(summary.contains("Power meters were emulated on pseudo-terminals."));

    let m = section(&html, "migrations");
    assert!(m.contains("qemu-vm-3") && m.contains("status cancelled"));
    assert!(m.contains("coverage 0.40 below 0.90"));
    assert!(m.contains("destination QEMU exited"));
    let files = section(&html, "files");
    assert!(files.contains("<a href=\"energy.parquet\">"));

    let md = std::fs::read_to_string(&out.markdown).unwrap();
    let links = md_links(&md);
    let plot_links: Vec<_> = links
        .iter()
        .filter(|l| l.starts_with("report-plots/"))
        .collect();
    assert_eq!(plot_links.len(), plots.len(), "{links:?}");
    for l in links.iter().filter(|l| !l.starts_with('#')) {
        assert!(dir.join(l).exists(), "markdown link {l} does not resolve");
    }
    for id in SECTION_IDS {
        assert!(md.contains(&format!("<a id=\"{id}\"></a>")));
    }
    assert!(
        md.contains("| energy CV MAPE | 18.93 % | \\<= 15.00 % | FAIL |"),
        "{md}"
    );
    assert_eq!(out.plots.len(), plots.len());
}

#[test]
fn missing_optional_inputs_become_notes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut s = campaign(dir, false);
    s.paths.rounds_dir = None;
    s.paths.migrations_dir = None;
    s.paths.energy_model = None;
    s.models.clear();
    s.files.push(ProducedFile {
        path: "nowhere.parquet".into(),
        description: "never written".into(),
    });
    s.write(dir).unwrap();
    // A stale plot of an earlier rendering disappears.
    std::fs::create_dir_all(dir.join(PLOTS_DIR)).unwrap();
    std::fs::write(dir.join(PLOTS_DIR).join("old.svg"), "<svg/>").unwrap();
    let out = render(dir).unwrap();
    let html = std::fs::read_to_string(&out.html).unwrap();
    for id in SECTION_IDS {
        section(&html, id);
    }
    assert!(section(&html, "gamma").contains("No gamma plot"));
    assert!(section(&html, "energy").contains("No fitted line"));
    assert!(section(&html, "residuals").contains("no residuals"));
    assert!(section(&html, "migrations").contains("No migration records"));
    assert!(section(&html, "files").contains("nowhere.parquet</code> (missing)"));
    assert!(!out.warnings.is_empty());
    assert!(!dir.join(PLOTS_DIR).join("old.svg").exists());
    // The power and energy plots still render.
    assert_eq!(html.matches("<svg").count(), 3);
}

#[test]
fn unreadable_inputs_never_fail_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut s = campaign(dir, true);
    s.paths.samples_dir = "no-samples".into();
    s.paths.windows = "nothing.parquet".into();
    s.write(dir).unwrap();
    std::fs::write(dir.join("energy.parquet"), b"not parquet").unwrap();
    let out = render(dir).unwrap();
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert!(section(&html, "power").contains("No power traces"));
    assert!(section(&html, "energy").contains("No energy observations"));
    assert!(out.warnings.iter().any(|w| w.contains("energy.parquet")));
}

#[test]
fn missing_summary_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let e = render(tmp.path()).unwrap_err();
    assert!(matches!(e, ReportError::Summary(_)));
    let text = datasets::error_chain(&e);
    assert!(text.contains("summary.json"), "{text}");
    // Each cause once: the OS error follows the path, and is not repeated.
    assert_eq!(text.matches("No such file").count(), 1, "{text}");
    std::fs::write(tmp.path().join("summary.json"), "{}").unwrap();
    let e = render(tmp.path()).unwrap_err();
    let text = datasets::error_chain(&e);
    assert!(text.contains("not a campaign summary"), "{text}");
}

#[test]
fn numbers_and_traces_are_formatted_for_people() {
    assert_eq!(fmt_num(0.83886), "0.8389");
    assert_eq!(fmt_num(98.0), "98.00");
    assert_eq!(fmt_num(12345.6), "12346");
    assert_eq!(fmt_num(1.5e-6), "1.500e-6");
    assert_eq!(fmt_num(f64::NAN), "n/a");
    assert_eq!(plot_name("gamma qemu/x"), "gamma-qemu-x");
    // A gap splits the trace; a long trace is thinned but keeps its peak.
    let t: Vec<i64> = (0..10).chain(100..110).map(|k| k * S).collect();
    let w = vec![1.0; 20];
    assert_eq!(trace_segments(&t, &w, 0, 1.0).len(), 2);
    let t: Vec<i64> = (0..100_000).map(|k| k * S).collect();
    let mut w = vec![100.0; 100_000];
    w[54_321] = 500.0;
    let segs = trace_segments(&t, &w, 0, 60.0);
    let n: usize = segs.iter().map(Vec::len).sum();
    assert!(n <= 4100, "{n}");
    assert!(segs.iter().flatten().any(|p| p.1 == 500.0));
}

#[test]
fn windows_role_helper_is_consistent() {
    // The fixture relies on windows_of giving one window per host and role.
    let (w, _) = datasets::migrations::windows_of(&[migration(0)]);
    let roles: Vec<(String, Role)> = w
        .iter()
        .map(|w: &WindowRow| (w.host.clone(), w.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("hA".into(), Role::Source),
            ("hB".into(), Role::Destination)
        ]
    );
}
