//! Cell embeddings from gene embeddings (GenePT-w; docs/embedding.md): each cell is the expression-weighted
//! mean of the embeddings of its genes, L2-normalised:
//! `z_i = normalize(Σ_g x[i,g] e_g / Σ_g x[i,g])` over the genes that have an embedding.
//! How much of each cell's expression mass those genes carry is reported (coverage).

use anyhow::{bail, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::io::matrix::ExprMatrix;
use crate::io::{GeneEmbeddings, GeneResolver};

/// Which genes of the matrix found an embedding, and the expression mass they carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CellCoverage {
    pub genes_total: usize,
    pub genes_matched: usize,
    /// Σ matched expression / Σ all expression, over all cells.
    pub mass_fraction: f64,
    /// The same per cell: mean and minimum.
    pub mass_fraction_mean: f64,
    pub mass_fraction_min: f64,
    /// Cells with no expressed matched gene (their vector is zero).
    pub cells_empty: usize,
    /// Up to 20 unmatched gene names, for the report.
    pub missing_examples: Vec<String>,
}

/// GenePT-w cell vectors (`n_cells × dim`, row-major) and the coverage.
pub fn genept_w(
    m: &ExprMatrix,
    emb: &GeneEmbeddings,
    resolver: &GeneResolver<'_>,
) -> Result<(Vec<f32>, CellCoverage)> {
    if m.n_cells() == 0 {
        bail!("no cells");
    }
    let row_of: Vec<Option<usize>> = m.genes.iter().map(|g| resolver.resolve(g)).collect();
    let matched = row_of.iter().filter(|r| r.is_some()).count();
    if matched == 0 {
        bail!(
            "none of the {} genes of the matrix has an embedding (first: {})",
            m.n_genes(),
            m.genes
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let d = emb.dim;
    let mut out = vec![0f32; m.n_cells() * d];
    let masses: Vec<(f64, f64)> = out
        .par_chunks_mut(d)
        .enumerate()
        .map(|(c, z)| {
            let (mut all, mut hit) = (0.0f64, 0.0f64);
            for (g, v) in m.row(c) {
                all += v as f64;
                if let Some(r) = row_of[g] {
                    hit += v as f64;
                    for (zi, ei) in z.iter_mut().zip(emb.row(r)) {
                        *zi += v * ei;
                    }
                }
            }
            // Dividing by the mass does not change the direction; normalise directly.
            let norm = z.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                z.iter_mut().for_each(|v| *v /= norm);
            }
            (all, hit)
        })
        .collect();
    let (all, hit) = masses
        .iter()
        .fold((0.0, 0.0), |(a, h), &(x, y)| (a + x, h + y));
    let per_cell: Vec<f64> = masses
        .iter()
        .map(|&(a, h)| if a > 0.0 { h / a } else { 0.0 })
        .collect();
    let coverage = CellCoverage {
        genes_total: m.n_genes(),
        genes_matched: matched,
        mass_fraction: if all > 0.0 { hit / all } else { 0.0 },
        mass_fraction_mean: per_cell.iter().sum::<f64>() / per_cell.len() as f64,
        mass_fraction_min: per_cell.iter().copied().fold(f64::INFINITY, f64::min),
        cells_empty: masses.iter().filter(|&&(_, h)| h == 0.0).count(),
        missing_examples: m
            .genes
            .iter()
            .zip(&row_of)
            .filter(|(_, r)| r.is_none())
            .take(20)
            .map(|(g, _)| g.clone())
            .collect(),
    };
    Ok((out, coverage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_mean_of_matched_genes_normalised_with_coverage() {
        let emb = GeneEmbeddings {
            ids: vec!["A".into(), "B".into()],
            dim: 2,
            values: vec![1.0, 0.0, 0.0, 1.0],
            source: String::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "cell,A,B,Z\nc1,3,1,0\nc2,0,0,5\nc3,1,1,2\n").unwrap();
        let m = crate::io::matrix::read_dense(&p).unwrap();
        let resolver = GeneResolver::new(&emb, None);
        let (z, cov) = genept_w(&m, &emb, &resolver).unwrap();
        let s = (10f32).sqrt();
        assert!((z[0] - 3.0 / s).abs() < 1e-6 && (z[1] - 1.0 / s).abs() < 1e-6);
        assert_eq!(&z[2..4], &[0.0, 0.0], "no matched expression: zero vector");
        assert!((z[4] - z[5]).abs() < 1e-6);
        assert_eq!(
            (cov.genes_total, cov.genes_matched, cov.cells_empty),
            (3, 2, 1)
        );
        assert!((cov.mass_fraction - 6.0 / 13.0).abs() < 1e-12);
        assert!((cov.mass_fraction_min - 0.0).abs() < 1e-12);
        assert_eq!(cov.missing_examples, vec!["Z"]);
    }
}
