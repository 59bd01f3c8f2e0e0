//! Probing: fit a classifier on each fold's training examples and score its test examples.
//!
//! Features come from the embedding rows of each example (a gene's vector, or a pair's vectors
//! combined by [`PairFeature`]); each fold standardises with its training rows only, fits L2
//! logistic regression (`logreg`), and scores the held-out rows (`metrics`); folds come from
//! `split`. Results are plain data ([`ProbeScores`]). Nothing here knows about task files.

pub(crate) mod logreg;
pub(crate) mod metrics;
pub(crate) mod split;

pub use logreg::LogisticRegression;
pub use metrics::MeanSd;

use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use self::logreg::{Design, Standardizer};
use super::metric::ProbeMetric;
use crate::io::GeneEmbeddings;

/// Examples ready for a probe: embedding row(s) per example, labels and test folds.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeDataset {
    /// One embedding row per example (gene tasks) or two (pair tasks).
    pub examples: Vec<Vec<usize>>,
    pub labels: Vec<bool>,
    /// Test fold of each example; `-1` = training only (fixed splits).
    pub test_fold: Vec<i64>,
    pub n_folds: usize,
}

impl ProbeDataset {
    /// Writes the examples as TSV (`gene_a [gene_b] label test_fold`, genes as 0-based rows of
    /// the embedding file, `test_fold` -1 = training only) so other tools can rerun the same folds.
    pub(crate) fn write_tsv(&self, path: &std::path::Path) -> Result<()> {
        use std::fmt::Write;
        let pair = self.examples.first().is_some_and(|e| e.len() == 2);
        let mut out = String::from(if pair {
            "gene_a\tgene_b\tlabel\ttest_fold\n"
        } else {
            "gene_a\tlabel\ttest_fold\n"
        });
        for ((ex, &l), &f) in self.examples.iter().zip(&self.labels).zip(&self.test_fold) {
            for g in ex {
                write!(out, "{g}\t")?;
            }
            writeln!(out, "{}\t{f}", l as u8)?;
        }
        crate::io::write_file(path, out)
    }
}

/// How two gene vectors become one pair feature vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PairFeature {
    /// a + b (GenePT's choice; symmetric).
    Sum,
    /// [a, b] (twice as wide; order-sensitive).
    Concat,
    /// a ⊙ b element-wise (symmetric).
    Product,
}

/// Which solver fits the logistic regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// bftkit's fused multi-threaded L-BFGS (default).
    Lbfgs,
    /// The `linfa-logistic` crate (slower; kept as an independent cross-check).
    Linfa,
}

/// Metrics of one fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldScores {
    pub fold: usize,
    pub n_train: usize,
    pub n_test: usize,
    pub n_test_positive: usize,
    pub roc_auc: f64,
    pub average_precision: f64,
    pub accuracy: f64,
    pub f1: f64,
    /// L-BFGS iterations (0 with `--solver linfa`, which does not report them).
    pub iterations: usize,
    pub converged: bool,
}

/// Metrics over all folds (mean and population sd).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeScores {
    pub folds: Vec<FoldScores>,
    pub roc_auc: MeanSd,
    pub average_precision: MeanSd,
    pub accuracy: MeanSd,
    pub f1: MeanSd,
    pub all_converged: bool,
    pub max_iterations: usize,
    pub runtime_s: f64,
}

impl ProbeScores {
    /// Each metric's mean ± population sd over `folds` (at least one), and whether every fold's
    /// fit converged.
    pub(crate) fn from_folds(folds: Vec<FoldScores>, runtime_s: f64) -> Self {
        let summary = |get: fn(&FoldScores) -> f64| {
            MeanSd::of(&folds.iter().map(get).collect::<Vec<_>>()).expect("at least one fold")
        };
        Self {
            roc_auc: summary(|f| f.roc_auc),
            average_precision: summary(|f| f.average_precision),
            accuracy: summary(|f| f.accuracy),
            f1: summary(|f| f.f1),
            all_converged: folds.iter().all(|f| f.converged),
            max_iterations: folds.iter().map(|f| f.iterations).max().unwrap_or(0),
            folds,
            runtime_s,
        }
    }

    /// The mean ± sd of one metric over the folds.
    pub fn metric(&self, metric: ProbeMetric) -> MeanSd {
        match metric {
            ProbeMetric::RocAuc => self.roc_auc,
            ProbeMetric::AveragePrecision => self.average_precision,
            ProbeMetric::Accuracy => self.accuracy,
            ProbeMetric::F1 => self.f1,
        }
    }
}

/// Builds the feature matrix (row-major, one row per example) of a dataset.
pub(crate) fn features(
    ds: &ProbeDataset,
    emb: &GeneEmbeddings,
    pair: PairFeature,
) -> (Vec<f32>, usize) {
    let d = emb.dim;
    let width = match (ds.examples.first().map(Vec::len), pair) {
        (Some(2), PairFeature::Concat) => 2 * d,
        _ => d,
    };
    let mut x = vec![0.0f32; ds.examples.len() * width];
    x.par_chunks_mut(width)
        .zip(&ds.examples)
        .for_each(|(out, ex)| match ex.as_slice() {
            [g] => out.copy_from_slice(emb.row(*g)),
            [a, b] => {
                let (va, vb) = (emb.row(*a), emb.row(*b));
                match pair {
                    PairFeature::Sum => out
                        .iter_mut()
                        .zip(va.iter().zip(vb))
                        .for_each(|(o, (x, y))| *o = x + y),
                    PairFeature::Product => out
                        .iter_mut()
                        .zip(va.iter().zip(vb))
                        .for_each(|(o, (x, y))| *o = x * y),
                    PairFeature::Concat => {
                        out[..d].copy_from_slice(va);
                        out[d..].copy_from_slice(vb);
                    }
                }
            }
            _ => unreachable!("examples hold one or two genes"),
        });
    (x, width)
}

/// Runs every fold of `ds` on `emb` and scores it.
pub(crate) fn run(
    ds: &ProbeDataset,
    emb: &GeneEmbeddings,
    pair: PairFeature,
    model: &LogisticRegression,
    solver: Solver,
) -> Result<ProbeScores> {
    let start = Instant::now();
    model.check()?;
    let (x, width) = features(ds, emb, pair);
    let folds: Vec<FoldScores> = (0..ds.n_folds)
        .into_par_iter()
        .map(|f| run_fold(ds, &x, width, f, model, solver))
        .collect::<Result<_>>()?;
    Ok(ProbeScores::from_folds(
        folds,
        start.elapsed().as_secs_f64(),
    ))
}

fn gather(x: &[f32], width: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&x[r * width..(r + 1) * width]);
    }
    out
}

fn run_fold(
    ds: &ProbeDataset,
    x: &[f32],
    width: usize,
    fold: usize,
    model: &LogisticRegression,
    solver: Solver,
) -> Result<FoldScores> {
    let f = fold as i64;
    let train: Vec<usize> = (0..ds.labels.len())
        .filter(|&i| ds.test_fold[i] != f)
        .collect();
    let test: Vec<usize> = (0..ds.labels.len())
        .filter(|&i| ds.test_fold[i] == f)
        .collect();
    let (x_train, x_test) = (gather(x, width, &train), gather(x, width, &test));
    let y_train: Vec<bool> = train.iter().map(|&i| ds.labels[i]).collect();
    let y_test: Vec<bool> = test.iter().map(|&i| ds.labels[i]).collect();
    let scaler = Standardizer::fit(Design::new(&x_train, train.len(), width));
    let x_train = scaler.transform(Design::new(&x_train, train.len(), width));
    let x_test = scaler.transform(Design::new(&x_test, test.len(), width));
    let train_design = Design::new(&x_train, train.len(), width);
    let fitted = match solver {
        Solver::Lbfgs => model.fit(train_design, &y_train)?,
        Solver::Linfa => logreg::fit_linfa(model, train_design, &y_train)?,
    };
    let probs = fitted.predict_proba(Design::new(&x_test, test.len(), width));
    Ok(FoldScores {
        fold,
        n_train: train.len(),
        n_test: test.len(),
        n_test_positive: y_test.iter().filter(|&&l| l).count(),
        roc_auc: metrics::roc_auc(&y_test, &probs).expect("both classes checked when built"),
        average_precision: metrics::average_precision(&y_test, &probs)
            .expect("positives checked when built"),
        accuracy: metrics::accuracy(&y_test, &probs),
        f1: metrics::f1(&y_test, &probs),
        iterations: fitted.iterations,
        converged: fitted.converged,
    })
}
