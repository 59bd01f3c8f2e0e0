//! Silhouette-based scIB metrics: silhouette label, isolated labels, and the batch
//! silhouettes (BRAS, scib-metrics' default, and the classic silhouette batch), from all
//! pairwise distances computed in row blocks.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::stats::{codes, mean, rows_by_label};

/// Distance for silhouettes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Distance {
    Euclidean,
    /// 1 − cos, clipped to [0, 2].
    Cosine,
}

/// How a cell's distance to the other clusters is summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Between {
    /// The nearest other cluster's mean distance (the classic silhouette).
    Nearest,
    /// The mean distance to every cell of the other clusters (BRAS).
    MeanOther,
}

/// Silhouette of every row (scikit-learn's `silhouette_samples`; 0 for a cluster of one),
/// from all pairwise distances computed in row blocks.
pub(crate) fn silhouette_samples(
    x: &[f32],
    d: usize,
    labels: &[usize],
    metric: Distance,
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
        Distance::Euclidean => {
            for j in 0..d {
                let mean = (0..n).map(|i| y[i * d + j] as f64).sum::<f64>() / n.max(1) as f64;
                (0..n).for_each(|i| y[i * d + j] -= mean as f32);
            }
        }
        Distance::Cosine => {
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
                        Distance::Euclidean => (norms[i] + norms[j] - 2.0 * dot).max(0.0).sqrt(),
                        Distance::Cosine => {
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
pub(crate) fn silhouette_label(sil: &[f64]) -> f64 {
    (mean(sil) + 1.0) / 2.0
}

/// Isolated-label score: the labels present in the fewest batches, each scored by the mean
/// rescaled silhouette of its cells (over all labels), averaged.
pub(crate) fn isolated_labels(sil: &[f64], labels: &[usize], batches: &[usize]) -> f64 {
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
pub(crate) fn batch_silhouette(
    x: &[f32],
    d: usize,
    labels: &[usize],
    batches: &[usize],
    metric: Distance,
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
    // The mean of no labels is NaN.
    mean(&per_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silhouettes_match_hand_computed_values() {
        // 1-D: cluster 0 at {0, 1}, cluster 1 at {4}.
        let s = silhouette_samples(
            &[0.0, 1.0, 4.0],
            1,
            &[0, 0, 1],
            Distance::Euclidean,
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
            Distance::Euclidean,
            Between::MeanOther,
        );
        assert!((s[0] - (7.0 - 1.0) / 7.0).abs() < 1e-6, "{s:?}");
        // Cosine distance ignores length.
        let s = silhouette_samples(
            &[1.0, 0.0, 5.0, 0.1, 0.0, 1.0, 0.1, 3.0],
            2,
            &[0, 0, 1, 1],
            Distance::Cosine,
            Between::Nearest,
        );
        assert!(s.iter().all(|&v| v > 0.9), "{s:?}");
    }
}
