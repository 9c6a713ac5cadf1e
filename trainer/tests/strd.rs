//! NIST StRD certified linear regressions (tests/data/strd, see its README): every
//! coefficient, standard error, residual SD and R^2 must agree with the certified values to
//! at least 9 significant digits on the lower and average difficulty sets and 6 on the
//! higher ones. `cargo test -p trainer --test strd -- --nocapture` prints the digits reached.

use std::path::PathBuf;

use trainer::{Control, OlsParams, Problem};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/strd")
}

struct Certified {
    intercept: bool,
    /// Parameters in NIST order (B0 first when there is an intercept).
    estimates: Vec<f64>,
    std_devs: Vec<f64>,
    residual_sd: f64,
    r_squared: f64,
}

fn certified(name: &str) -> Certified {
    let text = std::fs::read_to_string(data_dir().join(format!("{name}.certified.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let num = |x: &serde_json::Value| x.as_str().unwrap().trim().parse::<f64>().unwrap();
    let params = v["parameters"].as_array().unwrap();
    Certified {
        intercept: v["intercept"].as_bool().unwrap(),
        estimates: params.iter().map(|p| num(&p["estimate"])).collect(),
        std_devs: params.iter().map(|p| num(&p["std_dev"])).collect(),
        residual_sd: num(&v["residual_sd"]),
        r_squared: num(&v["r_squared"]),
    }
}

/// Columns of the CSV: header names and values.
fn csv(name: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(data_dir().join(format!("{name}.csv"))).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut cols = vec![Vec::new(); header.len()];
    for l in lines.filter(|l| !l.trim().is_empty()) {
        for (c, f) in l.split(',').enumerate() {
            cols[c].push(f.trim().parse::<f64>().unwrap());
        }
    }
    (header, cols)
}

/// Significant digits of agreement: -log10(|got - want| / |want|), capped at 16.
fn digits(got: f64, want: f64) -> f64 {
    if got == want {
        return 16.0;
    }
    let rel = ((got - want) / want).abs();
    (-rel.log10()).min(16.0)
}

/// Fit a dataset and return the smallest number of agreeing digits over every value.
fn check(name: &str, degree: Option<u32>) -> f64 {
    let cert = certified(name);
    let (header, cols) = csv(name);
    let y = cols[0].clone();
    let (names, xs): (Vec<String>, Vec<Vec<f64>>) = match degree {
        Some(d) => (1..=d)
            .map(|k| {
                (
                    format!("x^{k}"),
                    cols[1].iter().map(|x| x.powi(k as i32)).collect(),
                )
            })
            .unzip(),
        None => (header[1..].to_vec(), cols[1..].to_vec()),
    };
    let features: Vec<(&str, &[f64])> = names
        .iter()
        .zip(&xs)
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    let fit = OlsParams::new()
        .intercept(cert.intercept)
        .max_condition(1e12)
        .fit(
            &Problem {
                features: &features,
                target: ("y", &y),
                row_label: None,
            },
            &Control::none(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // Ours: features then intercept; NIST: intercept (B0) first.
    let mut ours = fit.estimates.clone();
    if cert.intercept {
        ours.rotate_right(1);
    }
    let mut worst = 16.0f64;
    let mut report = Vec::new();
    for (i, e) in ours.iter().enumerate() {
        let de = digits(e.value, cert.estimates[i]);
        let ds = digits(e.std_error, cert.std_devs[i]);
        report.push(format!("B{i}: est {de:.1} se {ds:.1}"));
        worst = worst.min(de).min(ds);
    }
    let dr = digits(fit.residual_sd, cert.residual_sd);
    let d2 = digits(fit.r_squared, cert.r_squared);
    worst = worst.min(dr).min(d2);
    println!(
        "{name}: min {worst:.1} digits (residual SD {dr:.1}, R^2 {d2:.1}; cond {:.3e}) [{}]",
        fit.condition_number,
        report.join("; ")
    );
    worst
}

#[test]
fn norris() {
    assert!(check("Norris", None) >= 9.0);
}

#[test]
fn pontius() {
    assert!(check("Pontius", Some(2)) >= 9.0);
}

#[test]
fn noint1() {
    assert!(check("NoInt1", None) >= 9.0);
}

#[test]
fn noint2() {
    assert!(check("NoInt2", None) >= 9.0);
}

#[test]
fn longley() {
    assert!(check("Longley", None) >= 6.0);
}

#[test]
fn filip() {
    assert!(check("Filip", Some(10)) >= 6.0);
}
