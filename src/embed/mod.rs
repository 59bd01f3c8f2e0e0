//! Text → gene embeddings (GenePT's step): read which genes to embed and their texts, encode the
//! texts with a sentence encoder, pool, normalise.
//!
//! `texts` reads gene lists and text sources (no maths); `bert` owns the BERT-family encoder,
//! tokenisation, length-sorted batching and pooling (`fastbert` is its CPU fast path); `decoder`
//! pools the hidden states of Llama/Qwen2 models (shared with fine-tuning). [`TextEncoder`] picks
//! one from the model folder's `config.json`.

pub mod bert;
pub mod cells;
pub mod decoder;
pub mod fastbert;
pub mod texts;

pub use bert::{Backend, BertEncoder, EncodeOptions, Pooling};

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::io::GeneEmbeddings;
use texts::GeneTexts;

/// A sentence encoder of either family, chosen by `config.json`'s `model_type`.
pub enum TextEncoder {
    Bert(BertEncoder),
    Decoder(decoder::DecoderEncoder),
}

impl TextEncoder {
    /// Loads a model: a `.gguf` file (or a folder holding one GGUF file and no config.json) →
    /// decoder; else a folder by `config.json`'s `model_type`: "bert" → BERT encoder, "llama" or
    /// "qwen2" → decoder.
    pub fn load(
        path: &Path,
        max_len: Option<usize>,
        backend: Backend,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let config_path = path.join("config.json");
        if path.is_file() || (path.is_dir() && !config_path.exists()) {
            let enc = decoder::DecoderEncoder::load(path, max_len, device)?;
            return Ok(Self::Decoder(enc));
        }
        if !path.is_dir() {
            bail!("{}: model folder not found", path.display());
        }
        let text = std::fs::read_to_string(&config_path)
            .map_err(|_| anyhow::anyhow!("{}: missing config.json", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: invalid JSON ({e})", config_path.display()))?;
        match value.get("model_type").and_then(|v| v.as_str()) {
            Some("bert") | None => Ok(Self::Bert(BertEncoder::load(
                path, max_len, backend, device,
            )?)),
            Some("llama") | Some("qwen2") => Ok(Self::Decoder(decoder::DecoderEncoder::load(
                path, max_len, device,
            )?)),
            Some(other) => bail!(
                "{}: model_type '{other}' is not supported (bert, llama, qwen2)",
                config_path.display()
            ),
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Bert(e) => e.hidden_size,
            Self::Decoder(e) => e.hidden_size,
        }
    }

    pub fn max_len(&self) -> usize {
        match self {
            Self::Bert(e) => e.max_len,
            Self::Decoder(e) => e.max_len,
        }
    }

    /// The pooling a model folder implies: its sentence-transformers setting, else mean.
    pub fn default_pooling(&self) -> Pooling {
        match self {
            Self::Bert(e) => e.default_pooling,
            Self::Decoder(_) => Pooling::Mean,
        }
    }

    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        match self {
            Self::Bert(e) => e.tokenize(texts),
            Self::Decoder(e) => e.tokenize(texts),
        }
    }

    pub fn encode(
        &self,
        texts: &[&str],
        opts: &EncodeOptions,
        on_batch: impl FnMut(usize) + Send,
    ) -> Result<Vec<f32>> {
        match self {
            Self::Bert(e) => e.encode(texts, opts, on_batch),
            Self::Decoder(e) => e.encode(texts, opts, on_batch),
        }
    }
}

/// What one `bftkit embed` run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedReport {
    pub bftkit_version: String,
    pub model: String,
    pub texts: String,
    pub output: String,
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_len: usize,
    pub batch_size: usize,
    pub genes_requested: usize,
    pub genes_embedded: usize,
    /// Requested genes with no text (not embedded).
    pub missing: Vec<String>,
    pub dim: usize,
    /// Tokens encoded (after truncation, special tokens included).
    pub tokens: usize,
    /// Texts cut at `max_len`.
    pub truncated: usize,
    pub encode_seconds: f64,
    pub texts_per_second: f64,
    pub tokens_per_second: f64,
}

/// Embeds the texts of `genes` (every gene of `texts` when `None`) with `encoder`.
/// Genes without a text are listed in the report, or an error when `strict`.
pub fn embed_genes(
    encoder: &TextEncoder,
    genes: Option<&[String]>,
    texts: &GeneTexts,
    opts: &EncodeOptions,
    strict: bool,
    mut on_batch: impl FnMut(usize) + Send,
) -> Result<(GeneEmbeddings, EmbedReport)> {
    let requested: Vec<String> = genes.map_or_else(|| texts.genes().to_vec(), <[String]>::to_vec);
    let (mut ids, mut inputs, mut missing) = (Vec::new(), Vec::new(), Vec::new());
    for g in &requested {
        match texts.get(g) {
            Some(t) => {
                ids.push(g.clone());
                inputs.push(t);
            }
            None => missing.push(g.clone()),
        }
    }
    if strict && !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(20).map(String::as_str).collect();
        bail!(
            "{} of {} genes have no text (--strict): {}{}",
            missing.len(),
            requested.len(),
            shown.join(", "),
            if missing.len() > 20 { ", ..." } else { "" }
        );
    }
    if inputs.is_empty() {
        bail!("none of the {} requested genes has a text", requested.len());
    }
    let start = Instant::now();
    let tokens = encoder.tokenize(&inputs)?;
    let n_tokens: usize = tokens.iter().map(|t| t.0.len()).sum();
    let truncated = tokens
        .iter()
        .filter(|t| t.0.len() >= encoder.max_len())
        .count();
    drop(tokens);
    let values = encoder.encode(&inputs, opts, &mut on_batch)?;
    let secs = start.elapsed().as_secs_f64();
    let source = format!(
        "bftkit embed: {} pooling, {}, max_len {}",
        format!("{:?}", opts.pooling).to_lowercase(),
        if opts.normalize {
            "L2-normalised"
        } else {
            "not normalised"
        },
        encoder.max_len()
    );
    let emb = GeneEmbeddings::new(ids, encoder.hidden_size(), values, source)?;
    let report = EmbedReport {
        bftkit_version: env!("CARGO_PKG_VERSION").to_string(),
        model: String::new(),
        texts: String::new(),
        output: String::new(),
        pooling: opts.pooling,
        normalize: opts.normalize,
        max_len: encoder.max_len(),
        batch_size: opts.batch_size,
        genes_requested: requested.len(),
        genes_embedded: emb.len(),
        missing,
        dim: emb.dim,
        tokens: n_tokens,
        truncated,
        encode_seconds: secs,
        texts_per_second: emb.len() as f64 / secs,
        tokens_per_second: n_tokens as f64 / secs,
    };
    Ok((emb, report))
}

/// `path` with its extension replaced by `embed.json` (where the report goes).
pub fn report_path(out: &Path) -> std::path::PathBuf {
    out.with_extension("embed.json")
}
