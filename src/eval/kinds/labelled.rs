//! Gene and pair tasks: labelled genes (one per example) or gene pairs (two), read from
//! delimited files, matched to an embedding set's rows, split by the task's protocol and probed
//! with logistic regression.
//!
//! A task names its file(s) relative to the data folder, the columns that hold gene ids and
//! labels, which label values are the positive and negative class, and the split protocol.
//! Loaders validate every row and report problems as `file:line: ...`; they do no statistics.
//! Genes are matched case-insensitively through the gene id map; a gene labelled in both
//! classes is dropped, repeats are merged, and all of it is counted ([`Coverage`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::shared::{GeneClasses, RunInput, Scored, SetViews, TaskRun};
use crate::error::Error;
use crate::eval::coverage::Coverage;
use crate::eval::metric::ProbeMetric;
use crate::eval::probe::split::stratified_kfold;
use crate::eval::probe::ProbeScores;
use crate::eval::probe::{self, ProbeDataset};
use crate::io::table::{split_joined, ColumnRef, Table};
use crate::io::GeneResolver;

/// A binary probe's outcome on a gene or pair task.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    pub metric: ProbeMetric,
    pub n_folds: usize,
    pub n_positive: usize,
    pub n_negative: usize,
    pub coverage: Coverage,
    pub scores: ProbeScores,
}

/// A gene task (one gene column) or a pair task (two): the `[data]`, `[protocol]` and
/// `main_metric` of its task file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledTask {
    /// The metric reports sort by.
    #[serde(default)]
    pub main_metric: ProbeMetric,
    /// The labelled examples (the training set, for a fixed split).
    pub data: LabelSource,
    #[serde(default)]
    pub protocol: Protocol,
}

impl LabelledTask {
    /// Gene columns per example: 1 for gene tasks, 2 for pair tasks.
    pub fn arity(&self) -> usize {
        match self.data.pair_separator {
            Some(_) => 2,
            None => self.data.genes.len(),
        }
    }

    /// Checks the sources against the task's arity (`1` gene, `2` pair) and protocol.
    pub fn check(&self, arity: usize) -> Result<()> {
        let mut sources = vec![&self.data];
        if let Protocol::Fixed { test } = &self.protocol {
            sources.push(test);
        }
        let kind = if arity == 1 { "Gene" } else { "Pair" };
        for s in sources {
            match &s.pair_separator {
                Some(sep) if arity != 2 || s.genes.len() != 1 || sep.is_empty() => bail!(
                    "pair_separator is for a pair task with one gene column holding both genes"
                ),
                Some(_) => {}
                None if s.genes.len() != arity => bail!(
                    "a {kind} task needs {arity} gene column(s), got {}",
                    s.genes.len()
                ),
                None => {}
            }
            if s.label_column.is_some() == s.label_file.is_some() {
                bail!("give exactly one of label_column and label_file");
            }
            if s.positive.is_empty() || s.negative.is_empty() {
                bail!("positive and negative label values must both be listed");
            }
            if s.positive.iter().any(|p| s.negative.contains(p)) {
                bail!("a label value is listed as both positive and negative");
            }
        }
        if arity == 1 && !matches!(self.protocol, Protocol::StratifiedKfold { .. }) {
            bail!("gene tasks use split = \"stratified_kfold\"");
        }
        self.protocol.check()
    }

    /// Every data file the task reads, relative to the data folder.
    pub fn files(&self) -> Vec<&str> {
        let mut sources = vec![&self.data];
        if let Protocol::Fixed { test } = &self.protocol {
            sources.push(test);
        }
        sources
            .into_iter()
            .flat_map(|s| std::iter::once(s.file.as_str()).chain(s.label_file.as_deref()))
            .collect()
    }

    /// Every gene id the task's examples name (those of a fixed split's test file too), each
    /// once, in file order: what a model must describe for the task to run on its profiles.
    pub fn gene_ids(&self, data_dir: &Path) -> Result<Vec<String>> {
        let mut sources = vec![&self.data];
        if let Protocol::Fixed { test } = &self.protocol {
            sources.push(test);
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for source in sources {
            for row in read_rows(source, data_dir, None)? {
                for g in row.genes {
                    if seen.insert(g.clone()) {
                        out.push(g);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The class names, positive first (for colouring layouts).
    pub fn class_names(&self) -> Vec<String> {
        let name = |v: &[String], d: &str| {
            if v.is_empty() {
                d.to_string()
            } else {
                v.join(" / ")
            }
        };
        vec![
            name(&self.data.positive, "positive"),
            name(&self.data.negative, "negative"),
        ]
    }
}

/// Which kind of identifier a task's gene column holds (documentation and checks; the resolver
/// accepts any kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdType {
    Symbol,
    Ensembl,
    Entrez,
}

/// Where labelled examples come from: a delimited file, its gene column(s) and its labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSource {
    /// Path relative to the data folder.
    pub file: String,
    #[serde(default = "yes")]
    pub header: bool,
    /// `tab` (default; `comma` for .csv files), `comma` or `space`.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Gene column(s): one for a gene task, two for a pair task (or one with `pair_separator`).
    pub genes: Vec<ColumnRef>,
    /// For a pair task whose one gene column holds both genes (e.g. `KLF1+MAP2K6`): the text
    /// between them. A value that does not split into two non-empty genes is an error.
    #[serde(default)]
    pub pair_separator: Option<String>,
    pub id_type: IdType,
    /// Label column with the values of each class...
    #[serde(default)]
    pub label_column: Option<ColumnRef>,
    /// ...or a line-aligned file of labels (Gene2vec's `*_label.txt`).
    #[serde(default)]
    pub label_file: Option<String>,
    pub positive: Vec<String>,
    pub negative: Vec<String>,
    /// Keep only rows whose `column` equals `value` (for long tables holding many tasks).
    #[serde(default)]
    pub filter: Option<RowFilter>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowFilter {
    pub column: ColumnRef,
    pub value: String,
}

/// How examples are split into training and test sets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "split", rename_all = "snake_case", deny_unknown_fields)]
pub enum Protocol {
    /// Seeded stratified k-fold cross-validation (`--folds` overrides `folds`).
    StratifiedKfold {
        #[serde(default = "five")]
        folds: usize,
    },
    /// A fixed train/test split: `data` trains, `test` tests.
    Fixed { test: Box<LabelSource> },
    /// Published folds: `column` holds each row's test fold (0-based); blank rows are outside the
    /// published cross-validation and are excluded (and counted).
    FoldColumn { column: ColumnRef },
}

fn five() -> usize {
    5
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol::StratifiedKfold { folds: 5 }
    }
}

impl Protocol {
    fn check(&self) -> Result<()> {
        if let Protocol::StratifiedKfold { folds } = self {
            if *folds < 2 {
                bail!("stratified_kfold needs folds >= 2");
            }
        }
        Ok(())
    }

    /// How the protocol is described in results.
    fn describe(&self, n_folds: usize, seed: u64) -> String {
        match self {
            Protocol::StratifiedKfold { .. } => {
                format!("stratified {n_folds}-fold CV, seed {seed}")
            }
            Protocol::Fixed { .. } => "fixed train/test split".to_string(),
            Protocol::FoldColumn { .. } => format!("published {n_folds}-fold split"),
        }
    }
}

/// One labelled example as read from a file: gene id(s), class, the line it came from and, for
/// published folds, its fold (`None` = outside the published cross-validation).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LabelledRow {
    pub genes: Vec<String>,
    pub positive: bool,
    pub fold: Option<usize>,
    pub line: u64,
}

/// Reads the examples of one label source. `fold_column` is read when the protocol has one.
pub(crate) fn read_rows(
    source: &LabelSource,
    data_dir: &Path,
    fold_column: Option<&ColumnRef>,
) -> Result<Vec<LabelledRow>> {
    let path = data_dir.join(&source.file);
    if !path.is_file() {
        bail!(
            "{}: task data file not found (is the data folder right? use --data DIR or BFTKIT_DATA)",
            path.display()
        );
    }
    let delimiter = match source.delimiter.as_deref() {
        None if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv")) =>
        {
            b','
        }
        None | Some("tab") => b'\t',
        Some("comma") => b',',
        Some("space") => b' ',
        Some(other) => bail!("unknown delimiter '{other}' (use tab, comma or space)"),
    };
    let table = Table::read_with(&path, source.header, delimiter)?;
    let gene_cols: Vec<usize> = source
        .genes
        .iter()
        .map(|c| table.column(c))
        .collect::<Result<_>>()?;
    let filter = match &source.filter {
        Some(f) => Some((table.column(&f.column)?, f.value.as_str())),
        None => None,
    };
    let fold_col = fold_column.map(|c| table.column(c)).transpose()?;
    let labels: Vec<(u64, String)> = match (&source.label_column, &source.label_file) {
        (Some(c), _) => {
            let col = table.column(c)?;
            table
                .rows
                .iter()
                .map(|r| Ok((r.0, table.field(r, col)?.to_string())))
                .collect::<Result<_>>()?
        }
        (None, Some(f)) => read_label_file(&data_dir.join(f), &table)?,
        (None, None) => unreachable!("checked when the task was parsed"),
    };
    let file = path.display();
    let mut out = Vec::with_capacity(table.rows.len());
    for (row, (label_line, label)) in table.rows.iter().zip(labels) {
        if let Some((col, value)) = filter {
            if table.field(row, col)? != value {
                continue;
            }
        }
        let positive = if source.positive.contains(&label) {
            true
        } else if source.negative.contains(&label) {
            false
        } else {
            bail!(
                "{}:{label_line}: label '{label}' is neither positive ({}) nor negative ({})",
                match &source.label_file {
                    Some(f) => data_dir.join(f).display().to_string(),
                    None => file.to_string(),
                },
                source.positive.join(", "),
                source.negative.join(", ")
            );
        };
        let mut genes = Vec::with_capacity(gene_cols.len());
        for &c in &gene_cols {
            let g = table.field(row, c)?;
            match &source.pair_separator {
                Some(sep) => match split_joined(g, sep) {
                    Some(pair) if pair.len() == 2 => {
                        genes.extend(pair.iter().map(|x| x.to_string()))
                    }
                    _ => bail!("{file}:{}: '{g}' is not two genes joined by '{sep}'", row.0),
                },
                None => genes.push(g.to_string()),
            }
        }
        let fold = match fold_col {
            None => None,
            Some(c) => {
                let v = table.field(row, c)?;
                if v.is_empty() {
                    None
                } else {
                    Some(v.parse::<usize>().map_err(|_| {
                        anyhow::anyhow!("{file}:{}: fold '{v}' is not a fold number", row.0)
                    })?)
                }
            }
        };
        out.push(LabelledRow {
            genes,
            positive,
            fold,
            line: row.0,
        });
    }
    if out.is_empty() {
        bail!("{file}: no rows left for this task (check the filter)");
    }
    Ok(out)
}

fn read_label_file(path: &Path, table: &Table) -> Result<Vec<(u64, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read label file", path.display()))?;
    let labels: Vec<(u64, String)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i as u64 + 1, l.trim().to_string()))
        .collect();
    if labels.len() != table.rows.len() {
        bail!(
            "{}: {} labels but {} has {} rows (files must be line-aligned)",
            path.display(),
            labels.len(),
            table.path.display(),
            table.rows.len()
        );
    }
    Ok(labels)
}

/// The task's labelled rows (training rows first, then a fixed split's test rows) and which of
/// them are test rows.
fn read_task_rows(task: &LabelledTask, data_dir: &Path) -> Result<(Vec<LabelledRow>, Vec<bool>)> {
    let fold_col = match &task.protocol {
        Protocol::FoldColumn { column } => Some(column),
        _ => None,
    };
    let mut rows = read_rows(&task.data, data_dir, fold_col)?;
    let mut fixed_test = vec![false; rows.len()];
    if let Protocol::Fixed { test } = &task.protocol {
        let test_rows = read_rows(test, data_dir, None)?;
        fixed_test.extend(std::iter::repeat_n(true, test_rows.len()));
        rows.extend(test_rows);
    }
    Ok((rows, fixed_test))
}

/// Builds the dataset of the task's `rows` against the embedding rows `resolver` knows.
/// `folds` and `seed` apply to the stratified k-fold protocol.
fn build(
    task: &LabelledTask,
    (rows, fixed_test): &(Vec<LabelledRow>, Vec<bool>),
    resolver: &GeneResolver<'_>,
    folds: Option<usize>,
    seed: u64,
) -> Result<(ProbeDataset, Coverage)> {
    let fold_col = matches!(task.protocol, Protocol::FoldColumn { .. });
    let mut resolved: HashMap<String, Option<usize>> = HashMap::new();
    for r in rows {
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
    let mut ds = match task.arity() {
        1 => gene_examples(rows, &lookup, &mut coverage),
        _ => pair_examples(rows, fixed_test, fold_col, &lookup, &mut coverage),
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
                return Err(Error::too_few(format!(
                    "{n_pos} positive and {n_neg} negative examples have embeddings; \
                     {k}-fold cross-validation needs at least {k} of each"
                )));
            }
            let assignment = stratified_kfold(&ds.labels, k, seed);
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
            return Err(Error::too_few(format!(
                "fold {f} lacks a class after matching genes to embeddings \
                 (train {}+/{}-, test {}+/{}-)",
                tr[1], tr[0], te[1], te[0]
            )));
        }
    }
    Ok((ds, coverage))
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
    ProbeDataset::default()
}

fn gene_classes_of(ds: &ProbeDataset, n_rows: usize) -> GeneClasses {
    let mut classes = vec![None; n_rows];
    for (ex, &label) in ds.examples.iter().zip(&ds.labels) {
        if let [g] = ex.as_slice() {
            classes[*g] = Some(if label { 0 } else { 1 });
        }
    }
    classes
}

/// The classes of a gene task for every gene of one set, read from its files (for a layout
/// coloured by a task the probe did not run); `None` when the task cannot be built on it.
pub(crate) fn gene_classes(
    task: &LabelledTask,
    input: &RunInput<'_>,
    set: &crate::eval::sets::EmbeddingSet,
) -> Option<GeneClasses> {
    if task.arity() != 1 {
        return None;
    }
    let rows = read_task_rows(task, input.data_dir).ok()?;
    let resolver = input.resolver(&set.embeddings);
    let (ds, _) = build(task, &rows, &resolver, None, input.seed).ok()?;
    Some(gene_classes_of(&ds, set.embeddings.len()))
}

/// Probes every set. Sets keyed by the same gene ids (the random baseline and its source) share
/// one dataset: resolution and folds depend only on the ids. A set left with too few examples is
/// skipped (listed) when the run allows it.
pub(crate) fn run(
    name: &str,
    task: &LabelledTask,
    input: &RunInput<'_>,
) -> Result<TaskRun<ProbeOutcome>> {
    let rows = read_task_rows(task, input.data_dir)?;
    let mut out = TaskRun::default();
    let mut built: Vec<(usize, ProbeDataset, Coverage)> = Vec::new();
    for (k, set) in input.sets.iter().enumerate() {
        let same_ids = built
            .iter()
            .position(|(j, _, _)| input.sets[*j].embeddings.ids == set.embeddings.ids);
        let idx = match same_ids {
            Some(i) => i,
            None => {
                let resolver = input.resolver(&set.embeddings);
                match build(task, &rows, &resolver, input.folds, input.seed) {
                    Ok((ds, cov)) => built.push((k, ds, cov)),
                    Err(e) if input.skip_unavailable && Error::of(&e).is_some() => {
                        out.skipped.push(format!("on '{}': {e}", set.name));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                built.len() - 1
            }
        };
        let (_, ds, coverage) = &built[idx];
        if let (0, Some(dir)) = (k, input.export_folds) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            ds.write_tsv(&dir.join(format!("{name}.tsv")))?;
        }
        let pair_feature = input.pair_feature;
        let scores = probe::run(ds, &set.embeddings, pair_feature, input.model, input.solver)
            .with_context(|| format!("task '{name}' on '{}'", set.name))?;
        let n_positive = ds.labels.iter().filter(|&&l| l).count();
        let probe = ProbeOutcome {
            metric: task.main_metric,
            n_folds: ds.n_folds,
            n_positive,
            n_negative: ds.labels.len() - n_positive,
            coverage: coverage.clone(),
            scores,
        };
        if input.keep_views && task.arity() == 1 {
            out.views.push(SetViews::GeneClasses {
                set: k,
                classes: gene_classes_of(ds, set.embeddings.len()),
            });
        }
        out.scored.push(Scored {
            set: k,
            protocol: task.protocol.describe(ds.n_folds, input.seed),
            outcome: probe,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_with_filter_and_bad_labels() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("l.tsv"),
            "task\tgene\tclass\nA\tG1\tpos\nB\tG2\tpos\nA\tG3\tneg\n",
        )
        .unwrap();
        let src: LabelSource = toml::from_str(
            r#"file = "l.tsv"
               genes = ["gene"]
               id_type = "symbol"
               label_column = "class"
               positive = ["pos"]
               negative = ["neg"]
               filter = { column = "task", value = "A" }"#,
        )
        .unwrap();
        let rows = read_rows(&src, dir.path(), None).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[1].genes[0].as_str(), rows[1].positive, rows[1].line),
            ("G3", false, 4)
        );
        std::fs::write(
            dir.path().join("l.tsv"),
            "task\tgene\tclass\nA\tG1\tmaybe\n",
        )
        .unwrap();
        let e = format!("{:#}", read_rows(&src, dir.path(), None).unwrap_err());
        assert!(e.contains("l.tsv:2") && e.contains("'maybe'"), "{e}");
        std::fs::write(dir.path().join("l.tsv"), "task\tgene\tclass\nA\tG1\n").unwrap();
        let e = format!("{:#}", read_rows(&src, dir.path(), None).unwrap_err());
        assert!(e.contains("l.tsv:2") && e.contains("2 fields"), "{e}");
    }

    /// One column holding both genes of a pair: split into two, and anything else refused with
    /// its line; the separator is for pair tasks only.
    #[test]
    fn a_pair_column_splits_into_two_genes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.csv"),
            "pair,type\nKLF1+MAP2K6,synergy\nSET+KLF1,epistasis\n",
        )
        .unwrap();
        let src: LabelSource = toml::from_str(
            r#"file = "p.csv"
               genes = ["pair"]
               pair_separator = "+"
               id_type = "symbol"
               label_column = "type"
               positive = ["synergy"]
               negative = ["epistasis"]"#,
        )
        .unwrap();
        let rows = read_rows(&src, dir.path(), None).unwrap();
        assert_eq!(rows[0].genes, ["KLF1", "MAP2K6"]);
        assert_eq!(
            (rows[1].genes[1].as_str(), rows[1].positive),
            ("KLF1", false)
        );
        for bad in ["KLF1", "KLF1+", "A+B+C"] {
            std::fs::write(
                dir.path().join("p.csv"),
                format!("pair,type\nKLF1+MAP2K6,synergy\n{bad},epistasis\n"),
            )
            .unwrap();
            let e = format!("{:#}", read_rows(&src, dir.path(), None).unwrap_err());
            assert!(
                e.contains(&format!("p.csv:3: '{bad}' is not two genes joined by '+'")),
                "{e}"
            );
        }
        let task = |group_arity: usize| {
            LabelledTask {
                main_metric: ProbeMetric::default(),
                data: src.clone(),
                protocol: Protocol::default(),
            }
            .check(group_arity)
        };
        assert!(task(2).is_ok());
        assert!(task(1)
            .unwrap_err()
            .to_string()
            .contains("pair_separator is for a pair task"));
    }
}
