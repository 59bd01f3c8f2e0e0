//! Binary classification metrics: pure functions of labels and scores, no I/O.
//!
//! Conventions follow scikit-learn so numbers can be cross-checked: ROC-AUC gives tied scores
//! half credit (`roc_auc_score`), average precision is the step-wise sum
//! `Σ (R_k − R_{k−1}) P_k` over distinct thresholds (`average_precision_score`), and accuracy/F1
//! threshold the predicted probability at 0.5.

use serde::{Deserialize, Serialize};

/// Area under the ROC curve, in [0, 1]; 0.5 is chance, higher is better.
/// `None` when only one class is present.
pub(crate) fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    assert_eq!(
        labels.len(),
        scores.len(),
        "labels and scores differ in length"
    );
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let order = sorted_by_score(scores, false);
    // Mann-Whitney U with average ranks for ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_tie = order[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum_pos += avg_rank * pos_in_tie as f64;
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// Average precision (area under the precision-recall curve, step-wise), in [0, 1]; the
/// positive-class fraction is chance, higher is better. `None` when there is no positive.
pub(crate) fn average_precision(labels: &[bool], scores: &[f64]) -> Option<f64> {
    assert_eq!(
        labels.len(),
        scores.len(),
        "labels and scores differ in length"
    );
    let n_pos = labels.iter().filter(|&&l| l).count();
    if n_pos == 0 {
        return None;
    }
    let order = sorted_by_score(scores, true);
    let (mut tp, mut fp, mut ap, mut prev_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

/// Fraction of correct predictions at probability threshold 0.5, in [0, 1].
pub(crate) fn accuracy(labels: &[bool], probs: &[f64]) -> f64 {
    let correct = labels
        .iter()
        .zip(probs)
        .filter(|(&l, &p)| (p >= 0.5) == l)
        .count();
    correct as f64 / labels.len().max(1) as f64
}

/// F1 of the positive class at threshold 0.5, in [0, 1]; 0 when nothing is predicted positive
/// and nothing is positive (scikit-learn's `zero_division=0`).
pub(crate) fn f1(labels: &[bool], probs: &[f64]) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&l, &p) in labels.iter().zip(probs) {
        match (p >= 0.5, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
    }
    let denom = 2 * tp + fp + fn_;
    if denom == 0 {
        0.0
    } else {
        2.0 * tp as f64 / denom as f64
    }
}

/// Mean and population standard deviation (ddof = 0, numpy's default) of a set of values.
/// JSON writes an undefined (NaN) value as `null`, and reads `null` back as NaN.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub sd: f64,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl MeanSd {
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Some(Self {
            mean,
            sd: var.sqrt(),
        })
    }
}

fn sorted_by_score(scores: &[f64], descending: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        let o = scores[a].total_cmp(&scores[b]);
        if descending {
            o.reverse()
        } else {
            o
        }
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: [bool; 4] = [false, false, true, true];

    #[test]
    fn roc_auc_matches_hand_values() {
        // scikit-learn: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.75
        assert_eq!(roc_auc(&L, &[0.1, 0.4, 0.35, 0.8]), Some(0.75));
        assert_eq!(roc_auc(&L, &[0.1, 0.2, 0.3, 0.4]), Some(1.0));
        assert_eq!(roc_auc(&L, &[0.4, 0.3, 0.2, 0.1]), Some(0.0));
        assert_eq!(roc_auc(&L, &[0.5; 4]), Some(0.5), "ties get half credit");
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
    }

    #[test]
    fn average_precision_matches_hand_values() {
        // scikit-learn: average_precision_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.8333...
        let ap = average_precision(&L, &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert!((ap - 5.0 / 6.0).abs() < 1e-12, "{ap}");
        assert_eq!(average_precision(&L, &[0.5; 4]), Some(0.5));
        assert_eq!(average_precision(&[false], &[0.1]), None);
    }

    #[test]
    fn threshold_metrics() {
        let p = [0.2, 0.6, 0.7, 0.4];
        assert_eq!(accuracy(&L, &p), 0.5);
        // tp=1 fp=1 fn=1 -> 2/4
        assert_eq!(f1(&L, &p), 0.5);
        assert_eq!(f1(&[false, false], &[0.1, 0.2]), 0.0);
    }

    #[test]
    fn mean_sd_is_population() {
        let m = MeanSd::of(&[1.0, 3.0]).unwrap();
        assert_eq!((m.mean, m.sd), (2.0, 1.0));
        assert!(MeanSd::of(&[]).is_none());
    }
}
