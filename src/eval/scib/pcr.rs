//! Principal component regression (PCR) comparison: how much less of the variance the batch
//! explains after integration than before.

use super::stats::codes;

/// Share of the variance of `x` explained by the batch, over all principal components (PCR with
/// every component: R² of each PC on the one-hot batch, weighted by the PC's variance). With
/// all components PCA is a rotation, so this is the between-batch over total sum of squares.
pub(crate) fn pcr(x: &[f32], d: usize, batches: &[usize]) -> f64 {
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
pub(crate) fn pcr_comparison(pre: f64, post: f64) -> f64 {
    let v = (pre - post) / pre;
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_is_the_batch_share_of_variance() {
        let x = [1.0, 0.0, 3.0, 0.0, -1.0, 0.0, -3.0, 0.0];
        assert!((pcr(&x, 2, &[0, 0, 1, 1]) - 0.8).abs() < 1e-12);
        assert!((pcr_comparison(0.8, 0.2) - 0.75).abs() < 1e-12);
        assert_eq!(pcr_comparison(0.2, 0.8), 0.0);
    }
}
