//! Nearest neighbours, shared by the scIB metrics and the UMAP layout: exact k-nearest-
//! neighbour search (one GEMM per pair of row tiles, bounded top-k lists per row), the
//! [`Neighbors`] object every neighbour-based metric reads, and trustworthiness, which scores a
//! low-dimensional layout by the neighbours it keeps.

use rayon::prelude::*;

/// The k nearest neighbours of every row, the row itself first, nearest first: `k` indices and
/// euclidean distances per row.
#[derive(Debug, Clone)]
pub(crate) struct Neighbors {
    pub n: usize,
    pub k: usize,
    pub idx: Vec<u32>,
    pub dist: Vec<f32>,
}

impl Neighbors {
    /// Exact euclidean neighbours of the `n` rows of width `d` (`k` includes the row itself).
    pub(crate) fn exact(x: &[f32], n: usize, d: usize, k: usize) -> Self {
        let k = k.min(n);
        let (idx, dist) = knn(x, n, d, k);
        Self { n, k, idx, dist }
    }

    /// The first `k` neighbours of each row (scib-metrics' `subset_neighbors`).
    pub(crate) fn first(&self, k: usize) -> Self {
        let k = k.min(self.k);
        let take =
            |v: &[u32]| -> Vec<u32> { v.chunks(self.k).flat_map(|r| &r[..k]).copied().collect() };
        Self {
            n: self.n,
            k,
            idx: take(&self.idx),
            dist: self
                .dist
                .chunks(self.k)
                .flat_map(|r| &r[..k])
                .copied()
                .collect(),
        }
    }

    /// Row `i`'s neighbour indices and distances.
    pub(crate) fn row(&self, i: usize) -> (&[u32], &[f32]) {
        (
            &self.idx[i * self.k..(i + 1) * self.k],
            &self.dist[i * self.k..(i + 1) * self.k],
        )
    }
}

/// The k nearest neighbours of every row (itself first), by euclidean distance: indices and
/// distances, `k` per row, nearest first. Exact; ties are broken by index.
///
/// Each pair of points is scored once: the rows are cut into tiles, and for every tile pair
/// (I, J) with I <= J one GEMM gives X_I·X_Jᵀ, whose entries are offered both to the rows of I
/// and to the rows of J — half the multiply-adds of a full X·Xᵀ, which is most of the time.
/// Tile pairs run in parallel, each worker keeping its own candidate lists; the lists are
/// merged at the end. A list's content is the k smallest (distance, index) pairs it was
/// offered, whatever the order, so the result does not depend on the thread count.
pub(crate) fn knn(x: &[f32], n: usize, d: usize, k: usize) -> (Vec<u32>, Vec<f32>) {
    let norms: Vec<f32> = x.chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
    const TILE: usize = 512;
    let kk = k.min(n).saturating_sub(1); // neighbours besides the point itself
    let tiles = n.div_ceil(TILE);
    let pairs: Vec<(usize, usize)> = (0..tiles)
        .flat_map(|a| (a..tiles).map(move |b| (a, b)))
        .collect();
    // One worker list set per thread (each is n·k entries, so not one per rayon split), over
    // equal shares of the tile pairs.
    let per = pairs
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    let merged = pairs
        .par_chunks(per)
        .map(|share| {
            let mut top = TopK::new(n, kk);
            let mut g = Vec::new();
            for &(ti, tj) in share {
                let (i0, j0) = (ti * TILE, tj * TILE);
                let (mi, mj) = ((n - i0).min(TILE), (n - j0).min(TILE));
                g.resize(TILE * TILE, 0.0);
                super::gemm::matmul(
                    mi,
                    mj,
                    d,
                    &x[i0 * d..],
                    d,
                    1,
                    &x[j0 * d..],
                    1,
                    d,
                    &mut g,
                    mj,
                    1.0,
                );
                let mut d2s = [0f32; TILE];
                for r in 0..mi {
                    let i = i0 + r;
                    // On a diagonal tile only j > i: each pair once.
                    let c0 = if ti == tj { r + 1 } else { 0 };
                    let row = &g[r * mj..(r + 1) * mj];
                    let ni = norms[i];
                    for ((o, &dot), &nj) in d2s[c0..mj]
                        .iter_mut()
                        .zip(&row[c0..])
                        .zip(&norms[j0 + c0..j0 + mj])
                    {
                        *o = (ni + nj - 2.0 * dot).max(0.0);
                    }
                    // Most candidates beat neither list's current k-th: test 8 at a time
                    // (vectorised), and look closer only where one does.
                    let mut wi = top.worst[i];
                    let mut c = c0;
                    while c < mj {
                        let end = (c + 8).min(mj);
                        let wj = &top.worst[j0 + c..j0 + end];
                        let hit = d2s[c..end]
                            .iter()
                            .zip(wj)
                            .fold(false, |h, (&v, &w)| h | (v <= wi) | (v <= w));
                        if hit {
                            for (cc, &v) in d2s.iter().enumerate().take(end).skip(c) {
                                let j = j0 + cc;
                                top.offer(i, v, j as u32);
                                top.offer(j, v, i as u32);
                            }
                            wi = top.worst[i];
                        }
                        c = end;
                    }
                }
            }
            top
        })
        .reduce(|| TopK::new(n, kk), TopK::merge);
    let mut idx = vec![0u32; n * k];
    let mut dist = vec![0f32; n * k];
    for i in 0..n {
        idx[i * k] = i as u32;
        let list = merged.list(i);
        for (t, &(d2, j)) in list.iter().enumerate() {
            idx[i * k + 1 + t] = j;
            dist[i * k + 1 + t] = d2.sqrt();
        }
    }
    (idx, dist)
}

/// For every row, the `k` smallest (squared distance, index) pairs offered so far, sorted.
struct TopK {
    k: usize,
    items: Vec<(f32, u32)>,
    len: Vec<u32>,
    /// The current k-th distance of each row (infinite until the list is full): most offers
    /// are refused by this one comparison.
    worst: Vec<f32>,
}

impl TopK {
    fn new(n: usize, k: usize) -> Self {
        TopK {
            k,
            items: vec![(0.0, 0); n * k],
            len: vec![0; n],
            worst: vec![
                if k == 0 {
                    f32::NEG_INFINITY
                } else {
                    f32::INFINITY
                };
                n
            ],
        }
    }

    #[inline]
    fn offer(&mut self, row: usize, d2: f32, j: u32) {
        if d2 > self.worst[row] {
            return;
        }
        self.insert(row, d2, j);
    }

    fn insert(&mut self, row: usize, d2: f32, j: u32) {
        let k = self.k;
        let len = self.len[row] as usize;
        let list = &mut self.items[row * k..(row + 1) * k];
        let before = |b: &(f32, u32)| b.0 < d2 || (b.0 == d2 && b.1 < j);
        let at = list[..len].partition_point(before);
        if at == k {
            return; // a tie with the k-th that loses on index
        }
        let end = if len == k { k - 1 } else { len };
        list.copy_within(at..end, at + 1);
        list[at] = (d2, j);
        if len < k {
            self.len[row] += 1;
        }
        if self.len[row] as usize == k {
            self.worst[row] = list[k - 1].0;
        }
    }

    fn list(&self, row: usize) -> &[(f32, u32)] {
        &self.items[row * self.k..row * self.k + self.len[row] as usize]
    }

    fn merge(mut self, other: TopK) -> TopK {
        for row in 0..self.len.len() {
            for &(d2, j) in other.list(row) {
                self.offer(row, d2, j);
            }
        }
        self
    }
}

/// Trustworthiness (Venna & Kaski; scikit-learn's definition) of `low` as an embedding of
/// `high`, with `k` neighbours: 1 means no point gains neighbours that were far away.
#[cfg(test)]
pub fn trustworthiness(high: &[f32], d_high: usize, low: &[f32], d_low: usize, k: usize) -> f64 {
    let n = high.len() / d_high;
    // Rank of every point by distance in the original space, per row (exact).
    let (low_idx, _) = knn(low, n, d_low, k + 1);
    let norms: Vec<f32> = high
        .chunks(d_high)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    let penalty: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &high[i * d_high..(i + 1) * d_high];
            let d2: Vec<f32> = (0..n)
                .map(|j| {
                    if i == j {
                        -1.0
                    } else {
                        let dot: f32 = xi
                            .iter()
                            .zip(&high[j * d_high..(j + 1) * d_high])
                            .map(|(a, b)| a * b)
                            .sum();
                        norms[i] + norms[j] - 2.0 * dot
                    }
                })
                .collect();
            let mut sum = 0.0;
            for &j in &low_idx[i * (k + 1) + 1..(i + 1) * (k + 1)] {
                let j = j as usize;
                // rank of j among i's neighbours in the original space (1 = nearest).
                let rank = d2
                    .iter()
                    .enumerate()
                    .filter(|&(t, &v)| t != i && (v < d2[j] || (v == d2[j] && t < j)))
                    .count()
                    + 1;
                if rank > k {
                    sum += (rank - k) as f64;
                }
            }
            sum
        })
        .sum();
    let (nf, kf) = (n as f64, k as f64);
    1.0 - 2.0 / (nf * kf * (2.0 * nf - 3.0 * kf - 1.0)) * penalty
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numeric::testdata::clusters;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn knn_is_exact_and_starts_with_the_point_itself() {
        let (x, _) = clusters(3, 30, 5, 1);
        let n = 90;
        let (idx, dist) = knn(&x, n, 5, 6);
        for i in 0..n {
            assert_eq!(idx[i * 6] as usize, i);
            let mut all: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let d: f32 = (0..5).map(|t| (x[i * 5 + t] - x[j * 5 + t]).powi(2)).sum();
                    (d.sqrt(), j)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            for t in 0..5 {
                assert!((dist[i * 6 + 1 + t] - all[t].0).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn knn_across_tiles_is_exact_and_independent_of_the_thread_count() {
        // More rows than one tile, so off-diagonal tiles and the merge of worker lists run;
        // a few exact duplicates make ties.
        let (mut x, _) = clusters(4, 300, 8, 3);
        x.extend_from_within(..8 * 20);
        let (n, d, k) = (1220, 8, 10);
        let (idx, dist) = knn(&x, n, d, k);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(
            one.install(|| knn(&x, n, d, k)),
            (idx.clone(), dist.clone())
        );
        for i in (0..n).step_by(7) {
            assert_eq!(idx[i * k] as usize, i);
            let mut all: Vec<f32> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    (0..d)
                        .map(|t| (x[i * d + t] - x[j * d + t]).powi(2))
                        .sum::<f32>()
                })
                .collect();
            all.sort_by(f32::total_cmp);
            for t in 0..k - 1 {
                assert!(
                    (dist[i * k + 1 + t] - all[t].sqrt()).abs() < 1e-2,
                    "row {i}"
                );
            }
            let mut seen: Vec<u32> = idx[i * k..(i + 1) * k].to_vec();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), k, "row {i} repeats a neighbour");
        }
        // A duplicate's nearest other point is its twin, at distance 0.
        assert_eq!(idx[1200 * k + 1], 0);
        assert!(dist[1200 * k + 1] < 1e-3);
    }

    #[test]
    fn trustworthiness_is_one_for_an_isometry_and_low_for_noise() {
        let (x, _) = clusters(2, 40, 2, 3);
        assert!((trustworthiness(&x, 2, &x, 2, 5) - 1.0).abs() < 1e-12);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let noise: Vec<f32> = (0..x.len()).map(|_| rng.random::<f32>()).collect();
        assert!(trustworthiness(&x, 2, &noise, 2, 5) < 0.8);
    }
}
