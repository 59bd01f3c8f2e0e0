//! RNA/ADT integration tasks: each cell gets an RNA vector (GenePT-w over its log-normalised
//! genes) and an ADT vector (the same weighting over its log-normalised antibodies, each antibody
//! standing for the mean embedding of its target genes); modality is the batch, and the scIB
//! metrics (`eval::scib`) score how well the two mix while the cell types stay apart. Cell types
//! come from a protein-marker gating rule in the task file. docs/tasks.md has the protocol.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::matrix::MatrixSource;
use super::shared::{Colouring, PointCloud, RunInput, Scored, SetViews, TaskRun};
use crate::embed::cells::{genept_w, CellCoverage};
use crate::error::Error;
use crate::eval::coverage::Coverage;
use crate::eval::metric::ScibMetric;
use crate::eval::scib::{self, ScibInput, ScibScores};
use crate::io::matrix::ExprMatrix;
use crate::io::{GeneEmbeddings, GeneResolver};

/// An integration task's `[integration]` section and `main_metric`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationTask {
    #[serde(default)]
    pub main_metric: ScibMetric,
    pub integration: IntegrationSource,
}

impl IntegrationTask {
    pub fn check(&self) -> Result<()> {
        let src = &self.integration;
        src.rna.check()?;
        src.adt.check()?;
        match (&src.gating, &src.labels) {
            (Some(g), None) => {
                if g.types.len() < 2 {
                    bail!("the gating rule needs at least two cell types");
                }
                if let Some(t) = g
                    .types
                    .iter()
                    .find(|t| t.all.is_empty() && t.any.is_empty())
                {
                    bail!("gating type '{}' needs at least one condition", t.name);
                }
            }
            (None, Some(_)) if !src.rna.is_h5ad() => {
                bail!("[integration.labels] reads the RNA file's obs: it must be an .h5ad")
            }
            (None, Some(_)) => {}
            _ => {
                bail!("give the cell types either as [integration.gating] or [integration.labels]")
            }
        }
        if src.second_batch.is_some() && !src.rna.is_h5ad() {
            bail!("[integration.second_batch] reads the RNA file's obs: it must be an .h5ad")
        }
        Ok(())
    }

    /// Every data file the task reads, relative to the data folder.
    pub fn files(&self) -> Vec<&str> {
        let mut f = self.integration.rna.files();
        f.extend(self.integration.adt.files());
        f
    }
}

/// An integration task's outcome on one set.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationOutcome {
    pub metric: ScibMetric,
    /// Cells scored (each in both modalities).
    pub cells: usize,
    pub coverage: Coverage,
    pub scores: ScibScores,
    /// The RNA matrix's genes with an embedding, and the expression mass they carry.
    pub cell_coverage: CellCoverage,
    /// The metrics with the second batch key as batch, when the task names one.
    pub second_batch: Option<SecondBatch>,
}

/// scIB metrics with another batch key: the obs column and the scores.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondBatch {
    pub column: String,
    pub scores: ScibScores,
}

impl IntegrationOutcome {
    /// Every metric by name; the second batch key's as `COLUMN.metric`.
    pub fn named(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .scores
            .named()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        if let Some(b) = &self.second_batch {
            v.extend(
                b.scores
                    .named()
                    .into_iter()
                    .map(|(k, x)| (format!("{}.{k}", b.column), x)),
            );
        }
        v
    }
}

/// The task on every set: RNA and ADT GenePT-w vectors, modality as batch, scIB metrics.
pub(crate) fn run(
    name: &str,
    task: &IntegrationTask,
    input: &RunInput<'_>,
) -> Result<TaskRun<IntegrationOutcome>> {
    let data = load(&task.integration, input.data_dir)?;
    let g = &data.gating;
    let how = match &task.integration.labels {
        Some(l) => format!("labelled by the published obs column '{}'", l.column),
        None => "gated".to_string(),
    };
    let gated = format!(
        "{} cells in both modalities {how} into {} ({}); unassigned: {} of no type, {} of \
         several; cells in one matrix only: {} RNA, {} ADT",
        data.labels.len(),
        data.class_names.len(),
        g.per_type
            .iter()
            .map(|(t, c)| format!("{t} {c}"))
            .collect::<Vec<_>>()
            .join(", "),
        g.unassigned_no_type,
        g.unassigned_several_types,
        data.rna_only,
        data.adt_only
    );
    let second = match &data.second_batch {
        Some((column, _, names)) => format!(
            "; the metrics again with obs '{column}' ({}) as batch, named {column}.<metric>",
            names.join(", ")
        ),
        None => String::new(),
    };
    let mut out = TaskRun::default();
    for (s, set) in input.sets.iter().enumerate() {
        let resolver = input.resolver(&set.embeddings);
        let (ev, scores, second_batch) = evaluate(&data, &set.embeddings, &resolver, input.seed)
            .with_context(|| format!("on '{}'", set.name))?;
        if let (0, Some(dir)) = (s, input.export_folds) {
            export(dir, name, &data, &ev, set.embeddings.dim)?;
        }
        let n = ev.cells.len();
        out.scored.push(Scored {
            set: s,
            protocol: format!(
                "{gated}; {} without an RNA or ADT vector (left out); RNA and ADT GenePT-w vectors (ADT: {} of {} mapped antibodies with an \
                 embedded target{}, {:.1}% of ADT mass), modality as batch; scIB metrics as \
                 scib-metrics (exact neighbours; k-means seed {}); Total = 0.6 Bio + 0.4 Batch{second}",
                ev.cells_without_vector,
                ev.antibodies_embedded,
                ev.antibodies_mapped,
                if ev.antibodies_missing.is_empty() {
                    String::new()
                } else {
                    format!("; none for {}", ev.antibodies_missing.join(", "))
                },
                100.0 * ev.adt_coverage.mass_fraction,
                input.seed
            ),
            outcome: IntegrationOutcome {
                metric: task.main_metric,
                cells: n,
                // Cells of the data (gated or not), and those scored.
                coverage: Coverage::of_cells(
                    data.labels.len() + g.unassigned_no_type + g.unassigned_several_types,
                    n,
                    &ev.rna_coverage,
                ),
                scores,
                cell_coverage: ev.rna_coverage.clone(),
                second_batch,
            },
        });
        if input.keep_views {
            out.views.push(SetViews::Points(layout_points(
                name,
                s,
                &data,
                ev,
                set.embeddings.dim,
            )));
        }
    }
    Ok(out)
}

/// Both modalities of the scored cells, coloured by modality and by gated type.
fn layout_points(
    name: &str,
    set: usize,
    data: &IntegrationData,
    ev: IntegrationVectors,
    dim: usize,
) -> PointCloud {
    let cell_names = &data.rna.cells;
    let names: Vec<String> = ["RNA", "ADT"]
        .iter()
        .flat_map(|m| {
            ev.cells
                .iter()
                .map(move |&i| format!("{} {m}", cell_names[i]))
        })
        .collect();
    PointCloud {
        set,
        names,
        x: ev.x,
        dim,
        colourings: vec![
            Colouring {
                label: format!("{name} (modality)"),
                class_names: vec!["RNA".into(), "ADT".into()],
                classes: ev.batches.iter().map(|&b| Some(b)).collect(),
            },
            Colouring {
                label: format!("{name} (gated type)"),
                class_names: data.class_names.clone(),
                classes: ev.labels.iter().map(|&l| Some(l)).collect(),
            },
        ],
    }
}

/// The RNA/ADT integration task's data: the RNA and ADT counts of the same cells (ADT columns
/// are antibodies), the curated antibody → target gene table and the protein-marker gating rule
/// that labels the cells.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSource {
    pub rna: MatrixSource,
    pub adt: MatrixSource,
    /// Antibody → target gene symbols. Every antibody of the ADT matrix is either here or in
    /// `unmapped`; an antibody with several targets stands for the mean of their embeddings.
    pub antibodies: BTreeMap<String, Vec<String>>,
    /// Antibodies without a protein-coding target (isotype controls, glycolipids), and why.
    #[serde(default)]
    pub unmapped: BTreeMap<String, String>,
    /// How many of the most variable genes the unintegrated representation keeps.
    #[serde(default = "two_thousand")]
    pub pre_genes: usize,
    /// Cell types from a protein-marker gating rule...
    #[serde(default)]
    pub gating: Option<Gating>,
    /// ...or published ones: a column of the RNA file's `obs` (an `.h5ad`); cells with an
    /// empty value are left out and counted.
    #[serde(default)]
    pub labels: Option<ObsLabels>,
    /// A second batch key (e.g. the sequencing batch): an obs column of the RNA file; the scIB
    /// metrics are computed again with it as the batch of both modalities' rows.
    #[serde(default)]
    pub second_batch: Option<ObsLabels>,
}

/// Published cell types: the `obs` column that holds them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObsLabels {
    pub column: String,
}

fn two_thousand() -> usize {
    2000
}

/// Cell types from protein markers: each antibody's counts are CLR-transformed per cell
/// (`log1p(x / g)`, g the geometric mean of `1 + x` over the cell's antibodies, as Seurat's
/// CLR); a cell is of a type when every `all` condition holds and, if `any` is given, one of
/// those; a cell of no type or of several stays unassigned and is left out of the metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gating {
    pub types: Vec<GateType>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateType {
    pub name: String,
    /// Conditions such as `"CD4 > 2"` or `"CD8 <= 2"` (antibody, comparison, CLR value).
    #[serde(default)]
    pub all: Vec<Condition>,
    #[serde(default)]
    pub any: Vec<Condition>,
}

/// How a gating condition compares a cell's CLR value with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Comparison {
    /// Longest symbols first, so `>=` is not read as `>`.
    const ALL: [(Comparison, &'static str); 4] = [
        (Comparison::Ge, ">="),
        (Comparison::Le, "<="),
        (Comparison::Gt, ">"),
        (Comparison::Lt, "<"),
    ];

    fn symbol(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, s)| *s)
            .expect("every comparison has a symbol")
    }

    fn holds(self, v: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => v > threshold,
            Comparison::Ge => v >= threshold,
            Comparison::Lt => v < threshold,
            Comparison::Le => v <= threshold,
        }
    }
}

/// A gating condition, written `"ANTIBODY OP VALUE"` in task files (OP one of `>`, `>=`, `<`,
/// `<=`, with spaces around): the antibody's CLR value compared with a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Condition {
    pub antibody: String,
    pub comparison: Comparison,
    pub value: f64,
}

impl TryFrom<String> for Condition {
    type Error = anyhow::Error;

    fn try_from(text: String) -> Result<Self> {
        for (comparison, op) in Comparison::ALL {
            if let Some(at) = text.rfind(&format!(" {op} ")) {
                let (name, value) = (text[..at].trim(), text[at + op.len() + 2..].trim());
                let value: f64 = value
                    .parse()
                    .with_context(|| format!("condition '{text}': '{value}' is not a number"))?;
                return Ok(Self {
                    antibody: name.to_string(),
                    comparison,
                    value,
                });
            }
        }
        bail!("condition '{text}': expected 'ANTIBODY > VALUE' (>, >=, <, <=, spaces around)")
    }
}

impl From<Condition> for String {
    fn from(c: Condition) -> String {
        format!("{} {} {}", c.antibody, c.comparison.symbol(), c.value)
    }
}

/// A condition on an antibody column of the ADT matrix.
struct ColumnCondition {
    column: usize,
    comparison: Comparison,
    value: f64,
}

impl Condition {
    /// The condition on the matrix column of its antibody.
    fn on(&self, antibodies: &[String]) -> Result<ColumnCondition> {
        let column = antibodies
            .iter()
            .position(|a| *a == self.antibody)
            .with_context(|| {
                format!(
                    "condition '{}': no antibody '{}' in the ADT matrix",
                    String::from(self.clone()),
                    self.antibody
                )
            })?;
        Ok(ColumnCondition {
            column,
            comparison: self.comparison,
            value: self.value,
        })
    }
}

impl ColumnCondition {
    fn holds(&self, clr: &[f64]) -> bool {
        self.comparison.holds(clr[self.column], self.value)
    }
}

/// Seurat's CLR of one cell's antibody counts.
fn clr(counts: &[f64]) -> Vec<f64> {
    let g = (counts.iter().map(|&x| x.ln_1p()).sum::<f64>() / counts.len() as f64).exp();
    counts.iter().map(|&x| (x / g).ln_1p()).collect()
}

/// How the gating rule labelled the cells.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatingCounts {
    pub per_type: BTreeMap<String, usize>,
    pub unassigned_no_type: usize,
    pub unassigned_several_types: usize,
}

/// An obs column of the RNA file, for the section that names it; an error lists the columns.
fn obs_column<'a>(
    obs: Option<&'a BTreeMap<String, Vec<String>>>,
    column: &str,
    section: &str,
    file: &str,
) -> Result<&'a Vec<String>> {
    let Some(obs) = obs else {
        bail!("{file}: {section} needs an .h5ad with obs columns");
    };
    crate::io::h5ad::obs_column(obs, column, file)
}

/// Labels every ADT cell by the RNA file's `obs` column (`None`: empty value, or a cell the RNA
/// file does not have), the counts (empty values as "no type"), and the class names (sorted).
fn obs_labels(
    rna: &ExprMatrix,
    obs: Option<&BTreeMap<String, Vec<String>>>,
    adt: &ExprMatrix,
    labels: &ObsLabels,
    file: &str,
) -> Result<(Vec<Option<usize>>, GatingCounts, Vec<String>)> {
    let values = obs_column(obs, &labels.column, "[integration.labels]", file)?;
    let of_cell: HashMap<&str, &str> = rna
        .cells
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(String::as_str))
        .collect();
    let mut names: Vec<String> = values.iter().filter(|v| !v.is_empty()).cloned().collect();
    names.sort();
    names.dedup();
    let mut counts = GatingCounts::default();
    let labelled = adt
        .cells
        .iter()
        .map(|c| match of_cell.get(c.as_str()) {
            Some(v) if !v.is_empty() => {
                *counts.per_type.entry(v.to_string()).or_default() += 1;
                names.binary_search_by(|n| n.as_str().cmp(v)).ok()
            }
            Some(_) => {
                counts.unassigned_no_type += 1;
                None
            }
            None => None,
        })
        .collect();
    Ok((labelled, counts, names))
}

/// The batch of each of the given RNA rows from an obs column (the column, the codes, the
/// sorted batch names); an empty value is an error, since every cell needs a batch.
fn obs_batches(
    obs: Option<&BTreeMap<String, Vec<String>>>,
    rows: &[usize],
    key: &ObsLabels,
    file: &str,
) -> Result<(String, Vec<usize>, Vec<String>)> {
    let values = obs_column(obs, &key.column, "[integration.second_batch]", file)?;
    let mut names: Vec<String> = rows.iter().map(|&r| values[r].clone()).collect();
    names.sort();
    names.dedup();
    if let Some(&r) = rows.iter().find(|&&r| values[r].is_empty()) {
        bail!(
            "{file}: obs row {} has no value in the batch column '{}'",
            r + 1,
            key.column
        );
    }
    let codes = rows
        .iter()
        .map(|&r| names.binary_search(&values[r]).expect("listed"))
        .collect();
    Ok((key.column.clone(), codes, names))
}

/// Labels every cell by the gating rule (`None` = unassigned), and the counts.
fn gate(adt: &ExprMatrix, gating: &Gating) -> Result<(Vec<Option<usize>>, GatingCounts)> {
    let on = |v: &[Condition]| -> Result<Vec<ColumnCondition>> {
        v.iter().map(|c| c.on(&adt.genes)).collect()
    };
    let rules: Vec<(Vec<ColumnCondition>, Vec<ColumnCondition>)> = gating
        .types
        .iter()
        .map(|t| Ok((on(&t.all)?, on(&t.any)?)))
        .collect::<Result<_>>()?;
    let mut counts = GatingCounts::default();
    gating.types.iter().for_each(|t| {
        counts.per_type.insert(t.name.clone(), 0);
    });
    let labels = (0..adt.n_cells())
        .map(|c| {
            let mut dense = vec![0f64; adt.n_genes()];
            adt.row(c).for_each(|(a, v)| dense[a] = v as f64);
            let v = clr(&dense);
            let hits: Vec<usize> = rules
                .iter()
                .enumerate()
                .filter(|(_, (all, any))| {
                    all.iter().all(|c| c.holds(&v))
                        && (any.is_empty() || any.iter().any(|c| c.holds(&v)))
                })
                .map(|(t, _)| t)
                .collect();
            match hits.as_slice() {
                [t] => {
                    *counts
                        .per_type
                        .get_mut(&gating.types[*t].name)
                        .expect("known") += 1;
                    Some(*t)
                }
                [] => {
                    counts.unassigned_no_type += 1;
                    None
                }
                _ => {
                    counts.unassigned_several_types += 1;
                    None
                }
            }
        })
        .collect();
    Ok((labels, counts))
}

/// `log1p(10⁴ · x / cell total)` in place (library-size normalisation).
fn log_normalise(m: &mut ExprMatrix) {
    for c in 0..m.n_cells() {
        let r = m.indptr[c]..m.indptr[c + 1];
        let total: f64 = m.values[r.clone()].iter().map(|&v| v as f64).sum();
        if total > 0.0 {
            m.values[r]
                .iter_mut()
                .for_each(|v| *v = (1e4 * *v as f64 / total).ln_1p() as f32);
        }
    }
}

/// The integration task's cells: both modalities of the gated cells, normalised.
struct IntegrationData {
    pub rna: ExprMatrix,
    pub adt: ExprMatrix,
    /// Target genes per ADT column (empty: unmapped).
    pub targets: Vec<Vec<String>>,
    pub labels: Vec<usize>,
    pub class_names: Vec<String>,
    pub gating: GatingCounts,
    /// The second batch key: its column, each kept cell's batch, and the batch names.
    pub second_batch: Option<(String, Vec<usize>, Vec<String>)>,
    /// Cells in only one of the two matrices (left out).
    pub rna_only: usize,
    pub adt_only: usize,
    /// The unintegrated representation: RNA rows then ADT rows, each modality in its own
    /// features (the most variable genes | all antibodies), zero in the other's.
    pub pre: Vec<f32>,
    pub pre_dim: usize,
}

/// Reads and gates the task's data (paths relative to `data_dir`).
fn load(src: &IntegrationSource, data_dir: &Path) -> Result<IntegrationData> {
    let rna_read = src.rna.read(data_dir)?;
    let rna = rna_read.matrix;
    let rna_file = data_dir.join(&src.rna.file).display().to_string();
    let adt_path = data_dir.join(&src.adt.file);
    let adt = src.adt.read(data_dir)?.matrix;
    let mut targets = Vec::with_capacity(adt.n_genes());
    for a in &adt.genes {
        match (src.antibodies.get(a), src.unmapped.contains_key(a)) {
            (Some(_), true) => bail!("antibody '{a}' is both mapped and listed as unmapped"),
            (Some(g), false) => targets.push(g.clone()),
            (None, true) => targets.push(Vec::new()),
            (None, false) => bail!(
                "{}: antibody '{a}' is neither in the task's antibody table nor listed as unmapped",
                adt_path.display()
            ),
        }
    }
    let (gated, gating, class_names) = match (&src.gating, &src.labels) {
        (Some(g), _) => {
            let (gated, counts) = gate(&adt, g)?;
            (
                gated,
                counts,
                g.types.iter().map(|t| t.name.clone()).collect(),
            )
        }
        (None, Some(l)) => obs_labels(&rna, rna_read.obs.as_ref(), &adt, l, &rna_file)?,
        (None, None) => bail!("the task gives no cell types (gating or labels)"),
    };
    let rna_at: HashMap<&str, usize> = rna
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let adt_cells: std::collections::HashSet<&str> = adt.cells.iter().map(String::as_str).collect();
    let rna_only = rna
        .cells
        .iter()
        .filter(|c| !adt_cells.contains(c.as_str()))
        .count();
    let adt_only = adt
        .cells
        .iter()
        .filter(|c| !rna_at.contains_key(c.as_str()))
        .count();
    let keep: Vec<(usize, usize, usize)> = (0..adt.n_cells())
        .filter_map(|a| Some((rna_at.get(adt.cells[a].as_str()).copied()?, a, gated[a]?)))
        .collect();
    if keep.is_empty() {
        return Err(Error::too_few(
            "no cell is in both matrices with a gated type",
        ));
    }
    let used: Vec<usize> = {
        let mut u: Vec<usize> = keep.iter().map(|k| k.2).collect();
        u.sort_unstable();
        u.dedup();
        u
    };
    // The second batch key of the kept cells (RNA rows in `keep` order).
    let second_batch = match &src.second_batch {
        Some(key) => {
            let rows: Vec<usize> = keep.iter().map(|k| k.0).collect();
            Some(obs_batches(rna_read.obs.as_ref(), &rows, key, &rna_file)?)
        }
        None => None,
    };
    let mut rna = rna.select_cells(&keep.iter().map(|k| k.0).collect::<Vec<_>>());
    let mut adt = adt.select_cells(&keep.iter().map(|k| k.1).collect::<Vec<_>>());
    log_normalise(&mut rna);
    log_normalise(&mut adt);
    let labels = keep
        .iter()
        .map(|k| used.binary_search(&k.2).expect("used"))
        .collect();
    let class_names = used.iter().map(|&t| class_names[t].clone()).collect();
    let (pre, pre_dim) = unintegrated(&rna, &adt, src.pre_genes);
    Ok(IntegrationData {
        rna,
        adt,
        targets,
        labels,
        class_names,
        gating,
        second_batch,
        rna_only,
        adt_only,
        pre,
        pre_dim,
    })
}

/// Stacked RNA and ADT rows over [most variable genes | antibodies] (see `IntegrationData::pre`).
fn unintegrated(rna: &ExprMatrix, adt: &ExprMatrix, top: usize) -> (Vec<f32>, usize) {
    let n = rna.n_cells();
    let (mut s1, mut s2) = (vec![0f64; rna.n_genes()], vec![0f64; rna.n_genes()]);
    for c in 0..n {
        for (g, v) in rna.row(c) {
            s1[g] += v as f64;
            s2[g] += (v as f64).powi(2);
        }
    }
    let var: Vec<f64> = (0..rna.n_genes())
        .map(|g| s2[g] / n as f64 - (s1[g] / n as f64).powi(2))
        .collect();
    let mut order: Vec<usize> = (0..rna.n_genes()).collect();
    order.sort_by(|&a, &b| {
        var[b]
            .total_cmp(&var[a])
            .then(rna.genes[a].cmp(&rna.genes[b]))
    });
    order.truncate(top.min(rna.n_genes()));
    let mut col_of = vec![usize::MAX; rna.n_genes()];
    order.iter().enumerate().for_each(|(j, &g)| col_of[g] = j);
    let d = order.len() + adt.n_genes();
    let mut x = vec![0f32; 2 * n * d];
    for c in 0..n {
        for (g, v) in rna.row(c) {
            if col_of[g] != usize::MAX {
                x[c * d + col_of[g]] = v;
            }
        }
        for (a, v) in adt.row(c) {
            x[(n + c) * d + order.len() + a] = v;
        }
    }
    (x, d)
}

/// What the metrics are computed on, for one embedding set.
struct IntegrationVectors {
    /// The cells scored (indices into the data's cells): those with a vector in both.
    pub cells: Vec<usize>,
    pub cells_without_vector: usize,
    /// RNA rows then ADT rows of those cells (`2n × d`), and their unintegrated rows.
    pub x: Vec<f32>,
    pub pre: Vec<f32>,
    pub labels: Vec<usize>,
    pub batches: Vec<usize>,
    pub rna_coverage: CellCoverage,
    pub adt_coverage: CellCoverage,
    /// ADT columns whose target genes have an embedding, of those mapped.
    pub antibodies_embedded: usize,
    pub antibodies_mapped: usize,
    /// Mapped antibodies none of whose targets has an embedding.
    pub antibodies_missing: Vec<String>,
}

/// GenePT-w vectors of both modalities in the gene-embedding space, modality as batch, and
/// their scIB metrics.
fn evaluate(
    data: &IntegrationData,
    emb: &GeneEmbeddings,
    resolver: &GeneResolver<'_>,
    seed: u64,
) -> Result<(IntegrationVectors, ScibScores, Option<SecondBatch>)> {
    let v = vectors(data, emb, resolver)?;
    let input = ScibInput {
        x: &v.x,
        dim: emb.dim,
        labels: &v.labels,
        batches: &v.batches,
        pre: Some((&v.pre, data.pre_dim)),
    };
    let (scores, _) = scib::scib(&input, seed)?;
    let second = match &data.second_batch {
        Some((column, of_cell, names)) => {
            // Each scored cell's batch, for its RNA row and its ADT row.
            let batches: Vec<usize> = (0..2)
                .flat_map(|_| v.cells.iter().map(|&c| of_cell[c]))
                .collect();
            let (scores, _) = scib::scib(
                &ScibInput {
                    batches: &batches,
                    ..input
                },
                seed,
            )
            .with_context(|| format!("with '{column}' ({}) as batch", names.join(", ")))?;
            Some(SecondBatch {
                column: column.clone(),
                scores,
            })
        }
        None => None,
    };
    Ok((v, scores, second))
}

/// The stacked RNA and ADT vectors of the cells that have both (see [`IntegrationVectors`]).
fn vectors(
    data: &IntegrationData,
    emb: &GeneEmbeddings,
    resolver: &GeneResolver<'_>,
) -> Result<IntegrationVectors> {
    let (rna_x, rna_coverage) = genept_w(&data.rna, emb, resolver).context("RNA cell vectors")?;
    // Each antibody's vector: the mean of its target genes' embeddings.
    let (mut ids, mut values, mut antibodies_missing) = (Vec::new(), Vec::new(), Vec::new());
    for (a, genes) in data.adt.genes.iter().zip(&data.targets) {
        let rows: Vec<usize> = genes.iter().filter_map(|g| resolver.resolve(g)).collect();
        if rows.is_empty() {
            if !genes.is_empty() {
                antibodies_missing.push(a.clone());
            }
            continue;
        }
        ids.push(a.clone());
        for j in 0..emb.dim {
            values.push(rows.iter().map(|&r| emb.row(r)[j]).sum::<f32>() / rows.len() as f32);
        }
    }
    let antibodies_mapped = data.targets.iter().filter(|t| !t.is_empty()).count();
    if ids.is_empty() {
        return Err(Error::too_few(format!(
            "no antibody target has an embedding ({antibodies_mapped} mapped antibodies)"
        )));
    }
    let antibodies_embedded = ids.len();
    let ab = GeneEmbeddings::new(ids, emb.dim, values, String::new())?;
    let (adt_x, adt_coverage) =
        genept_w(&data.adt, &ab, &GeneResolver::new(&ab, None)).context("ADT cell vectors")?;
    // A cell none of whose expressed genes (or antibodies) has an embedding has no vector in
    // that modality: it is left out (both rows) and counted.
    let d = emb.dim;
    let nonzero = |x: &[f32], i: usize| x[i * d..(i + 1) * d].iter().any(|&v| v != 0.0);
    let n_all = data.labels.len();
    let cells: Vec<usize> = (0..n_all)
        .filter(|&i| nonzero(&rna_x, i) && nonzero(&adt_x, i))
        .collect();
    let n = cells.len();
    if n < 3 {
        return Err(Error::too_few(format!(
            "only {n} of {n_all} cells have both an RNA and an ADT vector"
        )));
    }
    let rows = |x: &[f32], dim: usize, offset: usize| -> Vec<f32> {
        cells
            .iter()
            .flat_map(|&i| &x[(offset + i) * dim..(offset + i + 1) * dim])
            .copied()
            .collect()
    };
    let x: Vec<f32> = rows(&rna_x, d, 0)
        .into_iter()
        .chain(rows(&adt_x, d, 0))
        .collect();
    let pre: Vec<f32> = rows(&data.pre, data.pre_dim, 0)
        .into_iter()
        .chain(rows(&data.pre, data.pre_dim, n_all))
        .collect();
    let labels: Vec<usize> = cells
        .iter()
        .chain(&cells)
        .map(|&i| data.labels[i])
        .collect();
    let batches: Vec<usize> = (0..2 * n).map(|i| i / n).collect();
    Ok(IntegrationVectors {
        cells_without_vector: n_all - n,
        cells,
        x,
        pre,
        labels,
        batches,
        rna_coverage,
        adt_coverage,
        antibodies_embedded,
        antibodies_mapped,
        antibodies_missing,
    })
}

/// The stacked vectors, the unintegrated representation and the labels/batches, for
/// cross-checks with scib-metrics: `DIR/NAME.scib.safetensors`, `NAME.pre.safetensors`,
/// `NAME.obs.tsv`.
fn export(
    dir: &Path,
    name: &str,
    data: &IntegrationData,
    ev: &IntegrationVectors,
    dim: usize,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let ids: Vec<String> = ["rna", "adt"]
        .iter()
        .flat_map(|m| {
            let cells = &data.rna.cells;
            ev.cells.iter().map(move |&i| format!("{}:{m}", cells[i]))
        })
        .collect();
    GeneEmbeddings::new(
        ids.clone(),
        dim,
        ev.x.clone(),
        "bftkit integration export".into(),
    )?
    .write(&dir.join(format!("{name}.scib.safetensors")))?;
    GeneEmbeddings::new(
        ids.clone(),
        data.pre_dim,
        data.pre.clone(),
        "unintegrated".into(),
    )?
    .write(&dir.join(format!("{name}.pre.safetensors")))?;
    let mut obs = String::from("cell\tlabel\tbatch\n");
    for (i, id) in ids.iter().enumerate() {
        obs.push_str(&format!(
            "{id}\t{}\t{}\n",
            data.class_names[ev.labels[i]],
            ["RNA", "ADT"][ev.batches[i]]
        ));
    }
    let p = dir.join(format!("{name}.obs.tsv"));
    crate::io::write_file(&p, obs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_source() -> (IntegrationSource, std::path::PathBuf) {
        let task = crate::eval::task::TaskSet::embedded()
            .unwrap()
            .tasks
            .into_iter()
            .find(|t| t.name == "integration_citeseq_eccite")
            .unwrap();
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data");
        let crate::eval::task::TaskKind::Integration(i) = task.kind else {
            panic!("an integration task")
        };
        (i.integration, data)
    }

    /// Published labels from the RNA file's obs and matrices from an h5ad layer: the layout of
    /// the NeurIPS 2021 CITE-seq files, on a 7-cell fixture (its genes stand in as antibodies).
    #[test]
    fn published_labels_come_from_obs_and_counts_from_a_layer() {
        let text = r#"
            rna = { file = "h5ad/layers.h5ad", h5ad_layer = "counts" }
            adt = { file = "h5ad/layers.h5ad", h5ad_layer = "counts" }
            labels = { column = "cell_type" }
            second_batch = { column = "donor" }
            pre_genes = 3
            [antibodies]
            CD19 = ["CD19"]
            CD3E = ["CD3E"]
            NCAM1 = ["NCAM1"]
            MS4A1 = ["MS4A1"]
            [unmapped]
            GNLY = "a test of the unmapped list"
        "#;
        let src: IntegrationSource = toml::from_str(text).unwrap();
        let task = IntegrationTask {
            main_metric: ScibMetric::default(),
            integration: src.clone(),
        };
        task.check().unwrap();
        let data_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let d = load(&src, &data_dir).unwrap();
        assert_eq!(d.class_names, ["B", "NK", "T"]);
        // cell_type of the fixture: B T T NK B T NK.
        assert_eq!(d.labels, [0, 2, 2, 1, 0, 2, 1]);
        assert_eq!(d.gating.per_type.values().sum::<usize>(), 7);
        assert_eq!(d.gating.unassigned_no_type, 0);
        // The second batch key: donor d1 d2 d1 d1 d2 d2 d3.
        let (column, codes, names) = d.second_batch.clone().unwrap();
        assert_eq!(
            (column.as_str(), names),
            ("donor", vec!["d1".into(), "d2".into(), "d3".into()])
        );
        assert_eq!(codes, [0, 1, 0, 0, 1, 1, 2]);
        // The layer's counts (3 × X rounded), not the log-normalised X, were read: normalised
        // rows sum to the same total whatever the cell, which X's rows would not give back.
        let raw =
            crate::io::h5ad::read_h5ad_layer(&data_dir.join("h5ad/layers.h5ad"), "counts").unwrap();
        assert!(raw.matrix.row(0).all(|(_, v)| v == v.round()));
        // A missing column is named with the ones there are; labels need an h5ad; one source of
        // cell types only.
        let mut bad = src.clone();
        bad.labels = Some(ObsLabels {
            column: "celltype".into(),
        });
        let e = format!("{:#}", load(&bad, &data_dir).err().unwrap());
        assert!(
            e.contains(
                "layers.h5ad: no obs column 'celltype' (columns: cell_type, donor, n_counts)"
            ),
            "{e}"
        );
        let mut bad = task.clone();
        bad.integration.rna.file = "x.csv".into();
        bad.integration.rna.h5ad_layer = None;
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("must be an .h5ad"));
        let mut bad = task.clone();
        bad.integration.labels = None;
        assert!(bad.check().unwrap_err().to_string().contains("either"));
    }

    #[test]
    fn conditions_parse_and_clr_is_seurats() {
        let abs = vec!["CD4".to_string(), "HLA-A,B,C".to_string()];
        let parse = |t: &str| Condition::try_from(t.to_string());
        let cond = parse("HLA-A,B,C >= 1.5").unwrap();
        assert_eq!(
            (cond.antibody.as_str(), cond.comparison, cond.value),
            ("HLA-A,B,C", Comparison::Ge, 1.5)
        );
        assert_eq!(String::from(cond.clone()), "HLA-A,B,C >= 1.5");
        for bad in ["CD4 >> 2", "CD4 > two", "CD4>2"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("CD9 > 2")
            .unwrap()
            .on(&abs)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no antibody 'CD9'"), "{e}");
        let c = cond.on(&abs).unwrap();
        let v = clr(&[0.0, 3.0, 63.0]);
        let g = ((1f64.ln() + 4f64.ln() + 64f64.ln()) / 3.0).exp(); // = 4
        assert!((v[1] - (3.0 / g).ln_1p()).abs() < 1e-12 && v[0] == 0.0);
        assert!(c.holds(&[0.0, 1.5]) && !c.holds(&[0.0, 1.4]));
    }

    #[test]
    fn the_fixture_is_gated_as_planted_and_every_antibody_must_be_accounted_for() {
        let (src, data) = fixture_source();
        let d = load(&src, &data).unwrap();
        assert_eq!(d.labels.len(), 80);
        assert_eq!(
            (
                d.gating.unassigned_no_type,
                d.gating.unassigned_several_types
            ),
            (4, 2)
        );
        assert!(d.gating.per_type.values().all(|&n| n == 16));
        assert_eq!(d.rna.cells, d.adt.cells);
        assert_eq!(d.pre.len(), 2 * 80 * d.pre_dim);
        // An antibody of the data that the table forgets is an error naming it.
        let mut forgot = src.clone();
        forgot.antibodies.remove("CD19");
        let e = format!("{:#}", load(&forgot, &data).err().unwrap());
        assert!(e.contains("adt_counts.csv") && e.contains("'CD19'"), "{e}");
        // A malformed condition is refused with the task file.
        let text = crate::eval::task::TaskSet::embedded()
            .unwrap()
            .tasks
            .iter()
            .find(|t| t.name == "integration_citeseq_eccite")
            .map(|t| toml::to_string(t).unwrap())
            .unwrap();
        let bad = text.replacen("CD19 > 2", "CD19 => 2", 1);
        let e = format!(
            "{:#}",
            crate::eval::task::TaskSpec::from_toml(&bad, "t.toml").unwrap_err()
        );
        assert!(e.contains("CD19 => 2"), "{e}");
    }
}
