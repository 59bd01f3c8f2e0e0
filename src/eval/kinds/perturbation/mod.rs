//! Zero-shot perturbation response tasks (docs/tasks.md). Per-perturbation pseudobulk (`data`):
//! the mean expression of its cells (counts scaled to 10,000 and log1p-transformed first, unless
//! the matrix is already log-normalised) minus the mean of the controls of the same group (e.g.
//! cell line). Leave one perturbation out: a held-out single target's delta is predicted as the
//! cosine-weighted mean of the deltas of the `k` other targets of its group whose gene
//! embeddings are closest to its own (weights max(cos, 0); uniform when all are 0); its cells
//! are never used. Combinations (`A+B`) are predicted in `doubles`. Metrics (`metrics`) per
//! held-out perturbation, then mean ± sd: Pearson of predicted vs observed delta over all genes
//! and over its top-20 genes by |observed delta|, and MSE; baselines beside: the mean delta of
//! the group's training perturbations, and no change (delta 0; MSE only).

mod data;
mod doubles;
mod metrics;
mod neighbours;
mod source;

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::shared::{RunInput, Scored, TaskRun};
use crate::error::Error;
use crate::eval::coverage::Coverage;
use crate::eval::metric::PerturbMetric;
use crate::eval::probe::metrics::MeanSd;
use crate::io::{GeneEmbeddings, GeneResolver};
use data::PerturbData;
use metrics::{mse, score, PerTarget, PredictionScores};
use neighbours::{knn_prediction, mean_delta, unit_vector};

pub use metrics::PerturbScores;
pub use source::{Combinations, InteractionTable, PerturbSource};

/// A perturbation task's `[perturbation]` section and `main_metric`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerturbationTask {
    #[serde(default)]
    pub main_metric: PerturbMetric,
    pub perturbation: PerturbSource,
}

impl PerturbationTask {
    pub fn check(&self) -> Result<()> {
        self.perturbation.check()
    }

    /// Every data file the task reads, relative to the data folder.
    pub fn files(&self) -> Vec<&str> {
        self.perturbation.files()
    }
}

/// A perturbation task's outcome on one set.
#[derive(Debug, Clone, PartialEq)]
pub struct PerturbationOutcome {
    pub metric: PerturbMetric,
    pub coverage: Coverage,
    pub scores: PerturbScores,
}

/// The task on every set: leave one perturbation out ([`evaluate`], or
/// [`doubles::evaluate`] for combinations).
pub(crate) fn run(
    task: &PerturbationTask,
    input: &RunInput<'_>,
) -> Result<TaskRun<PerturbationOutcome>> {
    let src = &task.perturbation;
    let data = data::load(src, input.data_dir)?;
    let interactions = match &src.interactions {
        Some(t) => Some(doubles::read_interactions(
            t,
            &src.separator,
            input.data_dir,
        )?),
        None => None,
    };
    let listed = |v: &[String]| match v.is_empty() {
        true => "none".to_string(),
        false => v.join(", "),
    };
    let cells = format!(
        "{} of {} cells selected{}; perturbations under {} cells left out: {}{}",
        data.cells_selected,
        data.cells_read,
        match src.select.is_empty() {
            true => String::new(),
            false => format!(
                " ({})",
                src.select
                    .iter()
                    .map(|(c, v)| format!("{c} in {}", v.join("|")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        src.min_cells,
        listed(&data.too_few_cells),
        match data.combinations_left_out.len() {
            0 => String::new(),
            n => format!("; {n} combinations left out"),
        }
    );
    let mut out = TaskRun::default();
    for (k, set) in input.sets.iter().enumerate() {
        let resolver = input.resolver(&set.embeddings);
        let (s, how) = match src.combinations {
            Combinations::LeaveOut => {
                let s = evaluate(&data, &set.embeddings, &resolver, src.k)
                    .with_context(|| format!("on '{}'", set.name))?;
                let groups = match src.group_column {
                    Some(ref c) => format!(
                        "; groups by {c}: {} (controls, neighbours and mean baseline from the \
                         same group)",
                        data.describe_groups()
                    ),
                    None => format!("; {} control cells", data.control_cells[0]),
                };
                let how = format!(
                    "leave one perturbation out over {} targets ({} with an embedding{groups}); \
                     {}-nearest targets by cosine",
                    s.targets_total, s.targets_with_embedding, src.k
                );
                (s, how)
            }
            Combinations::Predict => doubles::evaluate(
                &data,
                &set.embeddings,
                &resolver,
                src.k,
                interactions.as_ref(),
            )
            .with_context(|| format!("on '{}'", set.name))?,
        };
        out.scored.push(Scored {
            set: k,
            protocol: format!("{how}; {cells}"),
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

/// Leave-one-perturbation-out prediction of single targets from the `k` nearest targets of the
/// same group in embedding space.
fn evaluate(
    data: &PerturbData,
    emb: &GeneEmbeddings,
    resolver: &GeneResolver<'_>,
    k: usize,
) -> Result<PerturbScores> {
    let rows: Vec<Option<usize>> = data
        .units
        .iter()
        .map(|u| resolver.resolve(&u.genes[0]))
        .collect();
    let have: Vec<usize> = (0..data.units.len())
        .filter(|&i| rows[i].is_some())
        .collect();
    if have.len() < 3 {
        return Err(Error::too_few(format!(
            "only {} of {} perturbation targets have an embedding",
            have.len(),
            data.units.len()
        )));
    }
    let vecs: HashMap<usize, Vec<f64>> = have
        .iter()
        .map(|&i| {
            let row = emb.row(rows[i].expect("has embedding"));
            (i, unit_vector(row.iter().map(|&x| x as f64)))
        })
        .collect();
    let n_groups = data.groups.len();
    let mut by_group: Vec<[PerTarget; 2]> = (0..n_groups).map(|_| Default::default()).collect();
    let (mut prediction, mut baseline, mut no_change) =
        (PerTarget::default(), PerTarget::default(), Vec::new());
    let g = data.genes.len();
    for &t in &have {
        let group = data.units[t].group;
        let others: Vec<usize> = have
            .iter()
            .copied()
            .filter(|&j| data.units[j].group == group && data.units[j].label != data.units[t].label)
            .collect();
        if others.is_empty() {
            continue;
        }
        let pred = knn_prediction(&vecs[&t], &others, &vecs, &data.deltas, k);
        let mean = mean_delta(&others, &data.deltas);
        let obs = &data.deltas[t];
        prediction.push(score(&pred, obs));
        baseline.push(score(&mean, obs));
        by_group[group][0].push(score(&pred, obs));
        by_group[group][1].push(score(&mean, obs));
        no_change.push(mse(&vec![0.0; g], obs));
    }
    if no_change.len() < 3 {
        return Err(Error::too_few(
            "fewer than 3 perturbations have an embedded neighbour in their group",
        ));
    }
    let mut breakdown = Vec::new();
    if n_groups > 1 {
        for (name, [p, b]) in data.groups.iter().zip(&by_group) {
            if p.mse.is_empty() {
                continue;
            }
            breakdown.extend(PredictionScores::of(p).named(&format!("{name}.")));
            breakdown.extend(PredictionScores::of(b).named(&format!("{name}.mean_baseline_")));
        }
    }
    breakdown.sort_by(|a, b| a.0.cmp(&b.0));
    let mut missing: Vec<String> = (0..data.units.len())
        .filter(|&i| rows[i].is_none())
        .map(|i| data.units[i].label.clone())
        .collect();
    missing.sort();
    missing.dedup();
    Ok(PerturbScores {
        prediction: PredictionScores::of(&prediction),
        mean_baseline: PredictionScores::of(&baseline),
        no_change_mse: MeanSd::of(&no_change).expect("at least 3 targets"),
        additive: None,
        breakdown,
        targets_total: data.units.len(),
        targets_with_embedding: have.len(),
        missing_targets: missing,
    })
}

#[cfg(test)]
mod tests {
    use super::data::Unit;
    use super::metrics::pearson;
    use super::*;

    #[test]
    fn pearson_and_scores_match_hand_values() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
        assert!((mse(&[0.0, 0.0], &[1.0, 3.0]) - 5.0).abs() < 1e-12);
    }

    /// Deltas and units of `n_t` single targets in one group.
    pub(super) fn singles(deltas: Vec<Vec<f64>>, groups: &[usize]) -> PerturbData {
        let n_t = deltas.len();
        let n_groups = groups.iter().max().map_or(1, |m| m + 1);
        PerturbData {
            genes: (0..deltas[0].len()).map(|i| format!("G{i}")).collect(),
            units: (0..n_t)
                .map(|i| Unit {
                    label: format!("T{i}"),
                    genes: vec![format!("T{i}")],
                    group: groups[i],
                    cells: 30,
                })
                .collect(),
            deltas,
            groups: (0..n_groups).map(|g| format!("line{g}")).collect(),
            control_cells: vec![100; n_groups],
            too_few_cells: vec![],
            combinations_left_out: vec![],
            cells_selected: 0,
            cells_read: 0,
        }
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
        let data = singles(deltas.clone(), &vec![0; n_t]);
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
        assert!(s.breakdown.is_empty(), "one group: no breakdown");
        // Embeddings that carry no family information: no better than chance.
        let mut shuffled = values.clone();
        for t in 0..n_t {
            shuffled[t * d] = 0.0;
        }
        let emb2 = GeneEmbeddings {
            ids: ids.clone(),
            dim: d,
            values: shuffled,
            source: String::new(),
        };
        let r = evaluate(&data, &emb2, &GeneResolver::new(&emb2, None), 3).unwrap();
        assert!(r.prediction.pearson_delta.unwrap().mean < 0.5, "{r:?}");
        assert_eq!(s.targets_with_embedding, n_t);
        // Two groups whose responses are opposite: neighbours come from the same group only,
        // so the prediction stays right; pooling the groups' deltas would cancel it.
        let mut flipped = deltas.clone();
        flipped.extend(
            deltas
                .iter()
                .map(|d| d.iter().map(|x| -x).collect::<Vec<f64>>()),
        );
        let mut data2 = singles(flipped, &[vec![0; n_t], vec![1; n_t]].concat());
        for (i, u) in data2.units.iter_mut().enumerate() {
            u.genes = vec![format!("T{}", i % n_t)];
            u.label = format!("T{}", i % n_t);
        }
        let s2 = evaluate(&data2, &emb, &GeneResolver::new(&emb, None), 3).unwrap();
        assert!(s2.prediction.pearson_delta.unwrap().mean > 0.9, "{s2:?}");
        let names: Vec<&str> = s2.breakdown.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"line1.pearson_delta"), "{names:?}");
        assert!(names.contains(&"line0.mean_baseline_mse"), "{names:?}");
    }
}
