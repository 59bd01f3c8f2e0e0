//! How a predicted perturbation response is scored against the observed one: Pearson over all
//! genes and over the 20 of largest |observed delta|, and MSE, per held-out perturbation, then
//! mean ± sd; and the named form of every predictor's scores that results files store.

use std::collections::BTreeMap;

use crate::eval::metric::{Metric, PerturbMetric};
use crate::eval::probe::metrics::MeanSd;

/// Pearson correlation; `None` when either side is constant.
pub(crate) fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

pub(crate) fn mse(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len().max(1) as f64
}

/// The metrics of one prediction against the observed delta.
pub(crate) fn score(pred: &[f64], obs: &[f64]) -> (Option<f64>, Option<f64>, f64) {
    let mut order: Vec<usize> = (0..obs.len()).collect();
    order.sort_by(|&a, &b| obs[b].abs().total_cmp(&obs[a].abs()).then(a.cmp(&b)));
    let top: Vec<usize> = order.into_iter().take(20).collect();
    let pick = |v: &[f64]| top.iter().map(|&i| v[i]).collect::<Vec<_>>();
    (
        pearson(pred, obs),
        pearson(&pick(pred), &pick(obs)),
        mse(pred, obs),
    )
}

/// One predictor's metrics, mean ± sd over held-out targets (a Pearson correlation is left out
/// for a target where it is undefined; `None` when it is undefined for every target).
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionScores {
    pub pearson_delta: Option<MeanSd>,
    pub pearson_delta_top20: Option<MeanSd>,
    pub mse: MeanSd,
}

impl PredictionScores {
    /// Mean ± sd of each metric's per-target values.
    pub(crate) fn of(values: &PerTarget) -> Self {
        Self {
            pearson_delta: MeanSd::of(&values.pearson),
            pearson_delta_top20: MeanSd::of(&values.pearson_top20),
            mse: MeanSd::of(&values.mse).expect("at least 3 targets"),
        }
    }

    /// Every defined metric, its name prefixed.
    pub(crate) fn named(&self, prefix: &str) -> Vec<(String, MeanSd)> {
        PerturbMetric::ALL
            .iter()
            .filter_map(|&m| Some((format!("{prefix}{}", m.name()), self.get(m)?)))
            .collect()
    }

    pub(crate) fn get(&self, metric: PerturbMetric) -> Option<MeanSd> {
        match metric {
            PerturbMetric::PearsonDelta => self.pearson_delta,
            PerturbMetric::PearsonDeltaTop20 => self.pearson_delta_top20,
            PerturbMetric::Mse => Some(self.mse),
        }
    }
}

/// Scores and coverage of one embedding set: the embedding neighbours' prediction, the mean
/// of the training perturbations, no change (MSE only), for combinations the additive baseline
/// (the sum of the singles' deltas), and a breakdown by group or interaction type.
#[derive(Debug, Clone, PartialEq)]
pub struct PerturbScores {
    pub prediction: PredictionScores,
    pub mean_baseline: PredictionScores,
    pub no_change_mse: MeanSd,
    pub additive: Option<PredictionScores>,
    /// Metrics of a part of the held-out perturbations, named `PART.metric` (e.g.
    /// `A172.pearson_delta`, `gi.synergy.additive_mse`).
    pub breakdown: Vec<(String, MeanSd)>,
    pub targets_total: usize,
    pub targets_with_embedding: usize,
    pub missing_targets: Vec<String>,
}

impl PerturbScores {
    /// The prediction's value of `metric`.
    pub fn get(&self, metric: PerturbMetric) -> Option<MeanSd> {
        self.prediction.get(metric)
    }

    /// Every defined metric by name: the prediction's, then `mean_baseline_`- and
    /// `no_change_`-prefixed baselines.
    pub fn named(&self) -> Vec<(String, MeanSd)> {
        let mut out = Vec::new();
        out.extend(self.prediction.named(""));
        out.extend(self.mean_baseline.named("mean_baseline_"));
        if let Some(a) = &self.additive {
            out.extend(a.named("additive_"));
        }
        out.push(("no_change_mse".to_string(), self.no_change_mse));
        out.extend(self.breakdown.iter().cloned());
        out
    }

    /// Rebuilds the scores from [`Self::named`]'s entries (results files).
    pub fn from_named(
        named: &BTreeMap<String, MeanSd>,
        targets: (usize, usize),
        missing_targets: Vec<String>,
    ) -> Option<Self> {
        let side = |prefix: &str| -> Option<PredictionScores> {
            let at = |m: PerturbMetric| named.get(&format!("{prefix}{}", m.name())).copied();
            Some(PredictionScores {
                pearson_delta: at(PerturbMetric::PearsonDelta),
                pearson_delta_top20: at(PerturbMetric::PearsonDeltaTop20),
                mse: at(PerturbMetric::Mse)?,
            })
        };
        Some(Self {
            prediction: side("")?,
            mean_baseline: side("mean_baseline_")?,
            no_change_mse: *named.get("no_change_mse")?,
            additive: side("additive_"),
            breakdown: named
                .iter()
                .filter(|(k, _)| k.contains('.'))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            targets_total: targets.0,
            targets_with_embedding: targets.1,
            missing_targets,
        })
    }
}

/// One predictor's per-target values.
#[derive(Default)]
pub(crate) struct PerTarget {
    pub pearson: Vec<f64>,
    pub pearson_top20: Vec<f64>,
    pub mse: Vec<f64>,
}

impl PerTarget {
    pub(crate) fn push(&mut self, (r, r20, e): (Option<f64>, Option<f64>, f64)) {
        self.pearson.extend(r);
        self.pearson_top20.extend(r20);
        self.mse.push(e);
    }
}
