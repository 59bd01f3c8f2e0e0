//! Sparse weighted graphs: one compressed-row type ([`SparseGraph`]) and the fuzzy simplicial
//! set of a neighbour list (umap-learn's `fuzzy_simplicial_set`), which the UMAP layout embeds
//! and kBET diffuses over.

use rayon::prelude::*;

use super::neighbors::Neighbors;

/// A sparse weighted graph in compressed rows: row `i`'s edges are `indices[indptr[i]..
/// indptr[i + 1]]` (sorted by column) with those `weights`. The fuzzy graph is symmetric (both
/// directions stored).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseGraph {
    pub n: usize,
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub weights: Vec<f32>,
}

impl SparseGraph {
    /// The graph of `(row, column, weight)` edges sorted by (row, column).
    pub fn from_sorted_edges(n: usize, edges: &[(u32, u32, f32)]) -> Self {
        let mut indptr = vec![0usize; n + 1];
        edges
            .iter()
            .for_each(|&(r, _, _)| indptr[r as usize + 1] += 1);
        (0..n).for_each(|r| indptr[r + 1] += indptr[r]);
        Self {
            n,
            indptr,
            indices: edges.iter().map(|e| e.1).collect(),
            weights: edges.iter().map(|e| e.2).collect(),
        }
    }

    pub fn n_edges(&self) -> usize {
        self.indices.len()
    }

    /// Every edge as (row, column, weight), row by row.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize, f32)> + '_ {
        (0..self.n).flat_map(move |i| {
            (self.indptr[i]..self.indptr[i + 1])
                .map(move |e| (i, self.indices[e] as usize, self.weights[e]))
        })
    }

    /// The rows and columns of `keep` (in that order), renumbered 0..keep.len().
    pub fn submatrix(&self, keep: &[usize]) -> Self {
        let mut local = vec![u32::MAX; self.n];
        keep.iter()
            .enumerate()
            .for_each(|(t, &i)| local[i] = t as u32);
        let mut edges = Vec::new();
        for (r, &i) in keep.iter().enumerate() {
            for e in self.indptr[i]..self.indptr[i + 1] {
                let c = local[self.indices[e] as usize];
                if c != u32::MAX {
                    edges.push((r as u32, c, self.weights[e]));
                }
            }
        }
        edges.sort_unstable_by_key(|&(r, c, _)| (r, c));
        Self::from_sorted_edges(keep.len(), &edges)
    }

    /// Connected components of a symmetric graph: a component id per row, numbered in order of
    /// their first row.
    pub fn components(&self) -> Vec<usize> {
        let mut comp = vec![usize::MAX; self.n];
        let mut next = 0;
        let mut stack = Vec::new();
        for s in 0..self.n {
            if comp[s] != usize::MAX {
                continue;
            }
            comp[s] = next;
            stack.push(s);
            while let Some(i) = stack.pop() {
                for &j in &self.indices[self.indptr[i]..self.indptr[i + 1]] {
                    if comp[j as usize] == usize::MAX {
                        comp[j as usize] = next;
                        stack.push(j as usize);
                    }
                }
            }
            next += 1;
        }
        comp
    }

    /// Sum of the weights in each column (f64).
    pub fn col_sums(&self) -> Vec<f64> {
        let mut s = vec![0f64; self.n];
        for (&c, &w) in self.indices.iter().zip(&self.weights) {
            s[c as usize] += w as f64;
        }
        s
    }
}

/// ρ (distance to the nearest other point) and σ per point, so that the memberships of its
/// neighbours sum to log2(k) (umap-learn's `smooth_knn_dist`).
fn smooth_knn_dist(dist: &[f32], n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let target = (k as f64).log2();
    let mean_all = dist.iter().map(|&v| v as f64).sum::<f64>() / dist.len().max(1) as f64;
    let mut rho = vec![0.0; n];
    let mut sigma = vec![0.0; n];
    for i in 0..n {
        let row: Vec<f64> = dist[i * k..(i + 1) * k].iter().map(|&v| v as f64).collect();
        let first = row.iter().copied().find(|&v| v > 0.0);
        rho[i] = first.unwrap_or_else(|| row.iter().copied().fold(0.0, f64::max));
        let (mut lo, mut hi, mut mid) = (0.0, f64::INFINITY, 1.0);
        for _ in 0..64 {
            let psum: f64 = row[1..]
                .iter()
                .map(|&v| {
                    let dd = v - rho[i];
                    if dd > 0.0 {
                        (-dd / mid).exp()
                    } else {
                        1.0
                    }
                })
                .sum();
            if (psum - target).abs() < 1e-5 {
                break;
            }
            if psum > target {
                hi = mid;
                mid = (lo + hi) / 2.0;
            } else {
                lo = mid;
                mid = if hi.is_infinite() {
                    mid * 2.0
                } else {
                    (lo + hi) / 2.0
                };
            }
        }
        let floor = if rho[i] > 0.0 {
            1e-3 * row.iter().sum::<f64>() / k as f64
        } else {
            1e-3 * mean_all
        };
        sigma[i] = mid.max(floor);
    }
    (rho, sigma)
}

/// The fuzzy simplicial set of a neighbour list: directed memberships
/// `exp(−(d − ρ_i) / σ_i)`, then the fuzzy union w + wᵀ − w∘wᵀ.
pub(crate) fn fuzzy_graph(nb: &Neighbors) -> SparseGraph {
    let (n, k) = (nb.n, nb.k);
    let (idx, dist) = (&nb.idx, &nb.dist);
    let (rho, sigma) = smooth_knn_dist(dist, n, k);
    let mut directed: Vec<(u32, u32, f32)> = Vec::with_capacity(n * k);
    for i in 0..n {
        for t in 0..k {
            let j = idx[i * k + t];
            if j as usize == i {
                continue;
            }
            let dd = dist[i * k + t] as f64 - rho[i];
            let w = if dd <= 0.0 {
                1.0
            } else {
                (-dd / sigma[i]).exp()
            };
            directed.push((i as u32, j, w as f32));
        }
    }
    // Both orientations, sorted by (row, col): an edge seen twice is (w_ij, w_ji).
    let mut both: Vec<(u32, u32, f32)> = directed
        .iter()
        .flat_map(|&(i, j, w)| [(i, j, w), (j, i, w)])
        .collect();
    both.par_sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)));
    let mut edges = Vec::with_capacity(both.len());
    let mut t = 0;
    while t < both.len() {
        let (i, j, a) = both[t];
        let w = if t + 1 < both.len() && both[t + 1].0 == i && both[t + 1].1 == j {
            let b = both[t + 1].2;
            t += 2;
            a + b - a * b
        } else {
            t += 1;
            a
        };
        if w > 0.0 {
            edges.push((i, j, w));
        }
    }
    SparseGraph::from_sorted_edges(n, &edges)
}
