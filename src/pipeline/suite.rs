//! Running a suite: load or embed each set, probe every task, lay genes and cells out with
//! UMAP. With model arms (`experiment`), the sets of the arms come first and every stage,
//! the probe included, is cached under the report's `stages/` folder.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::data::Inputs;
use super::experiment::stage::Stages;
use super::experiment::{run_arms, ArmsRun};
use super::suite_file::{self, SuiteConfig};
use crate::eval::kinds::labelled;
use crate::eval::kinds::shared::{Colouring, GeneClasses, PointCloud, RunInput, SetViews};
use crate::eval::kinds::TaskGroup;
use crate::eval::result::ProbeReport;
use crate::eval::sets::{unique_names, EmbeddingSet};
use crate::eval::suite::{run_probe_with_views, ProbeInput, ProbeOptions, Views};
use crate::eval::task::{TaskKind, TaskSpec};
use crate::viz::report::{RunResults, UmapLayout};
use crate::viz::umap::{umap, UmapOptions};

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

/// Runs the suite: probes, UMAPs; `progress(step, total, what)` follows along. Nothing is
/// cached; a suite with model arms needs [`run_suite_cached`].
pub fn run_suite(
    cfg: &SuiteConfig,
    ctx: &Inputs,
    progress: impl FnMut(usize, usize, &str),
) -> Result<RunResults> {
    run_suite_cached(cfg, ctx, None, progress)
}

/// Where a cached run keeps its stages, and its test hook.
pub(crate) struct Caching {
    pub stages: Stages,
    /// For tests: end describe with an error after this many new profiles, as a kill would.
    pub stop_after_profiles: Option<usize>,
}

/// Runs the suite; with `cache`, the model arms' stages, texts embedded with a model and the
/// probe are stages, reused when their inputs are unchanged.
pub(crate) fn run_suite_cached(
    cfg: &SuiteConfig,
    ctx: &Inputs,
    mut cache: Option<&mut Caching>,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<RunResults> {
    if cfg.embeddings.is_empty() && cfg.arms.is_empty() {
        bail!("the suite names no embedding sets and no model arms");
    }
    let selected = ctx.tasks.select(&cfg.tasks)?;
    let n_sets = cfg.arms.len() + cfg.embeddings.len();
    let umap_steps = if cfg.umap {
        n_sets + cfg.baseline as usize
    } else {
        0
    };
    let total = n_sets + selected.len() + umap_steps;
    let mut step = 0;
    let mut sets = Vec::new();
    let mut keys = Vec::new();
    let mut experiment = None;
    let mut only: Option<Vec<String>> = None;
    if !cfg.arms.is_empty() {
        let Some(cache) = cache.as_deref_mut() else {
            bail!("a suite with model arms runs through `bftkit run` (its stages are cached)");
        };
        let Some(exp) = &cfg.experiment else {
            bail!("the suite names model arms but has no [experiment] section");
        };
        let run = ArmsRun {
            exp,
            arms: &cfg.arms,
            seed: cfg.seed,
            ctx,
            tasks: &selected,
            stop_after_profiles: cache.stop_after_profiles,
        };
        let out = run_arms(&run, &mut cache.stages, |m| progress(step, total, m))?;
        step += cfg.arms.len();
        if exp.same_genes {
            only = Some(out.genes);
        }
        for (set, key) in out.sets {
            sets.push(set);
            keys.push(key);
        }
        experiment = Some(out.report);
    }
    for (k, src) in cfg.embeddings.iter().enumerate() {
        progress(step, total, &format!("embedding set {}", k + 1));
        let stages = cache.as_deref_mut().map(|c| &mut c.stages);
        let (set, key) = suite_file::load_set(src, k, stages, only.as_deref(), &mut |m| {
            progress(step, total, &m)
        })?;
        sets.push(set);
        keys.push(key);
        step += 1;
    }
    unique_names(&mut sets);
    let Some(cache) = cache else {
        return probe_and_lay_out(cfg, ctx, &selected, sets, (step, total), &mut progress);
    };
    // The probe as a stage: its results (scores and layouts) reused when no set, task or
    // setting changed.
    let names: Vec<(&str, &str)> = sets
        .iter()
        .zip(&keys)
        .map(|(s, k)| (s.name.as_str(), k.as_str()))
        .collect();
    let data = if ctx.data.fixtures {
        serde_json::json!("built-in fixtures")
    } else {
        let files: Vec<serde_json::Value> = selected
            .iter()
            .flat_map(|t| t.files())
            .map(|f| super::experiment::folder_identity(&ctx.data.path.join(f)))
            .collect();
        serde_json::json!({ "folder": ctx.data.path.display().to_string(), "files": files })
    };
    let st = cache.stages.open(
        "probe",
        serde_json::json!({
            "sets": names, "tasks": selected, "seed": cfg.seed, "baseline": cfg.baseline,
            "umap": cfg.umap, "umap_task": cfg.umap_task, "data": data,
            "gene_map": ctx.gene_map.get().map(|(_, origin)| origin.display().to_string()),
        }),
    )?;
    let path = st.dir.join("results.json");
    let mut results = if st.reused() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str::<RunResults>(&text)
            .with_context(|| format!("{}: not a bftkit results file", path.display()))?
    } else {
        let r = probe_and_lay_out(cfg, ctx, &selected, sets, (step, total), &mut progress)?;
        crate::io::write_file(&path, serde_json::to_string(&r)?)?;
        r
    };
    cache.stages.finish(st)?;
    results.name = cfg.name.clone().unwrap_or_else(|| "run".into());
    if let Some(mut e) = experiment {
        e.stages = cache.stages.records.clone();
        results.experiment = Some(e);
    }
    Ok(results)
}

/// Probes the sets (with the random baseline when asked) and lays them out.
fn probe_and_lay_out(
    cfg: &SuiteConfig,
    ctx: &Inputs,
    selected: &[&TaskSpec],
    mut sets: Vec<EmbeddingSet>,
    (mut step, total): (usize, usize),
    progress: &mut impl FnMut(usize, usize, &str),
) -> Result<RunResults> {
    if cfg.baseline {
        sets.push(EmbeddingSet::random_like(&sets[0].embeddings, cfg.seed));
    }
    let opts = probe_options(cfg, ctx);
    let input = ProbeInput {
        tasks: selected,
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
        experiment: None,
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
