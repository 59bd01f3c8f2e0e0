//! Turns a task's labelled rows into a probing dataset over one embedding set's rows: genes are
//! resolved to embedding rows, conflicts and duplicates are settled, coverage is counted, and every
//! example gets its test fold.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::split;
use super::task::{read_rows, LabelledRow, Protocol, TaskGroup, TaskSpec};
use crate::io::GeneResolver;

/// Examples ready for a probe: embedding row(s) per example, labels and test folds.
#[derive(Debug, Clone)]
pub struct ProbeDataset {
    /// One embedding row per example (gene tasks) or two (pair tasks).
    pub examples: Vec<Vec<usize>>,
    pub labels: Vec<bool>,
    /// Test fold of each example; `-1` = training only (fixed splits).
    pub test_fold: Vec<i64>,
    pub n_folds: usize,
    pub coverage: Coverage,
}

/// How many of a task's labelled items found embeddings, per class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Genes (gene tasks) or pairs (pair tasks) labelled positive: in the task, and with embeddings.
    pub positive_total: usize,
    pub positive_matched: usize,
    pub negative_total: usize,
    pub negative_matched: usize,
    /// Distinct genes named by the task and how many of them have an embedding.
    pub genes_total: usize,
    pub genes_matched: usize,
    /// Items labelled in both classes (dropped).
    pub conflicts_dropped: usize,
    /// Repeated items merged into one example (same gene listed twice, or two ids of one gene).
    pub duplicates_merged: usize,
    /// Rows outside the published folds (fold_column protocol; excluded).
    pub outside_folds: usize,
    /// Task genes with no embedding, sorted.
    pub missing_genes: Vec<String>,
}

impl ProbeDataset {
    /// Writes the examples as TSV (`gene_a [gene_b] label test_fold`, genes as 0-based rows of
    /// the embedding file, `test_fold` -1 = training only) so other tools can rerun the same folds.
    pub fn write_tsv(&self, path: &Path) -> Result<()> {
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
        std::fs::write(path, out).with_context(|| format!("{}: cannot write", path.display()))
    }
}

impl Coverage {
    /// Fraction of labelled items (both classes) that are in the dataset.
    pub fn fraction(&self) -> f64 {
        let total = self.positive_total + self.negative_total;
        if total == 0 {
            0.0
        } else {
            (self.positive_matched + self.negative_matched) as f64 / total as f64
        }
    }
}

/// A task left with too few matched examples (or a fold without one class) to be scored: with
/// `--task all` such a task is skipped and listed rather than failing the run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TooFewExamples(pub String);

/// Builds the dataset of `task` against the embedding rows `resolver` knows. `folds` and `seed`
/// apply to the stratified k-fold protocol.
pub fn build(
    task: &TaskSpec,
    data_dir: &Path,
    resolver: &GeneResolver<'_>,
    folds: Option<usize>,
    seed: u64,
) -> Result<ProbeDataset> {
    let fold_col = match &task.protocol {
        Protocol::FoldColumn { column } => Some(column),
        _ => None,
    };
    let mut rows = read_rows(task.label_source()?, data_dir, fold_col)?;
    let mut fixed_test = vec![false; rows.len()];
    if let Protocol::Fixed { test } = &task.protocol {
        let test_rows = read_rows(test, data_dir, None)?;
        fixed_test.extend(std::iter::repeat_n(true, test_rows.len()));
        rows.extend(test_rows);
    }
    let mut resolved: HashMap<String, Option<usize>> = HashMap::new();
    for r in &rows {
        for g in &r.genes {
            resolved
                .entry(g.to_ascii_uppercase())
                .or_insert_with(|| resolver.resolve(g));
        }
    }
    let mut coverage = Coverage {
        genes_total: resolved.len(),
        genes_matched: resolved.values().filter(|v| v.is_some()).count(),
        missing_genes: {
            let mut m: Vec<String> = resolved
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            m.sort();
            m
        },
        ..Coverage::default()
    };
    let lookup = |g: &str| resolved[&g.to_ascii_uppercase()];
    let mut ds = match task.group {
        TaskGroup::Cell | TaskGroup::Integration | TaskGroup::Perturbation => {
            bail!("task '{}' is not a gene or pair task", task.name)
        }
        TaskGroup::Gene => gene_examples(&rows, &lookup, &mut coverage),
        TaskGroup::Pair => pair_examples(
            &rows,
            &fixed_test,
            fold_col.is_some(),
            &lookup,
            &mut coverage,
        ),
    };
    let n_pos = ds.labels.iter().filter(|&&l| l).count();
    let n_neg = ds.labels.len() - n_pos;
    match &task.protocol {
        Protocol::StratifiedKfold { folds: default } => {
            let k = folds.unwrap_or(*default);
            if k < 2 {
                bail!("--folds must be at least 2");
            }
            if n_pos < k || n_neg < k {
                return Err(TooFewExamples(format!(
                    "{n_pos} positive and {n_neg} negative examples have embeddings; \
                     {k}-fold cross-validation needs at least {k} of each"
                ))
                .into());
            }
            let assignment = split::stratified_kfold(&ds.labels, k, seed);
            for (f, fold) in assignment.iter().enumerate() {
                for &i in &fold.test {
                    ds.test_fold[i] = f as i64;
                }
            }
            ds.n_folds = k;
        }
        Protocol::Fixed { .. } => ds.n_folds = 1,
        Protocol::FoldColumn { .. } => {
            ds.n_folds = ds.test_fold.iter().max().map_or(0, |&m| m as usize + 1);
        }
    }
    for f in 0..ds.n_folds as i64 {
        let (mut tr, mut te) = ([0usize; 2], [0usize; 2]);
        for (l, &tf) in ds.labels.iter().zip(&ds.test_fold) {
            if tf == f {
                te[*l as usize] += 1;
            } else {
                tr[*l as usize] += 1;
            }
        }
        if tr.contains(&0) || te.contains(&0) {
            return Err(TooFewExamples(format!(
                "fold {f} lacks a class after matching genes to embeddings \
                 (train {}+/{}-, test {}+/{}-)",
                tr[1], tr[0], te[1], te[0]
            ))
            .into());
        }
    }
    ds.coverage = coverage;
    Ok(ds)
}

fn gene_examples(
    rows: &[LabelledRow],
    lookup: &dyn Fn(&str) -> Option<usize>,
    cov: &mut Coverage,
) -> ProbeDataset {
    // Distinct task genes per class (case-insensitive), then settle genes in both classes.
    let mut class_of: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for r in rows {
        let e = class_of.entry(r.genes[0].to_ascii_uppercase()).or_default();
        if r.positive {
            if e.0 {
                cov.duplicates_merged += 1;
            }
            e.0 = true;
        } else {
            if e.1 {
                cov.duplicates_merged += 1;
            }
            e.1 = true;
        }
    }
    // Embedding row -> label, merging two ids of one gene and dropping rows claimed by both.
    let mut by_row: BTreeMap<usize, Option<bool>> = BTreeMap::new();
    for (gene, &(pos, neg)) in &class_of {
        if pos && neg {
            cov.conflicts_dropped += 1;
            continue;
        }
        if pos {
            cov.positive_total += 1;
        } else {
            cov.negative_total += 1;
        }
        let Some(row) = lookup(gene) else { continue };
        match by_row.get(&row) {
            None => {
                by_row.insert(row, Some(pos));
            }
            Some(Some(prev)) if *prev == pos => cov.duplicates_merged += 1,
            Some(_) => {
                cov.conflicts_dropped += 1;
                by_row.insert(row, None);
            }
        }
    }
    let mut ds = empty();
    for (row, label) in by_row {
        if let Some(l) = label {
            ds.examples.push(vec![row]);
            ds.labels.push(l);
            ds.test_fold.push(-1);
        }
    }
    cov.positive_matched = ds.labels.iter().filter(|&&l| l).count();
    cov.negative_matched = ds.labels.len() - cov.positive_matched;
    ds
}

fn pair_examples(
    rows: &[LabelledRow],
    fixed_test: &[bool],
    published_folds: bool,
    lookup: &dyn Fn(&str) -> Option<usize>,
    cov: &mut Coverage,
) -> ProbeDataset {
    let mut ds = empty();
    for (r, &is_test) in rows.iter().zip(fixed_test) {
        let fold = if is_test {
            0
        } else {
            match r.fold {
                Some(f) => f as i64,
                None if published_folds => {
                    cov.outside_folds += 1;
                    continue;
                }
                None => -1,
            }
        };
        if r.positive {
            cov.positive_total += 1;
        } else {
            cov.negative_total += 1;
        }
        let (Some(a), Some(b)) = (lookup(&r.genes[0]), lookup(&r.genes[1])) else {
            continue;
        };
        if r.positive {
            cov.positive_matched += 1;
        } else {
            cov.negative_matched += 1;
        }
        ds.examples.push(vec![a, b]);
        ds.labels.push(r.positive);
        ds.test_fold.push(fold);
    }
    ds
}

fn empty() -> ProbeDataset {
    ProbeDataset {
        examples: Vec::new(),
        labels: Vec::new(),
        test_fold: Vec::new(),
        n_folds: 0,
        coverage: Coverage::default(),
    }
}
