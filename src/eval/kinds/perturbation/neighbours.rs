//! Predictions from neighbours in embedding space: the cosine-weighted mean of the deltas of the
//! nearest perturbations, and the plain mean of a set of deltas (the mean baseline).

use std::collections::HashMap;

/// Unit-length f64 copy of an embedding row (or of a sum of rows).
pub(crate) fn unit_vector(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let v: Vec<f64> = v.collect();
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / n).collect()
}

/// The cosine-weighted mean of the deltas of the `k` candidates closest to `query` (weights
/// max(cos, 0), uniform when all are 0; ties broken by index).
pub(crate) fn knn_prediction(
    query: &[f64],
    candidates: &[usize],
    vecs: &HashMap<usize, Vec<f64>>,
    deltas: &[Vec<f64>],
    k: usize,
) -> Vec<f64> {
    let mut sims: Vec<(f64, usize)> = candidates
        .iter()
        .map(|&j| (query.iter().zip(&vecs[&j]).map(|(a, b)| a * b).sum(), j))
        .collect();
    sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    sims.truncate(k.max(1));
    let mut w: Vec<f64> = sims.iter().map(|s| s.0.max(0.0)).collect();
    if w.iter().sum::<f64>() <= 0.0 {
        w = vec![1.0; sims.len()];
    }
    let wsum: f64 = w.iter().sum();
    let mut pred = vec![0.0; deltas[0].len()];
    for (wi, &(_, j)) in w.iter().zip(&sims) {
        for (p, d) in pred.iter_mut().zip(&deltas[j]) {
            *p += wi / wsum * d;
        }
    }
    pred
}

/// The mean of the given deltas.
pub(crate) fn mean_delta(of: &[usize], deltas: &[Vec<f64>]) -> Vec<f64> {
    let mut mean = vec![0.0; deltas[0].len()];
    for &j in of {
        for (m, d) in mean.iter_mut().zip(&deltas[j]) {
            *m += d / of.len() as f64;
        }
    }
    mean
}
