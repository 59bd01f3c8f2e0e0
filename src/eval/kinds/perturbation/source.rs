//! A perturbation task's `[perturbation]` section: where the cells come from (MatrixMarket counts
//! with a cell table, or an AnnData `.h5ad`), which cells are used, how they are grouped, and
//! what is done with combinatorial perturbations.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// A perturbation task's data, as `tasks/*.toml` names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerturbSource {
    /// MatrixMarket counts (genes x cells when `genes_are_rows`), with `genes_file` and a cell
    /// table `cells_file` (TSV with a header; one row per matrix column, in order)...
    #[serde(default)]
    pub counts: Option<String>,
    #[serde(default)]
    pub genes_file: Option<String>,
    #[serde(default)]
    pub genes_column: usize,
    #[serde(default)]
    pub cells_file: Option<String>,
    #[serde(default)]
    pub genes_are_rows: bool,
    /// ...or an AnnData file: its `X` (cells x genes), the columns below read from its `obs`.
    #[serde(default)]
    pub h5ad: Option<String>,
    /// The matrix already holds log-normalised expression (`log1p` of normalised counts): the
    /// pseudobulk is the plain mean. Otherwise it holds counts, scaled to 10,000 per cell and
    /// `log1p`-transformed first.
    #[serde(default)]
    pub log_normalised: bool,
    pub target_column: String,
    /// The control label (e.g. "non-targeting").
    pub control: String,
    /// Keep only cells whose column holds one of the listed values (e.g. `dataset = ["norman19"]`).
    #[serde(default)]
    pub select: BTreeMap<String, Vec<String>>,
    /// Cells grouped by this column (e.g. the cell line): each group's perturbations are compared
    /// with that group's controls, and predicted from the same group's other perturbations.
    #[serde(default)]
    pub group_column: Option<String>,
    /// What to do with combinatorial perturbations (targets joined by `separator`).
    #[serde(default)]
    pub combinations: Combinations,
    #[serde(default = "plus")]
    pub separator: String,
    /// For `combinations = "predict"`: genetic-interaction types of the pairs, to break the
    /// metrics down by type.
    #[serde(default)]
    pub interactions: Option<InteractionTable>,
    /// Targets with fewer cells are left out (counted).
    #[serde(default = "twenty")]
    pub min_cells: usize,
    /// Neighbours used for a prediction.
    #[serde(default = "five")]
    pub k: usize,
}

/// Combinatorial perturbations (`A+B`): left out of a single-target task (listed), or the
/// held-out examples of a combination task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combinations {
    #[default]
    LeaveOut,
    Predict,
}

/// A table of gene pairs and their genetic-interaction type (a CSV or TSV with a header).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionTable {
    pub file: String,
    /// The column holding the pair, its genes joined by the task's `separator`.
    pub pair_column: String,
    pub type_column: String,
}

fn plus() -> String {
    "+".into()
}
fn twenty() -> usize {
    20
}
fn five() -> usize {
    5
}

impl PerturbSource {
    pub fn check(&self) -> Result<()> {
        match (&self.counts, &self.h5ad) {
            (Some(_), None) => {
                if self.genes_file.is_none() || self.cells_file.is_none() {
                    bail!("MatrixMarket counts need genes_file and cells_file");
                }
            }
            (None, Some(f)) => {
                if !f.ends_with(".h5ad") {
                    bail!("h5ad = '{f}' is not an .h5ad file");
                }
                if self.genes_file.is_some() || self.cells_file.is_some() {
                    bail!("an .h5ad holds its own gene and cell names (no genes_file, cells_file)");
                }
            }
            _ => bail!("give the cells either as counts (MatrixMarket) or as h5ad"),
        }
        if self.separator.is_empty() {
            bail!("separator must not be empty");
        }
        if self.interactions.is_some() && self.combinations != Combinations::Predict {
            bail!("interactions are for combinations = \"predict\"");
        }
        if self.group_column.is_some() && self.combinations == Combinations::Predict {
            bail!("group_column is for single-target tasks");
        }
        if self.k == 0 {
            bail!("k must be at least 1");
        }
        Ok(())
    }

    /// Every data file the task reads, relative to the data folder.
    pub fn files(&self) -> Vec<&str> {
        [
            self.counts.as_deref(),
            self.genes_file.as_deref(),
            self.cells_file.as_deref(),
            self.h5ad.as_deref(),
            self.interactions.as_ref().map(|i| i.file.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
