//! Fine-tuning: the SFT/DFT/BFT losses (`loss`) and the tools that show how BFT weighs data.
//! The training loop and decoder models build on these.

pub mod ce;
pub(crate) mod checkpoint;
pub mod data;
pub mod finetune;
pub mod loss;
pub mod optim;
pub mod step;
pub mod trainer;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::chat::{self, ChatTemplate};
use loss::{LossConfig, SampleWeights};

/// One sample's weights as `bftkit loss` reports them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleReport {
    /// Line of the input file.
    pub line: usize,
    pub n: usize,
    pub p_conf: f64,
    pub sample_weight: f64,
    pub mean_token_weight: f64,
    /// The sample's contribution before the 1/B batch average.
    pub loss: f64,
}

/// What `bftkit loss` computed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LossReport {
    pub bftkit_version: String,
    pub config: LossConfig,
    pub batch_size: usize,
    pub batch_loss: f64,
    pub samples: Vec<SampleReport>,
}

/// Reads a JSONL file of samples, each `{"probs": [...]}` (in (0, 1]) or `{"logprobs": [...]}`
/// (finite, ≤ 0), all tokens valid; returns (line, log-probabilities) per sample.
pub fn read_token_probs(path: &Path) -> Result<Vec<(usize, Vec<f64>)>> {
    let file = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("{file}: cannot read"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("{file}:{}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{at}: not valid JSON"))?;
        let get = |key: &str| value.get(key).and_then(|v| v.as_array());
        let (values, is_log) = match (get("probs"), get("logprobs")) {
            (Some(p), None) => (p, false),
            (None, Some(l)) => (l, true),
            (Some(_), Some(_)) => bail!("{at}: give either \"probs\" or \"logprobs\", not both"),
            (None, None) => {
                bail!("{at}: expected an object with a \"probs\" or \"logprobs\" array")
            }
        };
        let mut logprobs = Vec::with_capacity(values.len());
        for (j, v) in values.iter().enumerate() {
            let Some(x) = v.as_f64() else {
                bail!("{at}: token {j} is not a number");
            };
            let lp = if is_log {
                if !(x.is_finite() && x <= 0.0) {
                    bail!("{at}: token {j}: log-probability {x} must be finite and <= 0");
                }
                x
            } else {
                if !(x > 0.0 && x <= 1.0) {
                    bail!("{at}: token {j}: probability {x} must be in (0, 1]");
                }
                x.ln()
            };
            logprobs.push(lp);
        }
        out.push((i + 1, logprobs));
    }
    if out.is_empty() {
        bail!("{file}: no samples");
    }
    Ok(out)
}

/// Weighs one batch of samples read by [`read_token_probs`].
pub fn loss_report(cfg: &LossConfig, samples: &[(usize, Vec<f64>)]) -> Result<LossReport> {
    cfg.check()?;
    let logprobs: Vec<Vec<f64>> = samples.iter().map(|(_, l)| l.clone()).collect();
    let (batch_loss, weights) = loss::batch_loss(cfg, &logprobs);
    let samples = samples
        .iter()
        .zip(weights)
        .map(
            |((line, _), w): (&(usize, Vec<f64>), SampleWeights)| SampleReport {
                line: *line,
                n: w.n,
                p_conf: w.p_conf,
                sample_weight: w.sample_weight,
                mean_token_weight: w.mean_token_weight(),
                loss: w.loss,
            },
        )
        .collect::<Vec<_>>();
    Ok(LossReport {
        bftkit_version: env!("CARGO_PKG_VERSION").to_string(),
        config: *cfg,
        batch_size: samples.len(),
        batch_loss,
        samples,
    })
}

/// What `bftkit weights` weighs: a model (on the CPU, f32), conversations, and how.
#[derive(Debug, Clone)]
pub struct WeightsOptions {
    pub model: PathBuf,
    /// JSONL conversations, as for fine-tuning.
    pub data: PathBuf,
    pub template: ChatTemplate,
    pub max_len: usize,
    /// Conversations per forward pass.
    pub batch_size: usize,
    pub loss: LossConfig,
}

impl Default for WeightsOptions {
    /// ChatML, 512 tokens, batches of 4, the default loss; the paths are empty (to be set).
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            data: PathBuf::new(),
            template: ChatTemplate::default(),
            max_len: 512,
            batch_size: 4,
            loss: LossConfig::default(),
        }
    }
}

/// `bftkit weights`: how a loss variant weighs a dataset under the model's own probabilities.
/// The whole dataset is treated as one batch for the reported mean loss.
pub fn dataset_weights(opts: &WeightsOptions) -> Result<LossReport> {
    use candle_core::{DType, Device};
    opts.loss.check()?;
    if opts.batch_size == 0 {
        bail!("batch size must be at least 1");
    }
    let (model, tokenizer) =
        crate::model::generate::load_decoder(&opts.model, None, &Device::Cpu, DType::F32)?;
    let conversations = data::read_conversations(&opts.data)?;
    let mut rows = Vec::with_capacity(conversations.len());
    for chunk in conversations.chunks(opts.batch_size) {
        let samples = chunk
            .iter()
            .map(|(_, m)| chat::tokenize(&tokenizer, &chat::render(opts.template, m), opts.max_len))
            .collect::<Result<Vec<_>>>()?;
        let logprobs = step::response_logprobs(&model, &samples)?;
        rows.extend(chunk.iter().map(|(line, _)| *line).zip(logprobs));
    }
    loss_report(&opts.loss, &rows)
}
