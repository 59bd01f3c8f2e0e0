//! Benchmark tasks as data: the TOML schema of `tasks/*.toml` and the loaders that turn a task's
//! files into labelled genes or gene pairs.
//!
//! A task names its files relative to a data folder, the columns that hold gene ids and labels,
//! which label values are the positive and negative class, the split protocol and the published
//! reference numbers. Adding a task needs a TOML file, no Rust. Loaders validate every row and
//! report problems as `file:line: ...`; they do no statistics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::io::table::{ColumnRef, Table};

/// One benchmark task, as written in `tasks/NAME.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// `gene` (one gene per example), `pair` (two genes per example) or `cell` (cells, typed
    /// from an expression matrix and gene embeddings).
    pub group: TaskGroup,
    /// The metric reports sort by (`roc_auc`, `average_precision`, `accuracy`, `f1`).
    #[serde(default = "default_metric")]
    pub main_metric: String,
    /// The labelled examples (the training set, for a fixed split); gene and pair tasks.
    #[serde(default)]
    pub data: Option<LabelSource>,
    /// The expression matrix and cell labels; cell tasks.
    #[serde(default)]
    pub cells: Option<CellSource>,
    /// Perturb-seq counts and each cell's target; perturbation tasks.
    #[serde(default)]
    pub perturbation: Option<super::perturb::PerturbSource>,
    /// RNA and ADT counts, the antibody table and the gating rule; integration tasks.
    #[serde(default)]
    pub integration: Option<super::integration::IntegrationSource>,
    /// Perturbation tasks always leave one perturbation out and need no protocol.
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub reference: Vec<Reference>,
}

fn default_metric() -> String {
    "roc_auc".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskGroup {
    Gene,
    Pair,
    Cell,
    Integration,
    Perturbation,
}

/// A cell task's data: an expression matrix (cells x genes) and a table of cell labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellSource {
    /// Dense CSV/TSV (a row per cell, a header of gene names), MatrixMarket `.mtx[.gz]`, or
    /// AnnData `.h5ad` (its `raw` matrix when present unless `h5ad_raw = false`; labels from
    /// its `obs` when no `labels_file` is given).
    pub matrix: String,
    #[serde(default = "yes")]
    pub h5ad_raw: bool,
    /// For MatrixMarket: gene names, one per line (`genes_column`, 0-based; header skipped when
    /// `names_header`), cell names likewise, and whether the file's rows are genes (10x layout).
    #[serde(default)]
    pub genes_file: Option<String>,
    #[serde(default)]
    pub genes_column: usize,
    #[serde(default)]
    pub cells_file: Option<String>,
    #[serde(default)]
    pub cells_column: usize,
    #[serde(default)]
    pub names_header: bool,
    #[serde(default)]
    pub genes_are_rows: bool,
    /// Cell annotations (CSV/TSV with a header): the cell-id column and the label column. For
    /// an `.h5ad` matrix without `labels_file`, `label_column` names an `obs` column.
    #[serde(default)]
    pub labels_file: Option<String>,
    #[serde(default)]
    pub cell_column: String,
    pub label_column: String,
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
    /// Gene column(s): one for a gene task, two for a pair task.
    pub genes: Vec<ColumnRef>,
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
    Fixed { test: LabelSource },
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

/// A published number to show beside bftkit's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Embedding set the number belongs to, e.g. "GenePT (ada-002, NCBI summaries)".
    pub name: String,
    pub metric: String,
    pub value: f64,
    #[serde(default)]
    pub sd: Option<f64>,
    pub source: String,
}

impl TaskSpec {
    /// Parses and checks one task file.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let spec: TaskSpec =
            toml::from_str(text).with_context(|| format!("{origin}: invalid task file"))?;
        spec.check()
            .with_context(|| format!("{origin}: invalid task file"))?;
        Ok(spec)
    }

    /// The label source of a gene or pair task.
    pub fn label_source(&self) -> Result<&LabelSource> {
        self.data
            .as_ref()
            .with_context(|| format!("task '{}' has no [data] section", self.name))
    }

    fn check(&self) -> Result<()> {
        let want = match self.group {
            TaskGroup::Gene => 1,
            TaskGroup::Pair => 2,
            TaskGroup::Cell => {
                if self.cells.is_none() || self.data.is_some() {
                    bail!("a cell task has a [cells] section and no [data]");
                }
                if !matches!(self.protocol, Protocol::StratifiedKfold { .. }) {
                    bail!("cell tasks use split = \"stratified_kfold\"");
                }
                let c = self.cells.as_ref().expect("checked");
                let mtx = c.matrix.ends_with(".mtx") || c.matrix.ends_with(".mtx.gz");
                if mtx && (c.genes_file.is_none() || c.cells_file.is_none()) {
                    bail!("a MatrixMarket matrix needs genes_file and cells_file");
                }
                if c.labels_file.is_none() && !c.matrix.ends_with(".h5ad") {
                    bail!("a cell task needs labels_file (or an .h5ad matrix with obs labels)");
                }
                if c.labels_file.is_some() && c.cell_column.is_empty() {
                    bail!("labels_file needs cell_column");
                }
                return self.check_common();
            }
            TaskGroup::Integration => {
                if self.integration.is_none()
                    || self.data.is_some()
                    || self.cells.is_some()
                    || self.perturbation.is_some()
                {
                    bail!("an integration task has an [integration] section only");
                }
                let i = self.integration.as_ref().expect("checked");
                let mtx = i.rna_matrix.ends_with(".mtx") || i.rna_matrix.ends_with(".mtx.gz");
                if mtx && (i.rna_genes_file.is_none() || i.rna_cells_file.is_none()) {
                    bail!("a MatrixMarket RNA matrix needs rna_genes_file and rna_cells_file");
                }
                if i.gating.types.len() < 2 {
                    bail!("the gating rule needs at least two cell types");
                }
                let names: Vec<&str> = crate::eval::scib::SCIB_METRICS.to_vec();
                if !names.contains(&self.main_metric.as_str()) {
                    bail!("integration main_metric: one of {}", names.join(", "));
                }
                return Ok(());
            }
            TaskGroup::Perturbation => {
                if self.perturbation.is_none()
                    || self.data.is_some()
                    || self.cells.is_some()
                    || self.integration.is_some()
                {
                    bail!("a perturbation task has a [perturbation] section only");
                }
                if !["pearson_delta", "pearson_delta_top20", "mse"]
                    .contains(&self.main_metric.as_str())
                {
                    bail!("perturbation main_metric: pearson_delta, pearson_delta_top20 or mse");
                }
                return Ok(());
            }
        };
        if self.cells.is_some() || self.perturbation.is_some() || self.integration.is_some() {
            bail!("only cell, integration and perturbation tasks have [cells] / [integration] / [perturbation] sections");
        }
        let mut sources = vec![self.label_source()?];
        if let Protocol::Fixed { test } = &self.protocol {
            sources.push(test);
        }
        for s in sources {
            if s.genes.len() != want {
                bail!(
                    "a {:?} task needs {want} gene column(s), got {}",
                    self.group,
                    s.genes.len()
                );
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
        if self.group == TaskGroup::Gene
            && !matches!(self.protocol, Protocol::StratifiedKfold { .. })
        {
            bail!("gene tasks use split = \"stratified_kfold\"");
        }
        self.check_common()
    }

    fn check_common(&self) -> Result<()> {
        if let Protocol::StratifiedKfold { folds } = self.protocol {
            if folds < 2 {
                bail!("stratified_kfold needs folds >= 2");
            }
        }
        if !["roc_auc", "average_precision", "accuracy", "f1"].contains(&self.main_metric.as_str())
        {
            bail!("unknown main_metric '{}'", self.main_metric);
        }
        Ok(())
    }

    /// Every data file the task reads, relative to the data folder.
    pub fn files(&self) -> Vec<&str> {
        if let Some(i) = &self.integration {
            return std::iter::once(i.rna_matrix.as_str())
                .chain(i.rna_genes_file.as_deref())
                .chain(i.rna_cells_file.as_deref())
                .chain(std::iter::once(i.adt_matrix.as_str()))
                .collect();
        }
        if let Some(p) = &self.perturbation {
            return vec![
                p.counts.as_str(),
                p.genes_file.as_str(),
                p.cells_file.as_str(),
            ];
        }
        if let Some(c) = &self.cells {
            return std::iter::once(c.matrix.as_str())
                .chain(c.genes_file.as_deref())
                .chain(c.cells_file.as_deref())
                .chain(c.labels_file.as_deref())
                .collect();
        }
        let mut sources: Vec<&LabelSource> = self.data.iter().collect();
        if let Protocol::Fixed { test } = &self.protocol {
            sources.push(test);
        }
        sources
            .into_iter()
            .flat_map(|s| std::iter::once(s.file.as_str()).chain(s.label_file.as_deref()))
            .collect()
    }

    /// Whether every data file exists under `data_dir`.
    pub fn data_present(&self, data_dir: &Path) -> bool {
        self.files().iter().all(|f| data_dir.join(f).is_file())
    }
}

/// One labelled example as read from a file: gene id(s), class, the line it came from and, for
/// published folds, its fold (`None` = outside the published cross-validation).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledRow {
    pub genes: Vec<String>,
    pub positive: bool,
    pub fold: Option<usize>,
    pub line: u64,
}

/// Reads the examples of one label source. `fold_column` is read when the protocol has one.
pub fn read_rows(
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
            genes.push(g.to_string());
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

/// The task registry: every task file in a folder, or the set compiled into the binary.
pub struct TaskSet {
    pub tasks: Vec<TaskSpec>,
    pub origin: String,
}

include!(concat!(env!("OUT_DIR"), "/embedded_tasks.rs"));

impl TaskSet {
    /// The tasks shipped in `tasks/` at build time.
    pub fn embedded() -> Result<Self> {
        let tasks = EMBEDDED_TASKS
            .iter()
            .map(|(name, text)| TaskSpec::from_toml(text, &format!("tasks/{name}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            tasks,
            origin: "built-in tasks/".into(),
        })
    }

    /// Every `*.toml` in `dir`, sorted by file name.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot list task folder", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!("{}: no task files (*.toml)", dir.display());
        }
        let tasks = paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("{}: cannot read", p.display()))?;
                TaskSpec::from_toml(&text, &p.display().to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, t) in tasks.iter().enumerate() {
            if let Some(j) = names.insert(&t.name, i) {
                bail!(
                    "task name '{}' is used by both {} and {}",
                    t.name,
                    paths[j].display(),
                    paths[i].display()
                );
            }
        }
        Ok(Self {
            tasks,
            origin: dir.display().to_string(),
        })
    }

    /// The named tasks (`all` selects every one), with an error listing the known names.
    pub fn select(&self, names: &[String]) -> Result<Vec<&TaskSpec>> {
        if names.iter().any(|n| n == "all") {
            return Ok(self.tasks.iter().collect());
        }
        names
            .iter()
            .map(|n| {
                self.tasks.iter().find(|t| &t.name == n).ok_or_else(|| {
                    let known: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
                    anyhow::anyhow!("unknown task '{n}'; known tasks: {}", known.join(", "))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_tasks_parse_and_are_unique() {
        let set = TaskSet::embedded().unwrap();
        assert!(set.tasks.len() >= 12, "{} tasks", set.tasks.len());
        let mut names: Vec<&str> = set.tasks.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), set.tasks.len());
        assert!(set
            .select(&["nope".into()])
            .unwrap_err()
            .to_string()
            .contains("known tasks"));
    }

    #[test]
    fn rejects_inconsistent_specs() {
        let base = r#"
            name = "t"
            title = "T"
            group = "pair"
            [data]
            file = "x.tsv"
            genes = ["a"]
            id_type = "symbol"
            label_column = "label"
            positive = ["1"]
            negative = ["0"]
            [protocol]
            split = "stratified_kfold"
        "#;
        let e = format!("{:#}", TaskSpec::from_toml(base, "t.toml").unwrap_err());
        assert!(e.contains("t.toml") && e.contains("2 gene column"), "{e}");
        let typo = base.replace("id_type", "idtype");
        assert!(TaskSpec::from_toml(&typo, "t.toml").is_err());
    }

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
}
