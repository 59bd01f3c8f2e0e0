//! Zero-shot perturbation response tasks (docs/tasks.md). Per-target pseudobulk: each cell's counts are
//! scaled to 10,000 and log1p-transformed, then averaged over the cells of a target; the target's
//! delta is that mean minus the non-targeting controls' mean. Leave one perturbation out: the
//! held-out target's delta is predicted as the cosine-weighted mean of the deltas of the `k`
//! training targets whose gene embeddings are closest to its own (weights max(cos, 0); uniform
//! when all are 0). Its cells are never used. Metrics per held-out target, then mean ± sd:
//! Pearson of predicted vs observed delta over all genes and over its top-20 genes by |observed
//! delta|, and MSE. Baselines in the same table: the mean delta of the training perturbations,
//! and no change (delta 0; Pearson undefined, MSE only).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::shared::{RunInput, Scored, TaskRun};
use crate::error::Error;
use crate::eval::coverage::Coverage;
use crate::eval::metric::{Metric, PerturbMetric};
use crate::eval::probe::metrics::MeanSd;
use crate::io::matrix::{read_mtx, read_names};
use crate::io::table::{ColumnRef, Table};
use crate::io::{GeneEmbeddings, GeneResolver};

/// A perturbation task's `[perturbation]` section and `main_metric`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerturbationTask {
    #[serde(default)]
    pub main_metric: PerturbMetric,
    pub perturbation: PerturbSource,
}

impl PerturbationTask {
    /// Every data file the task reads, relative to the data folder.
    pub fn files(&self) -> Vec<&str> {
        let p = &self.perturbation;
        vec![
            p.counts.as_str(),
            p.genes_file.as_str(),
            p.cells_file.as_str(),
        ]
    }
}

/// A perturbation task's outcome on one set.
#[derive(Debug, Clone, PartialEq)]
pub struct PerturbationOutcome {
    pub metric: PerturbMetric,
    pub coverage: Coverage,
    pub scores: PerturbScores,
}

/// The task on every set: leave one perturbation out ([`evaluate`]).
pub(crate) fn run(
    task: &PerturbationTask,
    input: &RunInput<'_>,
) -> Result<TaskRun<PerturbationOutcome>> {
    let src = &task.perturbation;
    let data = load(src, input.data_dir)?;
    let mut out = TaskRun::default();
    for (k, set) in input.sets.iter().enumerate() {
        let resolver = input.resolver(&set.embeddings);
        let s = evaluate(&data, &set.embeddings, &resolver, src.k)
            .with_context(|| format!("on '{}'", set.name))?;
        out.scored.push(Scored {
            set: k,
            protocol: format!(
                "leave one perturbation out over {} targets ({} with an embedding; {} control \
                 cells; targets under {} cells left out: {}); {}-nearest targets by cosine",
                s.targets_total,
                s.targets_with_embedding,
                data.control_cells,
                src.min_cells,
                if data.too_few_cells.is_empty() {
                    "none".to_string()
                } else {
                    data.too_few_cells.join(", ")
                },
                src.k
            ),
            outcome: PerturbationOutcome {
                metric: task.main_metric,
                coverage: Coverage {
                    positive_total: s.targets_total,
                    positive_matched: s.targets_with_embedding,
                    genes_total: s.targets_total,
                    genes_matched: s.targets_with_embedding,
                    missing_genes: s.missing_targets.clone(),
                    ..Coverage::default()
                },
                scores: s,
            },
        });
    }
    Ok(out)
}

/// A perturbation task's data, as `tasks/*.toml` names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerturbSource {
    /// MatrixMarket counts (genes x cells when `genes_are_rows`).
    pub counts: String,
    pub genes_file: String,
    #[serde(default)]
    pub genes_column: usize,
    /// Cell annotations (TSV with a header): one row per matrix column, in order.
    pub cells_file: String,
    pub target_column: String,
    #[serde(default)]
    pub genes_are_rows: bool,
    /// The control label (e.g. "non-targeting").
    pub control: String,
    /// Targets with fewer cells are left out (counted).
    #[serde(default = "twenty")]
    pub min_cells: usize,
    /// Neighbours used for a prediction.
    #[serde(default = "five")]
    pub k: usize,
}

fn twenty() -> usize {
    20
}
fn five() -> usize {
    5
}

/// Pseudobulk deltas per target.
struct PerturbData {
    pub genes: Vec<String>,
    pub targets: Vec<String>,
    /// `deltas[t][g]`: target mean minus control mean of log1p(CP10k).
    pub deltas: Vec<Vec<f64>>,
    pub control_cells: usize,
    /// Targets left out for having fewer than `min_cells` cells.
    pub too_few_cells: Vec<String>,
}

/// Reads counts and annotations and forms the deltas.
fn load(src: &PerturbSource, data_dir: &Path) -> Result<PerturbData> {
    let genes = read_names(&data_dir.join(&src.genes_file), src.genes_column, true)?;
    let table = Table::read(&data_dir.join(&src.cells_file), true)?;
    let tc = table.column(&ColumnRef::Name(src.target_column.clone()))?;
    let targets_of: Vec<String> = table
        .rows
        .iter()
        .map(|r| table.field(r, tc).map(str::to_string))
        .collect::<Result<_>>()?;
    let cell_ids: Vec<String> = (0..targets_of.len()).map(|i| i.to_string()).collect();
    let m = read_mtx(
        &data_dir.join(&src.counts),
        genes.clone(),
        cell_ids,
        src.genes_are_rows,
    )
    .with_context(|| format!("with cells from {}", src.cells_file))?;
    m.check_expression(&data_dir.join(&src.counts))?;
    let g = genes.len();
    let mut sums: BTreeMap<&str, (Vec<f64>, usize)> = BTreeMap::new();
    for (c, t) in targets_of.iter().enumerate() {
        if t.is_empty() {
            continue;
        }
        let total: f64 = m.row(c).map(|(_, v)| v as f64).sum();
        if total <= 0.0 {
            continue;
        }
        let e = sums.entry(t.as_str()).or_insert_with(|| (vec![0.0; g], 0));
        for (gi, v) in m.row(c) {
            e.0[gi] += (v as f64 * 1e4 / total).ln_1p();
        }
        e.1 += 1;
    }
    let Some((control_sum, control_cells)) = sums.remove(src.control.as_str()) else {
        bail!(
            "{}: no cell has the control label '{}' in column '{}'",
            src.cells_file,
            src.control,
            src.target_column
        );
    };
    let control: Vec<f64> = control_sum
        .iter()
        .map(|s| s / control_cells as f64)
        .collect();
    let (mut targets, mut deltas, mut too_few) = (Vec::new(), Vec::new(), Vec::new());
    for (t, (sum, n)) in sums {
        if n < src.min_cells {
            too_few.push(t.to_string());
            continue;
        }
        targets.push(t.to_string());
        deltas.push(
            sum.iter()
                .zip(&control)
                .map(|(s, c)| s / n as f64 - c)
                .collect(),
        );
    }
    if targets.len() < 3 {
        return Err(Error::too_few(format!(
            "{}: fewer than 3 targets with enough cells",
            src.cells_file
        )));
    }
    Ok(PerturbData {
        genes,
        targets,
        deltas,
        control_cells,
        too_few_cells: too_few,
    })
}

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

fn mse(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len().max(1) as f64
}

/// The metrics of one prediction against the observed delta.
fn score(pred: &[f64], obs: &[f64]) -> (Option<f64>, Option<f64>, f64) {
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
    fn of(values: &PerTarget) -> Self {
        Self {
            pearson_delta: MeanSd::of(&values.pearson),
            pearson_delta_top20: MeanSd::of(&values.pearson_top20),
            mse: MeanSd::of(&values.mse).expect("at least 3 targets"),
        }
    }

    fn get(&self, metric: PerturbMetric) -> Option<MeanSd> {
        match metric {
            PerturbMetric::PearsonDelta => self.pearson_delta,
            PerturbMetric::PearsonDeltaTop20 => self.pearson_delta_top20,
            PerturbMetric::Mse => Some(self.mse),
        }
    }
}

/// Scores and coverage of one embedding set: the embedding neighbours' prediction, the mean
/// of the training perturbations, and no change (MSE only).
#[derive(Debug, Clone, PartialEq)]
pub struct PerturbScores {
    pub prediction: PredictionScores,
    pub mean_baseline: PredictionScores,
    pub no_change_mse: MeanSd,
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
        for (prefix, p) in [
            ("", &self.prediction),
            ("mean_baseline_", &self.mean_baseline),
        ] {
            for m in PerturbMetric::ALL {
                if let Some(v) = p.get(*m) {
                    out.push((format!("{prefix}{}", m.name()), v));
                }
            }
        }
        out.push(("no_change_mse".to_string(), self.no_change_mse));
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
            targets_total: targets.0,
            targets_with_embedding: targets.1,
            missing_targets,
        })
    }
}

/// One predictor's per-target values.
#[derive(Default)]
struct PerTarget {
    pearson: Vec<f64>,
    pearson_top20: Vec<f64>,
    mse: Vec<f64>,
}

impl PerTarget {
    fn push(&mut self, (r, r20, e): (Option<f64>, Option<f64>, f64)) {
        self.pearson.extend(r);
        self.pearson_top20.extend(r20);
        self.mse.push(e);
    }
}

/// Leave-one-perturbation-out prediction from the `k` nearest targets in embedding space.
fn evaluate(
    data: &PerturbData,
    emb: &GeneEmbeddings,
    resolver: &GeneResolver<'_>,
    k: usize,
) -> Result<PerturbScores> {
    let rows: Vec<Option<usize>> = data.targets.iter().map(|t| resolver.resolve(t)).collect();
    let have: Vec<usize> = (0..data.targets.len())
        .filter(|&i| rows[i].is_some())
        .collect();
    if have.len() < 3 {
        return Err(Error::too_few(format!(
            "only {} of {} perturbation targets have an embedding",
            have.len(),
            data.targets.len()
        )));
    }
    let unit = |i: usize| -> Vec<f64> {
        let v: Vec<f64> = emb
            .row(rows[i].expect("has embedding"))
            .iter()
            .map(|&x| x as f64)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        v.into_iter().map(|x| x / n).collect()
    };
    let vecs: HashMap<usize, Vec<f64>> = have.iter().map(|&i| (i, unit(i))).collect();
    let (mut prediction, mut baseline, mut no_change) =
        (PerTarget::default(), PerTarget::default(), Vec::new());
    let g = data.genes.len();
    for &t in &have {
        let others: Vec<usize> = have.iter().copied().filter(|&j| j != t).collect();
        let mut sims: Vec<(f64, usize)> = others
            .iter()
            .map(|&j| (vecs[&t].iter().zip(&vecs[&j]).map(|(a, b)| a * b).sum(), j))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        sims.truncate(k.max(1));
        let mut w: Vec<f64> = sims.iter().map(|s| s.0.max(0.0)).collect();
        if w.iter().sum::<f64>() <= 0.0 {
            w = vec![1.0; sims.len()];
        }
        let wsum: f64 = w.iter().sum();
        let mut pred = vec![0.0; g];
        for (wi, &(_, j)) in w.iter().zip(&sims) {
            for (p, d) in pred.iter_mut().zip(&data.deltas[j]) {
                *p += wi / wsum * d;
            }
        }
        let mut mean = vec![0.0; g];
        for &j in &others {
            for (m, d) in mean.iter_mut().zip(&data.deltas[j]) {
                *m += d / others.len() as f64;
            }
        }
        let obs = &data.deltas[t];
        prediction.push(score(&pred, obs));
        baseline.push(score(&mean, obs));
        no_change.push(mse(&vec![0.0; g], obs));
    }
    Ok(PerturbScores {
        prediction: PredictionScores::of(&prediction),
        mean_baseline: PredictionScores::of(&baseline),
        no_change_mse: MeanSd::of(&no_change).expect("at least 3 targets"),
        targets_total: data.targets.len(),
        targets_with_embedding: have.len(),
        missing_targets: (0..data.targets.len())
            .filter(|&i| rows[i].is_none())
            .map(|i| data.targets[i].clone())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_and_scores_match_hand_values() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
        assert!((mse(&[0.0, 0.0], &[1.0, 3.0]) - 5.0).abs() < 1e-12);
    }

    /// Targets whose embeddings are close have similar deltas: the neighbours predict well,
    /// far better than the mean baseline; shuffled embeddings do not.
    #[test]
    fn neighbours_in_embedding_space_predict_the_planted_response() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (n_t, g, d) = (12, 50, 8);
        // Two families of targets with opposite programs.
        let program: Vec<f64> = (0..g).map(|_| StandardNormal.sample(&mut rng)).collect();
        let mut deltas = Vec::new();
        let mut values = Vec::new();
        for t in 0..n_t {
            let sign = if t % 2 == 0 { 1.0 } else { -1.0 };
            deltas.push(
                program
                    .iter()
                    .map(|p| {
                        let z: f64 = StandardNormal.sample(&mut rng);
                        sign * p + 0.2 * z
                    })
                    .collect::<Vec<f64>>(),
            );
            for j in 0..d {
                let base = if j == 0 { 5.0 * sign } else { 0.0 };
                let z: f32 = StandardNormal.sample(&mut rng);
                values.push(base as f32 + z);
            }
        }
        let data = PerturbData {
            genes: (0..g).map(|i| format!("G{i}")).collect(),
            targets: (0..n_t).map(|i| format!("T{i}")).collect(),
            deltas,
            control_cells: 100,
            too_few_cells: vec![],
        };
        let ids: Vec<String> = (0..n_t).map(|i| format!("T{i}")).collect();
        let emb = GeneEmbeddings {
            ids: ids.clone(),
            dim: d,
            values: values.clone(),
            source: String::new(),
        };
        let s = evaluate(&data, &emb, &GeneResolver::new(&emb, None), 3).unwrap();
        let r = s.prediction.pearson_delta.unwrap().mean;
        assert!(r > 0.9, "{s:?}");
        assert!(s.prediction.mse.mean < s.mean_baseline.mse.mean);
        assert!(s.prediction.mse.mean < s.no_change_mse.mean);
        // Embeddings that carry no family information: no better than chance.
        let mut shuffled = values.clone();
        for t in 0..n_t {
            shuffled[t * d] = 0.0;
        }
        let emb2 = GeneEmbeddings {
            ids,
            dim: d,
            values: shuffled,
            source: String::new(),
        };
        let r = evaluate(&data, &emb2, &GeneResolver::new(&emb2, None), 3).unwrap();
        assert!(r.prediction.pearson_delta.unwrap().mean < 0.5, "{r:?}");
        assert_eq!(s.targets_with_embedding, n_t);
    }
}
