//! Embeds the example campaign's migrations and rounds (`examples/campaign/{migrations,rounds}`,
//! a few hundred KB of Parquet) and its raw QMP logs (`raw/*.qmp.jsonl`, which hold the host
//! activity the demo's emulated meters replay) so that `migwatt demo` can replay them from any
//! folder, after `cargo install`, without the repository.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campaign");
    let mut code = String::from("&[\n");
    for (sub, ext) in [
        ("migrations", ".parquet"),
        ("rounds", ".parquet"),
        ("raw", ".qmp.jsonl"),
    ] {
        let dir = root.join(sub);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("reading the examples folder").file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.ends_with(ext))
            .collect();
        names.sort();
        for n in names {
            let path = dir.join(&n);
            writeln!(
                code,
                "    ({:?}, include_bytes!({:?}) as &[u8]),",
                format!("{sub}/{n}"),
                path.display().to_string()
            )
            .expect("writing to a String");
        }
    }
    code.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("examples.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
