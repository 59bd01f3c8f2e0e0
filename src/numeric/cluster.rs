//! Clustering and its agreement with labels: k-means (k-means++ seeding, Lloyd iterations,
//! seeded restarts) and the adjusted Rand index and normalised mutual information, as
//! scikit-learn defines them. Used by the cell-type task and the scIB bio-conservation metrics.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Counts per (a, b) label pair, and the row and column sums.
type Contingency = (BTreeMap<(usize, usize), f64>, Vec<f64>, Vec<f64>);

fn contingency(a: &[usize], b: &[usize]) -> Contingency {
    let ka = a.iter().max().map_or(0, |m| m + 1);
    let kb = b.iter().max().map_or(0, |m| m + 1);
    let mut t = BTreeMap::new();
    let (mut ra, mut rb) = (vec![0.0; ka], vec![0.0; kb]);
    for (&x, &y) in a.iter().zip(b) {
        *t.entry((x, y)).or_insert(0.0) += 1.0;
        ra[x] += 1.0;
        rb[y] += 1.0;
    }
    (t, ra, rb)
}

/// Adjusted Rand index (Hubert & Arabie), as scikit-learn's `adjusted_rand_score`.
pub(crate) fn ari(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let c2 = |x: f64| x * (x - 1.0) / 2.0;
    let (t, ra, rb) = contingency(a, b);
    let index: f64 = t.values().map(|&v| c2(v)).sum();
    let sa: f64 = ra.iter().map(|&v| c2(v)).sum();
    let sb: f64 = rb.iter().map(|&v| c2(v)).sum();
    let expected = sa * sb / c2(n);
    let max = 0.5 * (sa + sb);
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

/// Normalised mutual information with the arithmetic-mean normaliser (scikit-learn's default
/// for `normalized_mutual_info_score`).
pub(crate) fn nmi(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let (t, ra, rb) = contingency(a, b);
    let h = |r: &[f64]| -> f64 {
        r.iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| -(v / n) * (v / n).ln())
            .sum()
    };
    let mi: f64 = t
        .iter()
        .map(|(&(x, y), &v)| (v / n) * ((n * v) / (ra[x] * rb[y])).ln())
        .sum();
    let (ha, hb) = (h(&ra), h(&rb));
    if ha == 0.0 && hb == 0.0 {
        return 1.0;
    }
    let denom = 0.5 * (ha + hb);
    if denom <= 0.0 {
        0.0
    } else {
        (mi / denom).clamp(0.0, 1.0)
    }
}

/// k-means (Lloyd) with k-means++ seeding, best of `restarts` by inertia; labels per row.
pub(crate) fn kmeans(x: &[f32], d: usize, k: usize, restarts: usize, seed: u64) -> Vec<usize> {
    let n = x.len() / d;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dist2 =
        |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum() };
    let mut best: Option<(f64, Vec<usize>)> = None;
    for _ in 0..restarts.max(1) {
        // k-means++
        let mut centres: Vec<Vec<f32>> = vec![x[rng.random_range(0..n) * d..][..d].to_vec()];
        let mut near: Vec<f32> = (0..n)
            .map(|i| dist2(&x[i * d..(i + 1) * d], &centres[0]))
            .collect();
        while centres.len() < k {
            let total: f64 = near.iter().map(|&v| v as f64).sum();
            let pick = if total > 0.0 {
                let mut t = rng.random::<f64>() * total;
                let mut chosen = n - 1;
                for (i, &v) in near.iter().enumerate() {
                    t -= v as f64;
                    if t <= 0.0 {
                        chosen = i;
                        break;
                    }
                }
                chosen
            } else {
                rng.random_range(0..n)
            };
            let c = x[pick * d..(pick + 1) * d].to_vec();
            for (i, v) in near.iter_mut().enumerate() {
                *v = v.min(dist2(&x[i * d..(i + 1) * d], &c));
            }
            centres.push(c);
        }
        let mut labels = vec![0usize; n];
        let mut inertia = f64::INFINITY;
        for _ in 0..300 {
            let assign: Vec<(usize, f32)> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let r = &x[i * d..(i + 1) * d];
                    centres
                        .iter()
                        .enumerate()
                        .map(|(c, m)| (c, dist2(r, m)))
                        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
                        .expect("k >= 1")
                })
                .collect();
            let new_inertia: f64 = assign.iter().map(|a| a.1 as f64).sum();
            let changed = assign.iter().zip(&labels).any(|(a, &l)| a.0 != l);
            labels = assign.iter().map(|a| a.0).collect();
            let mut sums = vec![vec![0f64; d]; k];
            let mut counts = vec![0usize; k];
            for (i, &l) in labels.iter().enumerate() {
                counts[l] += 1;
                for (s, &v) in sums[l].iter_mut().zip(&x[i * d..(i + 1) * d]) {
                    *s += v as f64;
                }
            }
            for c in 0..k {
                if counts[c] > 0 {
                    centres[c] = sums[c]
                        .iter()
                        .map(|s| (s / counts[c] as f64) as f32)
                        .collect();
                }
            }
            // (The first pass has no previous inertia to compare with.)
            let settled = !changed
                || (inertia.is_finite() && (inertia - new_inertia).abs() <= 1e-6 * inertia);
            inertia = new_inertia;
            if settled {
                break;
            }
        }
        if best.as_ref().is_none_or(|b| inertia < b.0) {
            best = Some((inertia, labels));
        }
    }
    best.expect("one restart").1
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn kmeans_iterates_to_a_local_optimum() {
        // Lloyd's algorithm stops only when no label changes (or the inertia settles): every
        // point must then sit with its nearest centre.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (n, d, k) = (300, 5, 6);
        let x: Vec<f32> = (0..n * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let lab = kmeans(&x, d, k, 1, 1);
        let mut centres = vec![vec![0f64; d]; k];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            counts[lab[i]] += 1;
            for j in 0..d {
                centres[lab[i]][j] += x[i * d + j] as f64;
            }
        }
        for c in 0..k {
            centres[c]
                .iter_mut()
                .for_each(|v| *v /= counts[c].max(1) as f64);
        }
        let moved = (0..n)
            .filter(|&i| {
                let dist = |c: usize| -> f64 {
                    (0..d)
                        .map(|j| (x[i * d + j] as f64 - centres[c][j]).powi(2))
                        .sum()
                };
                (0..k).any(|c| dist(c) < dist(lab[i]) - 1e-9)
            })
            .count();
        assert_eq!(moved, 0, "points closer to another centre");
    }

    #[test]
    fn clustering_scores_match_hand_values() {
        // scikit-learn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714285715,
        // normalized_mutual_info_score(same) = 0.8;  ([0,0,1,1],[1,1,0,0]) = 1, 1.
        assert!((ari(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.571_428_571_428_571_5).abs() < 1e-12);
        assert!((nmi(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.8).abs() < 1e-12);
        assert!((ari(&[0, 0, 1, 1], &[1, 1, 0, 0]) - 1.0).abs() < 1e-12);
        assert!((nmi(&[0, 0, 1, 1], &[1, 1, 0, 0]) - 1.0).abs() < 1e-12);
    }
}
