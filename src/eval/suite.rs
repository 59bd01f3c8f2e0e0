//! The probe suite: runs the selected tasks on one or more embedding sets and collects one
//! serialisable result ([`ProbeReport`]). Orchestration only: each task's kind module
//! ([`super::kinds`]) reads its data and scores the sets; this decides what to run, what to skip
//! and what stops the run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;

use super::kinds::shared::{RunInput, SetViews, TaskRun};
use super::kinds::{self, Outcome};
use super::probe::logreg::LogisticRegression;
use super::probe::{PairFeature, Solver};
use super::result::{ClassifierInfo, ProbeReport, SkippedTask, TaskResult};
use super::sets::EmbeddingSet;
use super::task::{TaskKind, TaskSpec};
use crate::error::Error;
use crate::io::GeneIdMap;

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
    /// List (rather than fail on) tasks whose data files are absent or that keep too few
    /// examples after matching genes (used for `--task all`).
    pub skip_unavailable: bool,
    /// Write each task's examples and folds (over the first embedding set) to `DIR/TASK.tsv`.
    pub export_folds: Option<PathBuf>,
}

impl ProbeOptions {
    /// The defaults for a data folder: seed 0, the tasks' own folds, sum pair features, the
    /// default classifier (L-BFGS), nothing skipped or exported.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            seed: 0,
            folds: None,
            pair_feature: PairFeature::Sum,
            model: LogisticRegression::default(),
            solver: Solver::Lbfgs,
            skip_unavailable: false,
            export_folds: None,
        }
    }
}

impl Default for ProbeOptions {
    /// [`ProbeOptions::new`] on `./data`.
    fn default() -> Self {
        Self::new("data")
    }
}

/// What to probe: tasks, embedding sets, and the gene id map (with its path, for the record).
pub struct ProbeInput<'a> {
    pub tasks: &'a [&'a TaskSpec],
    pub sets: &'a [EmbeddingSet],
    pub gene_map: Option<(&'a GeneIdMap, &'a Path)>,
    /// Where the tasks came from (recorded).
    pub tasks_origin: &'a str,
}

/// What the report's layouts need from a probe run, by task (see [`SetViews`]).
pub(crate) type Views = Vec<(String, Vec<SetViews>)>;

/// Runs every task on every set. `on_task` is called before each task (for progress).
pub fn run_probe(
    input: &ProbeInput<'_>,
    opts: &ProbeOptions,
    on_task: impl FnMut(&TaskSpec),
) -> Result<ProbeReport> {
    Ok(run_probe_with_views(input, opts, false, on_task)?.0)
}

/// [`run_probe`], also handing back the vectors and classes the report's UMAPs need when
/// `keep_views`.
pub(crate) fn run_probe_with_views(
    input: &ProbeInput<'_>,
    opts: &ProbeOptions,
    keep_views: bool,
    mut on_task: impl FnMut(&TaskSpec),
) -> Result<(ProbeReport, Views)> {
    let start = Instant::now();
    if opts.folds.is_some_and(|k| k < 2) {
        anyhow::bail!("--folds must be at least 2");
    }
    let run_input = RunInput {
        data_dir: &opts.data_dir,
        sets: input.sets,
        gene_map: input.gene_map.map(|(m, _)| m),
        seed: opts.seed,
        folds: opts.folds,
        pair_feature: opts.pair_feature,
        model: &opts.model,
        solver: opts.solver,
        export_folds: opts.export_folds.as_deref(),
        skip_unavailable: opts.skip_unavailable,
        keep_views,
    };
    let (mut results, mut skipped, mut views) = (Vec::new(), Vec::new(), Vec::new());
    for task in input.tasks {
        on_task(task);
        let skip = |reason: String| SkippedTask {
            task: task.name.clone(),
            reason,
        };
        let run =
            run_task(task, &run_input).map_err(|e| e.context(format!("task '{}'", task.name)));
        let run = match run {
            Ok(run) => run,
            Err(e) => match Error::of(&e) {
                Some(why) if opts.skip_unavailable => {
                    skipped.push(skip(why.to_string()));
                    continue;
                }
                _ => return Err(e),
            },
        };
        skipped.extend(run.skipped.into_iter().map(skip));
        results.extend(run.scored.into_iter().map(|s| TaskResult {
            task: task.name.clone(),
            title: task.title.clone(),
            embedding_set: input.sets[s.set].name.clone(),
            protocol: s.protocol,
            references: task.reference.clone(),
            outcome: s.outcome,
        }));
        if keep_views {
            views.push((task.name.clone(), run.views));
        }
    }
    let report = ProbeReport {
        bftkit_version: env!("CARGO_PKG_VERSION").to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        seed: opts.seed,
        data_dir: opts.data_dir.display().to_string(),
        gene_map: input.gene_map.map(|(_, p)| p.display().to_string()),
        tasks_origin: input.tasks_origin.to_string(),
        embedding_sets: input.sets.iter().map(|s| s.info.clone()).collect(),
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
    };
    Ok((report, views))
}

/// One task on every set, by its kind; absent data is [`Error::DataMissing`].
fn run_task(task: &TaskSpec, input: &RunInput<'_>) -> Result<TaskRun<Outcome>> {
    let missing = task.missing_files(input.data_dir);
    if !missing.is_empty() {
        return Err(Error::DataMissing {
            dir: input.data_dir.to_path_buf(),
            files: missing,
        }
        .into());
    }
    let name = &task.name;
    Ok(match &task.kind {
        TaskKind::Gene(t) => kinds::labelled::run(name, t, input)?.map(Outcome::Gene),
        TaskKind::Pair(t) => kinds::labelled::run(name, t, input)?.map(|probe| Outcome::Pair {
            probe,
            feature: input.pair_feature,
        }),
        TaskKind::Cell(t) => kinds::cell::run(name, t, input)?.map(Outcome::Cell),
        TaskKind::Integration(t) => {
            kinds::integration::run(name, t, input)?.map(Outcome::Integration)
        }
        TaskKind::Perturbation(t) => kinds::perturbation::run(t, input)?.map(Outcome::Perturbation),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::testing::Fixtures;

    /// With `skip_unavailable`, a task whose data is absent is listed as skipped, while a task
    /// whose data is malformed stops the run with the file and line: only the typed
    /// [`Error`] conditions are skipped.
    #[test]
    fn absent_data_is_skipped_and_broken_data_fails() {
        let fx = Fixtures::new();
        let data = fx.data();
        let opts = ProbeOptions {
            skip_unavailable: true,
            ..ProbeOptions::new(&data)
        };
        let run = |selected: &[&TaskSpec]| fx.probe(selected, false, &opts);
        std::fs::remove_file(data.join("perturb_papalexi2021_lowmoi/cells.tsv")).unwrap();
        let selected = fx.tasks(&["perturbation_papalexi2021", "cell_type_pbmc68k"]);
        let report = run(&selected).unwrap();
        assert_eq!(report.skipped.len(), 1);
        assert!(
            report.skipped[0].reason.contains("data not found")
                && report.skipped[0].reason.contains("cells.tsv"),
            "{:?}",
            report.skipped
        );
        assert!(report.results.iter().all(|r| r.task == "cell_type_pbmc68k"));
        let obs = data.join("pbmc68k_reduced/pbmc68k_reduced_obs.csv");
        let text = std::fs::read_to_string(&obs).unwrap();
        let second = text.lines().nth(1).unwrap().to_string();
        std::fs::write(&obs, format!("{text}{second}\n")).unwrap();
        let e = format!("{:#}", run(&selected).unwrap_err());
        assert!(
            e.contains("cell_type_pbmc68k") && e.contains("labelled twice"),
            "{e}"
        );
    }
}
