//! Train/test splits: seeded stratified k-fold, and the folds a task file fixes.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One split: row indices for training and for testing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fold {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Stratified k-fold: each class is shuffled with `seed` and dealt round-robin into `k` folds, so
/// every fold holds each class in (almost) equal share. Deterministic for a given seed, on every
/// platform (ChaCha8).
pub(crate) fn stratified_kfold(labels: &[bool], k: usize, seed: u64) -> Vec<Fold> {
    let classes: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    stratified_kfold_classes(&classes, k, seed)
}

/// [`stratified_kfold`] for any number of classes (`labels[i]` in `0..C`), classes dealt in
/// index order from one generator.
pub(crate) fn stratified_kfold_classes(labels: &[usize], k: usize, seed: u64) -> Vec<Fold> {
    assert!(k >= 2, "k-fold needs k >= 2");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold_of = vec![0usize; labels.len()];
    let n_classes = labels.iter().max().map_or(0, |m| m + 1);
    for class in 0..n_classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        for (j, &i) in members.iter().enumerate() {
            fold_of[i] = j % k;
        }
    }
    folds_from_assignment(&fold_of, k)
}

/// Folds from a per-row fold number in `0..k` (rows outside every fold are removed beforehand).
/// Fold `f` tests on the rows numbered `f` and trains on every other numbered row.
pub(crate) fn folds_from_assignment(fold_of: &[usize], k: usize) -> Vec<Fold> {
    (0..k)
        .map(|f| Fold {
            train: (0..fold_of.len()).filter(|&i| fold_of[i] != f).collect(),
            test: (0..fold_of.len()).filter(|&i| fold_of[i] == f).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_folds_partition_and_balance() {
        let labels: Vec<bool> = (0..103).map(|i| i % 4 == 0).collect();
        let folds = stratified_kfold(&labels, 5, 7);
        let mut seen = vec![0; labels.len()];
        for f in &folds {
            for &i in &f.test {
                seen[i] += 1;
            }
            assert_eq!(f.train.len() + f.test.len(), labels.len());
            let pos = f.test.iter().filter(|&&i| labels[i]).count();
            assert!((5..=6).contains(&pos), "positives per fold: {pos}");
        }
        assert!(seen.iter().all(|&c| c == 1), "each row tested exactly once");
        assert_eq!(folds, stratified_kfold(&labels, 5, 7), "seeded");
        assert_ne!(folds, stratified_kfold(&labels, 5, 8), "seed matters");
    }
}
