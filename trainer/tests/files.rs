//! The trainers end to end at library level: real Parquet and CSV inputs in, coefficient
//! files and residuals out; every coefficient file written is validated against
//! schema/coefficients.schema.json and loaded back.

use std::path::{Path, PathBuf};

use datasets::energy::{write_energy, EnergyRow, Format};
use datasets::migrations::{write_migrations_file, MigrationRow};
use datasets::rounds::{write_rounds_file, RoundRow};
use trainer::coef::{self, CoefficientFile};
use trainer::{Control, GammaOptions, LinearOptions, TrainOptions};

/// Validate every `*.json` under `dir` against the JSON Schema and the loader; return them.
fn validate_all(dir: &Path) -> Vec<(PathBuf, CoefficientFile)> {
    let schema: serde_json::Value = serde_json::from_str(coef::SCHEMA_JSON).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                let errors: Vec<String> =
                    validator.iter_errors(&v).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{}: {errors:?}", p.display());
                let f = coef::load(&p).unwrap();
                // Round trip: serialising the loaded file gives the same JSON.
                assert_eq!(serde_json::to_value(&f).unwrap(), v);
                out.push((p, f));
            }
        }
    }
    assert!(
        !out.is_empty(),
        "no coefficient files under {}",
        dir.display()
    );
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal noise (sum of uniforms), sd 1.
    fn noise(&mut self) -> f64 {
        (0..12).map(|_| self.next()).sum::<f64>() - 6.0
    }
}

fn energy_rows(n: usize, seed: u64) -> Vec<EnergyRow> {
    let mut g = Rng(seed);
    (0..n)
        .map(|i| {
            let v = (2e8 + 3e9 * g.next()) as u64;
            let es = 0.3e-6 * v as f64 + 12.0 + 2.0 * g.noise();
            let ed = 0.212e-6 * v as f64 + 8.165 + 2.0 * g.noise();
            EnergyRow {
                migration_id: format!("m{i}"),
                v_mig_bytes: v,
                e_source_j: es,
                e_destination_j: ed,
                e_mig_j: es + ed,
                coverage: 1.0,
                p0_source_w: 100.0,
                p0_destination_w: 101.0,
                source_host: "alpha".into(),
                destination_host: "beta".into(),
                start_utc_ns: i as i64 * 1_000_000_000,
                end_utc_ns: i as i64 * 1_000_000_000 + 500_000_000,
                workload: Some(if i % 2 == 0 { "h2" } else { "fop" }.into()),
                vm: Some("vm1".into()),
                vm_mem_bytes: Some(1 << 30),
            }
        })
        .collect()
}

#[test]
fn energy_per_side_versions_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("energy.parquet");
    write_energy(&data, Format::Parquet, &energy_rows(300, 3), &[]).unwrap();
    let models = dir.path().join("models");
    let opts = TrainOptions::new(vec![data.clone()], models.clone());
    let t = trainer::train_energy(&opts, true, &Control::none()).unwrap();
    assert_eq!(t.len(), 3);
    let names: Vec<&str> = t.iter().map(|t| t.file.model.name.as_str()).collect();
    assert_eq!(names, ["energy", "energy-source", "energy-destination"]);
    let e = &t[0].file;
    let alpha = &e.coefficients[0];
    assert_eq!((alpha.name.as_str(), alpha.unit.as_str()), ("alpha", "J/B"));
    assert!((alpha.estimate - 0.512e-6).abs() < 4.0 * alpha.std_error.unwrap());
    assert!(alpha.ci95_low.unwrap() < alpha.estimate && alpha.estimate < alpha.ci95_high.unwrap());
    let beta = &e.coefficients[1];
    assert_eq!(
        (
            beta.name.as_str(),
            beta.unit.as_str(),
            beta.feature.as_ref()
        ),
        ("beta", "J", None)
    );
    assert!((beta.estimate - 20.165).abs() < 4.0 * beta.std_error.unwrap());
    assert_eq!(e.hardware.hosts, ["alpha", "beta"]);
    assert_eq!(e.provenance.inputs[0].rows, 300);
    assert_eq!(
        e.provenance.inputs[0].sha256,
        trainer::train::sha256_file(&data).unwrap()
    );
    assert!(e.fit.cross_validation.is_some());
    // Per side: alpha_s + alpha_d = alpha (same rows, additive targets).
    let (s, d) = (&t[1].file.coefficients[0], &t[2].file.coefficients[0]);
    assert!((s.estimate + d.estimate - alpha.estimate).abs() < 1e-9 * alpha.estimate);
    // Residuals beside the file, one per row.
    let res = models.join("energy").join(&e.provenance.residuals_file);
    let r = datasets::residuals::read_residual_column(&res).unwrap();
    assert_eq!(r.len(), 300);
    assert!((r.iter().map(|x| x * x).sum::<f64>() / 298.0).sqrt() - e.fit.residual_sd < 1e-9);

    // A second fit is v2; v1 stays byte for byte; latest moves.
    let v1 = std::fs::read(&t[0].path).unwrap();
    let opts = TrainOptions {
        filters: vec!["workload=h2".into()],
        ..opts
    };
    let t2 = trainer::train_energy(&opts, false, &Control::none()).unwrap();
    assert_eq!(t2[0].file.model.version, 2);
    assert_eq!(t2[0].file.fit.n_rows, 150);
    assert_eq!(t2[0].file.provenance.filters, ["workload=h2"]);
    assert_eq!(std::fs::read(&t[0].path).unwrap(), v1);
    assert_eq!(coef::load(&models.join("energy")).unwrap().model.version, 2);
    let files = validate_all(&models);
    assert_eq!(files.len(), 4);
    assert_eq!(coef::list(&models).unwrap().len(), 3);
}

#[test]
fn gamma_from_rounds_joined_to_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let (omega, xi, psi) = (-0.0463, -1e-10, 0.3586);
    let mut g = Rng(11);
    let mut rounds = Vec::new();
    let mut migs = Vec::new();
    for m in 0..60 {
        let id = format!("mig-{m}");
        let d = 5e7 + 5e8 * g.next();
        let mut prev = None;
        for r in 1..=6u32 {
            let t = 0.2 + 4.0 * g.next();
            let gamma = prev.map(|tp: f64| omega * tp + xi * d + psi + 0.01 * g.noise());
            rounds.push(RoundRow {
                migration_id: id.clone(),
                round: r,
                start_utc_ns: None,
                duration_s: Some(t),
                sent_bytes: 1 << 20,
                skipped_pages: 10,
                dirtied_pages: Some(100),
                dirty_rate_bytes_per_s: Some(d),
                // The last round's gamma is meaningless: make it absurd so including it shows.
                gamma: if r == 6 { Some(5.0) } else { gamma },
                last: r == 6,
            });
            prev = Some(t);
        }
        migs.push(MigrationRow {
            migration_id: id,
            hypervisor: if m % 3 == 0 { "qemu" } else { "xen3" }.into(),
            vm: "vm".into(),
            workload: Some("h2".into()),
            vm_mem_bytes: 1 << 30,
            page_size_bytes: 4096,
            start_utc_ns: None,
            end_utc_ns: None,
            t_mig_s: 10.0,
            t_down_s: None,
            t_down_method: "qemu_reported".into(),
            t_down_reported_s: None,
            v_mig_bytes: 1 << 30,
            zero_pages: None,
            rounds: 6,
            converged: true,
            status: "completed".into(),
            bandwidth_limit_bytes_per_s: None,
            downtime_limit_s: None,
            max_rounds: None,
            max_factor: None,
            auto_converge: None,
            pre_dirty_rate_bytes_per_s: None,
            pre_dirty_sample_s: None,
            source_host: "alpha".into(),
            destination_host: "beta".into(),
            memory_verified: None,
            memory_mismatch_pages: None,
            accelerator: None,
        });
    }
    let rfile = dir.path().join("rounds.parquet");
    write_rounds_file(&rfile, &rounds).unwrap();
    let mfile = dir.path().join("migrations.parquet");
    write_migrations_file(&mfile, &migs).unwrap();
    let models = dir.path().join("models");
    let opts = TrainOptions::new(vec![rfile.clone()], models.clone());
    // Hypervisor is not a rounds column: without --migrations that is a clear error.
    let e = trainer::train_gamma(
        &opts,
        &GammaOptions {
            hypervisor: Some("xen3".into()),
            ..Default::default()
        },
        &Control::none(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--migrations"), "{e}");
    let go = GammaOptions {
        hypervisor: Some("xen3".into()),
        workload: Some("h2".into()),
        migrations: vec![mfile.clone()],
        include_last: false,
        ..Default::default()
    };
    let t = trainer::train_gamma(&opts, &go, &Control::none()).unwrap();
    let f = &t.file;
    // 40 xen migrations x rounds 2..5.
    assert_eq!(f.fit.n_rows, 160);
    let c: Vec<(&str, &str, f64, f64)> = f
        .coefficients
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.unit.as_str(),
                c.estimate,
                c.std_error.unwrap(),
            )
        })
        .collect();
    assert_eq!((c[0].0, c[0].1), ("omega", "1/s"));
    assert_eq!((c[1].0, c[1].1), ("xi", "s/B"));
    assert_eq!((c[2].0, c[2].1), ("psi", "1"));
    for (got, want) in c.iter().zip([omega, xi, psi]) {
        assert!(
            (got.2 - want).abs() < 4.0 * got.3,
            "{} = {} +- {}, want {want}",
            got.0,
            got.2,
            got.3
        );
    }
    assert_eq!(f.features[0].column, trainer::train::T_PREV);
    assert!(f
        .provenance
        .notes
        .iter()
        .any(|n| n.contains("first rounds")));
    assert!(f
        .provenance
        .notes
        .iter()
        .any(|n| n.contains("stop-and-copy")));
    assert_eq!(f.provenance.inputs.len(), 2);
    assert_eq!(f.provenance.filters, ["hypervisor=xen3", "workload=h2"]);
    // Unknown hypervisor: refused, naming what exists.
    let e = trainer::train_gamma(
        &opts,
        &GammaOptions {
            hypervisor: Some("vmware".into()),
            ..go.clone()
        },
        &Control::none(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("qemu, xen3"), "{e}");
    // A filter on the rounds applies after T_{i-1} is derived: round>=3 keeps rounds 3..5.
    let opts3 = TrainOptions {
        filters: vec!["round>=3".into()],
        name: Some("gamma-late".into()),
        ..opts.clone()
    };
    let t3 = trainer::train_gamma(&opts3, &go, &Control::none()).unwrap();
    assert_eq!(t3.file.fit.n_rows, 120);
    validate_all(&models);
}

#[test]
fn linear_from_csv_and_refusals_name_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("obs.csv");
    let mut text = String::from("t_mig_s,v_mig_bytes,dirty_rate_bytes_per_s,label\n");
    let mut g = Rng(5);
    for i in 0..50 {
        let v = 1e8 + 1e9 * g.next();
        let d = 1e6 + 1e7 * g.next();
        let t = 8e-9 * v + 2e-7 * d + 0.5 + 0.01 * g.noise();
        text += &format!("{t},{v},{d},{}\n", if i < 25 { "a" } else { "b" });
    }
    std::fs::write(&csv, &text).unwrap();
    let models = dir.path().join("models");
    let opts = TrainOptions::new(vec![csv.clone()], models.clone());
    let l = LinearOptions {
        target: "t_mig_s".into(),
        features: vec!["v_mig_bytes".into(), "dirty_rate_bytes_per_s".into()],
        intercept: true,
        units: vec![],
    };
    let t = trainer::train_linear(&opts, &l, &Control::none()).unwrap();
    let units: Vec<&str> = t
        .file
        .coefficients
        .iter()
        .map(|c| c.unit.as_str())
        .collect();
    assert_eq!(units, ["s/B", "s^2/B", "s"]);
    assert_eq!(t.file.model.name, "linear-t_mig_s");
    // No intercept: uncentred R^2.
    let t = trainer::train_linear(
        &TrainOptions {
            name: Some("noint".into()),
            filters: vec!["label=b".into()],
            ..opts.clone()
        },
        &LinearOptions {
            intercept: false,
            ..l.clone()
        },
        &Control::none(),
    )
    .unwrap();
    assert_eq!(t.file.fit.r_squared_kind, "uncentered");
    assert_eq!(t.file.fit.n_rows, 25);
    assert_eq!(t.file.coefficients.len(), 2);
    validate_all(&models);

    // The error and its causes, as the binary prints them (`{e:#}`).
    let fails = |opts: &TrainOptions, l: &LinearOptions| {
        datasets::error_chain(&trainer::train_linear(opts, l, &Control::none()).unwrap_err())
    };
    // A NaN in the data: file and 1-based data row named.
    let bad = dir.path().join("bad.csv");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[8] = "NaN,1e8,1e6,a".into();
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let e = fails(&TrainOptions::new(vec![bad.clone()], models.clone()), &l);
    assert!(
        e.contains("column 't_mig_s'") && e.contains("bad.csv row 8"),
        "{e}"
    );
    // Filters that match nothing, unknown columns, too few rows, collinear columns.
    let e = fails(
        &TrainOptions {
            filters: vec!["label=zzz".into()],
            ..opts.clone()
        },
        &l,
    );
    assert!(e.contains("matched none of the 50 rows"), "{e}");
    let e = fails(
        &opts,
        &LinearOptions {
            features: vec!["nope".into()],
            ..l.clone()
        },
    );
    assert!(e.contains("no column 'nope'"), "{e}");
    let e = fails(
        &TrainOptions {
            filters: vec!["v_mig_bytes<0".into(), "label=a".into()],
            ..opts.clone()
        },
        &l,
    );
    assert!(e.contains("matched none"), "{e}");
    let few = dir.path().join("few.csv");
    std::fs::write(&few, lines[..4].join("\n")).unwrap();
    let e = fails(&TrainOptions::new(vec![few], models.clone()), &l);
    assert!(e.contains("3 row(s) for 3 parameter(s)"), "{e}");
    let col = dir.path().join("col.csv");
    let mut t2 = String::from("y,a,b\n");
    for i in 0..10 {
        t2 += &format!("{},{},{}\n", i * i, i, 2 * i + 1);
    }
    std::fs::write(&col, t2).unwrap();
    let e = fails(
        &TrainOptions::new(vec![col], models.clone()),
        &LinearOptions {
            target: "y".into(),
            features: vec!["a".into(), "b".into()],
            intercept: true,
            units: vec![],
        },
    );
    assert!(e.contains("collinear"), "{e}");
    // Nothing was written by the refused fits.
    assert_eq!(coef::list(&models).unwrap().len(), 2);
}

#[test]
fn schema_and_loader_reject_the_same_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("energy.csv");
    write_energy(&data, Format::Csv, &energy_rows(40, 9), &[]).unwrap();
    let models = dir.path().join("models");
    let t = trainer::train_energy(
        &TrainOptions::new(vec![data], models.clone()),
        false,
        &Control::none(),
    )
    .unwrap();
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&t[0].path).unwrap()).unwrap();
    let schema: serde_json::Value = serde_json::from_str(coef::SCHEMA_JSON).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&good));
    let tamper: [(&str, serde_json::Value); 5] = [
        ("/schema_version", "2.0.0".into()),
        ("/provenance/inputs/0/sha256", "xyz".into()),
        ("/model/kind", "cubic".into()),
        ("/coefficients/0/unit", "J per byte".into()),
        ("/fit/df_residual", 0.into()),
    ];
    for (ptr, v) in tamper {
        let mut bad = good.clone();
        *bad.pointer_mut(ptr).unwrap() = v;
        assert!(!validator.is_valid(&bad), "schema accepted {ptr}");
        let e = coef::parse(Path::new("f.json"), &bad.to_string());
        assert!(e.is_err(), "loader accepted {ptr}");
    }
    let mut extra = good.clone();
    extra["extra"] = 1.into();
    assert!(!validator.is_valid(&extra));
    assert!(coef::parse(Path::new("f.json"), &extra.to_string()).is_err());
}
