//! What every task kind shares: the input of a run (sets, seed, classifier, options) and its
//! output (outcomes per set, skips, and what the layouts need), and the kinds' names. A leaf:
//! the kind modules build on it and it knows none of them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::eval::probe::{LogisticRegression, PairFeature, Solver};
use crate::eval::sets::EmbeddingSet;
use crate::io::{GeneEmbeddings, GeneIdMap, GeneResolver};

/// The classes of a gene task for every row of an embedding set (positive 0, negative 1,
/// `None` for genes outside the task): what colours a gene layout.
pub(crate) type GeneClasses = Vec<Option<usize>>;

/// What every kind needs besides its own section of the task file.
pub(crate) struct RunInput<'a> {
    pub data_dir: &'a Path,
    pub sets: &'a [EmbeddingSet],
    pub gene_map: Option<&'a GeneIdMap>,
    pub seed: u64,
    /// Overrides the task's fold count (stratified k-fold tasks only).
    pub folds: Option<usize>,
    pub pair_feature: PairFeature,
    pub model: &'a LogisticRegression,
    pub solver: Solver,
    /// Write each task's examples and folds (over the first set) here, for cross-checks.
    pub export_folds: Option<&'a Path>,
    /// List (rather than fail on) a set that leaves too few examples.
    pub skip_unavailable: bool,
    /// Hand back what the UMAPs need ([`SetViews`]).
    pub keep_views: bool,
}

impl RunInput<'_> {
    /// Matches task genes to the rows of `emb`.
    pub(crate) fn resolver<'e>(&'e self, emb: &GeneEmbeddings) -> GeneResolver<'e> {
        GeneResolver::new(emb, self.gene_map)
    }
}

/// One task scored on one set (`set` indexes [`RunInput::sets`]); `O` is the kind's outcome.
pub(crate) struct Scored<O> {
    pub set: usize,
    /// The protocol as it ran (split, seed, counts).
    pub protocol: String,
    pub outcome: O,
}

/// What one task did on all sets.
pub(crate) struct TaskRun<O> {
    pub scored: Vec<Scored<O>>,
    /// Why a set could not be scored (the task is then listed as skipped on it).
    pub skipped: Vec<String>,
    pub views: Vec<SetViews>,
}

impl<O> Default for TaskRun<O> {
    fn default() -> Self {
        Self {
            scored: Vec::new(),
            skipped: Vec::new(),
            views: Vec::new(),
        }
    }
}

impl<O> TaskRun<O> {
    /// The same run with each outcome wrapped (e.g. into [`super::Outcome`]).
    pub(crate) fn map<P>(self, f: impl Fn(O) -> P) -> TaskRun<P> {
        TaskRun {
            scored: self
                .scored
                .into_iter()
                .map(|s| Scored {
                    set: s.set,
                    protocol: s.protocol,
                    outcome: f(s.outcome),
                })
                .collect(),
            skipped: self.skipped,
            views: self.views,
        }
    }
}

/// Points a kind built for a set, ready to lay out, with one or more ways to colour them.
pub(crate) struct PointCloud {
    pub set: usize,
    pub names: Vec<String>,
    /// `names.len() × dim`, row-major.
    pub x: Vec<f32>,
    pub dim: usize,
    pub colourings: Vec<Colouring>,
}

/// Classes of the points of a layout: what colours it.
#[derive(Debug, Clone)]
pub(crate) struct Colouring {
    /// What the classes are (a task name, with the labelling in brackets when it is not the
    /// task's own labels).
    pub label: String,
    pub class_names: Vec<String>,
    pub classes: Vec<Option<usize>>,
}

/// What the report's layouts need from a task on one set.
pub(crate) enum SetViews {
    /// A gene task's classes per row of set `set`.
    GeneClasses { set: usize, classes: GeneClasses },
    /// Cells laid out by their vectors.
    Points(PointCloud),
}

/// The kinds of task, in report column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskGroup {
    Gene,
    Pair,
    Cell,
    Integration,
    Perturbation,
}

impl TaskGroup {
    pub const ALL: [TaskGroup; 5] = [
        TaskGroup::Gene,
        TaskGroup::Pair,
        TaskGroup::Cell,
        TaskGroup::Integration,
        TaskGroup::Perturbation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskGroup::Gene => "gene",
            TaskGroup::Pair => "pair",
            TaskGroup::Cell => "cell",
            TaskGroup::Integration => "integration",
            TaskGroup::Perturbation => "perturbation",
        }
    }
}
