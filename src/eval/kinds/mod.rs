//! One module per task kind. Each owns its section of the task file (which data, which protocol,
//! which main metric) and its checks, reads its data once, scores every embedding set, and
//! returns typed outcomes — plus, when asked, what the report's UMAPs need (the vectors it built
//! and their classes), so a run reads each dataset once.
//!
//! - `labelled`: gene and pair tasks (logistic-regression probes);
//! - `cell`: cell types from GenePT-w cell vectors;
//! - `integration`: RNA/ADT integration scored with the scIB metrics;
//! - `perturbation`: zero-shot perturbation response;
//! - `matrix`: the expression-matrix source cell and integration tasks share.

pub mod cell;
pub mod integration;
pub mod labelled;
pub mod matrix;
pub mod perturbation;

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::coverage::Coverage;
use super::metric::{MainMetric, Metric, ProbeMetric};
use super::probe::logreg::LogisticRegression;
use super::probe::{PairFeature, ProbeScores, Solver};
use super::sets::EmbeddingSet;
use crate::eval::probe::metrics::MeanSd;
use crate::io::{GeneEmbeddings, GeneIdMap, GeneResolver};

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

/// One task scored on one set (`set` indexes [`RunInput::sets`]).
pub(crate) struct Scored {
    pub set: usize,
    /// The protocol as it ran (split, seed, counts).
    pub protocol: String,
    pub outcome: Outcome,
}

/// What one task did on all sets.
#[derive(Default)]
pub(crate) struct TaskRun {
    pub scored: Vec<Scored>,
    /// Why a set could not be scored (the task is then listed as skipped on it).
    pub skipped: Vec<String>,
    pub views: Vec<SetViews>,
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
    GeneClasses {
        set: usize,
        classes: labelled::GeneClasses,
    },
    /// Cells laid out by their vectors.
    Points(PointCloud),
}

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

/// A task's outcome on one embedding set, one variant per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Gene(ProbeOutcome),
    Pair {
        probe: ProbeOutcome,
        feature: PairFeature,
    },
    Cell(cell::CellOutcome),
    Integration(integration::IntegrationOutcome),
    Perturbation(perturbation::PerturbationOutcome),
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

impl Outcome {
    pub fn group(&self) -> TaskGroup {
        match self {
            Outcome::Gene(_) => TaskGroup::Gene,
            Outcome::Pair { .. } => TaskGroup::Pair,
            Outcome::Cell(_) => TaskGroup::Cell,
            Outcome::Integration(_) => TaskGroup::Integration,
            Outcome::Perturbation(_) => TaskGroup::Perturbation,
        }
    }

    pub fn main_metric(&self) -> MainMetric {
        match self {
            Outcome::Gene(p) | Outcome::Pair { probe: p, .. } => MainMetric::Probe(p.metric),
            Outcome::Cell(c) => MainMetric::Cell(c.metric),
            Outcome::Integration(i) => MainMetric::Scib(i.metric),
            Outcome::Perturbation(p) => MainMetric::Perturb(p.metric),
        }
    }

    /// The main metric's value (mean ± sd; NaN when undefined).
    pub fn main_value(&self) -> MeanSd {
        let nan = MeanSd {
            mean: f64::NAN,
            sd: f64::NAN,
        };
        match self {
            Outcome::Gene(p) | Outcome::Pair { probe: p, .. } => p.scores.metric(p.metric),
            Outcome::Cell(c) => c.value(c.metric),
            Outcome::Integration(i) => MeanSd {
                mean: i.scores.get(i.metric),
                sd: 0.0,
            },
            Outcome::Perturbation(p) => p.scores.get(p.metric).unwrap_or(nan),
        }
    }

    /// The classifier's scores (gene, pair and cell tasks).
    pub fn probe_scores(&self) -> Option<&ProbeScores> {
        match self {
            Outcome::Gene(p) | Outcome::Pair { probe: p, .. } => Some(&p.scores),
            Outcome::Cell(c) => Some(&c.scores.probe),
            _ => None,
        }
    }

    /// Metrics besides the classifier's, by name in sorted order (cell tasks: kNN and k-means;
    /// integration: every scIB metric; perturbation: every metric and baseline).
    pub fn other_metrics(&self) -> Vec<(String, MeanSd)> {
        let mut v = match self {
            Outcome::Gene(_) | Outcome::Pair { .. } => Vec::new(),
            Outcome::Cell(c) => c.other_metrics(),
            Outcome::Integration(i) => i
                .scores
                .named()
                .into_iter()
                .map(|(k, v)| (k.to_string(), MeanSd { mean: v, sd: 0.0 }))
                .collect(),
            Outcome::Perturbation(p) => p.scores.named(),
        };
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Examples counted on each side: (positive, negative) for probes; (cells, 0) or
    /// (targets, 0) for the others.
    pub fn counts(&self) -> (usize, usize) {
        match self {
            Outcome::Gene(p) | Outcome::Pair { probe: p, .. } => (p.n_positive, p.n_negative),
            Outcome::Cell(c) => (c.cells, 0),
            Outcome::Integration(i) => (i.cells, 0),
            Outcome::Perturbation(p) => (p.scores.targets_with_embedding, 0),
        }
    }

    pub fn coverage(&self) -> &Coverage {
        match self {
            Outcome::Gene(p) | Outcome::Pair { probe: p, .. } => &p.coverage,
            Outcome::Cell(c) => &c.coverage,
            Outcome::Integration(i) => &i.coverage,
            Outcome::Perturbation(p) => &p.coverage,
        }
    }

    /// The metric's name, for tables.
    pub fn main_metric_name(&self) -> &'static str {
        self.main_metric().name()
    }
}
