//! End to end: `migwatt calibrate report DIR` on a campaign folder built from the shipped
//! example campaign, then the page checked in real headless Chromium.
//!
//! Ignored by default (needs Chromium: `scripts/setup-browser.sh`); run with
//! `cargo test --test cli -- --ignored report_browser::`. `MIGWATT_CHROMIUM` overrides the browser
//! binary (default `/usr/bin/chromium`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use calibrate::summary::{
    CampaignSummary, FailedMigration, HostSummary, MigrationCounts, ModelSummary, ProducedFile,
    SummaryPaths, Verdict, SUMMARY_VERSION,
};

const SECTIONS: [&str; 8] = [
    "summary",
    "verdicts",
    "power",
    "energy",
    "gamma",
    "residuals",
    "migrations",
    "files",
];
const PLOTS: [&str; 6] = [
    "power-source",
    "power-destination",
    "energy",
    "gamma",
    "residuals-energy",
    "residuals-gamma-qemu",
];

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("migwatt")
}

fn chromium() -> PathBuf {
    let p = std::env::var_os("MIGWATT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.exists(),
        "Chromium not found at {}: run scripts/setup-browser.sh (or set MIGWATT_CHROMIUM)",
        p.display()
    );
    p
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A campaign folder: copies of the example campaign's data and a summary naming them.
fn campaign(dir: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/examples/campaign");
    for d in ["samples", "baselines", "migrations", "rounds", "models"] {
        copy_tree(&example.join(d), &dir.join(d));
    }
    for f in [
        "windows.parquet",
        "energy.parquet",
        "energy.quality.parquet",
    ] {
        std::fs::copy(example.join(f), dir.join(f)).unwrap();
    }
    let p0 = |host: &str| {
        let b: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("baselines/p0-{host}.json"))).unwrap(),
        )
        .unwrap();
        b["p0_watts"].as_f64()
    };
    let host = |role: &str, host: &str| HostSummary {
        role: role.into(),
        host: host.into(),
        meter: format!("/dev/wattsup-{host}"),
        p0_w: p0(host),
        baseline: Some(format!("baselines/p0-{host}.json").into()),
        samples: 0,
    };
    let model = |kind: &str, path: &str| {
        let c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(path)).unwrap()).unwrap();
        ModelSummary {
            kind: kind.into(),
            path: path.into(),
            equation: c["equation"].as_str().unwrap().into(),
            r_squared: c["fit"]["r_squared"].as_f64().unwrap(),
            n_rows: c["fit"]["n_rows"].as_u64().unwrap() as usize,
            cv_mape: c["fit"]["cross_validation"]["mape_percent"]
                .as_f64()
                .map(|p| p / 100.0),
        }
    };
    let file = |path: &str, description: &str| ProducedFile {
        path: path.into(),
        description: description.into(),
    };
    let s = CampaignSummary {
        summary_version: SUMMARY_VERSION.into(),
        name: "example-browser".into(),
        hardware_pair: "hostA--hostB".into(),
        created_at: "2026-11-25T16:30:00Z".into(),
        toolkit_version: "0.1.0".into(),
        hypervisor: "qemu".into(),
        hosts: vec![host("source", "hostA"), host("destination", "hostB")],
        emulated: vec![
            "Power: both Watts up? PRO meters were emulated on pseudo-terminals, playing traces derived from the migrations' times.".into(),
        ],
        real: vec!["24 live migrations of real QEMU guests, driven and recorded over QMP.".into()],
        power_model: None,
        paths: SummaryPaths {
            samples_dir: "samples".into(),
            migrations_dir: Some("migrations".into()),
            rounds_dir: Some("rounds".into()),
            windows: "windows.parquet".into(),
            energy: "energy.parquet".into(),
            window_quality: "energy.quality.parquet".into(),
            energy_model: Some("models/energy/v1.json".into()),
            gamma_model: Some("models/gamma-qemu/v1.json".into()),
        },
        migrations: MigrationCounts {
            planned: 25,
            done: 24,
            converged: 24,
            failed: vec![FailedMigration {
                migration_id: "qemu-tiny256m-planned-25".into(),
                reason: "destination QEMU did not start (test fixture)".into(),
            }],
            ..MigrationCounts::default()
        },
        models: vec![
            model("energy", "models/energy/v1.json"),
            model("gamma", "models/gamma-qemu/v1.json"),
        ],
        verdicts: vec![
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
                name: "gamma R^2".into(),
                value: Some(0.1617),
                threshold: 0.5,
                comparison: ">=".into(),
                unit: "".into(),
                passed: false,
                detail: "short by 0.338; run more dirtying rates and link speeds".into(),
            },
        ],
        accepted: false,
        files: vec![
            file("energy.parquet", "energy per migration (eq 14)"),
            file("windows.parquet", "migration windows per host"),
            file("models/energy/v1.json", "energy model coefficients"),
            file("samples", "power samples, hive-partitioned by host and date"),
        ],
    };
    s.write(dir).unwrap();
}

/// Run Chromium with `args`, at most 120 s; returns (stdout, stderr).
fn run_chromium(tmp: &Path, name: &str, args: &[String]) -> (String, String) {
    let profile = tmp.join(format!("profile-{name}"));
    std::fs::create_dir_all(&profile).unwrap();
    let out = tmp.join(format!("{name}.stdout"));
    let err = tmp.join(format!("{name}.stderr"));
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .env("HOME", tmp)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "chromium {name} failed ({status:?}); stderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// The wrapper page: loads the report in an iframe and writes what it finds as JSON.
fn wrapper_html() -> String {
    let list = |v: &[&str]| serde_json::to_string(v).unwrap();
    format!(
        r##"<!DOCTYPE html>
<html><head><meta charset="utf-8"></head><body>
<iframe id="f" src="report.html" style="width:1200px;height:4000px"></iframe>
<pre id="result">pending</pre>
<script>
const SECTIONS = {sections};
const PLOTS = {plots};
const frame = document.getElementById('f');
frame.addEventListener('load', () => {{
  const out = {{ sections: {{}}, plots: {{}}, all_plots: [], external: [], broken_anchors: [],
                images_not_loaded: [], resources: [], errors: [] }};
  try {{
    const d = frame.contentDocument;
    const w = frame.contentWindow;
    for (const id of SECTIONS) {{
      const s = d.getElementById(id);
      const h2 = s ? s.querySelector('h2') : null;
      out.sections[id] = {{ tag: s ? s.tagName : null, h2: h2 ? h2.textContent : null }};
    }}
    out.all_plots = Array.from(d.querySelectorAll('figure.plot')).map(f => f.dataset.plot);
    for (const p of PLOTS) {{
      const fig = d.querySelector('figure.plot[data-plot="' + p + '"]');
      const svg = fig ? fig.querySelector('svg') : null;
      const r = svg ? svg.getBoundingClientRect() : {{ width: 0, height: 0 }};
      const texts = svg ? Array.from(svg.querySelectorAll('text')) : [];
      out.plots[p] = {{ figure: !!fig, svg: !!svg, width: r.width, height: r.height,
        texts: texts.length, text: texts.map(t => t.textContent.trim()).join('|'),
        caption: fig && fig.querySelector('figcaption') ? fig.querySelector('figcaption').textContent : null }};
    }}
    const external = (what, v) => {{ if (v && !v.startsWith('#') && !v.startsWith('data:')) out.external.push(what + ': ' + v); }};
    d.querySelectorAll('img').forEach(i => {{
      external('img', i.getAttribute('src'));
      if (!(i.complete && i.naturalWidth > 0)) out.images_not_loaded.push(i.getAttribute('src'));
    }});
    d.querySelectorAll('link').forEach(l => external('link', l.getAttribute('href') || '(no href)'));
    d.querySelectorAll('script[src]').forEach(s => external('script', s.getAttribute('src')));
    d.querySelectorAll('image, use, iframe, object, embed, video, audio, source').forEach(e =>
      external(e.tagName, e.getAttribute('href') || e.getAttribute('xlink:href') || e.getAttribute('src') || e.getAttribute('data') || '(element)'));
    d.querySelectorAll('style').forEach(s => {{
      if (/url\(|@import/.test(s.textContent)) out.external.push('style: ' + s.textContent.match(/(url\([^)]*\)|@import[^;]*)/)[0]);
    }});
    d.querySelectorAll('[style]').forEach(e => {{
      if (/url\(/.test(e.getAttribute('style'))) out.external.push('style attribute: ' + e.getAttribute('style'));
    }});
    d.querySelectorAll('a[href^="#"]').forEach(a => {{
      const id = decodeURIComponent(a.getAttribute('href').slice(1));
      if (!d.getElementById(id)) out.broken_anchors.push(a.getAttribute('href'));
    }});
    out.resources = w.performance.getEntriesByType('resource').map(e => e.name);
    out.title = d.title;
    out.body_height = d.body.scrollHeight;
  }} catch (e) {{ out.errors.push(String(e)); }}
  document.getElementById('result').textContent = JSON.stringify(out);
}});
</script>
</body></html>
"##,
        sections = list(&SECTIONS),
        plots = list(&PLOTS),
    )
}

fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

#[test]
#[ignore = "needs Chromium: scripts/setup-browser.sh, then cargo test --test cli -- --ignored report_browser::"]
fn report_renders_in_headless_chromium() {
    let browser = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("campaign");
    campaign(&dir);

    let out = Command::new(bin())
        .args(["calibrate", "report"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "calibrate report failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&dir.join("report.html").display().to_string()),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "inputs were missing: {stderr}");
    assert!(dir.join("report.md").is_file());

    // The DOM as Chromium builds it, inspected from a wrapper page in the same folder.
    std::fs::write(dir.join("wrapper.html"), wrapper_html()).unwrap();
    let (dom, chrome_err) = run_chromium(
        tmp.path(),
        "dom",
        &[
            "--dump-dom".into(),
            format!("file://{}", dir.join("wrapper.html").display()),
        ],
    );
    let start = dom
        .find("<pre id=\"result\">")
        .unwrap_or_else(|| panic!("no result in the DOM:\n{dom}\nchromium stderr:\n{chrome_err}"));
    let rest = &dom[start + "<pre id=\"result\">".len()..];
    let json = unescape_html(&rest[..rest.find("</pre>").expect("result closed")]);
    let r: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| {
        panic!("the wrapper did not report ({e}): {json}\nchromium stderr:\n{chrome_err}")
    });
    // Shown with --nocapture: what the browser saw.
    println!("{r:#}");
    let ctx = || format!("result: {r:#}\nchromium stderr:\n{chrome_err}");
    assert_eq!(r["errors"], serde_json::json!([]), "{}", ctx());
    for id in SECTIONS {
        let s = &r["sections"][id];
        assert_eq!(s["tag"], "SECTION", "section #{id} missing; {}", ctx());
        assert!(
            s["h2"].as_str().is_some_and(|h| !h.is_empty()),
            "section #{id} has no <h2>; {}",
            ctx()
        );
    }
    for p in PLOTS {
        let v = &r["plots"][p];
        assert_eq!(v["svg"], true, "plot {p} missing; {}", ctx());
        let (w, h) = (v["width"].as_f64().unwrap(), v["height"].as_f64().unwrap());
        assert!(w > 100.0 && h > 50.0, "plot {p} renders {w}x{h}; {}", ctx());
        assert!(
            v["texts"].as_u64().unwrap() > 3,
            "plot {p} has no text; {}",
            ctx()
        );
        assert!(
            v["caption"].as_str().is_some_and(|c| !c.is_empty()),
            "plot {p} has no caption"
        );
    }
    let text = |p: &str| r["plots"][p]["text"].as_str().unwrap().to_string();
    assert!(
        text("power-source").contains("power [W]"),
        "{}",
        text("power-source")
    );
    // The plot labels P_0 to 0.1 W: the example campaign's baseline of hostA, as recorded.
    let baseline: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("datasets/examples/campaign/baselines/p0-hostA.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let p0_label = format!("P_0 = {:.1} W", baseline["p0_watts"].as_f64().unwrap());
    assert!(
        text("power-source").contains(&p0_label),
        "{p0_label} not in {}",
        text("power-source")
    );
    assert!(text("energy").contains("V_mig [MB]") && text("energy").contains("E_mig [J]"));
    assert!(text("gamma").contains("gamma observed [1]"));
    assert!(text("residuals-energy").contains("fitted E_mig [J]"));
    assert_eq!(
        r["external"],
        serde_json::json!([]),
        "external references; {}",
        ctx()
    );
    assert_eq!(r["images_not_loaded"], serde_json::json!([]), "{}", ctx());
    assert_eq!(r["broken_anchors"], serde_json::json!([]), "{}", ctx());
    assert_eq!(
        r["resources"],
        serde_json::json!([]),
        "the report fetched resources; {}",
        ctx()
    );
    assert_eq!(r["title"], "Calibration report: example-browser");

    // A screenshot of the report itself, to look at.
    let png = tmp.path().join("report.png");
    run_chromium(
        tmp.path(),
        "screenshot",
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,6400".into(),
            "--hide-scrollbars".into(),
            format!("file://{}", dir.join("report.html").display()),
        ],
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "screenshot is {} bytes",
        bytes.len()
    );
    if let Some(keep) = std::env::var_os("MIGWATT_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
    let _ = browser;
}
