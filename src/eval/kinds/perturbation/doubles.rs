//! Combinatorial perturbations (`A+B`): each held-out combination's delta is predicted from the
//! `k` perturbations (singles and the other combinations) nearest to it in the space of summed
//! gene embeddings — a combination's vector is the sum of its genes' embeddings, as pair tasks
//! sum a pair's two vectors. Beside it: the additive baseline (the sum of the single targets'
//! deltas, where each was measured), the mean of the other combinations, and no change; and the
//! metrics by genetic-interaction type when a table of types is given.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Result};

use super::data::PerturbData;
use super::metrics::{mse, score, PerTarget, PerturbScores, PredictionScores};
use super::neighbours::{knn_prediction, mean_delta, unit_vector};
use super::source::InteractionTable;
use crate::error::Error;
use crate::eval::probe::metrics::MeanSd;
use crate::io::table::{split_joined, ColumnRef, Table};
use crate::io::{GeneEmbeddings, GeneResolver};

/// Genetic-interaction types by gene pair (genes upper-cased and sorted).
pub(crate) struct Interactions {
    pub by_pair: HashMap<Vec<String>, String>,
    /// The table as the task names it (relative to the data folder), for protocols.
    pub file: String,
}

fn pair_key(genes: &[String]) -> Vec<String> {
    let mut k: Vec<String> = genes.iter().map(|g| g.to_ascii_uppercase()).collect();
    k.sort();
    k
}

/// Reads the interaction table; a pair that does not split into two genes, a row without a
/// type, or a pair listed twice with different types is an error naming the line.
pub(crate) fn read_interactions(
    t: &InteractionTable,
    separator: &str,
    data_dir: &Path,
) -> Result<Interactions> {
    let path = data_dir.join(&t.file);
    let table = Table::read(&path, true)?;
    let pc = table.column(&ColumnRef::Name(t.pair_column.clone()))?;
    let tc = table.column(&ColumnRef::Name(t.type_column.clone()))?;
    let file = path.display().to_string();
    let mut by_pair: HashMap<Vec<String>, String> = HashMap::new();
    for row in &table.rows {
        let pair = table.field(row, pc)?;
        let kind = table.field(row, tc)?;
        let genes: Vec<String> = match split_joined(pair, separator) {
            Some(p) if p.len() == 2 => p.into_iter().map(str::to_string).collect(),
            _ => bail!(
                "{file}:{}: '{pair}' is not two genes joined by '{separator}'",
                row.0
            ),
        };
        if kind.is_empty() {
            bail!("{file}:{}: pair '{pair}' has no interaction type", row.0);
        }
        if let Some(prev) = by_pair.insert(pair_key(&genes), kind.to_string()) {
            if prev != kind {
                bail!(
                    "{file}:{}: pair '{pair}' is listed as both {prev} and {kind}",
                    row.0
                );
            }
        }
    }
    Ok(Interactions {
        by_pair,
        file: t.file.clone(),
    })
}

/// Leave one combination out; returns the scores and the protocol text.
pub(crate) fn evaluate(
    data: &PerturbData,
    emb: &GeneEmbeddings,
    resolver: &GeneResolver<'_>,
    k: usize,
    interactions: Option<&Interactions>,
) -> Result<(PerturbScores, String)> {
    let n = data.units.len();
    let rows: Vec<Option<Vec<usize>>> = data
        .units
        .iter()
        .map(|u| u.genes.iter().map(|g| resolver.resolve(g)).collect())
        .collect();
    let vecs: HashMap<usize, Vec<f64>> = (0..n)
        .filter_map(|i| {
            let r = rows[i].as_ref()?;
            let summed = (0..emb.dim).map(|j| r.iter().map(|&row| emb.row(row)[j] as f64).sum());
            Some((i, unit_vector(summed)))
        })
        .collect();
    let combos: Vec<usize> = (0..n).filter(|&i| !data.is_single(i)).collect();
    let held_out: Vec<usize> = combos
        .iter()
        .copied()
        .filter(|i| vecs.contains_key(i))
        .collect();
    if held_out.len() < 3 {
        return Err(Error::too_few(format!(
            "only {} of {} combinations have every gene embedded",
            held_out.len(),
            combos.len()
        )));
    }
    let single_of: HashMap<String, usize> = (0..n)
        .filter(|&i| data.is_single(i))
        .map(|i| (data.units[i].genes[0].to_ascii_uppercase(), i))
        .collect();
    let g = data.genes.len();
    let (mut prediction, mut baseline, mut additive, mut no_change) = (
        PerTarget::default(),
        PerTarget::default(),
        PerTarget::default(),
        Vec::new(),
    );
    let mut by_type: BTreeMap<String, [PerTarget; 2]> = BTreeMap::new();
    // The prediction on the combinations the additive baseline covers, to compare like with like.
    let mut with_singles = PerTarget::default();
    let mut unlisted = 0;
    for &d in &held_out {
        let candidates: Vec<usize> = (0..n)
            .filter(|&j| j != d && vecs.contains_key(&j))
            .collect();
        let other_combos: Vec<usize> = combos.iter().copied().filter(|&j| j != d).collect();
        let obs = &data.deltas[d];
        let pred = knn_prediction(&vecs[&d], &candidates, &vecs, &data.deltas, k);
        prediction.push(score(&pred, obs));
        baseline.push(score(&mean_delta(&other_combos, &data.deltas), obs));
        no_change.push(mse(&vec![0.0; g], obs));
        let parts: Option<Vec<usize>> = data.units[d]
            .genes
            .iter()
            .map(|x| single_of.get(&x.to_ascii_uppercase()).copied())
            .collect();
        let sum = parts.map(|p| {
            (0..g)
                .map(|i| p.iter().map(|&s| data.deltas[s][i]).sum::<f64>())
                .collect::<Vec<f64>>()
        });
        if let Some(sum) = &sum {
            additive.push(score(sum, obs));
            with_singles.push(score(&pred, obs));
        }
        if let Some(table) = interactions {
            match table.by_pair.get(&pair_key(&data.units[d].genes)) {
                Some(kind) => {
                    let e = by_type.entry(kind.clone()).or_default();
                    e[0].push(score(&pred, obs));
                    if let Some(sum) = &sum {
                        e[1].push(score(sum, obs));
                    }
                }
                None => unlisted += 1,
            }
        }
    }
    let mut breakdown: Vec<(String, MeanSd)> = Vec::new();
    if !with_singles.mse.is_empty() {
        breakdown.extend(PredictionScores::of(&with_singles).named("with_singles."));
    }
    for (kind, [p, a]) in &by_type {
        breakdown.extend(PredictionScores::of(p).named(&format!("gi.{kind}.")));
        if !a.mse.is_empty() {
            breakdown.extend(PredictionScores::of(a).named(&format!("gi.{kind}.additive_")));
        }
    }
    breakdown.sort_by(|a, b| a.0.cmp(&b.0));
    let singles = (0..n).filter(|&i| data.is_single(i)).count();
    let types = match interactions {
        Some(t) => format!(
            "; interaction types from {}: {} ({unlisted} held-out combinations not listed)",
            t.file,
            by_type
                .iter()
                .map(|(k, v)| format!("{k} {}", v[0].mse.len()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => String::new(),
    };
    let protocol = format!(
        "leave one combination out over {} combinations ({} with every gene embedded); \
         {k}-nearest of the other perturbations ({singles} singles, {} other combinations) by \
         cosine of summed gene embeddings; additive baseline (sum of the singles' deltas) for the {} \
         of {} whose singles were measured (the prediction on those: with_singles.*); mean baseline: the mean of the other combinations; {} control cells{types}",
        combos.len(),
        held_out.len(),
        combos.len() - 1,
        additive.mse.len(),
        held_out.len(),
        data.control_cells[0]
    );
    let mut missing: Vec<String> = combos
        .iter()
        .filter(|i| !vecs.contains_key(i))
        .map(|&i| data.units[i].label.clone())
        .collect();
    missing.sort();
    Ok((
        PerturbScores {
            prediction: PredictionScores::of(&prediction),
            mean_baseline: PredictionScores::of(&baseline),
            no_change_mse: MeanSd::of(&no_change).expect("at least 3 combinations"),
            additive: (!additive.mse.is_empty()).then(|| PredictionScores::of(&additive)),
            breakdown,
            targets_total: combos.len(),
            targets_with_embedding: held_out.len(),
            missing_targets: missing,
        },
        protocol,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::data::Unit;
    use super::*;

    fn unit(label: &str) -> Unit {
        Unit {
            label: label.into(),
            genes: label.split('+').map(str::to_string).collect(),
            group: 0,
            cells: 30,
        }
    }

    /// Four singles and five doubles whose deltas are exactly additive: the additive baseline
    /// scores Pearson 1 and MSE 0 where both singles were measured; a double with a gene without
    /// an embedding is counted, not scored; interaction types break the metrics down.
    #[test]
    fn additive_doubles_are_scored_against_their_baselines() {
        let d = |v: [f64; 4]| v.to_vec();
        let singles = [
            ("A", d([1.0, 0.0, 0.5, -0.2])),
            ("B", d([0.0, 1.0, -0.3, 0.4])),
            ("C", d([-1.0, 0.2, 0.0, 1.0])),
            ("D", d([0.3, -0.8, 1.0, 0.0])),
        ];
        let delta_of = |g: &str| singles.iter().find(|s| s.0 == g).unwrap().1.clone();
        let sum = |a: &str, b: &str| -> Vec<f64> {
            delta_of(a)
                .iter()
                .zip(delta_of(b))
                .map(|(x, y)| x + y)
                .collect()
        };
        let mut units: Vec<Unit> = singles.iter().map(|s| unit(s.0)).collect();
        let mut deltas: Vec<Vec<f64>> = singles.iter().map(|s| s.1.clone()).collect();
        for (a, b) in [("A", "B"), ("C", "D"), ("A", "C"), ("B", "D"), ("A", "X")] {
            units.push(unit(&format!("{a}+{b}")));
            deltas.push(match b {
                "X" => delta_of(a),
                _ => sum(a, b),
            });
        }
        let data = PerturbData {
            genes: (0..4).map(|i| format!("G{i}")).collect(),
            units,
            deltas,
            groups: vec![String::new()],
            control_cells: vec![50],
            too_few_cells: vec![],
            combinations_left_out: vec![],
            cells_selected: 0,
            cells_read: 0,
        };
        // X has no embedding; the others are the four unit axes.
        let emb = GeneEmbeddings {
            ids: ["A", "B", "C", "D"].map(String::from).to_vec(),
            dim: 4,
            values: (0..16)
                .map(|i| if i % 5 == 0 { 1.0 } else { 0.0 })
                .collect(),
            source: String::new(),
        };
        let types = Interactions {
            by_pair: [
                (
                    vec!["A".to_string(), "B".to_string()],
                    "synergy".to_string(),
                ),
                (
                    vec!["B".to_string(), "D".to_string()],
                    "synergy".to_string(),
                ),
                (
                    vec!["C".to_string(), "D".to_string()],
                    "epistasis".to_string(),
                ),
            ]
            .into_iter()
            .collect(),
            file: "gi.csv".into(),
        };
        let (s, protocol) =
            evaluate(&data, &emb, &GeneResolver::new(&emb, None), 2, Some(&types)).unwrap();
        assert_eq!((s.targets_total, s.targets_with_embedding), (5, 4));
        assert_eq!(s.missing_targets, ["A+X"]);
        let add = s.additive.as_ref().unwrap();
        assert!((add.pearson_delta.unwrap().mean - 1.0).abs() < 1e-12);
        assert!(add.mse.mean.abs() < 1e-12);
        // A+B's summed vector is equally close to A and B (cos 0.71) and to A+C, B+D (0.5):
        // with k = 2 the prediction is (dA + dB) / 2, half the truth: Pearson 1, MSE > 0.
        let named: BTreeMap<String, MeanSd> = s.named().into_iter().collect();
        assert!(named["mse"].mean > 0.0);
        assert!(named.contains_key("with_singles.pearson_delta"));
        assert_eq!(named["gi.synergy.additive_mse"].mean, 0.0);
        assert!(named.contains_key("gi.epistasis.pearson_delta"));
        assert!(
            protocol.contains("epistasis 1, synergy 2 (1 held-out combinations not listed)"),
            "{protocol}"
        );
        assert!(
            protocol.contains("for the 4 of 4 whose singles were measured"),
            "{protocol}"
        );
        // Round trip through the named form results files keep.
        let back = PerturbScores::from_named(&named, (5, 4), vec!["A+X".to_string()]).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn interaction_tables_with_bad_rows_are_errors_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let table = |text: &str| {
            std::fs::write(dir.path().join("gi.csv"), text).unwrap();
            let t = InteractionTable {
                file: "gi.csv".into(),
                pair_column: "perturbation".into(),
                type_column: "gi_type".into(),
            };
            read_interactions(&t, "+", dir.path()).map(|i| i.by_pair.len())
        };
        assert_eq!(
            table("perturbation,gi_type\nA+B,synergy\nB+A,synergy\n").unwrap(),
            1
        );
        for (text, want) in [
            (
                "perturbation,gi_type\nA+B,synergy\nAB,epistasis\n",
                "gi.csv:3: 'AB' is not two genes",
            ),
            (
                "perturbation,gi_type\nA+B,\n",
                "gi.csv:2: pair 'A+B' has no interaction type",
            ),
            (
                "perturbation,gi_type\nA+B,synergy\nB+A,epistasis\n",
                "gi.csv:3: pair 'B+A' is listed as both synergy and epistasis",
            ),
            ("pair,gi_type\nA+B,synergy\n", "no column 'perturbation'"),
        ] {
            let e = format!("{:#}", table(text).unwrap_err());
            assert!(e.contains(want), "{e}");
        }
    }
}
