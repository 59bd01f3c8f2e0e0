//! scIB integration metrics (SPEC §5) as scib-metrics 0.5 defines them and its `Benchmarker`
//! calls them: one neighbour search (90 neighbours, each cell itself first) shared by cLISI and
//! iLISI (90), kBET (50, through UMAP's fuzzy graph and a diffusion map per label) and graph
//! connectivity (15); silhouettes (label, isolated labels, BRAS and the classic silhouette
//! batch) from all pairwise distances; k-means NMI/ARI; PCR comparison.
//! Bio = mean(isolated labels, k-means NMI, k-means ARI, silhouette label, cLISI); Batch =
//! mean(BRAS, iLISI, kBET, graph connectivity, PCR comparison); Total = 0.6·Bio + 0.4·Batch.
//!
//! Neighbours are exact here (blocked GEMM); scib-metrics uses pynndescent (approximate), the
//! one source of disagreement besides k-means initialisation (bench/scib_vs_scib_metrics.py).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use petgraph::graph::DiGraph;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::numeric::cluster::{ari, kmeans, nmi};
use crate::numeric::eigen::symmetric_eigen;
use crate::numeric::graph::{fuzzy_graph, SparseGraph};
use crate::numeric::neighbors::Neighbors;

/// Distance for silhouettes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Euclidean,
    /// 1 − cos, clipped to [0, 2].
    Cosine,
}

/// How a cell's distance to the other clusters is summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Between {
    /// The nearest other cluster's mean distance (the classic silhouette).
    Nearest,
    /// The mean distance to every cell of the other clusters (BRAS).
    MeanOther,
}

/// Dense codes 0..m for arbitrary labels, in sorted label order (pandas' Categorical codes).
fn codes(labels: &[usize]) -> (Vec<usize>, usize) {
    let mut uniq: Vec<usize> = labels.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let code: BTreeMap<usize, usize> = uniq.iter().enumerate().map(|(c, &l)| (l, c)).collect();
    (labels.iter().map(|l| code[l]).collect(), uniq.len())
}

/// The rows of each label, labels in sorted order (the groups every per-label metric loops over).
fn rows_by_label(labels: &[usize]) -> Vec<Vec<usize>> {
    let mut by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by.entry(l).or_default().push(i);
    }
    by.into_values().collect()
}

/// Silhouette of every row (scikit-learn's `silhouette_samples`; 0 for a cluster of one),
/// from all pairwise distances computed in row blocks.
pub fn silhouette_samples(
    x: &[f32],
    d: usize,
    labels: &[usize],
    metric: Metric,
    between: Between,
) -> Vec<f64> {
    let n = labels.len();
    assert_eq!(x.len(), n * d, "x must be n × d");
    let (lab, m) = codes(labels);
    let mut freq = vec![0usize; m];
    lab.iter().for_each(|&l| freq[l] += 1);
    // Euclidean distances are translation-invariant: centre first, so the GEMM expansion
    // |a|² + |b|² − 2ab loses less to cancellation. Cosine works on unit rows.
    let mut y = x.to_vec();
    match metric {
        Metric::Euclidean => {
            for j in 0..d {
                let mean = (0..n).map(|i| y[i * d + j] as f64).sum::<f64>() / n.max(1) as f64;
                (0..n).for_each(|i| y[i * d + j] -= mean as f32);
            }
        }
        Metric::Cosine => {
            for r in y.chunks_mut(d) {
                let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
                if norm > 0.0 {
                    r.iter_mut().for_each(|v| *v /= norm);
                }
            }
        }
    }
    let norms: Vec<f32> = y.chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
    const BLOCK: usize = 128;
    let blocks: Vec<usize> = (0..n).step_by(BLOCK).collect();
    blocks
        .par_iter()
        .flat_map_iter(|&i0| {
            let rows = BLOCK.min(n - i0);
            let mut g = vec![0f32; rows * n];
            crate::numeric::gemm::matmul(rows, n, d, &y[i0 * d..], d, 1, &y, 1, d, &mut g, n, 1.0);
            let mut out = Vec::with_capacity(rows);
            let mut sums = vec![0f64; m];
            for r in 0..rows {
                let i = i0 + r;
                sums.iter_mut().for_each(|s| *s = 0.0);
                for (j, &dot) in g[r * n..(r + 1) * n].iter().enumerate() {
                    if j == i {
                        continue;
                    }
                    let dist = match metric {
                        Metric::Euclidean => (norms[i] + norms[j] - 2.0 * dot).max(0.0).sqrt(),
                        Metric::Cosine => {
                            if norms[i] == 0.0 || norms[j] == 0.0 {
                                f32::NAN
                            } else {
                                (1.0 - dot).clamp(0.0, 2.0)
                            }
                        }
                    };
                    sums[lab[j]] += dist as f64;
                }
                let own = lab[i];
                let intra = sums[own] / (freq[own] as f64 - 1.0);
                let inter = match between {
                    Between::Nearest => (0..m)
                        .filter(|&l| l != own)
                        .map(|l| sums[l] / freq[l] as f64)
                        .fold(f64::INFINITY, f64::min),
                    Between::MeanOther => {
                        let other: f64 = (0..m).filter(|&l| l != own).map(|l| sums[l]).sum();
                        other / (n - freq[own]) as f64
                    }
                };
                let s = (inter - intra) / intra.max(inter);
                out.push(if s.is_finite() { s } else { 0.0 });
            }
            out
        })
        .collect()
}

/// Mean silhouette of the labels, rescaled to [0, 1]: (ASW + 1) / 2.
pub fn silhouette_label(sil: &[f64]) -> f64 {
    (mean(sil) + 1.0) / 2.0
}

/// Isolated-label score: the labels present in the fewest batches, each scored by the mean
/// rescaled silhouette of its cells (over all labels), averaged.
pub fn isolated_labels(sil: &[f64], labels: &[usize], batches: &[usize]) -> f64 {
    let mut batches_of: BTreeMap<usize, std::collections::BTreeSet<usize>> = BTreeMap::new();
    for (&l, &b) in labels.iter().zip(batches) {
        batches_of.entry(l).or_default().insert(b);
    }
    let fewest = batches_of.values().map(|s| s.len()).min().unwrap_or(0);
    let scores: Vec<f64> = batches_of
        .iter()
        .filter(|(_, s)| s.len() <= fewest)
        .map(|(&l, _)| {
            let v: Vec<f64> = sil
                .iter()
                .zip(labels)
                .filter(|(_, &x)| x == l)
                .map(|(s, _)| (s + 1.0) / 2.0)
                .collect();
            mean(&v)
        })
        .collect();
    mean(&scores)
}

/// Batch silhouettes within each label: 1 − |s| per cell, averaged per label, then over labels
/// (labels of one batch, or where every cell is its own batch, are skipped). `Cosine` +
/// `MeanOther` is BRAS (scib-metrics' default); `Euclidean` + `Nearest` the classic
/// silhouette batch. NaN when every label is skipped.
pub fn batch_silhouette(
    x: &[f32],
    d: usize,
    labels: &[usize],
    batches: &[usize],
    metric: Metric,
    between: Between,
) -> f64 {
    let per_label: Vec<f64> = rows_by_label(labels)
        .iter()
        .filter_map(|rows| {
            let b: Vec<usize> = rows.iter().map(|&i| batches[i]).collect();
            let nb = codes(&b).1;
            if nb == 1 || nb == rows.len() {
                return None;
            }
            let sub: Vec<f32> = rows
                .iter()
                .flat_map(|&i| &x[i * d..(i + 1) * d])
                .copied()
                .collect();
            let s = silhouette_samples(&sub, d, &b, metric, between);
            Some(mean(&s.iter().map(|v| 1.0 - v.abs()).collect::<Vec<_>>()))
        })
        .collect();
    if per_label.is_empty() {
        f64::NAN
    } else {
        mean(&per_label)
    }
}

/// Inverse Simpson index of each cell's neighbourhood labels (LISI), with neighbour weights
/// from a Gaussian kernel whose bandwidth matches `perplexity` (binary search, 50 tries,
/// tolerance 1e-5, as scib-metrics). The cell itself is left out; −1 where no weight remains.
pub fn lisi(nb: &Neighbors, labels: &[usize], perplexity: f64) -> Vec<f64> {
    let (lab, m) = codes(labels);
    let target = perplexity.ln();
    (0..nb.n)
        .into_par_iter()
        .map(|i| {
            let (idx, dist) = nb.row(i);
            let dist: Vec<f64> = dist.iter().map(|&v| v as f64).collect();
            let hbeta = |beta: f64, p: &mut Vec<f64>| -> f64 {
                p.clear();
                p.extend(idx.iter().zip(&dist).map(|(&j, &dd)| {
                    if j as usize == i {
                        0.0
                    } else {
                        (-dd * beta).exp()
                    }
                }));
                let sum: f64 = p.iter().sum();
                if sum == 0.0 {
                    p.iter_mut().for_each(|v| *v = 0.0);
                    return 0.0;
                }
                let h = sum.ln()
                    + beta * dist.iter().zip(p.iter()).map(|(d, p)| d * p).sum::<f64>() / sum;
                p.iter_mut().for_each(|v| *v /= sum);
                h
            };
            let mut p = Vec::with_capacity(nb.k);
            let (mut beta, mut lo, mut hi) = (1.0f64, f64::NEG_INFINITY, f64::INFINITY);
            let mut h = hbeta(beta, &mut p);
            let mut diff = h - target;
            let mut tries = 0;
            while diff.abs() >= 1e-5 && tries < 50 {
                if diff > 0.0 {
                    lo = beta;
                    beta = if hi.is_infinite() {
                        beta * 2.0
                    } else {
                        (beta + hi) / 2.0
                    };
                } else {
                    hi = beta;
                    beta = if lo.is_infinite() {
                        beta / 2.0
                    } else {
                        (beta + lo) / 2.0
                    };
                }
                h = hbeta(beta, &mut p);
                diff = h - target;
                tries += 1;
            }
            if h == 0.0 {
                return -1.0;
            }
            let mut mass = vec![0f64; m];
            for (&j, &pj) in idx.iter().zip(&p) {
                mass[lab[j as usize]] += pj;
            }
            1.0 / mass.iter().map(|v| v * v).sum::<f64>()
        })
        .collect()
}

/// Median of the finite values (numpy's `nanmedian`).
fn nanmedian(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let h = s.len() / 2;
    if s.len() % 2 == 1 {
        s[h]
    } else {
        (s[h - 1] + s[h]) / 2.0
    }
}

/// iLISI: median batch LISI, scaled to [0, 1] by (x − 1) / (batches − 1); 1 = fully mixed.
pub fn ilisi(nb: &Neighbors, batches: &[usize]) -> f64 {
    let nbatch = codes(batches).1 as f64;
    let v = (nanmedian(&lisi(nb, batches, (nb.k / 3) as f64)) - 1.0) / (nbatch - 1.0);
    if v == 0.0 {
        0.0 // not −0
    } else {
        v
    }
}

/// cLISI: median label LISI, scaled by (labels − x) / (labels − 1); 1 = pure neighbourhoods.
pub fn clisi(nb: &Neighbors, labels: &[usize]) -> f64 {
    let nl = codes(labels).1 as f64;
    (nl - nanmedian(&lisi(nb, labels, (nb.k / 3) as f64))) / (nl - 1.0)
}

/// Largest strongly connected component of each label's cells in the directed kNN graph, as a
/// share of the label's cells, averaged over labels.
pub fn graph_connectivity(nb: &Neighbors, labels: &[usize]) -> f64 {
    let shares: Vec<f64> = rows_by_label(labels)
        .iter()
        .map(|rows| {
            let mut local = vec![u32::MAX; nb.n];
            rows.iter()
                .enumerate()
                .for_each(|(t, &i)| local[i] = t as u32);
            let mut g: DiGraph<(), ()> = DiGraph::with_capacity(rows.len(), rows.len() * nb.k);
            let nodes: Vec<_> = rows.iter().map(|_| g.add_node(())).collect();
            for (t, &i) in rows.iter().enumerate() {
                for &j in nb.row(i).0 {
                    let lj = local[j as usize];
                    if lj != u32::MAX {
                        g.add_edge(nodes[t], nodes[lj as usize], ());
                    }
                }
            }
            let largest = petgraph::algo::tarjan_scc(&g)
                .iter()
                .map(Vec::len)
                .max()
                .unwrap_or(0);
            largest as f64 / rows.len() as f64
        })
        .collect();
    mean(&shares)
}

/// Diffusion-map coordinates of a connected graph (scib-metrics' `diffusion_nn` before its
/// neighbour search): density-normalised symmetric transitions, the `n_comps` eigenpairs of
/// largest magnitude in decreasing order, each vector scaled by λ / (1 − λ) (λ = 1 kept at 1),
/// with scib-metrics' float32 rounding of λ + 1e-8. Rows × n_comps, row-major.
fn diffusion_map(g: &SparseGraph, n_comps: usize) -> Result<(Vec<f32>, usize)> {
    let n = g.n;
    let q = g.col_sums();
    // K = Q⁻¹ W Q⁻¹, then T = Z⁻¹ K Z⁻¹ with z = sqrt(column sums of K).
    let mut k = vec![0f64; n * n];
    for i in 0..n {
        for e in g.indptr[i]..g.indptr[i + 1] {
            let j = g.indices[e] as usize;
            k[i * n + j] = g.weights[e] as f64 / (q[i] * q[j]);
        }
    }
    let z: Vec<f64> = (0..n)
        .map(|j| (0..n).map(|i| k[i * n + j]).sum::<f64>().sqrt())
        .collect();
    for i in 0..n {
        for j in 0..n {
            k[i * n + j] /= z[i] * z[j];
        }
    }
    if k.iter().any(|v| !v.is_finite()) {
        bail!("diffusion transitions are not finite (an isolated cell)");
    }
    let eig = symmetric_eigen(&k, n)?;
    let vals = &eig.values;
    let c = n_comps.min(n.saturating_sub(1)).max(1);
    // The c largest in magnitude, then in decreasing algebraic order (eigsh 'LM', reversed).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| vals[b].abs().total_cmp(&vals[a].abs()));
    order.truncate(c);
    order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
    let mut emb = vec![0f32; n * c];
    for (col, &o) in order.iter().enumerate() {
        let e = vals[o] as f32 + 1e-8f32;
        let scale = if e == 1.0 { 1.0 } else { e / (1.0 - e) };
        for i in 0..n {
            emb[i * c + col] = eig.at(i, o) as f32 * scale;
        }
    }
    Ok((emb, c))
}

/// kBET acceptance rate: for each cell, a χ² test of its neighbours' batch counts (the cell
/// itself included, as scib-metrics) against the overall batch frequencies; the share of cells
/// with p ≥ alpha.
fn kbet_acceptance(nb: &Neighbors, batches: &[usize], alpha: f64) -> f64 {
    let (b, m) = codes(batches);
    let mut freq = vec![0f64; m];
    b.iter().for_each(|&v| freq[v] += 1.0);
    let total: f64 = freq.iter().sum();
    let expected: Vec<f64> = freq.iter().map(|f| f / total * nb.k as f64).collect();
    let dof = (m - 1) as f64;
    let accepted = (0..nb.n)
        .filter(|&i| {
            let mut obs = vec![0f64; m];
            nb.row(i).0.iter().for_each(|&j| obs[b[j as usize]] += 1.0);
            let stat: f64 = obs
                .iter()
                .zip(&expected)
                .map(|(o, e)| (o - e) * (o - e) / e)
                .sum();
            // χ² survival function; a statistic of 0 (the expected counts exactly) has p = 1.
            let p = if dof <= 0.0 {
                f64::NAN
            } else if stat <= 0.0 {
                1.0
            } else {
                statrs::function::gamma::checked_gamma_lr(dof / 2.0, stat / 2.0)
                    .map_or(f64::NAN, |c| 1.0 - c)
            };
            p >= alpha
        })
        .count();
    accepted as f64 / nb.n as f64
}

/// kBET per label (scib-metrics' `kbet_per_label`, alpha 0.05, 100 diffusion components) on the
/// fuzzy graph of `nb`: labels under 10 cells or of one batch are skipped; a label whose graph
/// is split keeps its components of at least 3·k0 cells if they hold 75 % of it (else 0).
pub fn kbet_per_label(nb: &Neighbors, batches: &[usize], labels: &[usize]) -> f64 {
    let graph = fuzzy_graph(nb);
    let scores: Vec<f64> = rows_by_label(labels)
        .par_iter()
        .map(|rows| {
            let b: Vec<usize> = rows.iter().map(|&i| batches[i]).collect();
            let nbatch = codes(&b).1;
            if rows.len() < 10 || nbatch == 1 {
                return f64::NAN;
            }
            let quarter = (rows.len() as f64 / nbatch as f64 / 4.0).floor() as usize;
            let k0 = quarter.clamp(10, 70);
            let sub = graph.submatrix(rows);
            let comp = sub.components();
            let ncomp = comp.iter().max().map_or(0, |m| m + 1);
            let keep: Vec<usize> = if ncomp == 1 {
                (0..rows.len()).collect()
            } else {
                let mut size = vec![0usize; ncomp];
                comp.iter().for_each(|&c| size[c] += 1);
                let keep: Vec<usize> = (0..rows.len())
                    .filter(|&i| size[comp[i]] >= 3 * k0)
                    .collect();
                if (keep.len() as f64) < 0.75 * rows.len() as f64 {
                    return 0.0;
                }
                keep
            };
            let g = if keep.len() == rows.len() {
                sub
            } else {
                sub.submatrix(&keep)
            };
            match diffusion_map(&g, 100) {
                Ok((emb, c)) => {
                    let nn = Neighbors::exact(&emb, keep.len(), c, k0 + 1);
                    let kb: Vec<usize> = keep.iter().map(|&i| b[i]).collect();
                    kbet_acceptance(&nn, &kb, 0.05)
                }
                Err(_) => 0.0,
            }
        })
        .collect();
    let finite: Vec<f64> = scores.into_iter().filter(|v| !v.is_nan()).collect();
    if finite.is_empty() {
        f64::NAN
    } else {
        mean(&finite)
    }
}

/// Share of the variance of `x` explained by the batch, over all principal components (PCR with
/// every component: R² of each PC on the one-hot batch, weighted by the PC's variance). With
/// all components PCA is a rotation, so this is the between-batch over total sum of squares.
pub fn pcr(x: &[f32], d: usize, batches: &[usize]) -> f64 {
    let n = batches.len();
    let (b, m) = codes(batches);
    let mut mean_all = vec![0f64; d];
    let mut mean_b = vec![vec![0f64; d]; m];
    let mut count = vec![0f64; m];
    for i in 0..n {
        count[b[i]] += 1.0;
        for j in 0..d {
            let v = x[i * d + j] as f64;
            mean_all[j] += v;
            mean_b[b[i]][j] += v;
        }
    }
    mean_all.iter_mut().for_each(|v| *v /= n as f64);
    let total: f64 = (0..n)
        .map(|i| {
            (0..d)
                .map(|j| (x[i * d + j] as f64 - mean_all[j]).powi(2))
                .sum::<f64>()
        })
        .sum();
    let between: f64 = (0..m)
        .map(|c| {
            (0..d)
                .map(|j| count[c] * (mean_b[c][j] / count[c] - mean_all[j]).powi(2))
                .sum::<f64>()
        })
        .sum();
    if total > 0.0 {
        between / total
    } else {
        0.0
    }
}

/// PCR comparison: (PCR before − PCR after) / PCR before, 0 when the batch explains more after.
pub fn pcr_comparison(pre: f64, post: f64) -> f64 {
    let v = (pre - post) / pre;
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// The metric names of [`ScibScores::named`].
pub const SCIB_METRICS: [&str; 14] = [
    "isolated_labels",
    "kmeans_nmi",
    "kmeans_ari",
    "silhouette_label",
    "clisi",
    "bras",
    "ilisi",
    "kbet",
    "graph_connectivity",
    "pcr_comparison",
    "silhouette_batch",
    "bio",
    "batch",
    "total",
];

/// Every scIB metric of one embedding, and the aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScibScores {
    pub isolated_labels: f64,
    pub kmeans_nmi: f64,
    pub kmeans_ari: f64,
    pub silhouette_label: f64,
    pub clisi: f64,
    pub bras: f64,
    pub ilisi: f64,
    pub kbet: f64,
    pub graph_connectivity: f64,
    pub pcr_comparison: f64,
    /// The classic silhouette batch (euclidean, nearest cluster): reported, not in Batch.
    pub silhouette_batch: f64,
    pub bio: f64,
    pub batch: f64,
    pub total: f64,
}

impl ScibScores {
    /// (name, value) in report order, aggregates last.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        let v = [
            self.isolated_labels,
            self.kmeans_nmi,
            self.kmeans_ari,
            self.silhouette_label,
            self.clisi,
            self.bras,
            self.ilisi,
            self.kbet,
            self.graph_connectivity,
            self.pcr_comparison,
            self.silhouette_batch,
            self.bio,
            self.batch,
            self.total,
        ];
        SCIB_METRICS.iter().copied().zip(v).collect()
    }
}

/// How long each part took (seconds), for benchmarks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScibTimings(pub BTreeMap<String, f64>);

/// Every metric of `x` (`n × d`, row-major) with cell `labels` and `batches`; `pre` is the
/// unintegrated representation (`n × d_pre`) for PCR comparison (without it, PCR comparison is
/// NaN and Batch is the mean of the other four); k-means is seeded.
pub fn scib(
    x: &[f32],
    d: usize,
    labels: &[usize],
    batches: &[usize],
    pre: Option<(&[f32], usize)>,
    seed: u64,
) -> Result<(ScibScores, ScibTimings)> {
    let n = labels.len();
    if n < 3
        || x.len() != n * d
        || batches.len() != n
        || pre.is_some_and(|(p, dp)| p.len() != n * dp)
    {
        bail!(
            "scIB: inconsistent sizes ({n} labels, {} batches, {} values for dim {d})",
            batches.len(),
            x.len()
        );
    }
    let nl = codes(labels).1;
    if nl < 2 || codes(batches).1 < 2 {
        bail!("scIB needs at least two labels and two batches ({nl} labels)");
    }
    let mut times = ScibTimings::default();
    let mut clock = std::time::Instant::now();
    let mut lap = |name: &str, times: &mut ScibTimings| {
        times.0.insert(name.into(), clock.elapsed().as_secs_f64());
        clock = std::time::Instant::now();
    };
    let nb90 = Neighbors::exact(x, n, d, 90);
    lap("neighbors", &mut times);
    let sil = silhouette_samples(x, d, labels, Metric::Euclidean, Between::Nearest);
    let silhouette_label = silhouette_label(&sil);
    let isolated_labels = isolated_labels(&sil, labels, batches);
    lap("silhouette_label", &mut times);
    let (lab_codes, _) = codes(labels);
    let km = kmeans(x, d, nl, 10, seed);
    let (kmeans_nmi, kmeans_ari) = (nmi(&lab_codes, &km), ari(&lab_codes, &km));
    lap("kmeans", &mut times);
    let clisi = clisi(&nb90, labels);
    let ilisi = ilisi(&nb90, batches);
    lap("lisi", &mut times);
    let bras = batch_silhouette(x, d, labels, batches, Metric::Cosine, Between::MeanOther);
    let silhouette_batch =
        batch_silhouette(x, d, labels, batches, Metric::Euclidean, Between::Nearest);
    lap("batch_silhouettes", &mut times);
    let kbet = kbet_per_label(&nb90.first(50), batches, labels);
    lap("kbet", &mut times);
    let graph_connectivity = graph_connectivity(&nb90.first(15), labels);
    lap("graph_connectivity", &mut times);
    let pcr_comparison = match pre {
        Some((p, dp)) => pcr_comparison(pcr(p, dp, batches), pcr(x, d, batches)),
        None => f64::NAN,
    };
    lap("pcr", &mut times);
    let bio = nanmean(&[
        isolated_labels,
        kmeans_nmi,
        kmeans_ari,
        silhouette_label,
        clisi,
    ]);
    let batch = nanmean(&[bras, ilisi, kbet, graph_connectivity, pcr_comparison]);
    Ok((
        ScibScores {
            isolated_labels,
            kmeans_nmi,
            kmeans_ari,
            silhouette_label,
            clisi,
            bras,
            ilisi,
            kbet,
            graph_connectivity,
            pcr_comparison,
            silhouette_batch,
            bio,
            batch,
            total: 0.6 * bio + 0.4 * batch,
        },
        times,
    ))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Mean of the non-NaN values (pandas' groupby mean).
fn nanmean(v: &[f64]) -> f64 {
    let f: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    mean(&f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn silhouettes_match_hand_computed_values() {
        // 1-D: cluster 0 at {0, 1}, cluster 1 at {4}.
        let s = silhouette_samples(
            &[0.0, 1.0, 4.0],
            1,
            &[0, 0, 1],
            Metric::Euclidean,
            Between::Nearest,
        );
        assert!(
            (s[0] - 0.75).abs() < 1e-6 && (s[1] - 2.0 / 3.0).abs() < 1e-6,
            "{s:?}"
        );
        assert_eq!(s[2], 0.0, "a cluster of one scores 0");
        // Mean over all cells of the other clusters (BRAS): point 0 of {0,1} | {4} | {10}.
        let s = silhouette_samples(
            &[0.0, 1.0, 4.0, 10.0],
            1,
            &[0, 0, 1, 2],
            Metric::Euclidean,
            Between::MeanOther,
        );
        assert!((s[0] - (7.0 - 1.0) / 7.0).abs() < 1e-6, "{s:?}");
        // Cosine distance ignores length.
        let s = silhouette_samples(
            &[1.0, 0.0, 5.0, 0.1, 0.0, 1.0, 0.1, 3.0],
            2,
            &[0, 0, 1, 1],
            Metric::Cosine,
            Between::Nearest,
        );
        assert!(s.iter().all(|&v| v > 0.9), "{s:?}");
    }

    #[test]
    fn lisi_counts_effective_labels_among_neighbours() {
        // Row 0's neighbours (after itself) at equal distances: two of each label → LISI 2;
        // row 1's all of one label → 1.
        let nb = Neighbors {
            n: 2,
            k: 5,
            idx: vec![0, 2, 3, 4, 5, 1, 2, 3, 4, 5],
            dist: vec![0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0],
        };
        let two = [0, 0, 0, 0, 1, 1];
        let l = lisi(&nb, &two, 3.0);
        assert!((l[0] - 2.0).abs() < 1e-9, "{l:?}");
        let one = [0, 0, 1, 1, 1, 1];
        assert!((lisi(&nb, &one, 3.0)[1] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn pcr_is_the_batch_share_of_variance_and_kbet_tests_neighbourhoods() {
        let x = [1.0, 0.0, 3.0, 0.0, -1.0, 0.0, -3.0, 0.0];
        assert!((pcr(&x, 2, &[0, 0, 1, 1]) - 0.8).abs() < 1e-12);
        assert!((pcr_comparison(0.8, 0.2) - 0.75).abs() < 1e-12);
        assert_eq!(pcr_comparison(0.2, 0.8), 0.0);
        // 20 cells, two batches; cell 0's 10 neighbours all of batch 0 (χ² = 10, p = 0.0016),
        // cell 1's balanced (p = 1).
        let batches: Vec<usize> = (0..20).map(|i| i % 2).collect();
        let nb = Neighbors {
            n: 2,
            k: 10,
            idx: (0..10).map(|i| 2 * i).chain(0..10).collect(),
            dist: vec![0.0; 20],
        };
        assert_eq!(kbet_acceptance(&nb, &batches, 0.05), 0.5);
    }

    /// Three well-separated types; batches either mixed at random or pushed far apart.
    fn planted(separate_batches: bool) -> (Vec<f32>, Vec<usize>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let d = 8;
        let centres: Vec<Vec<f32>> = (0..3)
            .map(|_| {
                (0..d)
                    .map(|_| 10.0 * Distribution::<f32>::sample(&StandardNormal, &mut rng))
                    .collect()
            })
            .collect();
        let (mut x, mut labels, mut batches) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..600 {
            let (l, b) = (i % 3, rng.random_range(0..2usize));
            for (j, c) in centres[l].iter().enumerate() {
                let shift = if separate_batches && j == 0 {
                    40.0 * b as f32
                } else {
                    0.0
                };
                let noise: f32 = StandardNormal.sample(&mut rng);
                x.push(c + shift + noise);
            }
            labels.push(l);
            batches.push(b);
        }
        (x, labels, batches)
    }

    #[test]
    fn perfect_mixing_scores_high_and_perfect_separation_low() {
        let (mixed, labels, batches) = planted(false);
        let (split, _, _) = planted(true);
        let (m, _) = scib(&mixed, 8, &labels, &batches, Some((&split, 8)), 0).unwrap();
        let (s, _) = scib(&split, 8, &labels, &batches, Some((&split, 8)), 0).unwrap();
        // Bio: neighbourhoods stay pure either way; k-means with k = 3 finds the types only
        // when the batches are mixed (separated, there are six blobs).
        assert_eq!((m.kmeans_nmi, m.kmeans_ari), (1.0, 1.0), "{m:?}");
        assert!(s.kmeans_nmi < 0.8, "{s:?}");
        assert_eq!((m.clisi, s.clisi), (1.0, 1.0));
        assert!(m.silhouette_label > 0.8 && m.isolated_labels > 0.8, "{m:?}");
        assert!(s.silhouette_label < m.silhouette_label);
        // Batch: mixed is near the top of every scale, separated near the bottom.
        assert!(
            m.ilisi > 0.85 && s.ilisi < 0.05,
            "iLISI {} vs {}",
            m.ilisi,
            s.ilisi
        );
        assert!(
            m.kbet > 0.6 && s.kbet < 0.1,
            "kBET {} vs {}",
            m.kbet,
            s.kbet
        );
        assert!(
            m.bras > 0.9 && s.bras < 0.6,
            "BRAS {} vs {}",
            m.bras,
            s.bras
        );
        assert!(m.graph_connectivity > 0.9, "{}", m.graph_connectivity);
        assert!(m.pcr_comparison > 0.95 && s.pcr_comparison == 0.0);
        assert!(m.total > s.total + 0.2);
        assert!((m.total - (0.6 * m.bio + 0.4 * m.batch)).abs() < 1e-12);
        // Without an unintegrated representation PCR comparison is NaN and left out.
        let (n, _) = scib(&mixed, 8, &labels, &batches, None, 0).unwrap();
        assert!(n.pcr_comparison.is_nan() && n.batch.is_finite());
        assert!(scib(&mixed, 8, &labels, &vec![0; 600], None, 0).is_err());
    }
}
