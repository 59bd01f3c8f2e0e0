//! UMAP's settings, and the switch that prints phase timings.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UmapOptions {
    pub n_neighbors: usize,
    pub n_components: usize,
    pub min_dist: f64,
    pub spread: f64,
    /// 0 = umap-learn's choice: 200 epochs above 10,000 points, else 500.
    pub n_epochs: usize,
    pub negative_sample_rate: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

impl Default for UmapOptions {
    fn default() -> Self {
        Self {
            n_neighbors: 15,
            n_components: 2,
            min_dist: 0.1,
            spread: 1.0,
            n_epochs: 0,
            negative_sample_rate: 5,
            learning_rate: 1.0,
            seed: 0,
        }
    }
}

impl UmapOptions {
    /// Refuses settings umap-learn refuses too (`--n-neighbors`, `--min-dist` on the command
    /// line): at least 2 neighbours, a finite spread and learning rate above 0, and
    /// 0 <= min_dist <= spread.
    pub fn check(&self) -> Result<()> {
        if self.n_neighbors < 2 {
            bail!(
                "UMAP n_neighbors must be at least 2, not {}",
                self.n_neighbors
            );
        }
        for (name, v) in [
            ("spread", self.spread),
            ("learning_rate", self.learning_rate),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("UMAP {name} must be a positive number, not {v}");
            }
        }
        if !(0.0..=self.spread).contains(&self.min_dist) {
            bail!(
                "UMAP min_dist must be in [0, spread = {}], not {}",
                self.spread,
                self.min_dist
            );
        }
        Ok(())
    }
}

/// Whether to print phase times to stderr (`BFTKIT_UMAP_TIMING` set).
pub(super) fn timing() -> bool {
    std::env::var_os("BFTKIT_UMAP_TIMING").is_some()
}
