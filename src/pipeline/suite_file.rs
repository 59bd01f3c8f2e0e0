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
//!
//! A suite can also name model arms (`[experiment]`, `[[arms]]`; docs/experiment.md).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::experiment::stage::Stages;
use super::experiment::{ArmSection, ExperimentSection};
use crate::embed::{self, EmbedRequest, EncodeOptions, TextEncoder};
use crate::eval::sets::EmbeddingSet;
use crate::io::texts::{self, GeneTexts};
use crate::io::GeneEmbeddings;

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
    /// What the model arms share (the curated texts, genes, describe settings, encoder).
    #[serde(default)]
    pub experiment: Option<ExperimentSection>,
    /// Model arms: fine-tuned (or not), then described, embedded and probed beside the sets.
    #[serde(default)]
    pub arms: Vec<ArmSection>,
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
        if let Some(x) = cfg.experiment.as_mut() {
            x.resolve_paths(base);
        }
        for a in &mut cfg.arms {
            a.resolve_paths(base);
        }
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

/// Loads or computes one embedding set, and the key later stages depend on (the file's hash,
/// or the embedding stage's). With `stages`, texts embedded with a model are a cached stage.
/// With `only`, the set keeps just those genes (matched by id as written).
pub(super) fn load_set(
    src: &EmbeddingSource,
    k: usize,
    stages: Option<&mut Stages>,
    only: Option<&[String]>,
    on_note: &mut impl FnMut(String),
) -> Result<(EmbeddingSet, String)> {
    match (&src.file, &src.texts, &src.model) {
        (Some(file), None, None) => {
            let mut set = EmbeddingSet::from_file(file)?;
            if let Some(n) = &src.name {
                set.rename(n);
            }
            let mut key = set.info.sha256.clone();
            if let Some(genes) = only {
                set.embeddings = subset(&set.embeddings, genes, file)?;
                set.info.source = format!(
                    "{}, cut to the {} described genes it has",
                    set.info.source,
                    set.embeddings.len()
                );
                key = super::experiment::stage::key_of(&key, &serde_json::json!(genes));
            }
            Ok((set, key))
        }
        (None, Some(texts), Some(model)) => {
            let name = src.name.clone().unwrap_or_else(|| format!("set{}", k + 1));
            let Some(stages) = stages else {
                return Ok((
                    embed_texts(src, texts, model, name, only, on_note)?,
                    String::new(),
                ));
            };
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let st = stages.open(
                &format!("embed-ref-{safe}"),
                serde_json::json!({
                    "texts": crate::io::embeddings::file_sha256(texts)?,
                    "model": crate::model::weights::fingerprint(model)?,
                    "id_col": src.id_col, "text_col": src.text_col, "only": only,
                }),
            )?;
            let path = st.dir.join("embeddings.safetensors");
            let source_path = st.dir.join("source.txt");
            if !st.reused() {
                let set = embed_texts(src, texts, model, name.clone(), only, on_note)?;
                set.embeddings.write(&path)?;
                crate::io::write_file(&source_path, &set.info.source)?;
            }
            let key = st.key.clone();
            stages.finish(st)?;
            let mut set = EmbeddingSet::new(
                name,
                crate::io::GeneEmbeddings::read(&path)?,
                format!("{} + {}", texts.display(), model.display()),
            );
            set.info.source = std::fs::read_to_string(&source_path)
                .with_context(|| format!("{}: cannot read", source_path.display()))?;
            Ok((set, key))
        }
        _ => bail!(
            "embedding set {}: give either `file`, or `texts` and `model`",
            src.name.clone().unwrap_or_else(|| format!("#{}", k + 1))
        ),
    }
}

/// The rows of `emb` whose id is one of `genes`; an error naming `file` when none is.
fn subset(emb: &GeneEmbeddings, genes: &[String], file: &Path) -> Result<GeneEmbeddings> {
    let want: std::collections::HashSet<&str> = genes.iter().map(String::as_str).collect();
    let rows: Vec<usize> = (0..emb.len())
        .filter(|&i| want.contains(emb.ids()[i].as_str()))
        .collect();
    if rows.is_empty() {
        bail!(
            "{}: none of the {} described genes is among its ids (the arms describe gene symbols)",
            file.display(),
            genes.len()
        );
    }
    GeneEmbeddings::new(
        rows.iter().map(|&i| emb.ids()[i].clone()).collect(),
        emb.dim(),
        rows.iter()
            .flat_map(|&i| emb.row(i).iter().copied())
            .collect(),
        emb.source().to_string(),
    )
}

/// Embeds a set's texts (those of `only`, when given) with its model.
fn embed_texts(
    src: &EmbeddingSource,
    texts: &Path,
    model: &Path,
    name: String,
    only: Option<&[String]>,
    on_note: &mut impl FnMut(String),
) -> Result<EmbeddingSet> {
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
        only.map_or(gt.len(), <[String]>::len),
        texts.display(),
        model.display()
    ));
    let request = EmbedRequest {
        texts: &gt,
        genes: only,
        strict: false,
        encode: opts,
    };
    let (emb, report) = embed::embed_genes(&encoder, &request, |_| {})?;
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
