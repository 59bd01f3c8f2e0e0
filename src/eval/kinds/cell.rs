//! Cell-type tasks: each cell becomes the GenePT-w vector of its expressed genes (the
//! expression-weighted mean of their embeddings, L2-normalised; `embed::cells`), and the cell
//! types are predicted from those vectors by a 10-nearest-neighbour (cosine) classifier and by
//! logistic regression (one-vs-rest, standardised, L2, C = 1) under stratified k-fold CV —
//! accuracy and macro-F1, plus macro one-vs-rest ROC-AUC and average precision for the
//! regression — and clustered by k-means (k = number of types, k-means++, 10 seeded restarts)
//! scored by ARI and NMI against the labels. docs/tasks.md has the protocol.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::labelled::Protocol;
use super::matrix::{MatrixSource, ReadMatrix};
use super::shared::{Colouring, PointCloud, RunInput, Scored, SetViews, TaskRun};
use crate::embed::cells::{genept_w, CellCoverage};
use crate::error::Error;
use crate::eval::coverage::Coverage;
use crate::eval::metric::CellMetric;
use crate::eval::probe::logreg::{Design, LogisticRegression, Standardizer};
use crate::eval::probe::metrics::{self, MeanSd};
use crate::eval::probe::split::stratified_kfold_classes;
use crate::eval::probe::{FoldScores, ProbeScores};
use crate::io::matrix::ExprMatrix;
use crate::io::table::{ColumnRef, Table};
use crate::numeric::cluster::{ari, kmeans, nmi};

/// A cell task's `[cells]`, `[protocol]` and `main_metric`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellTask {
    #[serde(default)]
    pub main_metric: CellMetric,
    pub cells: CellSource,
    #[serde(default)]
    pub protocol: Protocol,
}

/// A cell task's data: the expression matrix and the cell labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellSource {
    pub matrix: MatrixSource,
    /// Cell annotations (CSV/TSV with a header): the cell-id column and the label column. For
    /// an `.h5ad` matrix without `labels_file`, `label_column` names an `obs` column.
    #[serde(default)]
    pub labels_file: Option<String>,
    #[serde(default)]
    pub cell_column: String,
    pub label_column: String,
}

impl CellTask {
    pub fn check(&self) -> Result<()> {
        let Protocol::StratifiedKfold { folds } = self.protocol else {
            bail!("cell tasks use split = \"stratified_kfold\"");
        };
        if folds < 2 {
            bail!("stratified_kfold needs folds >= 2");
        }
        self.cells.matrix.check()?;
        let c = &self.cells;
        if c.labels_file.is_none() && !c.matrix.is_h5ad() {
            bail!("a cell task needs labels_file (or an .h5ad matrix with obs labels)");
        }
        if c.labels_file.is_some() && c.cell_column.is_empty() {
            bail!("labels_file needs cell_column");
        }
        Ok(())
    }

    /// Every data file the task reads, relative to the data folder.
    pub fn files(&self) -> Vec<&str> {
        let mut f = self.cells.matrix.files();
        f.extend(self.cells.labels_file.as_deref());
        f
    }

    fn folds(&self, input: &RunInput<'_>) -> usize {
        match self.protocol {
            Protocol::StratifiedKfold { folds } => input.folds.unwrap_or(folds),
            _ => unreachable!("checked when the task was read"),
        }
    }
}

/// A cell task's outcome on one set.
#[derive(Debug, Clone, PartialEq)]
pub struct CellOutcome {
    pub metric: CellMetric,
    pub n_folds: usize,
    /// Cells scored.
    pub cells: usize,
    pub coverage: Coverage,
    pub scores: CellScores,
    /// Genes of the matrix with an embedding, and the expression mass they carry.
    pub cell_coverage: CellCoverage,
}

impl CellOutcome {
    /// The value of `metric` (k-means scores have sd 0).
    pub fn value(&self, metric: CellMetric) -> MeanSd {
        let one = |v: f64| MeanSd { mean: v, sd: 0.0 };
        let p = &self.scores.probe;
        match metric {
            CellMetric::Accuracy => p.accuracy,
            CellMetric::F1 => p.f1,
            CellMetric::RocAuc => p.roc_auc,
            CellMetric::AveragePrecision => p.average_precision,
            CellMetric::Knn10Accuracy => self.scores.knn10_accuracy,
            CellMetric::Knn10MacroF1 => self.scores.knn10_macro_f1,
            CellMetric::KmeansAri => one(self.scores.kmeans_ari),
            CellMetric::KmeansNmi => one(self.scores.kmeans_nmi),
        }
    }

    /// The kNN and k-means metrics (the probe's are in its scores).
    pub fn other_metrics(&self) -> Vec<(String, MeanSd)> {
        use crate::eval::metric::Metric;
        [
            CellMetric::Knn10Accuracy,
            CellMetric::Knn10MacroF1,
            CellMetric::KmeansAri,
            CellMetric::KmeansNmi,
        ]
        .into_iter()
        .map(|m| (m.name().to_string(), self.value(m)))
        .collect()
    }
}

/// The task on every set: GenePT-w cell vectors, then [`evaluate`]. Any set that cannot be
/// scored fails the task (a cell task compares sets on the same cells).
pub(crate) fn run(
    name: &str,
    task: &CellTask,
    input: &RunInput<'_>,
) -> Result<TaskRun<CellOutcome>> {
    let data = load(&task.cells, input.data_dir)?;
    let folds = task.folds(input);
    let (n, k) = (data.labels.len(), data.class_names.len());
    let mut out = TaskRun::default();
    for (s, set) in input.sets.iter().enumerate() {
        let resolver = input.resolver(&set.embeddings);
        let (x, cov) = genept_w(&data.matrix, &set.embeddings, &resolver)
            .with_context(|| format!("cell vectors from '{}'", set.name))?;
        let dim = set.embeddings.dim;
        let (scores, assigned) = evaluate(&x, dim, &data.labels, k, folds, input.seed, input.model)
            .with_context(|| format!("on '{}'", set.name))?;
        if let (0, Some(dir)) = (s, input.export_folds) {
            write_cells_tsv(&dir.join(format!("{name}.tsv")), &data, &x, dim, &assigned)?;
        }
        out.scored.push(Scored {
            set: s,
            protocol: format!(
                "stratified {folds}-fold CV over {n} cells of {k} types, seed {}; GenePT-w cell \
                 vectors; logistic regression one-vs-rest (macro metrics)",
                input.seed
            ),
            outcome: CellOutcome {
                metric: task.main_metric,
                n_folds: folds,
                cells: n,
                coverage: Coverage::of_cells(
                    n + data.labels_without_cell,
                    n - cov.cells_empty,
                    &cov,
                ),
                scores,
                cell_coverage: cov,
            },
        });
        if input.keep_views {
            out.views.push(SetViews::Points(PointCloud {
                set: s,
                names: data.matrix.cells.clone(),
                x,
                dim,
                colourings: vec![Colouring {
                    label: name.to_string(),
                    class_names: data.class_names.clone(),
                    classes: data.labels.iter().map(|&l| Some(l)).collect(),
                }],
            }));
        }
    }
    Ok(out)
}

/// A cell task's data: the expression of the labelled cells and their types.
struct CellData {
    pub matrix: ExprMatrix,
    pub labels: Vec<usize>,
    pub class_names: Vec<String>,
    /// Labelled cells missing from the matrix.
    pub labels_without_cell: usize,
}

/// Reads a cell task's matrix and labels (paths relative to `data_dir`); keeps the labelled
/// cells, classes in sorted name order.
fn load(src: &CellSource, data_dir: &Path) -> Result<CellData> {
    let path = data_dir.join(&src.matrix.file);
    let ReadMatrix {
        matrix: m,
        obs: h5ad_obs,
    } = src.matrix.read(data_dir)?;
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
            format!("{} obs", src.matrix.file)
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
            src.matrix.file,
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
    Ok(CellData {
        matrix: m.select_cells(&keep),
        labels,
        class_names,
        labels_without_cell,
    })
}

/// Share of correct predictions.
pub(crate) fn accuracy(truth: &[usize], pred: &[usize]) -> f64 {
    let ok = truth.iter().zip(pred).filter(|(a, b)| a == b).count();
    ok as f64 / truth.len().max(1) as f64
}

/// Unweighted mean over the classes present in `truth` or `pred` of the per-class F1
/// (scikit-learn's `f1_score(average="macro")`).
pub(crate) fn macro_f1(truth: &[usize], pred: &[usize]) -> f64 {
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
pub(crate) fn knn_predict(
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

/// Scores of a cell-type task: the one-vs-rest logistic regression's (macro metrics), the
/// 10-nearest-neighbour classifier's (mean ± sd over folds), and k-means agreement with the
/// labels.
#[derive(Debug, Clone, PartialEq)]
pub struct CellScores {
    pub probe: ProbeScores,
    pub knn10_accuracy: MeanSd,
    pub knn10_macro_f1: MeanSd,
    pub kmeans_ari: f64,
    pub kmeans_nmi: f64,
}

/// Each cell's test fold and k-means cluster (for cross-checks).
struct CellAssignments {
    test_fold: Vec<usize>,
    clusters: Vec<usize>,
}

/// Cross-validated cell-type prediction and clustering of `x` (`n × d`) against `labels`.
fn evaluate(
    x: &[f32],
    d: usize,
    labels: &[usize],
    n_classes: usize,
    folds: usize,
    seed: u64,
    model: &LogisticRegression,
) -> Result<(CellScores, CellAssignments)> {
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
        return Err(Error::too_few(format!(
            "class {c} has {} cells, fewer than the {folds} folds",
            counts[c]
        )));
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
        let fit = FoldData {
            x_train: &xtr,
            y_train: &ytr,
            x_test: &xte,
            y_test: &yte,
            dim: d,
        };
        fold_scores.push(one_vs_rest(&fit, f, n_classes, model)?);
    }
    let clusters = kmeans(x, d, n_classes, 10, seed);
    let mut test_fold = vec![0usize; n];
    for (f, fold) in split.iter().enumerate() {
        for &i in &fold.test {
            test_fold[i] = f;
        }
    }
    let scores = CellScores {
        probe: ProbeScores::from_folds(fold_scores, start.elapsed().as_secs_f64()),
        knn10_accuracy: MeanSd::of(&knn_acc).expect("folds"),
        knn10_macro_f1: MeanSd::of(&knn_f1).expect("folds"),
        kmeans_ari: ari(labels, &clusters),
        kmeans_nmi: nmi(labels, &clusters),
    };
    Ok((
        scores,
        CellAssignments {
            test_fold,
            clusters,
        },
    ))
}

/// One fold's cells: standardisation is fitted on the training rows.
struct FoldData<'a> {
    x_train: &'a [f32],
    y_train: &'a [usize],
    x_test: &'a [f32],
    y_test: &'a [usize],
    dim: usize,
}

/// One-vs-rest logistic regression on one fold (standardised features): each cell's class is
/// the one of highest probability; ROC-AUC and average precision are macro averages over the
/// classes present in the test cells.
fn one_vs_rest(
    fold: &FoldData<'_>,
    f: usize,
    n_classes: usize,
    model: &LogisticRegression,
) -> Result<FoldScores> {
    let (d, ytr, yte) = (fold.dim, fold.y_train, fold.y_test);
    let scaler = Standardizer::fit(Design::new(fold.x_train, ytr.len(), d));
    let (str_, ste) = (
        scaler.transform(Design::new(fold.x_train, ytr.len(), d)),
        scaler.transform(Design::new(fold.x_test, yte.len(), d)),
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
        if let (Some(a), Some(ap)) = (metrics::roc_auc(&yc, p), metrics::average_precision(&yc, p))
        {
            aucs.push(a);
            aps.push(ap);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok(FoldScores {
        fold: f,
        n_train: ytr.len(),
        n_test: yte.len(),
        n_test_positive: yte.len(),
        roc_auc: mean(&aucs),
        average_precision: mean(&aps),
        accuracy: accuracy(yte, &pred),
        f1: macro_f1(yte, &pred),
        iterations: fits.iter().map(|m| m.iterations).max().unwrap_or(0),
        converged: fits.iter().all(|m| m.converged),
    })
}

/// Cell vectors, labels, folds and k-means clusters as TSV, for cross-checks with other tools.
fn write_cells_tsv(
    path: &Path,
    data: &CellData,
    x: &[f32],
    d: usize,
    assigned: &CellAssignments,
) -> Result<()> {
    use std::fmt::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let mut out = String::from("cell\tlabel\ttest_fold\tkmeans");
    for j in 0..d {
        write!(out, "\tv{j}")?;
    }
    out.push('\n');
    for (i, cell) in data.matrix.cells.iter().enumerate() {
        write!(
            out,
            "{cell}\t{}\t{}\t{}",
            data.class_names[data.labels[i]], assigned.test_fold[i], assigned.clusters[i]
        )?;
        for v in &x[i * d..(i + 1) * d] {
            write!(out, "\t{v}")?;
        }
        out.push('\n');
    }
    crate::io::write_file(path, out)
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
        let (s, _) = evaluate(&x, d, &y, k, 5, 0, &lr).unwrap();
        assert!(s.probe.accuracy.mean > 0.97 && s.probe.f1.mean > 0.97);
        assert!(s.knn10_accuracy.mean > 0.97);
        assert!(s.kmeans_ari > 0.9 && s.kmeans_nmi > 0.9);
        let noise: Vec<f32> = (0..x.len())
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let (r, _) = evaluate(&noise, d, &y, k, 5, 0, &lr).unwrap();
        assert!(r.probe.accuracy.mean < 0.6, "{}", r.probe.accuracy.mean);
        assert!(r.kmeans_ari < 0.2);
        // Same seed, same answer.
        let (again, _) = evaluate(&x, d, &y, k, 5, 0, &lr).unwrap();
        assert_eq!(again.kmeans_ari, s.kmeans_ari);
        assert_eq!(again.probe.folds, s.probe.folds);
    }

    /// A cell task reads an .h5ad matrix and takes its labels from obs.
    #[test]
    fn cell_tasks_take_h5ad_matrices_and_obs_labels() {
        let spec = crate::eval::task::TaskSpec::from_toml(
            r#"
name = "t"
title = "t"
group = "cell"
main_metric = "accuracy"
[cells]
label_column = "cell_type"
[cells.matrix]
file = "csr_raw.h5ad"
[protocol]
split = "stratified_kfold"
folds = 2
"#,
            "test",
        )
        .unwrap();
        let crate::eval::task::TaskKind::Cell(task) = spec.kind else {
            panic!("a cell task")
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/h5ad");
        let d = load(&task.cells, &dir).unwrap();
        assert_eq!(d.class_names, ["B", "NK", "T"]);
        assert_eq!(d.labels, [0, 2, 2, 1, 0, 2, 1]);
        assert_eq!(d.matrix.n_genes(), 7, "raw by default");
        let mut missing = task.cells.clone();
        missing.label_column = "celltype".into();
        let e = format!("{:#}", load(&missing, &dir).err().unwrap());
        assert!(
            e.contains("no column 'celltype'") && e.contains("cell_type"),
            "{e}"
        );
    }
}
