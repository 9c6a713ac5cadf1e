//! Small dense linear algebra for least squares: Householder QR of tall column-major blocks,
//! stacking of R factors (TSQR), triangular solves, and a Jacobi SVD of small matrices.

// Matrix code reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

/// Neumaier-compensated sum (keeps about full precision over millions of terms).
pub fn sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut acc = Neumaier::default();
    for v in values {
        acc.add(v);
    }
    acc.value()
}

/// A running Neumaier-compensated sum, for loops that accumulate several sums at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Neumaier {
    s: f64,
    c: f64,
}

impl Neumaier {
    /// Add one term.
    #[inline]
    pub fn add(&mut self, v: f64) {
        // Knuth's TwoSum: the same exact rounding error as Neumaier's magnitude test, without
        // the branch, so that several sums in one loop overlap.
        let t = self.s + v;
        let z = t - self.s;
        self.c += (self.s - (t - z)) + (v - z);
        self.s = t;
    }

    /// The sum so far.
    pub fn value(&self) -> f64 {
        self.s + self.c
    }

    /// The sum of several running sums, each one's compensation included.
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a Neumaier>) -> Neumaier {
        let mut acc = Neumaier::default();
        for p in parts {
            acc.add(p.s);
            acc.add(p.c);
        }
        acc
    }
}

/// Minimum, maximum and compensated sum of a column in one pass, over four interleaved lanes
/// so that the additions overlap. A NaN makes the sum NaN (min and max skip it).
pub fn min_max_sum(values: &[f64]) -> (f64, f64, Neumaier) {
    let mut min = [f64::INFINITY; 4];
    let mut max = [f64::NEG_INFINITY; 4];
    let mut acc = [Neumaier::default(); 4];
    let chunks = values.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..4 {
            min[k] = min[k].min(c[k]);
            max[k] = max[k].max(c[k]);
            acc[k].add(c[k]);
        }
    }
    for (k, &v) in tail.iter().enumerate() {
        min[k] = min[k].min(v);
        max[k] = max[k].max(v);
        acc[k].add(v);
    }
    (
        min.into_iter().fold(f64::INFINITY, f64::min),
        max.into_iter().fold(f64::NEG_INFINITY, f64::max),
        Neumaier::merge(acc.iter()),
    )
}

/// Dot product with four accumulators (vectorises; also sums in a more balanced order).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// A column-major matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Entries, column after column.
    pub data: Vec<f64>,
}

impl Mat {
    /// A zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Mat {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
    /// Entry (i, j).
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.data[j * self.rows + i]
    }
    /// Mutable entry (i, j).
    pub fn at_mut(&mut self, i: usize, j: usize) -> &mut f64 {
        &mut self.data[j * self.rows + i]
    }
    /// Column j.
    pub fn col(&self, j: usize) -> &[f64] {
        &self.data[j * self.rows..(j + 1) * self.rows]
    }
}

/// Householder QR; returns the `cols x cols` upper-triangular R (rows beyond the block's
/// height are zero). Q is not formed.
pub fn householder_r(mut a: Mat) -> Mat {
    householder_in_place(&mut a);
    let (m, q) = (a.rows, a.cols);
    let mut r = Mat::zeros(q, q);
    for j in 0..q {
        for i in 0..=j.min(m.saturating_sub(1)) {
            *r.at_mut(i, j) = a.at(i, j);
        }
    }
    r
}

/// Householder QR in place: R is left in the upper triangle and every entry below the
/// diagonal is set to zero (so `[R; new rows]` can be reduced again).
pub fn householder_in_place(a: &mut Mat) {
    let (m, q) = (a.rows, a.cols);
    let steps = m.min(q);
    for k in 0..steps {
        let (head, tail) = a.data.split_at_mut((k + 1) * m);
        let colk = &mut head[k * m..];
        let x = &mut colk[k..];
        let norm = dot(x, x).sqrt();
        if norm == 0.0 {
            continue;
        }
        let alpha = if x[0] > 0.0 { -norm } else { norm };
        // v = x - alpha e1, stored in x; H = I - 2 v v^T / (v^T v).
        x[0] -= alpha;
        let vtv = dot(x, x);
        if vtv == 0.0 {
            x[0] += alpha;
            continue;
        }
        let v: &[f64] = x;
        for j in 0..(q - k - 1) {
            let cj = &mut tail[j * m + k..(j + 1) * m];
            let f = 2.0 * dot(v, cj) / vtv;
            if f != 0.0 {
                for (c, vv) in cj.iter_mut().zip(v) {
                    *c -= f * vv;
                }
            }
        }
        colk[k] = alpha;
        for v in &mut colk[k + 1..] {
            *v = 0.0;
        }
    }
}

/// Rows a [`StreamR`] gathers before reducing them: large enough to amortise the reduction,
/// small enough to stay in cache.
const STREAM_CHUNK: usize = 256;

/// The R factor of rows pushed one at a time (TSQR over chunks: `[R; chunk]` is reduced by
/// Householder QR whenever the chunk is full), without holding the rows.
#[derive(Debug, Clone)]
pub struct StreamR {
    q: usize,
    buf: Mat,
    filled: usize,
}

impl StreamR {
    /// An empty factor of `q` columns.
    pub fn new(q: usize) -> Self {
        StreamR {
            q,
            buf: Mat::zeros(q + STREAM_CHUNK, q),
            filled: 0,
        }
    }

    /// Add one row (`q` values).
    #[inline]
    pub fn push(&mut self, row: &[f64]) {
        let m = self.buf.rows;
        let r = self.q + self.filled;
        for (j, v) in row.iter().enumerate() {
            self.buf.data[j * m + r] = *v;
        }
        self.filled += 1;
        if self.filled == STREAM_CHUNK {
            self.reduce();
        }
    }

    fn reduce(&mut self) {
        householder_in_place(&mut self.buf);
        self.filled = 0;
    }

    /// The `q x q` R factor of every row pushed.
    pub fn finish(mut self) -> Mat {
        if self.filled > 0 {
            self.reduce();
        }
        let mut r = Mat::zeros(self.q, self.q);
        for j in 0..self.q {
            for i in 0..=j {
                *r.at_mut(i, j) = self.buf.at(i, j);
            }
        }
        r
    }
}

/// The R factor of the matrix made by stacking `blocks` (each `q x q`) on top of each other.
pub fn stack_r<'a>(blocks: impl IntoIterator<Item = &'a Mat>) -> Mat {
    let blocks: Vec<&Mat> = blocks.into_iter().collect();
    let q = blocks.first().map_or(0, |b| b.cols);
    let m = blocks.len() * q;
    let mut s = Mat::zeros(m, q);
    for (b, blk) in blocks.iter().enumerate() {
        for j in 0..q {
            for i in 0..q {
                *s.at_mut(b * q + i, j) = blk.at(i, j);
            }
        }
    }
    householder_r(s)
}

/// Solve the upper-triangular `R[..p, ..p] x = b`.
pub fn solve_upper(r: &Mat, b: &[f64]) -> Vec<f64> {
    let p = b.len();
    let mut x = b.to_vec();
    for i in (0..p).rev() {
        let s = x[i] - (i + 1..p).map(|j| r.at(i, j) * x[j]).sum::<f64>();
        x[i] = s / r.at(i, i);
    }
    x
}

/// Solve `R[..p, ..p]^T x = b` (forward substitution).
pub fn solve_upper_t(r: &Mat, b: &[f64]) -> Vec<f64> {
    let p = b.len();
    let mut x = b.to_vec();
    for i in 0..p {
        let s = x[i] - (0..i).map(|j| r.at(j, i) * x[j]).sum::<f64>();
        x[i] = s / r.at(i, i);
    }
    x
}

/// Inverse of the upper-triangular `R[..p, ..p]`, row-major `p x p`.
pub fn inv_upper(r: &Mat, p: usize) -> Vec<Vec<f64>> {
    let mut inv = vec![vec![0.0; p]; p];
    for j in 0..p {
        let mut e = vec![0.0; p];
        e[j] = 1.0;
        let col = solve_upper(r, &e);
        for (i, v) in col.into_iter().enumerate() {
            inv[i][j] = v;
        }
    }
    inv
}

/// Singular values (descending) and right singular vectors (column `k` of `v` belongs to
/// value `k`) of the top-left `p x p` block of `a`, by one-sided Jacobi rotations.
pub fn svd_small(a: &Mat, p: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut u: Vec<Vec<f64>> = (0..p)
        .map(|j| (0..p).map(|i| a.at(i, j)).collect())
        .collect();
    let mut v: Vec<Vec<f64>> = (0..p)
        .map(|j| (0..p).map(|i| f64::from(u8::from(i == j))).collect())
        .collect();
    for _sweep in 0..100 {
        let mut rotated = false;
        for i in 0..p {
            for j in i + 1..p {
                let alpha: f64 = u[i].iter().map(|x| x * x).sum();
                let beta: f64 = u[j].iter().map(|x| x * x).sum();
                let gamma: f64 = u[i].iter().zip(&u[j]).map(|(x, y)| x * y).sum();
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for k in 0..p {
                    let (x, y) = (u[i][k], u[j][k]);
                    u[i][k] = c * x - s * y;
                    u[j][k] = s * x + c * y;
                    let (x, y) = (v[i][k], v[j][k]);
                    v[i][k] = c * x - s * y;
                    v[j][k] = s * x + c * y;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut order: Vec<(f64, usize)> = u
        .iter()
        .enumerate()
        .map(|(k, c)| (c.iter().map(|x| x * x).sum::<f64>().sqrt(), k))
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let sv = order.iter().map(|(s, _)| *s).collect();
    let vecs = order.iter().map(|(_, k)| v[*k].clone()).collect();
    (sv, vecs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mat(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f64) -> Mat {
        let mut m = Mat::zeros(rows, cols);
        for j in 0..cols {
            for i in 0..rows {
                *m.at_mut(i, j) = f(i, j);
            }
        }
        m
    }

    fn gram(a: &Mat) -> Vec<f64> {
        let q = a.cols;
        let mut g = vec![0.0; q * q];
        for i in 0..q {
            for j in 0..q {
                g[i * q + j] = (0..a.rows).map(|k| a.at(k, i) * a.at(k, j)).sum();
            }
        }
        g
    }

    proptest! {
        #[test]
        fn r_has_the_same_gram_matrix(m in 1usize..12, q in 1usize..5, seed in 0u64..1000) {
            let a = mat(m, q, |i, j| (((i * 31 + j * 17) as u64 ^ seed) % 97) as f64 / 13.0 - 3.0);
            let r = householder_r(a.clone());
            for j in 0..q { for i in j + 1..q { prop_assert_eq!(r.at(i, j), 0.0); } }
            let (ga, gr) = (gram(&a), gram(&r));
            for (x, y) in ga.iter().zip(&gr) {
                prop_assert!((x - y).abs() <= 1e-9 * (1.0 + x.abs()), "{} vs {}", x, y);
            }
            // Stacking two halves gives the same Gram matrix as the whole.
            let top = mat(m, q, |i, j| a.at(i, j));
            let s = stack_r([&householder_r(top.clone()), &householder_r(top)]);
            let gs = gram(&s);
            for (x, y) in ga.iter().zip(&gs) {
                prop_assert!((2.0 * x - y).abs() <= 1e-9 * (1.0 + x.abs()));
            }
        }
    }

    #[test]
    fn streamed_r_matches_the_whole_block() {
        for rows in [1usize, 5, 255, 256, 257, 1000] {
            let a = mat(rows, 4, |i, j| {
                ((i * 7 + j * 3) % 11) as f64 - 5.0 + 0.01 * i as f64
            });
            let mut s = StreamR::new(4);
            for i in 0..rows {
                s.push(&(0..4).map(|j| a.at(i, j)).collect::<Vec<_>>());
            }
            let (gs, ga) = (gram(&s.finish()), gram(&a));
            for (x, y) in ga.iter().zip(&gs) {
                assert!(
                    (x - y).abs() <= 1e-10 * (1.0 + x.abs()),
                    "{rows}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn solves_and_inverts() {
        let r = mat(
            3,
            3,
            |i, j| if i <= j { (i + 2 * j + 1) as f64 } else { 0.0 },
        );
        let x = solve_upper(&r, &[1.0, 2.0, 3.0]);
        for i in 0..3 {
            let b: f64 = (0..3).map(|j| r.at(i, j) * x[j]).sum();
            assert!((b - (i + 1) as f64).abs() < 1e-12);
        }
        let y = solve_upper_t(&r, &[1.0, 2.0, 3.0]);
        for i in 0..3 {
            let b: f64 = (0..3).map(|j| r.at(j, i) * y[j]).sum();
            assert!((b - (i + 1) as f64).abs() < 1e-12);
        }
        let inv = inv_upper(&r, 3);
        for i in 0..3 {
            for j in 0..3 {
                let p: f64 = (0..3).map(|k| inv[i][k] * r.at(k, j)).sum();
                assert!((p - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn svd_of_diagonal_and_rank_one() {
        let d = mat(3, 3, |i, j| if i == j { [3.0, 1.0, 2.0][i] } else { 0.0 });
        let (s, v) = svd_small(&d, 3);
        assert_eq!(s, vec![3.0, 2.0, 1.0]);
        assert!((v[2][1].abs() - 1.0).abs() < 1e-15);
        let r1 = mat(2, 2, |_, _| 1.0);
        let (s, v) = svd_small(&r1, 2);
        assert!((s[0] - 2.0).abs() < 1e-12 && s[1] < 1e-12);
        assert!((v[1][0].abs() - v[1][1].abs()).abs() < 1e-12);
    }

    #[test]
    fn compensated_sum() {
        let v = [1e16, 1.0, -1e16, 1.0];
        assert_eq!(sum(v), 2.0);
    }
}
