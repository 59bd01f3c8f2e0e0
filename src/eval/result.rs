//! Results: one [`TaskResult`] per task and embedding set, and the [`ProbeReport`] of a run.
//!
//! In memory a result holds a typed [`Outcome`] per task kind. In JSON (`results.json`, `probe
//! --out`) every result has the same flat shape, documented in docs/results.md and kept stable
//! so saved results can be re-read and compared across versions: `n_positive`/`n_negative`
//! count examples (cells or targets for the kinds without classes), `scores` holds the
//! classifier's scores, `extra` every other metric by name. The conversion both ways is here.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::coverage::Coverage;
use super::kinds::cell::{CellOutcome, CellScores};
use super::kinds::integration::{IntegrationOutcome, SecondBatch};
use super::kinds::perturbation::{PerturbScores, PerturbationOutcome};
use super::kinds::{Outcome, ProbeOutcome, TaskGroup};
use super::metric::{self, CellMetric, Metric, PerturbMetric, ProbeMetric, ScibMetric};
use super::probe::metrics::MeanSd;
use super::probe::{PairFeature, ProbeScores, Solver};
use super::scib::ScibScores;
use super::sets::EmbeddingInfo;
use super::task::Reference;
use crate::embed::cells::CellCoverage;

/// One task scored on one embedding set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireResult", try_from = "WireResult")]
pub struct TaskResult {
    pub task: String,
    pub title: String,
    pub embedding_set: String,
    /// The protocol as it ran (split, seed, counts).
    pub protocol: String,
    pub references: Vec<Reference>,
    pub outcome: Outcome,
}

impl TaskResult {
    pub fn group(&self) -> TaskGroup {
        self.outcome.group()
    }

    /// The main metric's name.
    pub fn main_metric(&self) -> &'static str {
        self.outcome.main_metric().name()
    }

    /// Whether a larger main-metric value is better.
    pub fn higher_is_better(&self) -> bool {
        self.outcome.main_metric().higher_is_better()
    }

    /// The main metric's mean ± sd.
    pub fn main_value(&self) -> MeanSd {
        self.outcome.main_value()
    }
}

/// A task not scored, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedTask {
    pub task: String,
    pub reason: String,
}

/// The classifier every probe used.
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

/// Everything one probe run computed, and how.
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

/// A result as written to JSON (see the module documentation).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireResult {
    task: String,
    title: String,
    group: TaskGroup,
    main_metric: String,
    protocol: String,
    n_folds: usize,
    pair_feature: Option<PairFeature>,
    embedding_set: String,
    n_positive: usize,
    n_negative: usize,
    coverage: Coverage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scores: Option<ProbeScores>,
    references: Vec<Reference>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<String, MeanSd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cell_coverage: Option<CellCoverage>,
}

impl From<TaskResult> for WireResult {
    fn from(r: TaskResult) -> Self {
        let (n_positive, n_negative) = r.outcome.counts();
        let extra: BTreeMap<String, MeanSd> = r.outcome.other_metrics().into_iter().collect();
        let mut w = WireResult {
            group: r.outcome.group(),
            main_metric: r.outcome.main_metric().name().to_string(),
            n_positive,
            n_negative,
            coverage: r.outcome.coverage().clone(),
            scores: r.outcome.probe_scores().cloned(),
            extra,
            task: r.task,
            title: r.title,
            protocol: r.protocol,
            n_folds: 0,
            pair_feature: None,
            embedding_set: r.embedding_set,
            references: r.references,
            cell_coverage: None,
        };
        match r.outcome {
            Outcome::Gene(p) => w.n_folds = p.n_folds,
            Outcome::Pair { probe, feature } => {
                w.n_folds = probe.n_folds;
                w.pair_feature = Some(feature);
            }
            Outcome::Cell(c) => {
                w.n_folds = c.n_folds;
                w.cell_coverage = Some(c.cell_coverage);
            }
            Outcome::Integration(i) => w.cell_coverage = Some(i.cell_coverage),
            Outcome::Perturbation(p) => w.n_folds = p.scores.targets_with_embedding,
        }
        w
    }
}

impl TryFrom<WireResult> for TaskResult {
    type Error = anyhow::Error;

    fn try_from(w: WireResult) -> Result<Self> {
        let outcome = wire_outcome(&w)?;
        Ok(TaskResult {
            task: w.task,
            title: w.title,
            embedding_set: w.embedding_set,
            protocol: w.protocol,
            references: w.references,
            outcome,
        })
    }
}

/// The typed outcome of a result read from JSON.
fn wire_outcome(w: &WireResult) -> Result<Outcome> {
    let task = &w.task;
    fn metric_of<M: Metric>(all: &[M], w: &WireResult) -> Result<M> {
        metric::by_name(all, &w.main_metric).ok_or_else(|| {
            anyhow::anyhow!("task '{}': unknown main_metric '{}'", w.task, w.main_metric)
        })
    }
    let scores = || -> Result<ProbeScores> {
        w.scores
            .clone()
            .ok_or_else(|| anyhow::anyhow!("task '{task}': no classifier scores"))
    };
    let extra = |name: &str| -> Result<MeanSd> {
        w.extra
            .get(name)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("task '{task}': no '{name}' in extra"))
    };
    let cell_coverage = || -> Result<CellCoverage> {
        w.cell_coverage
            .clone()
            .ok_or_else(|| anyhow::anyhow!("task '{task}': no cell_coverage"))
    };
    let probe = |metric: ProbeMetric| -> Result<ProbeOutcome> {
        Ok(ProbeOutcome {
            metric,
            n_folds: w.n_folds,
            n_positive: w.n_positive,
            n_negative: w.n_negative,
            coverage: w.coverage.clone(),
            scores: scores()?,
        })
    };
    Ok(match w.group {
        TaskGroup::Gene => Outcome::Gene(probe(metric_of(ProbeMetric::ALL, w)?)?),
        TaskGroup::Pair => Outcome::Pair {
            probe: probe(metric_of(ProbeMetric::ALL, w)?)?,
            feature: w.pair_feature.unwrap_or(PairFeature::Sum),
        },
        TaskGroup::Cell => {
            let m = |c: CellMetric| extra(c.name());
            Outcome::Cell(CellOutcome {
                metric: metric_of(CellMetric::ALL, w)?,
                n_folds: w.n_folds,
                cells: w.n_positive,
                coverage: w.coverage.clone(),
                scores: CellScores {
                    probe: scores()?,
                    knn10_accuracy: m(CellMetric::Knn10Accuracy)?,
                    knn10_macro_f1: m(CellMetric::Knn10MacroF1)?,
                    kmeans_ari: m(CellMetric::KmeansAri)?.mean,
                    kmeans_nmi: m(CellMetric::KmeansNmi)?.mean,
                },
                cell_coverage: cell_coverage()?,
            })
        }
        TaskGroup::Integration => {
            let Some(scores) = ScibScores::from_named(|n| w.extra.get(n).map(|v| v.mean)) else {
                bail!("task '{task}': a scIB metric is missing from extra");
            };
            // A second batch key's metrics are named `COLUMN.metric`.
            let column = w.extra.keys().find_map(|k| Some(k.split_once('.')?.0));
            let second_batch = match column {
                Some(c) => {
                    let Some(scores) = ScibScores::from_named(|n| {
                        w.extra.get(&format!("{c}.{n}")).map(|v| v.mean)
                    }) else {
                        bail!("task '{task}': a scIB metric of batch key '{c}' is missing");
                    };
                    Some(SecondBatch {
                        column: c.to_string(),
                        scores,
                    })
                }
                None => None,
            };
            Outcome::Integration(IntegrationOutcome {
                metric: metric_of(ScibMetric::ALL, w)?,
                cells: w.n_positive,
                coverage: w.coverage.clone(),
                scores,
                cell_coverage: cell_coverage()?,
                second_batch,
            })
        }
        TaskGroup::Perturbation => {
            let targets = (w.coverage.positive_total, w.coverage.positive_matched);
            let missing = w.coverage.missing_genes.clone();
            let Some(scores) = PerturbScores::from_named(&w.extra, targets, missing) else {
                bail!("task '{task}': a perturbation metric is missing from extra");
            };
            Outcome::Perturbation(PerturbationOutcome {
                metric: metric_of(PerturbMetric::ALL, w)?,
                coverage: w.coverage.clone(),
                scores,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::suite::ProbeOptions;
    use crate::eval::testing::Fixtures;

    /// Every kind's results survive the trip to JSON and back (what `bftkit report` reads), and
    /// are written again byte for byte.
    #[test]
    fn results_of_every_kind_round_trip_through_json() {
        let fx = Fixtures::new();
        let opts = ProbeOptions::new(fx.data());
        let report = fx.probe(&fx.tasks(&[]), true, &opts).unwrap();
        let groups: std::collections::BTreeSet<&str> =
            report.results.iter().map(|r| r.group().name()).collect();
        assert_eq!(groups.len(), 5, "{groups:?}");
        let json = serde_json::to_string(&report.results).unwrap();
        let back: Vec<TaskResult> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report.results);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        // A result without what its kind needs is refused, naming the task.
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let cell = v
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|r| r["group"] == "cell")
            .unwrap();
        cell["extra"].as_object_mut().unwrap().remove("kmeans_ari");
        let e = serde_json::from_value::<Vec<TaskResult>>(v).unwrap_err();
        assert!(e.to_string().contains("kmeans_ari"), "{e}");
    }
}
