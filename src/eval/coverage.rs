//! How much of a task found embeddings: counted for every result and shown beside its scores,
//! so that a set covering few of a task's genes is read as scored on that subset only.

use serde::{Deserialize, Serialize};

/// How many of a task's labelled items found embeddings, per class (cell, integration and
/// perturbation tasks count cells or targets as "positive" and leave the negative side at 0).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Genes (gene tasks) or pairs (pair tasks) labelled positive: in the task, and with embeddings.
    pub positive_total: usize,
    pub positive_matched: usize,
    pub negative_total: usize,
    pub negative_matched: usize,
    /// Distinct genes named by the task and how many of them have an embedding.
    pub genes_total: usize,
    pub genes_matched: usize,
    /// Items labelled in both classes (dropped).
    pub conflicts_dropped: usize,
    /// Repeated items merged into one example (same gene listed twice, or two ids of one gene).
    pub duplicates_merged: usize,
    /// Rows outside the published folds (fold_column protocol; excluded).
    pub outside_folds: usize,
    /// Task genes with no embedding, sorted.
    pub missing_genes: Vec<String>,
}

impl Coverage {
    /// Fraction of labelled items (both classes) that are in the dataset.
    pub fn fraction(&self) -> f64 {
        let total = self.positive_total + self.negative_total;
        if total == 0 {
            0.0
        } else {
            (self.positive_matched + self.negative_matched) as f64 / total as f64
        }
    }

    /// The coverage line of a cell-level result: `scored` of the `total` cells of the data,
    /// and the matrix genes that have an embedding.
    pub fn of_cells(
        total: usize,
        scored: usize,
        genes: &crate::embed::cells::CellCoverage,
    ) -> Self {
        Coverage {
            positive_total: total,
            positive_matched: scored,
            genes_total: genes.genes_total,
            genes_matched: genes.genes_matched,
            missing_genes: genes.missing_examples.clone(),
            ..Coverage::default()
        }
    }
}
