//! The embedding sets a run compares: each a name, its gene vectors and where they came from
//! (recorded in every result), plus the seeded random control.

use std::path::Path;

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::io::embeddings::file_sha256;
use crate::io::GeneEmbeddings;

/// A control set to probe beside the real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// N(0,1) vectors of the first set's width, for its genes.
    Random,
}

/// An embedding set to probe.
pub struct EmbeddingSet {
    pub name: String,
    pub embeddings: GeneEmbeddings,
    pub info: EmbeddingInfo,
}

/// Where an embedding set came from, recorded in every result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingInfo {
    pub name: String,
    /// File path, or empty for generated sets (the random baseline).
    pub path: String,
    /// SHA-256 of the file (empty for generated sets).
    pub sha256: String,
    pub genes: usize,
    pub dim: usize,
    pub source: String,
}

impl EmbeddingSet {
    /// A set of vectors made in memory (`path` says how, for the record; no digest).
    pub fn new(name: impl Into<String>, embeddings: GeneEmbeddings, path: String) -> Self {
        let name = name.into();
        let info = EmbeddingInfo {
            name: name.clone(),
            path,
            sha256: String::new(),
            genes: embeddings.len(),
            dim: embeddings.dim,
            source: embeddings.source.clone(),
        };
        Self {
            name,
            embeddings,
            info,
        }
    }

    /// Reads an embedding file; the set is named after the file stem.
    pub fn from_file(path: &Path) -> Result<Self> {
        let embeddings = GeneEmbeddings::read(path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "embeddings".into());
        let mut set = Self::new(name, embeddings, path.display().to_string());
        set.info.sha256 = file_sha256(path)?;
        Ok(set)
    }

    /// Renames the set (and its record).
    pub fn rename(&mut self, name: &str) {
        self.name = name.to_string();
        self.info.name = name.to_string();
    }

    /// The negative control: N(0,1) vectors of the same width for the same genes, seeded.
    pub fn random_like(other: &GeneEmbeddings, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_ba5e);
        let values: Vec<f32> = (0..other.values.len())
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let source = format!("random N(0,1), {} dims, seed {seed}", other.dim);
        let embeddings = GeneEmbeddings::new(other.ids.clone(), other.dim, values, source)
            .expect("same shape as a valid set");
        Self::new("random", embeddings, String::new())
    }
}

/// Makes set names unique (`name`, `name_2`, ...), keeping the first as it is.
pub fn unique_names(sets: &mut [EmbeddingSet]) {
    let mut names = std::collections::HashSet::new();
    for s in sets {
        let base = s.name.clone();
        let mut k = 2;
        let mut name = base.clone();
        while !names.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        s.rename(&name);
    }
}
