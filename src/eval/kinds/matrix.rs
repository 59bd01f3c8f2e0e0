//! Where a cell-level task's expression matrix comes from: one source type shared by cell tasks
//! and both modalities of integration tasks, with its checks and its reader.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::io::matrix::{read_mtx_or_dense, ExprMatrix, MtxNames};

/// An expression matrix (cells × genes) in a task file: `file` is a dense CSV/TSV (a row per
/// cell, a header of gene names), a MatrixMarket `.mtx[.gz]` (with its gene and cell name files)
/// or an AnnData `.h5ad` (its `raw` matrix when present unless `h5ad_raw = false`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixSource {
    pub file: String,
    #[serde(default = "yes")]
    pub h5ad_raw: bool,
    /// For an `.h5ad`: read this layer (e.g. `counts`) instead of `X` or `raw`.
    #[serde(default)]
    pub h5ad_layer: Option<String>,
    /// For MatrixMarket: gene names, one per line (`genes_column`, 0-based; the first line
    /// skipped when `names_header`), cell names likewise, and whether the file's rows are genes
    /// (the 10x layout).
    #[serde(default)]
    pub genes_file: Option<String>,
    #[serde(default)]
    pub genes_column: usize,
    #[serde(default)]
    pub cells_file: Option<String>,
    #[serde(default)]
    pub cells_column: usize,
    #[serde(default)]
    pub names_header: bool,
    #[serde(default)]
    pub genes_are_rows: bool,
}

fn yes() -> bool {
    true
}

/// A matrix as read, with the AnnData `obs` columns when it came from an `.h5ad`.
pub(crate) struct ReadMatrix {
    pub matrix: ExprMatrix,
    pub obs: Option<BTreeMap<String, Vec<String>>>,
}

impl MatrixSource {
    pub fn is_h5ad(&self) -> bool {
        self.file.ends_with(".h5ad")
    }

    fn is_mtx(&self) -> bool {
        self.file.ends_with(".mtx") || self.file.ends_with(".mtx.gz")
    }

    pub fn check(&self) -> Result<()> {
        if self.h5ad_layer.is_some() && !self.is_h5ad() {
            bail!("h5ad_layer is for .h5ad files, not {}", self.file);
        }
        if self.is_mtx() && (self.genes_file.is_none() || self.cells_file.is_none()) {
            bail!(
                "a MatrixMarket matrix ({}) needs genes_file and cells_file",
                self.file
            );
        }
        Ok(())
    }

    /// The files it reads, relative to the data folder.
    pub fn files(&self) -> Vec<&str> {
        std::iter::once(self.file.as_str())
            .chain(self.genes_file.as_deref())
            .chain(self.cells_file.as_deref())
            .collect()
    }

    /// Reads the matrix (paths relative to `data_dir`); its values must be expression (finite,
    /// non-negative).
    pub(crate) fn read(&self, data_dir: &Path) -> Result<ReadMatrix> {
        let path = data_dir.join(&self.file);
        if self.is_h5ad() {
            let a = match &self.h5ad_layer {
                Some(layer) => crate::io::h5ad::read_h5ad_layer(&path, layer)?,
                None => crate::io::h5ad::read_h5ad(&path, self.h5ad_raw)?,
            };
            a.matrix.check_expression(&path)?;
            return Ok(ReadMatrix {
                matrix: a.matrix,
                obs: Some(a.obs),
            });
        }
        let matrix = read_mtx_or_dense(
            &path,
            &MtxNames {
                dir: data_dir,
                genes: self.genes_file.as_deref(),
                genes_column: self.genes_column,
                cells: self.cells_file.as_deref(),
                cells_column: self.cells_column,
                header: self.names_header,
                genes_are_rows: self.genes_are_rows,
            },
        )?;
        matrix.check_expression(&path)?;
        Ok(ReadMatrix { matrix, obs: None })
    }
}
