//! Names that become path components: hosts (`samples/host=NAME/`, `baselines/p0-NAME.json`,
//! `models/SRC--DST/`), VMs and migrations (`migrations/ID.parquet`). One rule for all of
//! them, checked wherever such a name enters (capture's `--port NAME=DEVICE`, a campaign
//! config, a migration log), so that no name can reach outside its folder or hide from the
//! readers.

/// A name that cannot be a path component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} '{shown}': {problem}")]
pub struct NameError {
    /// What the name names (`host name`, `VM name`...).
    pub what: String,
    /// The name, with control characters escaped.
    pub shown: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

/// Longest accepted name, bytes (a path component holds 255; prefixes need room).
pub const MAX_NAME_BYTES: usize = 128;

/// Check a name that becomes a path component: non-empty, at most [`MAX_NAME_BYTES`], ASCII
/// letters, digits, `-`, `_` and `.` only (so no `/`, NUL, space or control character), not
/// starting with `.` (hidden from hive readers; `.` and `..` leave the folder). `what` names
/// it in the error (`host name`).
pub fn check_name(what: &str, name: &str) -> Result<(), NameError> {
    let problem = if name.is_empty() {
        Some("empty; give a name".to_string())
    } else if name.len() > MAX_NAME_BYTES {
        Some(format!(
            "{} bytes long, at most {MAX_NAME_BYTES} are allowed",
            name.len()
        ))
    } else if name.starts_with('.') {
        Some("starts with '.' (a hidden file name, and '.' or '..' leave the folder)".into())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .map(|c| {
                format!(
                    "{} is not allowed; use letters, digits, '-', '_' and '.'",
                    match c {
                        '/' => "'/' (a path separator)".to_string(),
                        '\0' => "NUL".to_string(),
                        c if c.is_control() => format!("control character {:?}", c),
                        c => format!("{c:?}"),
                    }
                )
            })
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(NameError {
            what: what.to_string(),
            shown: name.escape_debug().to_string(),
            problem,
        }),
    }
}

/// A file-name-safe form of an id read from a log (a migration id carries the VM's name as
/// the log spells it): characters outside `[A-Za-z0-9._-]` become `_`, a leading `.` too, and
/// an empty id becomes `_`; the result always passes [`check_name`] when it fits the length.
pub fn safe_component(id: &str) -> String {
    let mut out: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    if out.is_empty() {
        out.push('_');
    }
    if out.len() > MAX_NAME_BYTES {
        out.truncate(MAX_NAME_BYTES);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escaping_and_empty_names_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../../evil",
            "a/b",
            "/abs",
            ".hidden",
            "nul\0byte",
            "new\nline",
            "sp ace",
        ] {
            let e = check_name("host name", bad).unwrap_err();
            assert!(e.to_string().starts_with("host name '"), "{e}");
        }
        assert!(check_name("host", &"a".repeat(MAX_NAME_BYTES + 1)).is_err());
        for good in ["node-a", "lab1", "src_2.example.org", "A", "x.."] {
            check_name("host name", good).unwrap();
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let e = check_name("host name", "../../evil").unwrap_err();
        assert!(e.problem.contains("starts with '.'"), "{e}");
        let e = check_name("VM name", "a/b").unwrap_err();
        assert!(e.problem.contains("path separator"), "{e}");
        assert!(check_name("host name", "")
            .unwrap_err()
            .problem
            .contains("empty"));
    }

    proptest! {
        #[test]
        fn accepted_names_stay_one_visible_component(name in "\\PC{0,40}") {
            if check_name("name", &name).is_ok() {
                let p = std::path::Path::new("root").join(&name);
                prop_assert_eq!(p.components().count(), 2);
                prop_assert_eq!(p.parent(), Some(std::path::Path::new("root")));
                prop_assert!(!name.starts_with('.'));
            }
        }

        #[test]
        fn safe_components_always_pass(id in "\\PC{0,200}") {
            prop_assert!(check_name("id", &safe_component(&id)).is_ok());
        }
    }
}
