//! Text → gene embeddings (GenePT's step; docs/embedding.md): encode each gene's text with a
//! sentence encoder, pool, normalise; and gene → cell embeddings (`cells`, GenePT-w).
//!
//! `bert` owns the BERT-family encoder, tokenisation, length-sorted batching and pooling
//! (`fastbert` is its CPU fast path); `decoder` pools the hidden states of Llama/Qwen2 models
//! (shared with fine-tuning). [`TextEncoder`] picks one from the model folder's `config.json`.
//! Gene lists and text sources are read by [`crate::io::texts`].

pub(crate) mod bert;
pub mod cells;
pub(crate) mod decoder;
pub(crate) mod fastbert;

pub use bert::{Backend, BertEncoder, EncodeOptions, Pooling};
pub use decoder::DecoderEncoder;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::io::embeddings::EmbeddingFormat;
use crate::io::texts::{self, read_gene_list, GeneTexts};
use crate::io::GeneEmbeddings;

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
            Self::Bert(e) => e.text.hidden_size,
            Self::Decoder(e) => e.text.hidden_size,
        }
    }

    pub fn max_len(&self) -> usize {
        match self {
            Self::Bert(e) => e.text.max_len,
            Self::Decoder(e) => e.text.max_len,
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
            Self::Bert(e) => e.text.tokenize(texts),
            Self::Decoder(e) => e.text.tokenize(texts),
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

/// Which genes to embed, from which texts, and how.
pub struct EmbedRequest<'a> {
    pub texts: &'a GeneTexts,
    /// The genes to embed; `None` = every gene of `texts`.
    pub genes: Option<&'a [String]>,
    /// Fail when a requested gene has no text (else count and list them).
    pub strict: bool,
    pub encode: EncodeOptions,
}

/// Embeds the requested genes' texts with `encoder`. Genes without a text are listed in the
/// report, or an error when `strict`.
pub fn embed_genes(
    encoder: &TextEncoder,
    request: &EmbedRequest<'_>,
    mut on_batch: impl FnMut(usize) + Send,
) -> Result<(GeneEmbeddings, EmbedReport)> {
    let (texts, opts) = (request.texts, &request.encode);
    let requested: Vec<String> = request
        .genes
        .map_or_else(|| texts.genes().to_vec(), <[String]>::to_vec);
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
    if request.strict && !missing.is_empty() {
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

/// `bftkit embed`: one text per gene from a file, encoded by a model folder, written to an
/// embedding file with its report beside it.
#[derive(Debug, Clone)]
pub struct EmbedJob {
    /// Genes to embed, one per line; `None` = every gene of the texts.
    pub genes: Option<PathBuf>,
    pub texts: TextSource,
    pub model: PathBuf,
    /// `.safetensors`, `.tsv` or `.csv`; the report goes beside it (see [`report_path`]).
    pub out: PathBuf,
    pub strict: bool,
    /// `None` = the model folder's setting, else mean.
    pub pooling: Option<Pooling>,
    pub normalize: bool,
    /// `None` = the model's `sentence_bert_config.json`, else 512.
    pub max_len: Option<usize>,
    pub batch_size: usize,
    pub backend: Backend,
}

/// Where per-gene texts are read from: a JSON object `{gene: text}`, or a table with a header
/// and its id and text columns.
#[derive(Debug, Clone)]
pub struct TextSource {
    pub path: PathBuf,
    pub id_col: String,
    pub text_col: String,
}

impl TextSource {
    /// A file read with the default columns.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            id_col: texts::ID_COLUMN.into(),
            text_col: texts::TEXT_COLUMN.into(),
        }
    }

    pub fn read(&self) -> Result<GeneTexts> {
        GeneTexts::read(&self.path, &self.id_col, &self.text_col)
    }
}

impl EmbedJob {
    /// A job with [`EncodeOptions::default`]'s settings and the model's own pooling and length.
    pub fn new(texts: TextSource, model: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        let encode = EncodeOptions::default();
        Self {
            genes: None,
            texts,
            model: model.into(),
            out: out.into(),
            strict: false,
            pooling: None,
            normalize: encode.normalize,
            max_len: None,
            batch_size: encode.batch_size,
            backend: Backend::default(),
        }
    }

    /// Reads, encodes, and writes the embeddings and the report; `on_batch(done, total)` sees
    /// how many more texts each batch encoded, and how many there are.
    pub fn run(&self, mut on_batch: impl FnMut(usize, usize) + Send) -> Result<EmbedReport> {
        // Check the output format before spending time on encoding.
        EmbeddingFormat::from_path(&self.out)?;
        let genes = self.genes.as_deref().map(read_gene_list).transpose()?;
        let texts = self.texts.read()?;
        let device = candle_core::Device::Cpu;
        let encoder = TextEncoder::load(&self.model, self.max_len, self.backend, &device)?;
        let request = EmbedRequest {
            texts: &texts,
            genes: genes.as_deref(),
            strict: self.strict,
            encode: EncodeOptions {
                batch_size: self.batch_size,
                pooling: self.pooling.unwrap_or(encoder.default_pooling()),
                normalize: self.normalize,
            },
        };
        let total = request.genes.map_or(texts.len(), <[String]>::len);
        let (mut emb, mut report) = embed_genes(&encoder, &request, |n| on_batch(n, total))?;
        emb.source = format!(
            "{} over {} ({})",
            self.model.display(),
            self.texts.path.display(),
            emb.source
        );
        emb.write(&self.out)?;
        report.model = self.model.display().to_string();
        report.texts = self.texts.path.display().to_string();
        report.output = self.out.display().to_string();
        let path = report_path(&self.out);
        crate::io::write_file(&path, serde_json::to_string_pretty(&report)?)?;
        Ok(report)
    }
}

/// `path` with its extension replaced by `embed.json` (where the report goes).
pub fn report_path(out: &Path) -> std::path::PathBuf {
    out.with_extension("embed.json")
}
