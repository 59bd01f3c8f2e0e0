//! Which genes the arms describe: the genes of the selected tasks (ids turned into symbols with
//! the gene id map, the unmapped counted) or a gene list, cut to a seeded sample if asked, plus
//! samples of the seen and held-out genes that have curated text, for the fidelity measure.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::config::{ExperimentSection, GeneSource};
use crate::eval::arms::GeneSelection;
use crate::eval::task::{TaskKind, TaskSpec};
use crate::io::GeneIdMap;

/// The genes to describe, and the fidelity samples among them.
pub(crate) struct Chosen {
    /// Every gene to describe, sorted.
    pub genes: Vec<String>,
    pub seen: Vec<String>,
    pub held_out: Vec<String>,
    pub selection: GeneSelection,
}

/// `n` of `genes` chosen with `seed` (all of them when fewer), sorted.
pub(crate) fn sample(genes: &[String], n: usize, seed: u64) -> Vec<String> {
    let mut all = genes.to_vec();
    all.sort();
    all.dedup();
    if all.len() > n {
        all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        all.truncate(n);
        all.sort();
    }
    all
}

/// A task id as a symbol: through the map when there is one (ids it does not know are `None`),
/// else as written.
fn symbol(id: &str, map: Option<&GeneIdMap>) -> Option<String> {
    match map {
        Some(m) => m
            .canonical(id)
            .and_then(|e| m.symbol_of(e))
            .map(str::to_string),
        None => Some(id.to_string()),
    }
}

/// Chooses the genes: from the tasks (or the gene list), the seeded `max_genes` sample, and
/// `fidelity_genes` each of the training and held-out genes (all with curated text).
pub(crate) fn choose(
    exp: &ExperimentSection,
    tasks: &[&TaskSpec],
    data_dir: &std::path::Path,
    map: Option<&GeneIdMap>,
    (train, test): (&[String], &[String]),
    seed: u64,
) -> Result<Chosen> {
    let mut selection = GeneSelection::default();
    let named: Vec<String> = match &exp.gene_list {
        Some(list) => {
            selection.source = format!("gene list {}", list.display());
            crate::io::texts::read_gene_list(list)?
        }
        None => {
            let pairs = exp.genes == GeneSource::Tasks;
            let mut ids: Vec<String> = Vec::new();
            let mut names: Vec<&str> = Vec::new();
            for t in tasks {
                let spec = match &t.kind {
                    TaskKind::Gene(s) => s,
                    TaskKind::Pair(s) if pairs => s,
                    _ => continue,
                };
                if !t.data_present(data_dir) {
                    continue;
                }
                names.push(&t.name);
                ids.extend(spec.gene_ids(data_dir)?);
            }
            let kind = if pairs { "gene and pair" } else { "gene-level" };
            selection.source = format!("the {kind} tasks {}", names.join(", "));
            let mut seen = BTreeSet::new();
            let mut symbols = Vec::new();
            for id in ids {
                if !seen.insert(id.clone()) {
                    continue;
                }
                match symbol(&id, map) {
                    Some(s) => symbols.push(s),
                    None => selection.unmapped += 1,
                }
            }
            symbols
        }
    };
    let mut named: Vec<String> = named
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    selection.from_source = named.len();
    if let Some(n) = exp.max_genes {
        named = sample(&named, n, seed);
    }
    selection.kept = named.len();
    let seen = sample(train, exp.fidelity_genes, seed ^ 0x5EE);
    let held_out = sample(test, exp.fidelity_genes, seed ^ 0x0D);
    selection.fidelity_seen = seen.len();
    selection.fidelity_held_out = held_out.len();
    let genes: Vec<String> = named
        .iter()
        .chain(&seen)
        .chain(&held_out)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if genes.is_empty() {
        bail!(
            "no genes to describe: {} named none (is the data folder right?)",
            selection.source
        );
    }
    selection.described = genes.len();
    Ok(Chosen {
        genes,
        seen,
        held_out,
        selection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_seeded_sorted_and_whole_when_small() {
        let g: Vec<String> = (0..20).map(|i| format!("G{i:02}")).collect();
        let a = sample(&g, 5, 1);
        assert_eq!(a.len(), 5);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, sample(&g, 5, 1));
        assert_ne!(a, sample(&g, 5, 2));
        assert_eq!(sample(&g, 50, 1), g);
    }
}
