//! Eigen-decompositions of dense symmetric matrices: through `faer` in general, and by Jacobi
//! rotations for UMAP's tiny Rayleigh-Ritz problem (see [`jacobi_eigen`] for why).

use anyhow::{bail, Result};

/// The eigenpairs of a dense symmetric matrix: values in ascending order, vectors as the
/// columns of an `n × n` row-major matrix (`vectors[i * n + c]` is component `i` of the `c`-th
/// vector), each with unit norm and its largest-magnitude component positive (the first such,
/// on ties), so that the result does not depend on the solver's sign choices.
pub(crate) struct SymmetricEigen {
    pub n: usize,
    pub values: Vec<f64>,
    pub vectors: Vec<f64>,
}

impl SymmetricEigen {
    /// Component `i` of the `c`-th eigenvector.
    pub(crate) fn at(&self, i: usize, c: usize) -> f64 {
        self.vectors[i * self.n + c]
    }
}

/// Eigen-decomposition of the symmetric `n × n` matrix `a` (row-major; only the lower triangle
/// is read). Fails on non-finite entries.
pub(crate) fn symmetric_eigen(a: &[f64], n: usize) -> Result<SymmetricEigen> {
    if a.len() != n * n {
        bail!("symmetric_eigen: {} values for a {n} × {n} matrix", a.len());
    }
    if a.iter().any(|v| !v.is_finite()) {
        bail!("symmetric_eigen: the matrix has non-finite entries");
    }
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
    let eig = m
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| anyhow::anyhow!("eigendecomposition failed: {e:?}"))?;
    let (s, u) = (eig.S().column_vector(), eig.U());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| s[x].total_cmp(&s[y]));
    let mut vectors = vec![0.0; n * n];
    for (c, &o) in order.iter().enumerate() {
        let lead = (0..n).fold(0, |best, i| {
            if u[(i, o)].abs() > u[(best, o)].abs() {
                i
            } else {
                best
            }
        });
        let sign = if u[(lead, o)] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            vectors[i * n + c] = sign * u[(i, o)];
        }
    }
    Ok(SymmetricEigen {
        n,
        values: order.iter().map(|&o| s[o]).collect(),
        vectors,
    })
}

#[allow(clippy::needless_range_loop)]
/// Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations: (values,
/// vectors as columns), in no particular order and with the signs the rotations leave.
///
/// UMAP's Rayleigh-Ritz step (a (dim + 4)² matrix) uses this rather than [`symmetric_eigen`]:
/// the signs of the Ritz vectors carry through to the layout, so a different solver gives a
/// different (equally valid) layout for the same seed. Measured on the fixture run: with faer
/// every one of the 3,120 UMAP coordinates changed. Keeping Jacobi keeps saved layouts
/// reproducible from their seed across versions.
pub(crate) fn jacobi_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let p = a.len();
    let mut v = vec![vec![0.0; p]; p];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _ in 0..100 {
        let off: f64 = (0..p)
            .flat_map(|i| (0..p).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for i in 0..p {
            for j in i + 1..p {
                if a[i][j].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[j][j] - a[i][i]) / (2.0 * a[i][j]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..p {
                    let (aki, akj) = (a[k][i], a[k][j]);
                    a[k][i] = c * aki - s * akj;
                    a[k][j] = s * aki + c * akj;
                }
                for k in 0..p {
                    let (aik, ajk) = (a[i][k], a[j][k]);
                    a[i][k] = c * aik - s * ajk;
                    a[j][k] = s * aik + c * ajk;
                }
                for row in v.iter_mut() {
                    let (vi, vj) = (row[i], row[j]);
                    row[i] = c * vi - s * vj;
                    row[j] = s * vi + c * vj;
                }
            }
        }
    }
    ((0..p).map(|i| a[i][i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposes_a_known_matrix() {
        // [[2, 1], [1, 2]]: eigenvalues 1 and 3, vectors (1, -1)/√2 and (1, 1)/√2.
        let e = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2).unwrap();
        assert!((e.values[0] - 1.0).abs() < 1e-12 && (e.values[1] - 3.0).abs() < 1e-12);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        // Largest-magnitude component positive: the first of a tie.
        assert!((e.at(0, 0) - h).abs() < 1e-12 && (e.at(1, 0) + h).abs() < 1e-12);
        assert!((e.at(0, 1) - h).abs() < 1e-12 && (e.at(1, 1) - h).abs() < 1e-12);
        assert!(symmetric_eigen(&[1.0, f64::NAN, f64::NAN, 1.0], 2).is_err());
        assert!(symmetric_eigen(&[1.0], 2).is_err());
    }
}
