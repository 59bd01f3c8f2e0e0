//! UMAP's spectral initialisation: the leading non-trivial eigenvectors of the normalised graph
//! by Chebyshev-filtered block subspace iteration with Rayleigh-Ritz.

use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use super::options::timing;
use crate::numeric::eigen::jacobi_eigen;
use crate::numeric::graph::SparseGraph;

/// Eigenvectors 2..=dim+1 of D^-1/2 W D^-1/2 (the smallest non-trivial ones of the normalised
/// Laplacian) by Chebyshev-filtered block subspace iteration with Rayleigh-Ritz, to umap-learn's
/// accuracy (its eigsh uses tol 1e-4): the Ritz values must settle to 1e-4. (1e-5 took 2.5x the
/// time for the same trustworthiness on the 20,598 gene embeddings: 0.8879 vs 0.8865.)
pub(super) fn spectral_init(g: &SparseGraph, dim: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let n = g.n;
    let mut deg = vec![0.0f64; n];
    for (i, _, w) in g.edges() {
        deg[i] += w as f64;
    }
    let inv_sqrt: Vec<f64> = deg
        .iter()
        .map(|&d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
        .collect();
    // The normalised matrix, shifted, on the graph's rows: B = (I + D^-1/2 W D^-1/2) / 2 has
    // eigenvalues in [0, 1] with the wanted ones largest.
    let start = &g.indptr;
    let vals: Vec<f64> = g
        .edges()
        .map(|(i, j, w)| 0.5 * w as f64 * inv_sqrt[i] * inv_sqrt[j])
        .collect();
    let p = (dim + 4).min(n.saturating_sub(1)).max(dim);
    // Block layout: row i holds the p basis values of vertex i.
    let apply = |v: &[f64], out: &mut [f64]| {
        out.par_chunks_mut(p).enumerate().for_each(|(i, o)| {
            for (ot, vt) in o.iter_mut().zip(&v[i * p..(i + 1) * p]) {
                *ot = 0.5 * vt;
            }
            let edges = start[i]..start[i + 1];
            for (&a, &j) in vals[edges.clone()].iter().zip(&g.indices[edges]) {
                let row = &v[j as usize * p..(j as usize + 1) * p];
                for (ot, vt) in o.iter_mut().zip(row) {
                    *ot += a * vt;
                }
            }
        });
    };
    // The trivial eigenvector (eigenvalue 1): D^1/2 · 1.
    let mut trivial: Vec<f64> = deg.iter().map(|d| d.sqrt()).collect();
    let tn = trivial
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(1e-300);
    trivial.iter_mut().for_each(|x| *x /= tn);
    let mut v: Vec<f64> = (0..n * p).map(|_| StandardNormal.sample(rng)).collect();
    let (mut y0, mut y1) = (vec![0.0; n * p], vec![0.0; n * p]);
    orthonormalize(&mut v, p, &trivial);
    let mut ritz = rayleigh_ritz(&mut v, p, &apply);
    // Chebyshev-filtered subspace iteration (Zhou & Saad): each pass applies T_m of B mapped so
    // that the unwanted part of the spectrum, [0, smallest Ritz value of the block], lands in
    // [-1, 1], where |T_m| <= 1, while the wanted eigenvalues above it grow like
    // cosh(m·acosh(·)). Plain subspace iteration needed 220 products and orthonormalisations
    // on the 20,598 gene embeddings; this needs far fewer of either.
    const DEGREE: usize = 10;
    let mut passes = 0;
    for _ in 0..200 {
        passes += 1;
        let upper = ritz[p - 1].clamp(0.0, 1.0);
        let (c, e) = (upper / 2.0, upper / 2.0);
        if e < 1e-12 {
            break;
        }
        // y1 = (B − c)·v / e; then y_{k+1} = 2(B − c)·y_k / e − y_{k−1}.
        y0.copy_from_slice(&v);
        apply(&y0, &mut y1);
        y1.par_iter_mut()
            .zip(&y0)
            .for_each(|(a, b)| *a = (*a - c * b) / e);
        for _ in 1..DEGREE {
            apply(&y1, &mut v);
            v.par_iter_mut()
                .zip(&y1)
                .zip(&y0)
                .for_each(|((a, b1), b0)| *a = 2.0 * (*a - c * b1) / e - b0);
            std::mem::swap(&mut y0, &mut y1); // y0 ← y_k
            std::mem::swap(&mut y1, &mut v); // y1 ← y_{k+1}
        }
        std::mem::swap(&mut v, &mut y1);
        orthonormalize(&mut v, p, &trivial);
        let next = rayleigh_ritz(&mut v, p, &apply);
        let settled = next
            .iter()
            .zip(&ritz)
            .take(dim)
            .all(|(a, b)| (a - b).abs() < 1e-4);
        ritz = next;
        if settled {
            break;
        }
    }
    if timing() {
        eprintln!("spectral: {passes} Chebyshev passes of degree {DEGREE}");
    }
    let mut out = vec![0.0; n * dim];
    for i in 0..n {
        out[i * dim..(i + 1) * dim].copy_from_slice(&v[i * p..i * p + dim]);
    }
    out
}

/// Modified Gram-Schmidt on the p columns of a row-interleaved block, each column also made
/// orthogonal to `trivial`.
fn orthonormalize(v: &mut [f64], p: usize, trivial: &[f64]) {
    let n = trivial.len();
    for a in 0..p {
        let dot: f64 = (0..n).map(|i| v[i * p + a] * trivial[i]).sum();
        for i in 0..n {
            v[i * p + a] -= dot * trivial[i];
        }
        for b in 0..a {
            let dot: f64 = (0..n).map(|i| v[i * p + a] * v[i * p + b]).sum();
            for i in 0..n {
                v[i * p + a] -= dot * v[i * p + b];
            }
        }
        let norm = (0..n).map(|i| v[i * p + a].powi(2)).sum::<f64>().sqrt();
        if norm > 0.0 {
            for i in 0..n {
                v[i * p + a] /= norm;
            }
        }
    }
}

// Dense p×p matrix code reads best with explicit indices.
#[allow(clippy::needless_range_loop)]
/// Rotates an orthonormal block basis onto the Ritz vectors of the operator (largest Ritz value
/// first); returns the Ritz values.
fn rayleigh_ritz(v: &mut [f64], p: usize, apply: &impl Fn(&[f64], &mut [f64])) -> Vec<f64> {
    let n = v.len() / p;
    let mut av = vec![0.0; n * p];
    apply(v, &mut av);
    let mut h = vec![vec![0.0; p]; p];
    for i in 0..n {
        for a in 0..p {
            for b in 0..p {
                h[a][b] += v[i * p + a] * av[i * p + b];
            }
        }
    }
    for a in 0..p {
        for b in 0..a {
            let m = 0.5 * (h[a][b] + h[b][a]);
            h[a][b] = m;
            h[b][a] = m;
        }
    }
    let (vals, vecs) = jacobi_eigen(h);
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
    let mut row = vec![0.0; p];
    for i in 0..n {
        for (t, &c) in order.iter().enumerate() {
            row[t] = (0..p).map(|r| v[i * p + r] * vecs[r][c]).sum();
        }
        v[i * p..(i + 1) * p].copy_from_slice(&row);
    }
    order.iter().map(|&c| vals[c]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numeric::graph::fuzzy_graph;
    use crate::numeric::neighbors::Neighbors;
    use crate::numeric::testdata::clusters;
    use rand::SeedableRng;

    #[test]
    fn spectral_init_finds_the_leading_nontrivial_eigenvectors() {
        // One connected cloud, so the trivial eigenvalue is simple; compare with a dense
        // eigendecomposition of D^-1/2 W D^-1/2.
        let (x, _) = clusters(1, 150, 3, 4);
        let n = 150;
        let g = fuzzy_graph(&Neighbors::exact(&x, n, 3, 10));
        let mut deg = vec![0.0; n];
        for (i, _, w) in g.edges() {
            deg[i] += w as f64;
        }
        let mut m = vec![0.0; n * n];
        for (i, j, w) in g.edges() {
            m[i * n + j] = w as f64 / (deg[i] * deg[j]).sqrt();
        }
        let eig = crate::numeric::eigen::symmetric_eigen(&m, n).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let got = spectral_init(&g, 2, &mut rng);
        for c in 0..2 {
            // Largest eigenvalue last: the trivial one is n − 1, the wanted ones below it.
            let col = n - 2 - c;
            let dot: f64 = (0..n).map(|i| got[i * 2 + c] * eig.at(i, col)).sum();
            let norm: f64 = (0..n).map(|i| got[i * 2 + c].powi(2)).sum::<f64>().sqrt();
            assert!(
                (dot / norm).abs() > 0.999,
                "eigenvector {c}: |cos| {}",
                dot / norm
            );
        }
    }
}
