//! Cell-level evaluation (SPEC §4): cell-type prediction from cell embeddings by a 10-nearest-
//! neighbour (cosine) classifier and by logistic regression (one-vs-rest, standardised, L2,
//! C = 1), stratified 5-fold CV, accuracy and macro-F1 (plus macro one-vs-rest ROC-AUC and
//! average precision for the regression); and k-means (k = number of types, k-means++, 10 seeded
//! restarts) scored by ARI and NMI against the labels.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::logreg::{Design, LogisticRegression, Standardizer};
use super::metrics::{self, MeanSd};
use super::probe::{FoldScores, ProbeScores};
use super::split::stratified_kfold_classes;
use super::task::CellSource;
use crate::io::matrix::{read_mtx_or_dense, ExprMatrix, MtxNames};
use crate::io::table::{ColumnRef, Table};
use crate::numeric::cluster::{ari, kmeans, nmi};
use std::collections::HashMap;
use std::path::Path;

/// A cell task's data: the expression of the labelled cells and their types.
pub struct CellData {
    pub matrix: ExprMatrix,
    pub labels: Vec<usize>,
    pub class_names: Vec<String>,
    /// Matrix cells without a label (not used), and labelled cells missing from the matrix.
    pub unlabelled: usize,
    pub labels_without_cell: usize,
}

/// Reads a cell task's matrix and labels (paths relative to `data_dir`); keeps the labelled
/// cells, classes in sorted name order.
pub fn load(src: &CellSource, data_dir: &Path) -> Result<CellData> {
    let path = data_dir.join(&src.matrix);
    let mut h5ad_obs = None;
    let m = if src.matrix.ends_with(".h5ad") {
        let a = crate::io::h5ad::read_h5ad(&path, src.h5ad_raw)?;
        h5ad_obs = Some(a.obs);
        a.matrix
    } else {
        read_mtx_or_dense(
            &path,
            &MtxNames {
                dir: data_dir,
                genes: src.genes_file.as_deref(),
                genes_column: src.genes_column,
                cells: src.cells_file.as_deref(),
                cells_column: src.cells_column,
                header: src.names_header,
                genes_are_rows: src.genes_are_rows,
            },
        )?
    };
    let mut label_of: HashMap<String, String> = HashMap::new();
    let labels_origin = match (&src.labels_file, h5ad_obs) {
        (Some(f), _) => {
            let table = Table::read(&data_dir.join(f), true)?;
            let cc = table.column(&ColumnRef::Name(src.cell_column.clone()))?;
            let lc = table.column(&ColumnRef::Name(src.label_column.clone()))?;
            for row in &table.rows {
                let (cell, label) = (table.field(row, cc)?, table.field(row, lc)?);
                if label.is_empty() {
                    continue;
                }
                if label_of
                    .insert(cell.to_string(), label.to_string())
                    .is_some()
                {
                    bail!(
                        "{}:{}: cell '{cell}' is labelled twice",
                        table.path.display(),
                        row.0
                    );
                }
            }
            f.clone()
        }
        (None, Some(obs)) => {
            let col = obs.get(&src.label_column).with_context(|| {
                format!(
                    "{}: obs has no column '{}' (columns: {})",
                    path.display(),
                    src.label_column,
                    obs.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            for (cell, label) in m.cells.iter().zip(col) {
                if !label.is_empty() {
                    label_of.insert(cell.clone(), label.clone());
                }
            }
            format!("{} obs", src.matrix)
        }
        (None, None) => bail!(
            "{}: no labels_file for a matrix without obs",
            path.display()
        ),
    };
    let mut class_names: Vec<String> = label_of.values().cloned().collect();
    class_names.sort();
    class_names.dedup();
    let keep: Vec<usize> = (0..m.n_cells())
        .filter(|&c| label_of.contains_key(&m.cells[c]))
        .collect();
    if keep.is_empty() {
        bail!(
            "{}: no cell of {} has a label in {}",
            path.display(),
            src.matrix,
            labels_origin
        );
    }
    let labels: Vec<usize> = keep
        .iter()
        .map(|&c| {
            let l = &label_of[&m.cells[c]];
            class_names
                .iter()
                .position(|n| n == l)
                .expect("known class")
        })
        .collect();
    let in_matrix: std::collections::HashSet<&str> = m.cells.iter().map(String::as_str).collect();
    let labels_without_cell = label_of
        .keys()
        .filter(|c| !in_matrix.contains(c.as_str()))
        .count();
    let unlabelled = m.n_cells() - keep.len();
    Ok(CellData {
        matrix: m.select_cells(&keep),
        labels,
        class_names,
        unlabelled,
        labels_without_cell,
    })
}

/// Share of correct predictions.
pub fn accuracy(truth: &[usize], pred: &[usize]) -> f64 {
    let ok = truth.iter().zip(pred).filter(|(a, b)| a == b).count();
    ok as f64 / truth.len().max(1) as f64
}

/// Unweighted mean over the classes present in `truth` or `pred` of the per-class F1
/// (scikit-learn's `f1_score(average="macro")`).
pub fn macro_f1(truth: &[usize], pred: &[usize]) -> f64 {
    let mut classes: Vec<usize> = truth.iter().chain(pred).copied().collect();
    classes.sort_unstable();
    classes.dedup();
    let f1s: Vec<f64> = classes
        .iter()
        .map(|&c| {
            let tp = truth
                .iter()
                .zip(pred)
                .filter(|(t, p)| **t == c && **p == c)
                .count();
            let fp = truth
                .iter()
                .zip(pred)
                .filter(|(t, p)| **t != c && **p == c)
                .count();
            let fn_ = truth
                .iter()
                .zip(pred)
                .filter(|(t, p)| **t == c && **p != c)
                .count();
            let d = 2 * tp + fp + fn_;
            if d == 0 {
                0.0
            } else {
                2.0 * tp as f64 / d as f64
            }
        })
        .collect();
    f1s.iter().sum::<f64>() / f1s.len().max(1) as f64
}

fn l2_normalised(x: &[f32], d: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    for r in out.chunks_mut(d) {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            r.iter_mut().for_each(|v| *v /= n);
        }
    }
    out
}

/// k-nearest-neighbour (cosine) majority vote, ties to the lowest class index (as
/// scikit-learn's `KNeighborsClassifier` with uniform weights).
pub fn knn_predict(
    train: &[f32],
    y_train: &[usize],
    test: &[f32],
    d: usize,
    k: usize,
    n_classes: usize,
) -> Vec<usize> {
    let (tr, te) = (l2_normalised(train, d), l2_normalised(test, d));
    te.par_chunks(d)
        .map(|q| {
            let mut sims: Vec<(f32, usize)> = tr
                .chunks(d)
                .enumerate()
                .map(|(j, r)| (-q.iter().zip(r).map(|(a, b)| a * b).sum::<f32>(), j))
                .collect();
            let kk = k.min(sims.len());
            sims.select_nth_unstable_by(kk - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut votes = vec![0usize; n_classes];
            for &(_, j) in &sims[..kk] {
                votes[y_train[j]] += 1;
            }
            let best = *votes.iter().max().expect("classes");
            votes.iter().position(|&v| v == best).expect("a maximum")
        })
        .collect()
}

/// Scores of a cell-type task: the logistic regression's in `ProbeScores` (macro metrics), the
/// kNN and clustering ones in `extra`.
pub struct CellScores {
    pub probe: ProbeScores,
    pub extra: BTreeMap<String, MeanSd>,
    /// Each cell's test fold and k-means cluster (for cross-checks).
    pub test_fold: Vec<usize>,
    pub clusters: Vec<usize>,
}

/// Cross-validated cell-type prediction and clustering of `x` (`n × d`) against `labels`.
pub fn evaluate(
    x: &[f32],
    d: usize,
    labels: &[usize],
    n_classes: usize,
    folds: usize,
    seed: u64,
    model: &LogisticRegression,
) -> Result<CellScores> {
    let start = std::time::Instant::now();
    let n = labels.len();
    if x.len() != n * d || n == 0 {
        bail!("cell matrix and labels disagree");
    }
    let mut counts = vec![0usize; n_classes];
    for &l in labels {
        counts[l] += 1;
    }
    if let Some(c) = counts.iter().position(|&c| c < folds) {
        bail!(
            "class {c} has {} cells, fewer than the {folds} folds",
            counts[c]
        );
    }
    let split = stratified_kfold_classes(labels, folds, seed);
    let gather = |rows: &[usize]| -> Vec<f32> {
        rows.iter()
            .flat_map(|&r| x[r * d..(r + 1) * d].iter().copied())
            .collect()
    };
    let mut fold_scores = Vec::new();
    let (mut knn_acc, mut knn_f1) = (Vec::new(), Vec::new());
    for (f, fold) in split.iter().enumerate() {
        let (xtr, xte) = (gather(&fold.train), gather(&fold.test));
        let ytr: Vec<usize> = fold.train.iter().map(|&i| labels[i]).collect();
        let yte: Vec<usize> = fold.test.iter().map(|&i| labels[i]).collect();
        let knn = knn_predict(&xtr, &ytr, &xte, d, 10, n_classes);
        knn_acc.push(accuracy(&yte, &knn));
        knn_f1.push(macro_f1(&yte, &knn));
        // One-vs-rest logistic regression on standardised features.
        let scaler = Standardizer::fit(Design::new(&xtr, ytr.len(), d));
        let (str_, ste) = (
            scaler.transform(Design::new(&xtr, ytr.len(), d)),
            scaler.transform(Design::new(&xte, yte.len(), d)),
        );
        let fits = (0..n_classes)
            .into_par_iter()
            .map(|c| {
                let y: Vec<bool> = ytr.iter().map(|&l| l == c).collect();
                model.fit(Design::new(&str_, ytr.len(), d), &y)
            })
            .collect::<Result<Vec<_>>>()?;
        let probs: Vec<Vec<f64>> = fits
            .iter()
            .map(|m| m.predict_proba(Design::new(&ste, yte.len(), d)))
            .collect();
        let pred: Vec<usize> = (0..yte.len())
            .map(|i| {
                (0..n_classes)
                    .max_by(|&a, &b| probs[a][i].total_cmp(&probs[b][i]).then(b.cmp(&a)))
                    .expect("classes")
            })
            .collect();
        let (mut aucs, mut aps) = (Vec::new(), Vec::new());
        for (c, p) in probs.iter().enumerate() {
            let yc: Vec<bool> = yte.iter().map(|&l| l == c).collect();
            if let (Some(a), Some(ap)) =
                (metrics::roc_auc(&yc, p), metrics::average_precision(&yc, p))
            {
                aucs.push(a);
                aps.push(ap);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        fold_scores.push(FoldScores {
            fold: f,
            n_train: ytr.len(),
            n_test: yte.len(),
            n_test_positive: yte.len(),
            roc_auc: mean(&aucs),
            average_precision: mean(&aps),
            accuracy: accuracy(&yte, &pred),
            f1: macro_f1(&yte, &pred),
            iterations: fits.iter().map(|m| m.iterations).max().unwrap_or(0),
            converged: fits.iter().all(|m| m.converged),
        });
    }
    let summary = |get: fn(&FoldScores) -> f64| {
        MeanSd::of(&fold_scores.iter().map(get).collect::<Vec<_>>()).expect("folds")
    };
    let clusters = kmeans(x, d, n_classes, 10, seed);
    let mut test_fold = vec![0usize; n];
    for (f, fold) in split.iter().enumerate() {
        for &i in &fold.test {
            test_fold[i] = f;
        }
    }
    let one = |v: f64| MeanSd { mean: v, sd: 0.0 };
    let mut extra = BTreeMap::new();
    extra.insert(
        "knn10_accuracy".into(),
        MeanSd::of(&knn_acc).expect("folds"),
    );
    extra.insert("knn10_macro_f1".into(), MeanSd::of(&knn_f1).expect("folds"));
    extra.insert("kmeans_ari".into(), one(ari(labels, &clusters)));
    extra.insert("kmeans_nmi".into(), one(nmi(labels, &clusters)));
    Ok(CellScores {
        probe: ProbeScores {
            roc_auc: summary(|f| f.roc_auc),
            average_precision: summary(|f| f.average_precision),
            accuracy: summary(|f| f.accuracy),
            f1: summary(|f| f.f1),
            all_converged: fold_scores.iter().all(|f| f.converged),
            max_iterations: fold_scores.iter().map(|f| f.iterations).max().unwrap_or(0),
            folds: fold_scores,
            runtime_s: start.elapsed().as_secs_f64(),
        },
        extra,
        test_fold,
        clusters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn classification_scores_match_hand_values() {
        // macro F1: classes 0 (f1 2/3), 1 (f1 1/2), 2 (0) -> 7/18 (scikit-learn agrees).
        assert!((macro_f1(&[0, 0, 1, 1], &[0, 1, 1, 2]) - 7.0 / 18.0).abs() < 1e-12);
        assert_eq!(accuracy(&[0, 0, 1, 1], &[0, 1, 1, 2]), 0.5);
    }

    /// Three well-separated types and a noise control: near-perfect vs chance.
    #[test]
    fn planted_cell_types_are_recovered_and_noise_is_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (n_per, d, k) = (40, 6, 3);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for c in 0..k {
            for _ in 0..n_per {
                for t in 0..d {
                    let z: f32 = StandardNormal.sample(&mut rng);
                    x.push(if t == c { 6.0 } else { 0.0 } + z);
                }
                y.push(c);
            }
        }
        let lr = LogisticRegression::default();
        let s = evaluate(&x, d, &y, k, 5, 0, &lr).unwrap();
        assert!(s.probe.accuracy.mean > 0.97 && s.probe.f1.mean > 0.97);
        assert!(s.extra["knn10_accuracy"].mean > 0.97);
        assert!(s.extra["kmeans_ari"].mean > 0.9 && s.extra["kmeans_nmi"].mean > 0.9);
        let noise: Vec<f32> = (0..x.len())
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let r = evaluate(&noise, d, &y, k, 5, 0, &lr).unwrap();
        assert!(r.probe.accuracy.mean < 0.6, "{}", r.probe.accuracy.mean);
        assert!(r.extra["kmeans_ari"].mean < 0.2);
        // Same seed, same answer.
        let again = evaluate(&x, d, &y, k, 5, 0, &lr).unwrap();
        assert_eq!(again.extra["kmeans_ari"], s.extra["kmeans_ari"]);
        assert_eq!(again.probe.folds, s.probe.folds);
    }
}
