//! The probe suite: runs the selected tasks against one or more embedding sets and collects one
//! serialisable result ([`ProbeReport`]). Orchestration only: datasets come from
//! [`super::dataset`], scores from [`super::probe`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::cells;
use super::dataset::{self, Coverage};
use super::integration;
use super::logreg::LogisticRegression;
use super::metrics::MeanSd;
use super::perturb;
use super::probe::{self, PairFeature, ProbeScores, Solver};
use super::task::{Protocol, Reference, TaskGroup, TaskSpec};
use crate::embed::cells::{genept_w, CellCoverage};
use crate::io::embeddings::file_sha256;
use crate::io::{GeneEmbeddings, GeneIdMap, GeneResolver};

/// An embedding set to probe.
pub struct EmbeddingSet {
    pub name: String,
    pub embeddings: GeneEmbeddings,
    pub info: EmbeddingInfo,
}

/// Where an embedding set came from, recorded in every result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingInfo {
    pub name: String,
    /// File path, or empty for generated sets (the random baseline).
    pub path: String,
    /// SHA-256 of the file (empty for generated sets).
    pub sha256: String,
    pub genes: usize,
    pub dim: usize,
    pub source: String,
}

impl EmbeddingSet {
    /// Reads an embedding file; the set is named after the file stem.
    pub fn from_file(path: &Path) -> Result<Self> {
        let embeddings = GeneEmbeddings::read(path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "embeddings".into());
        let info = EmbeddingInfo {
            name: name.clone(),
            path: path.display().to_string(),
            sha256: file_sha256(path)?,
            genes: embeddings.len(),
            dim: embeddings.dim,
            source: embeddings.source.clone(),
        };
        Ok(Self {
            name,
            embeddings,
            info,
        })
    }

    /// The negative control: N(0,1) vectors of the same width for the same genes, seeded.
    pub fn random_like(other: &GeneEmbeddings, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_ba5e);
        let values: Vec<f32> = (0..other.values.len())
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let source = format!("random N(0,1), {} dims, seed {seed}", other.dim);
        let embeddings = GeneEmbeddings {
            ids: other.ids.clone(),
            dim: other.dim,
            values,
            source: source.clone(),
        };
        let name = "random".to_string();
        let info = EmbeddingInfo {
            name: name.clone(),
            path: String::new(),
            sha256: String::new(),
            genes: embeddings.len(),
            dim: embeddings.dim,
            source,
        };
        Self {
            name,
            embeddings,
            info,
        }
    }
}

/// Makes set names unique (`name`, `name_2`, ...), keeping the first as it is.
pub fn unique_names(sets: &mut [EmbeddingSet]) {
    let mut names = std::collections::HashSet::new();
    for s in sets {
        let base = s.name.clone();
        let mut k = 2;
        while !names.insert(s.name.clone()) {
            s.name = format!("{base}_{k}");
            k += 1;
        }
        s.info.name = s.name.clone();
    }
}

/// Options shared by every task of a probe run.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub data_dir: PathBuf,
    pub seed: u64,
    /// Overrides the task's fold count (stratified k-fold tasks only).
    pub folds: Option<usize>,
    pub pair_feature: PairFeature,
    pub model: LogisticRegression,
    pub solver: Solver,
    /// Skip and list (rather than fail on) tasks whose data files are absent or that keep too
    /// few examples after matching genes (used for `--task all`).
    pub skip_unavailable: bool,
    /// Write each task's examples and folds (over the first embedding set) to `DIR/TASK.tsv`.
    pub export_folds: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierInfo {
    pub model: String,
    pub penalty: String,
    pub c: f64,
    pub tol: f64,
    pub max_iter: usize,
    pub standardized: bool,
    pub solver: Solver,
}

/// One task scored on one embedding set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: String,
    pub title: String,
    pub group: TaskGroup,
    pub main_metric: String,
    pub protocol: String,
    pub n_folds: usize,
    pub pair_feature: Option<PairFeature>,
    pub embedding_set: String,
    pub n_positive: usize,
    pub n_negative: usize,
    pub coverage: Coverage,
    /// Classifier scores (gene, pair and cell tasks); perturbation tasks have only `extra`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<ProbeScores>,
    pub references: Vec<Reference>,
    /// Further metrics (cell tasks: kNN accuracy and macro-F1, k-means ARI and NMI;
    /// perturbation tasks: every metric and baseline).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, MeanSd>,
    /// Cell tasks: genes of the matrix with an embedding and the expression mass they carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_coverage: Option<CellCoverage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedTask {
    pub task: String,
    pub reason: String,
}

/// Everything one `bftkit probe` run computed, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReport {
    pub bftkit_version: String,
    pub command: String,
    pub seed: u64,
    pub data_dir: String,
    pub gene_map: Option<String>,
    pub tasks_origin: String,
    pub embedding_sets: Vec<EmbeddingInfo>,
    pub classifier: ClassifierInfo,
    pub results: Vec<TaskResult>,
    pub skipped: Vec<SkippedTask>,
    pub runtime_s: f64,
}

/// Runs `tasks` on every embedding set. `on_task` is called before each task (for progress).
pub fn run_probe(
    tasks: &[&TaskSpec],
    sets: &[EmbeddingSet],
    gene_map: Option<(&GeneIdMap, &Path)>,
    opts: &ProbeOptions,
    tasks_origin: &str,
    mut on_task: impl FnMut(&TaskSpec),
) -> Result<ProbeReport> {
    let start = Instant::now();
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for task in tasks {
        on_task(task);
        if !task.data_present(&opts.data_dir) {
            let missing: Vec<&str> = task
                .files()
                .into_iter()
                .filter(|f| !opts.data_dir.join(f).is_file())
                .collect();
            let reason = format!(
                "data not found under {}: {}",
                opts.data_dir.display(),
                missing.join(", ")
            );
            if opts.skip_unavailable {
                skipped.push(SkippedTask {
                    task: task.name.clone(),
                    reason,
                });
                continue;
            }
            anyhow::bail!("task '{}': {reason}", task.name);
        }
        if matches!(
            task.group,
            TaskGroup::Cell | TaskGroup::Integration | TaskGroup::Perturbation
        ) {
            let run = match task.group {
                TaskGroup::Cell => cell_task(task, sets, gene_map, opts),
                TaskGroup::Integration => integration_task(task, sets, gene_map, opts),
                _ => perturbation_task(task, sets, gene_map, opts),
            };
            match run {
                Ok(mut r) => results.append(&mut r),
                Err(e) if opts.skip_unavailable => skipped.push(SkippedTask {
                    task: task.name.clone(),
                    reason: format!("{e:#}"),
                }),
                Err(e) => return Err(e.context(format!("task '{}'", task.name))),
            }
            continue;
        }
        // Sets keyed by the same gene ids (the random baseline and its source) share one
        // dataset: resolution and folds depend only on the ids, so the task files are read once.
        let mut built: Vec<(usize, dataset::ProbeDataset)> = Vec::new();
        for (k, set) in sets.iter().enumerate() {
            let same_ids = built
                .iter()
                .position(|(j, _)| sets[*j].embeddings.ids == set.embeddings.ids);
            let idx = match same_ids {
                Some(i) => i,
                None => {
                    let resolver = GeneResolver::new(&set.embeddings, gene_map.map(|(m, _)| m));
                    match dataset::build(task, &opts.data_dir, &resolver, opts.folds, opts.seed) {
                        Ok(ds) => built.push((k, ds)),
                        Err(e) if opts.skip_unavailable && e.is::<dataset::TooFewExamples>() => {
                            skipped.push(SkippedTask {
                                task: task.name.clone(),
                                reason: format!("on '{}': {e}", set.name),
                            });
                            continue;
                        }
                        Err(e) => return Err(e.context(format!("task '{}'", task.name))),
                    }
                    built.len() - 1
                }
            };
            let ds = &built[idx].1;
            if let (0, Some(dir)) = (k, &opts.export_folds) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("{}: cannot create", dir.display()))?;
                ds.write_tsv(&dir.join(format!("{}.tsv", task.name)))?;
            }
            let scores = probe::run(
                ds,
                &set.embeddings,
                opts.pair_feature,
                &opts.model,
                opts.solver,
            )
            .with_context(|| format!("task '{}' on '{}'", task.name, set.name))?;
            let protocol = match &task.protocol {
                Protocol::StratifiedKfold { .. } => {
                    format!("stratified {}-fold CV, seed {}", ds.n_folds, opts.seed)
                }
                Protocol::Fixed { .. } => "fixed train/test split".to_string(),
                Protocol::FoldColumn { .. } => format!("published {}-fold split", ds.n_folds),
            };
            let n_positive = ds.labels.iter().filter(|&&l| l).count();
            results.push(TaskResult {
                task: task.name.clone(),
                title: task.title.clone(),
                group: task.group,
                main_metric: task.main_metric.clone(),
                protocol,
                n_folds: ds.n_folds,
                pair_feature: (task.group == TaskGroup::Pair).then_some(opts.pair_feature),
                embedding_set: set.name.clone(),
                n_positive,
                n_negative: ds.labels.len() - n_positive,
                coverage: ds.coverage.clone(),
                scores: Some(scores),
                references: task.reference.clone(),
                extra: BTreeMap::new(),
                cell_coverage: None,
            });
        }
    }
    Ok(ProbeReport {
        bftkit_version: env!("CARGO_PKG_VERSION").to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        seed: opts.seed,
        data_dir: opts.data_dir.display().to_string(),
        gene_map: gene_map.map(|(_, p)| p.display().to_string()),
        tasks_origin: tasks_origin.to_string(),
        embedding_sets: sets.iter().map(|s| s.info.clone()).collect(),
        classifier: ClassifierInfo {
            model: "logistic_regression".into(),
            penalty: "l2".into(),
            c: opts.model.c,
            tol: opts.model.tol,
            max_iter: opts.model.max_iter,
            standardized: true,
            solver: opts.solver,
        },
        results,
        skipped,
        runtime_s: start.elapsed().as_secs_f64(),
    })
}

/// The fields of a task's result that come from the task and the set alone (cell, integration
/// and perturbation tasks fill in the rest with struct-update syntax).
fn result_for(task: &TaskSpec, set: &EmbeddingSet) -> TaskResult {
    TaskResult {
        task: task.name.clone(),
        title: task.title.clone(),
        group: task.group,
        main_metric: task.main_metric.clone(),
        protocol: String::new(),
        n_folds: 0,
        pair_feature: None,
        embedding_set: set.name.clone(),
        n_positive: 0,
        n_negative: 0,
        coverage: Coverage::default(),
        scores: None,
        references: task.reference.clone(),
        extra: BTreeMap::new(),
        cell_coverage: None,
    }
}

/// The coverage line of a cell-level result: cells scored of the cells in the data, and the
/// matrix genes that have an embedding.
fn cell_task_coverage(cells_total: usize, cells_scored: usize, genes: &CellCoverage) -> Coverage {
    Coverage {
        positive_total: cells_total,
        positive_matched: cells_scored,
        genes_total: genes.genes_total,
        genes_matched: genes.genes_matched,
        missing_genes: genes.missing_examples.clone(),
        ..Coverage::default()
    }
}

/// A cell task on every set: GenePT-w cell vectors, then [`cells::evaluate`].
fn cell_task(
    task: &TaskSpec,
    sets: &[EmbeddingSet],
    gene_map: Option<(&GeneIdMap, &Path)>,
    opts: &ProbeOptions,
) -> Result<Vec<TaskResult>> {
    let src = task.cells.as_ref().context("cell task without [cells]")?;
    let data = cells::load(src, &opts.data_dir)?;
    let folds = match task.protocol {
        Protocol::StratifiedKfold { folds } => opts.folds.unwrap_or(folds),
        _ => anyhow::bail!("cell tasks use stratified k-fold"),
    };
    let (n, k) = (data.labels.len(), data.class_names.len());
    let mut out = Vec::new();
    for (s, set) in sets.iter().enumerate() {
        let resolver = GeneResolver::new(&set.embeddings, gene_map.map(|(m, _)| m));
        let (x, cov) = genept_w(&data.matrix, &set.embeddings, &resolver)
            .with_context(|| format!("cell vectors from '{}'", set.name))?;
        let scores = cells::evaluate(
            &x,
            set.embeddings.dim,
            &data.labels,
            k,
            folds,
            opts.seed,
            &opts.model,
        )
        .with_context(|| format!("on '{}'", set.name))?;
        if let (0, Some(dir)) = (s, &opts.export_folds) {
            write_cells_tsv(
                &dir.join(format!("{}.tsv", task.name)),
                &data,
                &x,
                set.embeddings.dim,
                &scores,
            )?;
        }
        out.push(TaskResult {
            protocol: format!(
                "stratified {folds}-fold CV over {n} cells of {k} types, seed {}; GenePT-w cell \
                 vectors; logistic regression one-vs-rest (macro metrics)",
                opts.seed
            ),
            n_folds: folds,
            n_positive: n,
            coverage: cell_task_coverage(n + data.labels_without_cell, n - cov.cells_empty, &cov),
            scores: Some(scores.probe),
            extra: scores.extra,
            cell_coverage: Some(cov),
            ..result_for(task, set)
        });
    }
    Ok(out)
}

/// An integration task on every set: RNA and ADT GenePT-w vectors, modality as batch, scIB
/// ([`integration::evaluate`]).
fn integration_task(
    task: &TaskSpec,
    sets: &[EmbeddingSet],
    gene_map: Option<(&GeneIdMap, &Path)>,
    opts: &ProbeOptions,
) -> Result<Vec<TaskResult>> {
    let src = task
        .integration
        .as_ref()
        .context("integration task without [integration]")?;
    let data = integration::load(src, &opts.data_dir)?;
    let g = &data.gating;
    let gated = format!(
        "{} cells in both modalities gated into {} ({}); unassigned: {} of no type, {} of \
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
    let mut out = Vec::new();
    for (s, set) in sets.iter().enumerate() {
        let resolver = GeneResolver::new(&set.embeddings, gene_map.map(|(m, _)| m));
        let (ev, scores) = integration::evaluate(&data, &set.embeddings, &resolver, opts.seed)
            .with_context(|| format!("on '{}'", set.name))?;
        if let (0, Some(dir)) = (s, &opts.export_folds) {
            integration::export(dir, &task.name, &data, &ev, set.embeddings.dim)?;
        }
        let n = ev.cells.len();
        let extra = scores
            .named()
            .into_iter()
            .map(|(k, v)| (k.to_string(), MeanSd { mean: v, sd: 0.0 }))
            .collect();
        out.push(TaskResult {
            protocol: format!(
                "{gated}; {} without an RNA or ADT vector (left out); RNA and ADT GenePT-w vectors (ADT: {} of {} mapped antibodies with an \
                 embedded target{}, {:.1}% of ADT mass), modality as batch; scIB metrics as \
                 scib-metrics (exact neighbours; k-means seed {}); Total = 0.6 Bio + 0.4 Batch",
                ev.cells_without_vector,
                ev.antibodies_embedded,
                ev.antibodies_mapped,
                if ev.antibodies_missing.is_empty() {
                    String::new()
                } else {
                    format!("; none for {}", ev.antibodies_missing.join(", "))
                },
                100.0 * ev.adt_coverage.mass_fraction,
                opts.seed
            ),
            n_folds: 0,
            n_positive: n,
            // Cells of the data (gated or not), and those scored.
            coverage: cell_task_coverage(
                data.labels.len() + g.unassigned_no_type + g.unassigned_several_types,
                n,
                &ev.rna_coverage,
            ),
            extra,
            cell_coverage: Some(ev.rna_coverage),
            ..result_for(task, set)
        });
    }
    Ok(out)
}

/// A perturbation task on every set (leave-one-perturbation-out, [`perturb::evaluate`]).
fn perturbation_task(
    task: &TaskSpec,
    sets: &[EmbeddingSet],
    gene_map: Option<(&GeneIdMap, &Path)>,
    opts: &ProbeOptions,
) -> Result<Vec<TaskResult>> {
    let src = task
        .perturbation
        .as_ref()
        .context("perturbation task without [perturbation]")?;
    let data = perturb::load(src, &opts.data_dir)?;
    let mut out = Vec::new();
    for set in sets {
        let resolver = GeneResolver::new(&set.embeddings, gene_map.map(|(m, _)| m));
        let s = perturb::evaluate(&data, &set.embeddings, &resolver, src.k)
            .with_context(|| format!("on '{}'", set.name))?;
        out.push(TaskResult {
            protocol: format!(
                "leave one perturbation out over {} targets ({} with an embedding; {} control \
                 cells; targets under {} cells left out: {}); {}-nearest targets by cosine",
                s.targets_total,
                s.targets_with_embedding,
                data.control_cells,
                src.min_cells,
                if data.too_few_cells.is_empty() {
                    "none".to_string()
                } else {
                    data.too_few_cells.join(", ")
                },
                src.k
            ),
            n_folds: s.targets_with_embedding,
            n_positive: s.targets_with_embedding,
            coverage: Coverage {
                positive_total: s.targets_total,
                positive_matched: s.targets_with_embedding,
                genes_total: s.targets_total,
                genes_matched: s.targets_with_embedding,
                missing_genes: s.missing_targets.clone(),
                ..Coverage::default()
            },
            extra: s.metrics,
            ..result_for(task, set)
        });
    }
    Ok(out)
}

/// Cell vectors, labels, folds and k-means clusters as TSV, for cross-checks with other tools.
fn write_cells_tsv(
    path: &Path,
    data: &cells::CellData,
    x: &[f32],
    d: usize,
    scores: &cells::CellScores,
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
            data.class_names[data.labels[i]], scores.test_fold[i], scores.clusters[i]
        )?;
        for v in &x[i * d..(i + 1) * d] {
            write!(out, "\t{v}")?;
        }
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("{}: cannot write", path.display()))
}
