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
pub(crate) mod shared;

pub use labelled::ProbeOutcome;
pub use shared::TaskGroup;

use super::coverage::Coverage;
use super::metric::{MainMetric, Metric};
use super::probe::{MeanSd, PairFeature, ProbeScores};

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
                .named()
                .into_iter()
                .map(|(k, v)| (k, MeanSd { mean: v, sd: 0.0 }))
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
