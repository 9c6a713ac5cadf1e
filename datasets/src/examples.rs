//! The example campaign's real QEMU migrations (`datasets/examples/campaign/migrations`,
//! `rounds` and the raw logs in `raw`, which hold each migration's host activity), built into
//! the binary so that `migwatt demo` replays them from any folder.

use std::path::Path;

use crate::io::{write_bytes_atomic, DatasetError};

/// Every embedded file: its path under the campaign folder (`migrations/NAME.parquet`,
/// `rounds/NAME.parquet`, `raw/NAME.qmp.jsonl`) and its bytes.
pub const CAMPAIGN_FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/examples.rs"));

/// Write the embedded migrations, rounds and raw logs under `dir` (`dir/migrations`,
/// `dir/rounds`, `dir/raw`), each file atomically; returns how many files were written.
pub fn write_campaign(dir: &Path) -> Result<usize, DatasetError> {
    for (name, bytes) in CAMPAIGN_FILES {
        write_bytes_atomic(&dir.join(name), bytes)?;
    }
    Ok(CAMPAIGN_FILES.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_files_are_the_shipped_ones_and_read_back() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campaign");
        let mut on_disk = 0;
        let mut raw = 0;
        for sub in ["migrations", "rounds", "raw"] {
            let n = std::fs::read_dir(shipped.join(sub)).unwrap().count();
            on_disk += n;
            if sub == "raw" {
                raw = n;
            }
        }
        assert_eq!(CAMPAIGN_FILES.len(), on_disk);
        for (name, bytes) in CAMPAIGN_FILES {
            assert_eq!(*bytes, std::fs::read(shipped.join(name)).unwrap(), "{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write_campaign(dir.path()).unwrap(), on_disk);
        let migrations =
            crate::migrations::read_migrations(&dir.path().join("migrations")).unwrap();
        let rounds = crate::rounds::read_rounds(&dir.path().join("rounds")).unwrap();
        assert_eq!(migrations.len(), (on_disk - raw) / 2);
        assert_eq!(raw, migrations.len());
        assert!(rounds.len() > migrations.len());
    }
}
