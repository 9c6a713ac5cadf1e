//! The campaign journal: one JSON line per finished step, fsync'ed, so a run killed at any
//! point and started again knows what it finished. A torn last line (killed mid-write) is
//! ignored: the step it recorded is redone.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CampaignError;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Entry {
    /// A run started (the first, or a resumption).
    Started {
        /// When, UTC ns.
        utc_ns: i64,
        /// migwatt version.
        toolkit_version: String,
    },
    /// The idle capture for P_0 finished.
    Baseline {
        /// Start of the idle stretch, UTC ns.
        start_utc_ns: i64,
        /// End of the idle stretch, UTC ns.
        end_utc_ns: i64,
    },
    /// A migration started.
    MigrationStarted {
        /// Planned id.
        migration_id: String,
        /// When, UTC ns.
        utc_ns: i64,
    },
    /// A migration finished and its files are written.
    MigrationDone {
        /// Planned id.
        migration_id: String,
        /// When, UTC ns.
        utc_ns: i64,
    },
    /// A migration failed (retried when the campaign is run again).
    MigrationFailed {
        /// Planned id.
        migration_id: String,
        /// Why.
        reason: String,
    },
    /// Models trained (paths relative to the campaign folder).
    Trained {
        /// Energy model file.
        energy_model: Option<PathBuf>,
        /// Gamma model file.
        gamma_model: Option<PathBuf>,
    },
    /// The campaign finished (summary and report written).
    Finished {
        /// When, UTC ns.
        utc_ns: i64,
    },
}

/// What the journal says was done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Runs started so far (resumptions + 1).
    pub runs: usize,
    /// The finished idle stretch.
    pub baseline: Option<(i64, i64)>,
    /// Migrations done.
    pub done: BTreeSet<String>,
    /// Migrations that started and did not finish (cut or failed), with the last reason.
    pub unfinished: BTreeMap<String, Option<String>>,
    /// Trained model files.
    pub trained: Option<(Option<PathBuf>, Option<PathBuf>)>,
    /// Whether the campaign finished.
    pub finished: bool,
    /// Lines that could not be read (a torn last line), with their line number.
    pub unreadable: Vec<usize>,
}

impl State {
    fn apply(&mut self, e: &Entry) {
        match e {
            Entry::Started { .. } => self.runs += 1,
            Entry::Baseline {
                start_utc_ns,
                end_utc_ns,
            } => self.baseline = Some((*start_utc_ns, *end_utc_ns)),
            Entry::MigrationStarted { migration_id, .. } => {
                self.done.remove(migration_id);
                self.unfinished.insert(migration_id.clone(), None);
                // New data invalidates models trained before it.
                self.trained = None;
                self.finished = false;
            }
            Entry::MigrationDone { migration_id, .. } => {
                self.unfinished.remove(migration_id);
                self.done.insert(migration_id.clone());
            }
            Entry::MigrationFailed {
                migration_id,
                reason,
            } => {
                self.unfinished
                    .insert(migration_id.clone(), Some(reason.clone()));
            }
            Entry::Trained {
                energy_model,
                gamma_model,
            } => self.trained = Some((energy_model.clone(), gamma_model.clone())),
            Entry::Finished { .. } => self.finished = true,
        }
    }
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    state: State,
}

impl Journal {
    /// Open (or create) the journal at `path` and read what it holds.
    pub fn open(path: &Path) -> Result<Journal, CampaignError> {
        let io = |source| CampaignError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut state = State::default();
        let text = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let ends_clean = text.is_empty() || text.ends_with(b"\n");
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Entry>(line) {
                Ok(e) => state.apply(&e),
                Err(_) => state.unreadable.push(i + 1),
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if !ends_clean {
            // Finish the torn line so the next entry starts on its own line.
            file.write_all(b"\n").map_err(io)?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            state,
        })
    }

    /// What the journal says was done.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Append an entry and make it durable before returning.
    pub fn record(&mut self, e: Entry) -> Result<(), CampaignError> {
        let mut line = serde_json::to_vec(&e).map_err(|e| CampaignError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .map_err(|source| CampaignError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.state.apply(&e);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_and_ignores_a_torn_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal.jsonl");
        let mut j = Journal::open(&p).unwrap();
        j.record(Entry::Started {
            utc_ns: 1,
            toolkit_version: "t".into(),
        })
        .unwrap();
        j.record(Entry::Baseline {
            start_utc_ns: 1,
            end_utc_ns: 2,
        })
        .unwrap();
        for id in ["a", "b"] {
            j.record(Entry::MigrationStarted {
                migration_id: id.into(),
                utc_ns: 3,
            })
            .unwrap();
        }
        j.record(Entry::MigrationDone {
            migration_id: "a".into(),
            utc_ns: 4,
        })
        .unwrap();
        drop(j);
        // A kill in the middle of writing the next line.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"event\":\"migration-do").unwrap();
        drop(f);
        let mut j = Journal::open(&p).unwrap();
        let s = j.state().clone();
        assert_eq!(s.runs, 1);
        assert_eq!(s.baseline, Some((1, 2)));
        assert!(s.done.contains("a") && !s.done.contains("b"));
        assert!(s.unfinished.contains_key("b"));
        assert_eq!(s.unreadable, vec![6]);
        j.record(Entry::MigrationDone {
            migration_id: "b".into(),
            utc_ns: 5,
        })
        .unwrap();
        drop(j);
        let j = Journal::open(&p).unwrap();
        assert!(j.state().done.contains("b"));
        assert_eq!(j.state().unreadable, vec![6]);
    }
}
