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

use crate::embed::texts::{self, GeneTexts};
use crate::embed::{self, EncodeOptions, TextEncoder};
use crate::eval::kinds::labelled::{self, GeneClasses};
use crate::eval::kinds::{Colouring, PointCloud, RunInput, SetViews, TaskGroup};
use crate::eval::result::ProbeReport;
use crate::eval::sets::{unique_names, EmbeddingSet};
use crate::eval::suite::{run_probe_with_views, ProbeInput, ProbeOptions, Views};
use crate::eval::task::{TaskKind, TaskSet, TaskSpec};
use crate::io::GeneIdMap;
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
                set.rename(n);
            }
            Ok(set)
        }
        (None, Some(texts), Some(model)) => {
            let gt = GeneTexts::read(
                texts,
                src.id_col.as_deref().unwrap_or(texts::ID_COLUMN),
                src.text_col.as_deref().unwrap_or(texts::TEXT_COLUMN),
            )?;
            let device = candle_core::Device::Cpu;
            let encoder = TextEncoder::load(model, None, embed::Backend::Fast, &device)?;
            let opts = EncodeOptions {
                pooling: encoder.default_pooling(),
                ..EncodeOptions::default()
            };
            on_note(format!(
                "embedding {} texts of {} with {}",
                gt.len(),
                texts.display(),
                model.display()
            ));
            let (emb, report) = embed::embed_genes(&encoder, None, &gt, &opts, false, |_| {})?;
            let name = src.name.clone().unwrap_or_else(|| format!("set{}", k + 1));
            let mut set = EmbeddingSet::new(
                name,
                emb,
                format!("{} + {}", texts.display(), model.display()),
            );
            set.info.source = format!(
                "embedded on the fly: {} texts, {} missing",
                report.genes_embedded,
                report.missing.len()
            );
            Ok(set)
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

/// What colours a layout: the colouring's label, class names and each point's class.
type Colour = (String, Vec<String>, Vec<Option<usize>>);

/// A seeded UMAP of `x` (one row of width `d` per name) for the report.
fn umap_layout(
    x: &[f32],
    d: usize,
    seed: u64,
    set: &str,
    points: &str,
    names: &[String],
    colour: Colour,
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

/// The probe run's options for a suite: every task it can run, skipping (and listing) the rest.
fn probe_options(cfg: &SuiteConfig, ctx: &RunContext) -> ProbeOptions {
    ProbeOptions {
        seed: cfg.seed,
        skip_unavailable: true,
        ..ProbeOptions::new(&ctx.data_dir)
    }
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
    unique_names(&mut sets);
    if cfg.baseline {
        sets.push(EmbeddingSet::random_like(&sets[0].embeddings, cfg.seed));
    }
    let opts = probe_options(cfg, ctx);
    let input = ProbeInput {
        tasks: &selected,
        sets: &sets,
        gene_map: ctx.gene_map,
        tasks_origin: &ctx.tasks.origin,
    };
    let (probe, views) = run_probe_with_views(&input, &opts, cfg.umap, |t| {
        progress(step, total, &t.name);
        step += 1;
    })?;
    let mut umaps = Vec::new();
    if cfg.umap {
        let layouts = Layouts {
            cfg,
            ctx,
            sets: &sets,
            views: &views,
            opts: &opts,
        };
        umaps = layouts.genes(&probe, &mut |what| {
            progress(step, total, what);
            step += 1;
        })?;
        // Cells of each cell task that ran, per set, coloured by type; then both modalities of
        // each integration task, coloured by modality and by type (one layout, two colourings).
        for group in [TaskGroup::Cell, TaskGroup::Integration] {
            for task in selected.iter().filter(|t| t.group() == group) {
                umaps.extend(layouts.points(&task.name)?);
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

/// Builds the report's layouts from what the probe run handed back.
struct Layouts<'a> {
    cfg: &'a SuiteConfig,
    ctx: &'a RunContext<'a>,
    sets: &'a [EmbeddingSet],
    views: &'a Views,
    opts: &'a ProbeOptions,
}

impl Layouts<'_> {
    fn views_of(&self, task: &str) -> &[SetViews] {
        self.views
            .iter()
            .find(|(t, _)| t == task)
            .map_or(&[][..], |(_, v)| v.as_slice())
    }

    /// The task whose classes colour the gene layouts: the suite's `umap_task`, else the first
    /// gene task with results.
    fn colour_task(&self, probe: &ProbeReport) -> Result<Option<&TaskSpec>> {
        let tasks = &self.ctx.tasks.tasks;
        Ok(match &self.cfg.umap_task {
            Some(name) => Some(
                tasks
                    .iter()
                    .find(|t| &t.name == name)
                    .with_context(|| format!("umap_task '{name}' is not a known task"))?,
            ),
            None => probe
                .results
                .iter()
                .filter(|r| r.group() == TaskGroup::Gene)
                .find_map(|r| tasks.iter().find(|t| t.name == r.task)),
        })
    }

    /// A gene task's classes on set `k`: from the probe run, else read from its files (a colour
    /// task the run did not probe on this set).
    fn gene_classes(&self, task: &TaskSpec, k: usize) -> Option<GeneClasses> {
        let TaskKind::Gene(spec) = &task.kind else {
            return None;
        };
        let from_run = self.views_of(&task.name).iter().find_map(|v| match v {
            SetViews::GeneClasses { set, classes } if *set == k => Some(classes.clone()),
            _ => None,
        });
        from_run.or_else(|| {
            let input = RunInput {
                data_dir: &self.ctx.data_dir,
                sets: self.sets,
                gene_map: self.ctx.gene_map.map(|(m, _)| m),
                seed: self.cfg.seed,
                folds: None,
                pair_feature: self.opts.pair_feature,
                model: &self.opts.model,
                solver: self.opts.solver,
                export_folds: None,
                skip_unavailable: true,
                keep_views: true,
            };
            labelled::gene_classes(spec, &input, &self.sets[k])
        })
    }

    /// One layout of every set's genes, coloured by the colour task.
    fn genes(&self, probe: &ProbeReport, step: &mut impl FnMut(&str)) -> Result<Vec<UmapLayout>> {
        let colour_task = self.colour_task(probe)?;
        let mut out = Vec::new();
        for (k, set) in self.sets.iter().enumerate() {
            step(&format!("UMAP of {}", set.name));
            let e = &set.embeddings;
            let colour = colour_task.and_then(|t| {
                let classes = self.gene_classes(t, k)?;
                let TaskKind::Gene(spec) = &t.kind else {
                    return None;
                };
                Some((t.name.clone(), spec.class_names(), classes))
            });
            let colour = colour.unwrap_or_else(|| (String::new(), Vec::new(), vec![None; e.len()]));
            out.push(
                umap_layout(
                    &e.values,
                    e.dim,
                    self.cfg.seed,
                    &set.name,
                    "genes",
                    &e.ids,
                    colour,
                )
                .with_context(|| format!("UMAP of {}", set.name))?,
            );
        }
        Ok(out)
    }

    /// The layouts of the point clouds a cell or integration task built: one layout per set,
    /// repeated for each further colouring.
    fn points(&self, task: &str) -> Result<Vec<UmapLayout>> {
        let mut out = Vec::new();
        for view in self.views_of(task) {
            let SetViews::Points(PointCloud {
                set,
                names,
                x,
                dim,
                colourings,
            }) = view
            else {
                continue;
            };
            let set = &self.sets[*set].name;
            let colour =
                |c: &Colouring| (c.label.clone(), c.class_names.clone(), c.classes.clone());
            let first = umap_layout(
                x,
                *dim,
                self.cfg.seed,
                set,
                "cells",
                names,
                colour(&colourings[0]),
            )
            .with_context(|| format!("UMAP of {task} cells, {set}"))?;
            let recoloured: Vec<UmapLayout> = colourings[1..]
                .iter()
                .map(|c| {
                    let (colour_task, class_names, classes) = colour(c);
                    UmapLayout {
                        colour_task,
                        class_names,
                        classes,
                        ..first.clone()
                    }
                })
                .collect();
            out.push(first);
            out.extend(recoloured);
        }
        Ok(out)
    }
}
