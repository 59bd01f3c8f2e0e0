//! The suite file of `bftkit run` (TOML) names the embedding sets and settings; paths in it are
//! relative to the file:
//!
//! ```toml
//! name = "minilm"
//! data = "data"             # optional: else --data, $BFTKIT_DATA, ./data, or the fixtures
//! seed = 0
//! baseline = true           # add the random N(0,1) control
//! tasks = ["all"]
//! umap = true
//! umap_task = "dosage_sensitive_tfs"   # optional: colour UMAPs by this gene task
//!
//! [[embeddings]]
//! name = "MiniLM, GO profiles"
//! texts = "data/gene_profiles_go/gene_profiles_go.tsv"
//! model = "models/all-MiniLM-L6-v2"
//!
//! [[embeddings]]
//! file = "my_genes.safetensors"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::embed::{self, EmbedRequest, EncodeOptions, TextEncoder};
use crate::eval::sets::EmbeddingSet;
use crate::io::texts::{self, GeneTexts};

fn default_true() -> bool {
    true
}

fn default_all() -> Vec<String> {
    vec!["all".into()]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub data: Option<PathBuf>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_true")]
    pub baseline: bool,
    #[serde(default = "default_all")]
    pub tasks: Vec<String>,
    #[serde(default = "default_true")]
    pub umap: bool,
    #[serde(default)]
    pub umap_task: Option<String>,
    #[serde(default)]
    pub embeddings: Vec<EmbeddingSource>,
}

/// One embedding set of a suite: a file, or texts and a model to embed them with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSource {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub texts: Option<PathBuf>,
    #[serde(default)]
    pub model: Option<PathBuf>,
    #[serde(default)]
    pub id_col: Option<String>,
    #[serde(default)]
    pub text_col: Option<String>,
}

impl EmbeddingSource {
    /// An embedding file (named after its stem unless `name` is given).
    pub fn file(path: impl Into<PathBuf>, name: Option<String>) -> Self {
        Self {
            name,
            file: Some(path.into()),
            ..Self::default()
        }
    }
}

impl Default for SuiteConfig {
    /// No sets, every task, seed 0, the random baseline and UMAPs.
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

impl SuiteConfig {
    /// Reads a suite file; relative paths become relative to its folder.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let mut cfg: SuiteConfig = toml::from_str(&text)
            .with_context(|| format!("{}: invalid suite file", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(x) = p.as_mut() {
                if x.is_relative() {
                    *x = base.join(&*x);
                }
            }
        };
        fix(&mut cfg.data);
        for e in &mut cfg.embeddings {
            fix(&mut e.file);
            fix(&mut e.texts);
            fix(&mut e.model);
        }
        if cfg.name.is_none() {
            cfg.name = path.file_stem().map(|s| s.to_string_lossy().to_string());
        }
        Ok(cfg)
    }
}

/// Loads or computes one embedding set.
pub(super) fn load_set(
    src: &EmbeddingSource,
    k: usize,
    on_note: &mut impl FnMut(String),
) -> Result<EmbeddingSet> {
    match (&src.file, &src.texts, &src.model) {
        (Some(file), None, None) => {
            let mut set = EmbeddingSet::from_file(file)?;
            if let Some(n) = &src.name {
                set.rename(n);
            }
            Ok(set)
        }
        (None, Some(texts), Some(model)) => {
            let gt = GeneTexts::read(
                texts,
                src.id_col.as_deref().unwrap_or(texts::ID_COLUMN),
                src.text_col.as_deref().unwrap_or(texts::TEXT_COLUMN),
            )?;
            let device = candle_core::Device::Cpu;
            let encoder = TextEncoder::load(model, None, embed::Backend::Fast, &device)?;
            let opts = EncodeOptions {
                pooling: encoder.default_pooling(),
                ..EncodeOptions::default()
            };
            on_note(format!(
                "embedding {} texts of {} with {}",
                gt.len(),
                texts.display(),
                model.display()
            ));
            let request = EmbedRequest {
                texts: &gt,
                genes: None,
                strict: false,
                encode: opts,
            };
            let (emb, report) = embed::embed_genes(&encoder, &request, |_| {})?;
            let name = src.name.clone().unwrap_or_else(|| format!("set{}", k + 1));
            let mut set = EmbeddingSet::new(
                name,
                emb,
                format!("{} + {}", texts.display(), model.display()),
            );
            set.info.source = format!(
                "embedded on the fly: {} texts, {} missing",
                report.genes_embedded,
                report.missing.len()
            );
            Ok(set)
        }
        _ => bail!(
            "embedding set {}: give either `file`, or `texts` and `model`",
            src.name.clone().unwrap_or_else(|| format!("#{}", k + 1))
        ),
    }
}
