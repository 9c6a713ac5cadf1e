//! Where each loaded row came from: its input file and its 0-based data row in that file.
//!
//! Kept as runs of consecutive rows, not one entry per row: an unfiltered million-row file is
//! one run, so a fit neither builds nor writes two million-entry columns to say "row i of file 0".

/// Consecutive rows of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginRun {
    /// Index of the file (into the table's files, or a coefficient file's inputs).
    pub file: u32,
    /// 0-based data row of the run's first row in that file.
    pub first_row: u64,
    /// Number of rows in the run (at least 1).
    pub rows: u64,
}

/// The origin of every row of a table or a training set, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    runs: Vec<OriginRun>,
    /// Row index (within these origins) at which each run starts.
    starts: Vec<u64>,
    len: u64,
}

impl Origins {
    /// No rows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append `rows` consecutive rows of `file` starting at `first_row`, merging with the last
    /// run when they continue it.
    pub fn push_run(&mut self, file: u32, first_row: u64, rows: u64) {
        if rows == 0 {
            return;
        }
        match self.runs.last_mut() {
            Some(last) if last.file == file && last.first_row + last.rows == first_row => {
                last.rows += rows;
            }
            _ => {
                self.runs.push(OriginRun {
                    file,
                    first_row,
                    rows,
                });
                self.starts.push(self.len);
            }
        }
        self.len += rows;
    }

    /// Append one row.
    pub fn push(&mut self, file: u32, row: u64) {
        self.push_run(file, row, 1);
    }

    /// Append every row of `other`.
    pub fn extend(&mut self, other: &Origins) {
        for r in &other.runs {
            self.push_run(r.file, r.first_row, r.rows);
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The runs, in row order.
    pub fn runs(&self) -> &[OriginRun] {
        &self.runs
    }

    /// File index and 0-based file row of row `i`, or None past the end.
    pub fn get(&self, i: usize) -> Option<(u32, u64)> {
        let i = i as u64;
        if i >= self.len {
            return None;
        }
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        let r = &self.runs[k];
        Some((r.file, r.first_row + (i - self.starts[k])))
    }

    /// Every row's (file, row), in order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.runs
            .iter()
            .flat_map(|r| (r.first_row..r.first_row + r.rows).map(move |row| (r.file, row)))
    }

    /// Rows per file index, for `files` files (indices past `files` are not counted).
    pub fn rows_per_file(&self, files: usize) -> Vec<u64> {
        let mut used = vec![0u64; files];
        for r in &self.runs {
            if let Some(u) = used.get_mut(r.file as usize) {
                *u += r.rows;
            }
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_consecutive_rows() {
        let mut o = Origins::new();
        o.push_run(0, 0, 3);
        o.push(0, 3);
        o.push(0, 5);
        o.push(1, 6);
        o.push_run(1, 7, 0);
        assert_eq!(o.runs().len(), 3);
        assert_eq!(o.len(), 6);
        assert_eq!(o.get(3), Some((0, 3)));
        assert_eq!(o.get(4), Some((0, 5)));
        assert_eq!(o.get(5), Some((1, 6)));
        assert_eq!(o.get(6), None);
        assert_eq!(o.rows_per_file(2), vec![5, 1]);
    }

    proptest! {
        /// Runs are only a compact spelling: get, iter and rows_per_file agree with the
        /// row-by-row list they stand for.
        #[test]
        fn runs_match_the_rows(rows in proptest::collection::vec((0u32..3, 0u64..4), 0..60)) {
            let mut list = Vec::new();
            let mut o = Origins::new();
            let mut next = [0u64; 3];
            for (file, skip) in rows {
                next[file as usize] += skip;
                let row = next[file as usize];
                next[file as usize] += 1;
                list.push((file, row));
                o.push(file, row);
            }
            prop_assert_eq!(o.len(), list.len());
            prop_assert_eq!(o.iter().collect::<Vec<_>>(), list.clone());
            for (i, want) in list.iter().enumerate() {
                prop_assert_eq!(o.get(i), Some(*want));
            }
            let mut per = vec![0u64; 3];
            for (f, _) in &list {
                per[*f as usize] += 1;
            }
            prop_assert_eq!(o.rows_per_file(3), per);
        }
    }
}
