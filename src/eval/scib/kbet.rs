//! kBET (k-nearest-neighbour batch effect test) per label, as scib-metrics computes it: on each
//! label's part of the fuzzy neighbour graph, a diffusion map, then a χ² test of every cell's
//! neighbours' batches against the overall batch frequencies.

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::stats::{codes, nanmean, rows_by_label};
use crate::numeric::eigen::symmetric_eigen;
use crate::numeric::graph::{fuzzy_graph, SparseGraph};
use crate::numeric::neighbors::Neighbors;

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
pub(crate) fn kbet_per_label(nb: &Neighbors, batches: &[usize], labels: &[usize]) -> f64 {
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
    // Labels skipped (NaN) are left out; NaN when every label is.
    nanmean(&scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbet_tests_neighbourhoods() {
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
}
