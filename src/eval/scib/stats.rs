//! What several scIB metrics share: dense codes for labels, the rows of each label, and means
//! that skip undefined values.

use std::collections::BTreeMap;

/// Dense codes 0..m for arbitrary labels, in sorted label order (pandas' Categorical codes).
pub(super) fn codes(labels: &[usize]) -> (Vec<usize>, usize) {
    let mut uniq: Vec<usize> = labels.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let code: BTreeMap<usize, usize> = uniq.iter().enumerate().map(|(c, &l)| (l, c)).collect();
    (labels.iter().map(|l| code[l]).collect(), uniq.len())
}

/// The rows of each label, labels in sorted order (the groups every per-label metric loops over).
pub(super) fn rows_by_label(labels: &[usize]) -> Vec<Vec<usize>> {
    let mut by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by.entry(l).or_default().push(i);
    }
    by.into_values().collect()
}

pub(super) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Mean of the non-NaN values (pandas' groupby mean).
pub(super) fn nanmean(v: &[f64]) -> f64 {
    let f: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    mean(&f)
}
