//! `bftkit run`: the whole benchmark in one command. For each embedding set (a file, or texts
//! embedded on the fly with a model) it runs every task whose data is present, lays the genes out
//! with UMAP coloured by a gene task's classes, and writes the report (`viz::report`).
//!
//! A suite file (TOML) names the sets; paths in it are relative to the file:
//!
//! ```toml
//! name = "minilm"
//! data = "../shared/data"   # optional: else --data, $BFTKIT_DATA, ./data, or the fixtures
//! seed = 0
//! baseline = true           # add the random N(0,1) control
//! tasks = ["all"]
//! umap = true
//! umap_task = "dosage_sensitive_tfs"   # optional: colour UMAPs by this gene task
//!
//! [[embeddings]]
//! name = "MiniLM, GO profiles"
//! texts = "../shared/data/gene_profiles_go/gene_profiles_go.tsv"
//! model = "models/all-MiniLM-L6-v2"
//!
//! [[embeddings]]
//! file = "my_genes.safetensors"
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::embed::texts::GeneTexts;
use crate::embed::{self, EncodeOptions, TextEncoder};
use crate::eval::dataset;
use crate::eval::logreg::LogisticRegression;
use crate::eval::probe::{PairFeature, Solver};
use crate::eval::suite::{self, EmbeddingInfo, EmbeddingSet, ProbeOptions};
use crate::eval::task::{TaskGroup, TaskSet, TaskSpec};
use crate::io::{GeneEmbeddings, GeneIdMap, GeneResolver};
use crate::viz::report::{RunResults, UmapLayout};
use crate::viz::umap::{umap, UmapOptions};

fn default_true() -> bool {
    true
}

fn default_all() -> Vec<String> {
    vec!["all".into()]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub data: Option<PathBuf>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_true")]
    pub baseline: bool,
    #[serde(default = "default_all")]
    pub tasks: Vec<String>,
    #[serde(default = "default_true")]
    pub umap: bool,
    #[serde(default)]
    pub umap_task: Option<String>,
    #[serde(default)]
    pub embeddings: Vec<EmbeddingSource>,
}

/// One embedding set of a suite: a file, or texts and a model to embed them with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSource {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub texts: Option<PathBuf>,
    #[serde(default)]
    pub model: Option<PathBuf>,
    #[serde(default)]
    pub id_col: Option<String>,
    #[serde(default)]
    pub text_col: Option<String>,
}

impl SuiteConfig {
    /// Reads a suite file; relative paths become relative to its folder.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let mut cfg: SuiteConfig = toml::from_str(&text)
            .with_context(|| format!("{}: invalid suite file", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(x) = p.as_mut() {
                if x.is_relative() {
                    *x = base.join(&*x);
                }
            }
        };
        fix(&mut cfg.data);
        for e in &mut cfg.embeddings {
            fix(&mut e.file);
            fix(&mut e.texts);
            fix(&mut e.model);
        }
        if cfg.name.is_none() {
            cfg.name = path.file_stem().map(|s| s.to_string_lossy().to_string());
        }
        Ok(cfg)
    }
}

/// Loads or computes one embedding set.
fn load_set(
    src: &EmbeddingSource,
    k: usize,
    on_note: &mut impl FnMut(String),
) -> Result<EmbeddingSet> {
    match (&src.file, &src.texts, &src.model) {
        (Some(file), None, None) => {
            let mut set = EmbeddingSet::from_file(file)?;
            if let Some(n) = &src.name {
                set.name = n.clone();
                set.info.name = n.clone();
            }
            Ok(set)
        }
        (None, Some(texts), Some(model)) => {
            let gt = GeneTexts::read(
                texts,
                src.id_col.as_deref().unwrap_or("symbol"),
                src.text_col.as_deref().unwrap_or("profile"),
            )?;
            let device = candle_core::Device::Cpu;
            let encoder = TextEncoder::load(model, None, embed::Backend::Fast, &device)?;
            let opts = EncodeOptions {
                batch_size: 32,
                pooling: encoder.default_pooling(),
                normalize: true,
            };
            on_note(format!(
                "embedding {} texts of {} with {}",
                gt.len(),
                texts.display(),
                model.display()
            ));
            let (emb, report) = embed::embed_genes(&encoder, None, &gt, &opts, false, |_| {})?;
            let name = src.name.clone().unwrap_or_else(|| format!("set{}", k + 1));
            let info = EmbeddingInfo {
                name: name.clone(),
                path: format!("{} + {}", texts.display(), model.display()),
                sha256: String::new(),
                genes: emb.len(),
                dim: emb.dim,
                source: format!(
                    "embedded on the fly: {} texts, {} missing",
                    report.genes_embedded,
                    report.missing.len()
                ),
            };
            Ok(EmbeddingSet {
                name,
                embeddings: emb,
                info,
            })
        }
        _ => bail!(
            "embedding set {}: give either `file`, or `texts` and `model`",
            src.name.clone().unwrap_or_else(|| format!("#{}", k + 1))
        ),
    }
}

/// Everything `run_suite` needs beyond the config.
pub struct RunContext<'a> {
    pub data_dir: PathBuf,
    pub fixtures: bool,
    pub tasks: &'a TaskSet,
    pub gene_map: Option<(&'a GeneIdMap, &'a Path)>,
}

/// The classes of a gene task for every gene of a set: (class names, class per gene).
fn gene_classes(
    task: &TaskSpec,
    ctx: &RunContext,
    emb: &GeneEmbeddings,
    seed: u64,
) -> Option<(Vec<String>, Vec<Option<usize>>)> {
    if task.group != TaskGroup::Gene {
        return None;
    }
    let resolver = GeneResolver::new(emb, ctx.gene_map.map(|(m, _)| m));
    let ds = dataset::build(task, &ctx.data_dir, &resolver, None, seed).ok()?;
    let mut classes = vec![None; emb.len()];
    for (ex, &label) in ds.examples.iter().zip(&ds.labels) {
        if let [g] = ex.as_slice() {
            classes[*g] = Some(if label { 0 } else { 1 });
        }
    }
    let name = |v: &[String], d: &str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.join(" / ")
        }
    };
    let data = task.data.as_ref()?;
    Some((
        vec![
            name(&data.positive, "positive"),
            name(&data.negative, "negative"),
        ],
        classes,
    ))
}

/// A seeded UMAP of `x` (one row of width `d` per name) for the report; `colour` is the task
/// whose classes colour the points, the class names, and each point's class.
fn umap_layout(
    x: &[f32],
    d: usize,
    seed: u64,
    set: &str,
    points: &str,
    names: &[String],
    colour: (String, Vec<String>, Vec<Option<usize>>),
) -> Result<UmapLayout> {
    let start = Instant::now();
    let opts = UmapOptions {
        seed,
        ..UmapOptions::default()
    };
    let flat = umap(x, names.len(), d, &opts)?;
    let (colour_task, class_names, classes) = colour;
    Ok(UmapLayout {
        embedding_set: set.to_string(),
        colour_task,
        class_names,
        genes: names.to_vec(),
        points: points.to_string(),
        xy: flat.chunks(2).map(|p| [p[0], p[1]]).collect(),
        classes,
        n_neighbors: opts.n_neighbors,
        min_dist: opts.min_dist,
        seed: opts.seed,
        runtime_s: start.elapsed().as_secs_f64(),
    })
}

/// Runs the suite: probes, UMAPs; `progress(step, total, what)` follows along.
pub fn run_suite(
    cfg: &SuiteConfig,
    ctx: &RunContext,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<RunResults> {
    if cfg.embeddings.is_empty() {
        bail!("the suite names no embedding sets");
    }
    let selected = ctx.tasks.select(&cfg.tasks)?;
    let umap_steps = if cfg.umap {
        cfg.embeddings.len() + cfg.baseline as usize
    } else {
        0
    };
    let total = cfg.embeddings.len() + selected.len() + umap_steps;
    let mut step = 0;
    let mut sets = Vec::new();
    for (k, src) in cfg.embeddings.iter().enumerate() {
        progress(step, total, &format!("embedding set {}", k + 1));
        sets.push(load_set(src, k, &mut |m| progress(step, total, &m))?);
        step += 1;
    }
    suite::unique_names(&mut sets);
    if cfg.baseline {
        sets.push(EmbeddingSet::random_like(&sets[0].embeddings, cfg.seed));
    }
    let opts = ProbeOptions {
        data_dir: ctx.data_dir.clone(),
        seed: cfg.seed,
        folds: None,
        pair_feature: PairFeature::Sum,
        model: LogisticRegression::default(),
        solver: Solver::Lbfgs,
        skip_unavailable: true,
        export_folds: None,
    };
    let probe = suite::run_probe(
        &selected,
        &sets,
        ctx.gene_map,
        &opts,
        &ctx.tasks.origin,
        |t| {
            progress(step, total, &t.name);
            step += 1;
        },
    )?;
    let mut umaps = Vec::new();
    if cfg.umap {
        let colour_task: Option<&TaskSpec> = match &cfg.umap_task {
            Some(name) => Some(
                ctx.tasks
                    .tasks
                    .iter()
                    .find(|t| &t.name == name)
                    .with_context(|| format!("umap_task '{name}' is not a known task"))?,
            ),
            None => probe
                .results
                .iter()
                .filter(|r| r.group == TaskGroup::Gene)
                .find_map(|r| ctx.tasks.tasks.iter().find(|t| t.name == r.task)),
        };
        for set in &sets {
            progress(step, total, &format!("UMAP of {}", set.name));
            step += 1;
            let e = &set.embeddings;
            let colour =
                match colour_task.and_then(|t| gene_classes(t, ctx, e, cfg.seed).map(|c| (c, t))) {
                    Some(((n, c), t)) => (t.name.clone(), n, c),
                    None => (String::new(), Vec::new(), vec![None; e.len()]),
                };
            umaps.push(
                umap_layout(
                    &e.values, e.dim, cfg.seed, &set.name, "genes", &e.ids, colour,
                )
                .with_context(|| format!("UMAP of {}", set.name))?,
            );
        }
    }
    // Cells of each cell task that ran, laid out per set and coloured by type.
    if cfg.umap {
        for task in selected.iter().filter(|t| t.group == TaskGroup::Cell) {
            if !probe.results.iter().any(|r| r.task == task.name) {
                continue;
            }
            let Some(src) = &task.cells else { continue };
            let data = crate::eval::cells::load(src, &ctx.data_dir)?;
            for set in &sets {
                let resolver = GeneResolver::new(&set.embeddings, ctx.gene_map.map(|(m, _)| m));
                let (x, _) =
                    crate::embed::cells::genept_w(&data.matrix, &set.embeddings, &resolver)?;
                let colour = (
                    task.name.clone(),
                    data.class_names.clone(),
                    data.labels.iter().map(|&l| Some(l)).collect(),
                );
                let names = &data.matrix.cells;
                umaps.push(
                    umap_layout(
                        &x,
                        set.embeddings.dim,
                        cfg.seed,
                        &set.name,
                        "cells",
                        names,
                        colour,
                    )
                    .with_context(|| format!("UMAP of {} cells, {}", task.name, set.name))?,
                );
            }
        }
    }
    // Both modalities of each integration task that ran, coloured by modality, then by type
    // (one layout, two colourings).
    if cfg.umap {
        for task in selected
            .iter()
            .filter(|t| t.group == TaskGroup::Integration)
        {
            if !probe.results.iter().any(|r| r.task == task.name) {
                continue;
            }
            let Some(src) = &task.integration else {
                continue;
            };
            let data = crate::eval::integration::load(src, &ctx.data_dir)?;
            for set in &sets {
                let resolver = GeneResolver::new(&set.embeddings, ctx.gene_map.map(|(m, _)| m));
                let ev = crate::eval::integration::vectors(&data, &set.embeddings, &resolver)?;
                let cell_names = &data.rna.cells;
                let names: Vec<String> = ["RNA", "ADT"]
                    .iter()
                    .flat_map(|m| {
                        ev.cells
                            .iter()
                            .map(move |&i| format!("{} {m}", cell_names[i]))
                    })
                    .collect();
                let by_modality = umap_layout(
                    &ev.x,
                    set.embeddings.dim,
                    cfg.seed,
                    &set.name,
                    "cells",
                    &names,
                    (
                        format!("{} (modality)", task.name),
                        vec!["RNA".into(), "ADT".into()],
                        ev.batches.iter().map(|&b| Some(b)).collect(),
                    ),
                )
                .with_context(|| format!("UMAP of {} cells, {}", task.name, set.name))?;
                let mut by_type = by_modality.clone();
                by_type.colour_task = format!("{} (gated type)", task.name);
                by_type.class_names = data.class_names.clone();
                by_type.classes = ev.labels.iter().map(|&l| Some(l)).collect();
                umaps.push(by_modality);
                umaps.push(by_type);
            }
        }
    }
    progress(total, total, "done");
    Ok(RunResults {
        bftkit_version: env!("CARGO_PKG_VERSION").to_string(),
        name: cfg.name.clone().unwrap_or_else(|| "run".into()),
        fixtures: ctx.fixtures,
        probe,
        umaps,
        not_run: Vec::new(),
    })
}
