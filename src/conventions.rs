//! Checks of the conventions every crate follows, over the workspace's source and the CLI tree
//! (tests only).

/// One `#[error("...")]` attribute whose message shows a field that is also the error's source.
#[derive(Debug, PartialEq, Eq)]
struct Repeat {
    line: usize,
    item: String,
    field: String,
}

/// The end (exclusive) of the delimited group opening at `s[start]` (`(`, `[` or `{`),
/// skipping string and char literals.
fn group_end(s: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < s.len() {
        match s[i] {
            b'"' => i = string_end(s, i)? - 1,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The end (exclusive) of the string literal opening at `s[start]`.
fn string_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'"' => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Skip whitespace, comments and attributes.
fn skip_trivia(s: &[u8], mut i: usize) -> usize {
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if s[i..].starts_with(b"//") {
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
        } else if s[i..].starts_with(b"#[") {
            match group_end(s, i + 1) {
                Some(e) => i = e,
                None => return s.len(),
            }
        } else {
            return i;
        }
    }
}

/// Split a field list at its top-level commas.
fn fields(body: &str) -> Vec<&str> {
    let b = body.as_bytes();
    let (mut depth, mut from, mut out) = (0i32, 0, Vec::new());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = string_end(b, i).unwrap_or(b.len()) - 1,
            b'(' | b'[' | b'{' | b'<' => depth += 1,
            b')' | b']' | b'}' | b'>' if !(b[i] == b'>' && i > 0 && b[i - 1] == b'-') => depth -= 1,
            b',' if depth == 0 => {
                out.push(&body[from..i]);
                from = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if !body[from..].trim().is_empty() {
        out.push(&body[from..]);
    }
    out
}

/// Every `#[error("...")]` whose message (or format arguments) shows the error's source (a
/// field named `source` or marked `#[source]`/`#[from]`): `{e:#}` would print that cause
/// twice. Returns the attributes seen and the repeats.
fn repeats(text: &str) -> (usize, Vec<Repeat>) {
    let s = text.as_bytes();
    let (mut seen, mut out) = (0, Vec::new());
    let mut at = 0;
    while let Some(off) = text[at..].find("#[error(") {
        let open = at + off + "#[error".len();
        at = open;
        let Some(attr_end) = group_end(s, open) else {
            break;
        };
        let args = &text[open + 1..attr_end - 1];
        if !args.trim_start().starts_with('"') {
            continue; // transparent
        }
        seen += 1;
        // The item the attribute is on: a variant, or a struct.
        let mut i = skip_trivia(s, attr_end + 1);
        for kw in ["pub(crate)", "pub", "struct"] {
            if text[i..].starts_with(kw) {
                i = skip_trivia(s, i + kw.len());
            }
        }
        let name_end = i + text[i..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(0);
        let item = text[i..name_end].to_string();
        let j = skip_trivia(s, name_end);
        let (named, body) = match s.get(j) {
            Some(b'{') | Some(b'(') => {
                let Some(e) = group_end(s, j) else { break };
                (s[j] == b'{', &text[j + 1..e - 1])
            }
            _ => continue,
        };
        for (k, f) in fields(body).into_iter().enumerate() {
            let start = skip_trivia(f.as_bytes(), 0);
            let attrs = &f[..start];
            let rest = f[start..].trim_start_matches("pub ").trim();
            let name = if named {
                rest.split(':').next().unwrap_or("").trim().to_string()
            } else {
                k.to_string()
            };
            let is_source =
                name == "source" || attrs.contains("#[source]") || attrs.contains("#[from]");
            if !is_source {
                continue;
            }
            let shows = args.contains(&format!("{{{name}}}"))
                || args.contains(&format!("{{{name}:"))
                || args.contains(&format!(".{name}"));
            if shows {
                out.push(Repeat {
                    line: text[..open].matches('\n').count() + 1,
                    item: item.clone(),
                    field: name,
                });
            }
        }
    }
    (seen, out)
}

/// Every Rust source file of the workspace's crates.
fn workspace_sources() -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for d in [
        "src",
        "meter",
        "trainer",
        "calibrate",
        "datasets",
        "notebooks",
        "tests",
        "bench",
    ] {
        walk(&root.join(d), &mut out);
    }
    out
}

#[test]
fn no_error_message_repeats_its_source() {
    let (mut seen, mut bad) = (0, Vec::new());
    // This file's own examples are repeats on purpose.
    for p in workspace_sources()
        .into_iter()
        .filter(|p| !p.ends_with("src/conventions.rs"))
    {
        let text = std::fs::read_to_string(&p).unwrap();
        let (n, r) = repeats(&text);
        seen += n;
        bad.extend(
            r.into_iter()
                .map(|r| format!("{}:{}: {r:?}", p.display(), r.line)),
        );
    }
    // The walk found the workspace's errors (a broken walk would find none and pass).
    assert!(seen > 80, "only {seen} #[error] attributes found");
    assert!(
        bad.is_empty(),
        "these messages show their #[source]/#[from], so `{{e:#}}` prints the cause twice:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_walk_finds_each_form_of_repeat() {
    let src = r#"
        enum E {
            /// named, by name
            #[error("{path}: {source}")]
            Io { path: PathBuf, #[source] source: std::io::Error },
            #[error("bad {inner:?}")]
            Marked {
                /// doc
                #[source]
                inner: X,
            },
            #[error("cannot render: {0}")]
            Wrapped(#[from] SummaryError),
            #[error("{}", .cause)]
            Arg { #[from] cause: Y },
            #[error("{path}")]
            Fine { path: PathBuf, source: std::io::Error },
            #[error("{0}: {1}")]
            Both(String, String),
            #[error(transparent)]
            T(#[from] Z),
        }
        #[derive(thiserror::Error)]
        #[error("x {source}")]
        pub struct S { source: Box<dyn std::error::Error + Send> }
    "#;
    let (seen, r) = repeats(src);
    assert_eq!(seen, 7);
    let got: Vec<(&str, &str)> = r
        .iter()
        .map(|r| (r.item.as_str(), r.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("Io", "source"),
            ("Marked", "inner"),
            ("Wrapped", "0"),
            ("Arg", "cause"),
            ("S", "source")
        ]
    );
}

/// Every visible option of every command: (command path, argument).
fn all_args() -> Vec<(String, clap::Arg)> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            out.push((path.to_string(), a.clone()));
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }
    let mut out = Vec::new();
    walk(
        &<crate::Cli as clap::CommandFactory>::command(),
        "migwatt",
        &mut out,
    );
    out
}

#[test]
fn options_taking_a_folder_end_in_dir_and_only_they_do() {
    let mut bad = Vec::new();
    let mut folders = 0;
    for (path, a) in all_args() {
        let Some(long) = a.get_long() else { continue };
        let names = a.get_value_names().unwrap_or_default();
        let dir = names.iter().any(|n| n.as_str() == "DIR");
        folders += usize::from(dir);
        if long.ends_with("-dir") != dir {
            bad.push(format!("{path} --{long} <{names:?}>"));
        }
    }
    assert!(folders >= 8, "only {folders} folder options found");
    assert!(
        bad.is_empty(),
        "a folder option is named --NAME-dir DIR:\n{bad:#?}"
    );
}

#[test]
fn format_only_ever_picks_text_or_json() {
    let mut seen = 0;
    for (path, a) in all_args() {
        assert_ne!(a.get_long(), Some("json"), "{path}: use --format json");
        if a.get_long() == Some("format") {
            let values: Vec<String> = a
                .get_possible_values()
                .iter()
                .map(|v| v.get_name().to_string())
                .collect();
            assert_eq!(values, ["text", "json"], "{path} --format");
            seen += 1;
        }
    }
    assert!(seen >= 9, "only {seen} --format options found");
}

#[test]
fn every_environment_variable_is_documented_in_help_and_readme() {
    let readme = include_str!("../README.md");
    // Those clap reads, and every MIGWATT_ name the tool's sources spell (read by a library,
    // such as the Redfish credentials, or set for a hook); tests and benchmarks have their own.
    let mut vars: Vec<String> = all_args()
        .iter()
        .filter_map(|(_, a)| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for p in workspace_sources().into_iter().filter(|p| {
        !p.starts_with(root.join("tests"))
            && !p.starts_with(root.join("bench"))
            && !p.ends_with("src/conventions.rs")
    }) {
        let text = std::fs::read_to_string(&p).unwrap();
        for part in text.split("\"MIGWATT_").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            if part[name.len()..].starts_with('"') && !name.is_empty() {
                vars.push(format!("MIGWATT_{name}"));
            }
        }
    }
    vars.sort();
    vars.dedup();
    assert!(vars.len() >= 6, "{vars:?}");
    for v in &vars {
        assert!(crate::AFTER_HELP.contains(v.as_str()), "{v} not in --help");
        assert!(readme.contains(&format!("`{v}`")), "{v} not in README.md");
    }
}
