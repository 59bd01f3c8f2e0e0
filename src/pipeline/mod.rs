//! `bftkit run` and the commands around it: the whole benchmark in one call. For each embedding
//! set (a file, or texts embedded on the fly with a model) it runs every task whose data is
//! present, lays genes and cells out with UMAP, and writes the report (`viz::report`).
//!
//! - `suite_file`: the suite file (TOML) naming the sets, tasks and seed;
//! - `data`: where the data, the task files and the gene id map come from (a folder, or the
//!   built-in fixtures);
//! - `probe`: `bftkit probe`, the tasks without the report;
//! - this module: running a suite and its layouts, and [`run`] for a whole request.

mod data;
mod probe;
mod suite_file;

pub use data::{load_tasks, DataFolder, DataOptions, GeneMap, Inputs, GENE_MAP_FILE};
pub use probe::{probe, ProbeRequest};
pub use suite_file::{EmbeddingSource, SuiteConfig};

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::eval::kinds::labelled;
use crate::eval::kinds::shared::{Colouring, GeneClasses, PointCloud, RunInput, SetViews};
use crate::eval::kinds::TaskGroup;
use crate::eval::result::ProbeReport;
use crate::eval::sets::{unique_names, EmbeddingSet};
use crate::eval::suite::{run_probe_with_views, ProbeInput, ProbeOptions, Views};
use crate::eval::task::{TaskKind, TaskSpec};
use crate::viz::report::ReportData;
use crate::viz::report::{RunResults, UmapLayout};
use crate::viz::umap::{umap, UmapOptions};

/// The folder reports go to unless told otherwise.
pub const REPORTS_DIR: &str = "reports";

/// `bftkit run`: a suite file (optional), embedding files on top of its sets, and settings that
/// override the file's.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub config: Option<PathBuf>,
    pub embeddings: Vec<PathBuf>,
    /// The report's name (its folder under `out`) [default: the suite's name, else "fixtures" or
    /// "run"].
    pub name: Option<String>,
    pub out: PathBuf,
    pub seed: Option<u64>,
    /// Lay the sets out with UMAP (unless the suite file says no).
    pub umap: bool,
    /// Inputs; an unset data folder falls back to the suite file's.
    pub data: DataOptions,
}

impl Default for RunRequest {
    fn default() -> Self {
        Self {
            config: None,
            embeddings: Vec::new(),
            name: None,
            out: PathBuf::from(REPORTS_DIR),
            seed: None,
            umap: true,
            data: DataOptions::default(),
        }
    }
}

/// A run ready to go: the suite to run and its resolved inputs.
pub struct PreparedRun {
    pub suite: SuiteConfig,
    pub inputs: Inputs,
    /// Where the report goes (`out/name`).
    pub out: PathBuf,
}

/// What a run wrote.
pub struct RunOutput {
    pub report: ReportData,
    /// The report's `index.html`.
    pub index: PathBuf,
}

impl RunRequest {
    /// Reads the suite file (if any), resolves the inputs and puts the request's sets and
    /// settings on top: the suite to run.
    pub fn prepare(&self) -> Result<PreparedRun> {
        let mut suite = match &self.config {
            Some(p) => SuiteConfig::read(p)?,
            None => SuiteConfig::default(),
        };
        let data = DataOptions {
            data: self.data.data.clone().or_else(|| suite.data.clone()),
            ..self.data.clone()
        };
        let inputs = Inputs::resolve(&data)?;
        suite.embeddings.extend(
            self.embeddings
                .iter()
                .map(|e| EmbeddingSource::file(e, None)),
        );
        if suite.embeddings.is_empty() {
            let Some(file) = inputs.data.fixture_embeddings() else {
                bail!("no embedding sets: give --embeddings FILE or a --config suite file");
            };
            suite
                .embeddings
                .push(EmbeddingSource::file(file, Some("fixture_planted".into())));
        }
        if let Some(s) = self.seed {
            suite.seed = s;
        }
        suite.umap &= self.umap;
        let fallback = if inputs.data.fixtures {
            "fixtures"
        } else {
            "run"
        };
        let name = self
            .name
            .clone()
            .or_else(|| suite.name.clone())
            .unwrap_or_else(|| fallback.to_string());
        crate::io::check_file_name("report name", &name)?;
        suite.name = Some(name.clone());
        Ok(PreparedRun {
            suite,
            inputs,
            out: self.out.join(name),
        })
    }
}

/// Runs a prepared suite and renders its report; `progress(step, total, what)` follows along.
pub fn run(run: &PreparedRun, progress: impl FnMut(usize, usize, &str)) -> Result<RunOutput> {
    let results = run_suite(&run.suite, &run.inputs, progress)?;
    let report = ReportData {
        runs: vec![results],
    };
    let index = crate::viz::report::render(&report, &run.out)?;
    Ok(RunOutput { report, index })
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
fn probe_options(cfg: &SuiteConfig, ctx: &Inputs) -> ProbeOptions {
    ProbeOptions {
        seed: cfg.seed,
        skip_unavailable: true,
        ..ProbeOptions::new(&ctx.data.path)
    }
}

/// Runs the suite: probes, UMAPs; `progress(step, total, what)` follows along.
pub fn run_suite(
    cfg: &SuiteConfig,
    ctx: &Inputs,
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
        sets.push(suite_file::load_set(src, k, &mut |m| {
            progress(step, total, &m)
        })?);
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
        gene_map: ctx.gene_map.get(),
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
        fixtures: ctx.data.fixtures,
        probe,
        umaps,
        not_run: Vec::new(),
    })
}

/// Builds the report's layouts from what the probe run handed back.
struct Layouts<'a> {
    cfg: &'a SuiteConfig,
    ctx: &'a Inputs,
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
                data_dir: &self.ctx.data.path,
                sets: self.sets,
                gene_map: self.ctx.gene_map.get().map(|(m, _)| m),
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
