//! `bftkit scib`: the scIB metrics of any cell embedding file against a cell annotation table
//! (label and batch columns), with an optional unintegrated representation for PCR comparison.
//! Reads the files and hands arrays to [`super::scib`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::scib::{self, ScibInput, ScibScores, ScibTimings};
use crate::io::table::{ColumnRef, Table};
use crate::io::GeneEmbeddings;

/// What `bftkit scib` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScibReport {
    pub bftkit_version: String,
    pub embeddings: String,
    pub pre: Option<String>,
    pub cells: usize,
    pub labels: Vec<String>,
    pub batches: Vec<String>,
    /// Cells of the annotation without a vector, and vectors without an annotation.
    pub annotated_without_vector: usize,
    pub vectors_without_annotation: usize,
    pub seed: u64,
    pub scores: ScibScores,
    pub seconds: ScibTimings,
}

/// Label and batch of each annotated cell, read from a delimited file with a header.
fn read_annotation(
    path: &Path,
    cell_col: &str,
    label_col: &str,
    batch_col: &str,
) -> Result<HashMap<String, (String, String)>> {
    let t = Table::read(path, true)?;
    let (cc, lc, bc) = (
        t.column(&ColumnRef::Name(cell_col.into()))?,
        t.column(&ColumnRef::Name(label_col.into()))?,
        t.column(&ColumnRef::Name(batch_col.into()))?,
    );
    let mut out = HashMap::new();
    for row in &t.rows {
        let (c, l, b) = (t.field(row, cc)?, t.field(row, lc)?, t.field(row, bc)?);
        if l.is_empty() || b.is_empty() {
            bail!(
                "{}:{}: cell '{c}' has an empty label or batch",
                path.display(),
                row.0
            );
        }
        if out
            .insert(c.to_string(), (l.to_string(), b.to_string()))
            .is_some()
        {
            bail!("{}:{}: cell '{c}' appears twice", path.display(), row.0);
        }
    }
    Ok(out)
}

/// Codes of `names` in sorted order, and the sorted distinct names.
fn encode(names: &[&str]) -> (Vec<usize>, Vec<String>) {
    let mut uniq: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    uniq.sort();
    uniq.dedup();
    let codes = names
        .iter()
        .map(|n| {
            uniq.binary_search_by(|u| u.as_str().cmp(n))
                .expect("present")
        })
        .collect();
    (codes, uniq)
}

/// The files `bftkit scib` reads.
#[derive(Debug, Clone)]
pub struct ScibFiles {
    /// Cell embedding file (id, then the values; as gene embedding files).
    pub embeddings: PathBuf,
    /// Cell annotation (CSV/TSV with a header).
    pub annotation: PathBuf,
    /// The annotation's cell id, label and batch columns.
    pub columns: AnnotationColumns,
    /// The unintegrated representation (same cell ids), for PCR comparison; without it PCR
    /// comparison is NaN and left out of Batch.
    pub pre: Option<PathBuf>,
}

/// Column names of a cell annotation table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationColumns {
    pub cell: String,
    pub label: String,
    pub batch: String,
}

impl Default for AnnotationColumns {
    fn default() -> Self {
        Self {
            cell: "cell".into(),
            label: "label".into(),
            batch: "batch".into(),
        }
    }
}

/// scIB metrics of a cell embedding file against its annotation; k-means is seeded.
pub fn scib_files(files: &ScibFiles, seed: u64) -> Result<ScibReport> {
    let (embeddings, annotation, pre) = (
        files.embeddings.as_path(),
        files.annotation.as_path(),
        files.pre.as_deref(),
    );
    let c = &files.columns;
    let e = GeneEmbeddings::read(embeddings)?;
    let ann = read_annotation(annotation, &c.cell, &c.label, &c.batch)?;
    let rows: Vec<usize> = (0..e.len())
        .filter(|&i| ann.contains_key(&e.ids[i]))
        .collect();
    if rows.len() < 3 {
        bail!(
            "{}: only {} of its {} vectors have an annotation in {}",
            embeddings.display(),
            rows.len(),
            e.len(),
            annotation.display()
        );
    }
    let x: Vec<f32> = rows.iter().flat_map(|&i| e.row(i)).copied().collect();
    let (labels, label_names) = encode(
        &rows
            .iter()
            .map(|&i| ann[&e.ids[i]].0.as_str())
            .collect::<Vec<_>>(),
    );
    let (batches, batch_names) = encode(
        &rows
            .iter()
            .map(|&i| ann[&e.ids[i]].1.as_str())
            .collect::<Vec<_>>(),
    );
    let pre_x = match pre {
        Some(p) => {
            let pe = GeneEmbeddings::read(p)?;
            let at: HashMap<&str, usize> = pe
                .ids
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), i))
                .collect();
            let mut v = Vec::with_capacity(rows.len() * pe.dim);
            for &i in &rows {
                let r = at.get(e.ids[i].as_str()).with_context(|| {
                    format!("{}: no vector for cell '{}'", p.display(), e.ids[i])
                })?;
                v.extend_from_slice(pe.row(*r));
            }
            Some((v, pe.dim))
        }
        None => None,
    };
    let input = ScibInput {
        x: &x,
        dim: e.dim,
        labels: &labels,
        batches: &batches,
        pre: pre_x.as_ref().map(|(v, dp)| (v.as_slice(), *dp)),
    };
    let (scores, seconds) = scib::scib(&input, seed)?;
    Ok(ScibReport {
        bftkit_version: env!("CARGO_PKG_VERSION").into(),
        embeddings: embeddings.display().to_string(),
        pre: pre.map(|p| p.display().to_string()),
        cells: rows.len(),
        labels: label_names,
        batches: batch_names,
        annotated_without_vector: {
            let ids: std::collections::HashSet<&String> = e.ids.iter().collect();
            ann.keys().filter(|c| !ids.contains(c)).count()
        },
        vectors_without_annotation: e.len() - rows.len(),
        seed,
        scores,
        seconds,
    })
}
