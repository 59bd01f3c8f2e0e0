//! LISI-based scIB metrics: the inverse Simpson index of each cell's neighbourhood, over batches
//! (iLISI, mixing) and over labels (cLISI, purity).

use rayon::prelude::*;

use super::stats::codes;
use crate::numeric::neighbors::Neighbors;

/// Inverse Simpson index of each cell's neighbourhood labels (LISI), with neighbour weights
/// from a Gaussian kernel whose bandwidth matches `perplexity` (binary search, 50 tries,
/// tolerance 1e-5, as scib-metrics). The cell itself is left out; −1 where no weight remains.
pub(crate) fn lisi(nb: &Neighbors, labels: &[usize], perplexity: f64) -> Vec<f64> {
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
pub(crate) fn ilisi(nb: &Neighbors, batches: &[usize]) -> f64 {
    let nbatch = codes(batches).1 as f64;
    let v = (nanmedian(&lisi(nb, batches, (nb.k / 3) as f64)) - 1.0) / (nbatch - 1.0);
    if v == 0.0 {
        0.0 // not −0
    } else {
        v
    }
}

/// cLISI: median label LISI, scaled by (labels − x) / (labels − 1); 1 = pure neighbourhoods.
pub(crate) fn clisi(nb: &Neighbors, labels: &[usize]) -> f64 {
    let nl = codes(labels).1 as f64;
    (nl - nanmedian(&lisi(nb, labels, (nb.k / 3) as f64))) / (nl - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
