//! `bftkit finetune`: load a pretrained decoder, build samples from a JSONL file, train LoRA
//! adapters (default) or every weight with the chosen loss, and write the result.
//!
//! Output folder: `train_log.jsonl` (one [`StepLog`] per optimizer step), `finetune.json` (the
//! settings and data summary), and either `adapter_model.safetensors` + `adapter_config.json`
//! (PEFT layout) or, for full fine-tuning, `model.safetensors` + `config.json` +
//! `tokenizer.json`. `merge` also writes `merged/`, a plain model folder with the adapters folded
//! in that `bftkit embed` and any Hugging Face loader read directly.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::data::{read_conversations, render, tokenize, ChatTemplate};
use super::optim::AdamW;
use super::step::{response_logprobs, Sample};
use super::trainer::{train, StepLog, TrainConfig};
use crate::model::lora::LoraConfig;
use crate::model::{load_pretrained, Decoder};

#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub model: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    pub template: ChatTemplate,
    pub max_len: usize,
    /// `None` = full fine-tuning.
    pub lora: Option<LoraConfig>,
    pub train: TrainConfig,
    pub merge: bool,
    /// Write `checkpoint-STEP/` every this many optimizer steps.
    pub save_every: Option<usize>,
    /// Continue from the latest `checkpoint-STEP/` in `out`.
    pub resume: bool,
    /// Held-out conversations, evaluated before training and every `eval_every` steps.
    pub eval_data: Option<PathBuf>,
    pub eval_every: usize,
    pub device: Device,
    /// Base weights and activations (LoRA adapters and full fine-tuning stay f32).
    pub dtype: DType,
}

/// One held-out evaluation, as written to `eval_log.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalLog {
    pub step: usize,
    /// Mean cross-entropy per response token (nats), unweighted whatever the training loss.
    pub loss: f64,
    /// Mean probability of the gold response tokens (what DFT/BFT's token weighting rewards).
    #[serde(default)]
    pub mean_prob: f64,
    pub tokens: usize,
    pub samples: usize,
}

/// Mean response-token cross-entropy and mean gold-token probability of `samples` under
/// `model`, in batches; and the number of tokens.
pub fn held_out_loss(
    model: &Decoder,
    samples: &[Sample],
    batch: usize,
) -> Result<(f64, f64, usize)> {
    let (mut sum, mut prob, mut n) = (0.0, 0.0, 0usize);
    for chunk in samples.chunks(batch.max(1)) {
        for lp in response_logprobs(model, chunk)? {
            sum -= lp.iter().sum::<f64>();
            prob += lp.iter().map(|l| l.exp()).sum::<f64>();
            n += lp.len();
        }
    }
    let d = n.max(1) as f64;
    Ok((sum / d, prob / d, n))
}

/// Chat-templated, tokenised samples of a JSONL file; also counts those cut at `max_len` and
/// those left without a response token.
fn load_samples(
    path: &Path,
    template: ChatTemplate,
    tokenizer: &tokenizers::Tokenizer,
    max_len: usize,
) -> Result<(Vec<Sample>, usize, usize)> {
    let conversations = read_conversations(path)?;
    let mut samples = Vec::with_capacity(conversations.len());
    let (mut truncated, mut without_response) = (0, 0);
    for (_, messages) in &conversations {
        let pieces = render(template, messages);
        let full = tokenize(tokenizer, &pieces, usize::MAX)?;
        let s = tokenize(tokenizer, &pieces, max_len)?;
        truncated += (full.tokens.len() > s.tokens.len()) as usize;
        without_response += (!s.is_response.iter().skip(1).any(|&r| r)) as usize;
        if s.tokens.len() >= 2 {
            samples.push(s);
        }
    }
    Ok((samples, truncated, without_response))
}

/// What a checkpoint folder's `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    train: TrainConfig,
    lora: Option<LoraConfig>,
    max_len: usize,
}

/// The `checkpoint-STEP` folder of `out` with the highest step.
fn latest_checkpoint(out: &Path) -> Result<Option<PathBuf>> {
    if !out.is_dir() {
        return Ok(None);
    }
    let mut best: Option<(usize, PathBuf)> = None;
    for e in std::fs::read_dir(out)? {
        let p = e?.path();
        let step = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|s| s.parse::<usize>().ok());
        if let Some(s) = step {
            if p.join("state.json").is_file() && best.as_ref().is_none_or(|b| s > b.0) {
                best = Some((s, p));
            }
        }
    }
    Ok(best.map(|b| b.1))
}

/// Writes a checkpoint atomically: into a temporary folder, renamed when complete.
fn write_checkpoint(
    out: &Path,
    varmap: &VarMap,
    opt: &AdamW,
    state: &CheckpointState,
) -> Result<()> {
    let tmp = out.join(format!(".checkpoint-{}.tmp", state.step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    varmap.save(tmp.join("weights.safetensors"))?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state)?)?;
    let dest = out.join(format!("checkpoint-{}", state.step));
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&tmp, &dest).with_context(|| format!("{}: cannot write", dest.display()))
}

/// What `bftkit finetune` did (written as `finetune.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneReport {
    pub bftkit_version: String,
    pub model: String,
    pub data: String,
    pub template: ChatTemplate,
    pub max_len: usize,
    pub lora: Option<LoraConfig>,
    pub train: TrainConfig,
    pub samples: usize,
    /// Samples cut at `max_len`, and those left with no response token (they add no loss).
    pub truncated: usize,
    pub without_response: usize,
    pub steps: usize,
    pub first_loss: f64,
    pub last_loss: f64,
}

fn save_tensors(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    candle_core::safetensors::save(&map, path)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Runs a fine-tuning job; `on_step` sees every step (progress bars).
pub fn finetune(
    opts: &FinetuneOptions,
    mut on_step: impl FnMut(&StepLog, usize),
) -> Result<FinetuneReport> {
    let device = opts.device.clone();
    if let Some(l) = &opts.lora {
        l.check()?;
    } else if opts.dtype != DType::F32 {
        bail!("full fine-tuning keeps f32 weights; use --dtype f32 or LoRA");
    }
    let pre = load_pretrained(&opts.model, &device)?;
    let (samples, truncated, without_response) =
        load_samples(&opts.data, opts.template, &pre.tokenizer, opts.max_len)?;
    let eval_samples = match &opts.eval_data {
        Some(p) => load_samples(p, opts.template, &pre.tokenizer, opts.max_len)?.0,
        None => Vec::new(),
    };
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("{}: cannot create", opts.out.display()))?;
    let varmap = VarMap::new();
    let model = match &opts.lora {
        Some(l) => Decoder::load_with_lora(
            VarBuilder::from_tensors(pre.tensors.clone(), opts.dtype, &device),
            &pre.config,
            Some((l, VarBuilder::from_varmap(&varmap, DType::F32, &device))),
        )?,
        None => {
            let model = Decoder::load(
                VarBuilder::from_varmap(&varmap, DType::F32, &device),
                &pre.config,
            )?;
            for (name, var) in varmap.data().lock().expect("varmap lock").iter() {
                let Some(t) = pre.tensors.get(name) else {
                    bail!("{}: no weight '{name}'", opts.model.display());
                };
                var.set(t)?;
            }
            model
        }
    };
    let mut params: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    if opts.lora.is_some() {
        crate::model::lora::seed_adapters(&params, opts.train.seed)?;
    }
    let log_path = opts.out.join("train_log.jsonl");
    let mut resume = None;
    let mut kept_log = String::new();
    if opts.resume {
        let Some(ckpt) = latest_checkpoint(&opts.out)? else {
            bail!(
                "{}: no checkpoint-STEP folder to resume from",
                opts.out.display()
            );
        };
        let state: CheckpointState =
            serde_json::from_str(&std::fs::read_to_string(ckpt.join("state.json"))?)
                .with_context(|| format!("{}: invalid state.json", ckpt.display()))?;
        let same = serde_json::to_value(&state.train)? == serde_json::to_value(&opts.train)?
            && state.lora == opts.lora
            && state.max_len == opts.max_len;
        if !same {
            bail!(
                "{}: saved with different settings; resume with the same options",
                ckpt.display()
            );
        }
        // A VarMap clone shares its variables; `load` needs `&mut` only to fill them.
        let mut shared = varmap.clone();
        shared.load(ckpt.join("weights.safetensors"))?;
        let mut opt = AdamW::new(params.clone(), opts.train.weight_decay)?;
        opt.load(&ckpt.join("optimizer.safetensors"))?;
        // Keep the log of the steps the checkpoint includes.
        if let Ok(text) = std::fs::read_to_string(&log_path) {
            for line in text.lines() {
                let s: StepLog = serde_json::from_str(line)?;
                if s.step <= state.step {
                    kept_log.push_str(line);
                    kept_log.push('\n');
                }
            }
        }
        resume = Some(opt);
    }
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("{}: cannot write", log_path.display()))?;
    log.write_all(kept_log.as_bytes())?;
    let eval_path = opts.out.join("eval_log.jsonl");
    let mut eval_log = if eval_samples.is_empty() {
        None
    } else {
        let kept: String = std::fs::read_to_string(&eval_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                resume.is_some()
                    && serde_json::from_str::<EvalLog>(l)
                        .is_ok_and(|e| resume.as_ref().is_some_and(|o| e.step <= o.t))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let mut f = std::fs::File::create(&eval_path)
            .with_context(|| format!("{}: cannot write", eval_path.display()))?;
        f.write_all(kept.as_bytes())?;
        Some(f)
    };
    let mut evaluate = |step: usize, model: &Decoder| -> Result<()> {
        if let Some(f) = eval_log.as_mut() {
            let (loss, mean_prob, tokens) =
                held_out_loss(model, &eval_samples, opts.train.batch_size)?;
            let e = EvalLog {
                step,
                loss,
                mean_prob,
                tokens,
                samples: eval_samples.len(),
            };
            writeln!(f, "{}", serde_json::to_string(&e)?)?;
        }
        Ok(())
    };
    if resume.is_none() {
        evaluate(0, &model)?;
    }
    let total_hint = samples
        .len()
        .div_ceil(opts.train.batch_size * opts.train.grad_accum)
        * opts.train.epochs;
    let total_hint = opts
        .train
        .max_steps
        .map_or(total_hint, |m| m.min(total_hint));
    let logs = train(&model, params, &samples, &opts.train, resume, |s, opt| {
        writeln!(log, "{}", serde_json::to_string(s)?)?;
        if opts.save_every.is_some_and(|n| n > 0 && s.step % n == 0) {
            let state = CheckpointState {
                step: s.step,
                train: opts.train.clone(),
                lora: opts.lora.clone(),
                max_len: opts.max_len,
            };
            write_checkpoint(&opts.out, &varmap, opt, &state)?;
        }
        if opts.eval_every > 0 && s.step % opts.eval_every == 0 {
            evaluate(s.step, &model)?;
        }
        on_step(s, total_hint);
        Ok(())
    })?;
    // The final weights are always evaluated.
    if let Some(last) = logs.last() {
        if opts.eval_every == 0 || last.step % opts.eval_every != 0 {
            evaluate(last.step, &model)?;
        }
    }
    match &opts.lora {
        Some(l) => {
            varmap.save(opts.out.join("adapter_model.safetensors"))?;
            let cfg = l.peft_json(&opts.model.display().to_string());
            std::fs::write(
                opts.out.join("adapter_config.json"),
                serde_json::to_string_pretty(&cfg)?,
            )?;
        }
        None => write_model_folder(&model, &pre.tokenizer, &opts.out)?,
    }
    if opts.merge {
        write_model_folder(&model, &pre.tokenizer, &opts.out.join("merged"))?;
    }
    let report = FinetuneReport {
        bftkit_version: env!("CARGO_PKG_VERSION").to_string(),
        model: opts.model.display().to_string(),
        data: opts.data.display().to_string(),
        template: opts.template,
        max_len: opts.max_len,
        lora: opts.lora.clone(),
        train: opts.train.clone(),
        samples: samples.len(),
        truncated,
        without_response,
        steps: logs.len(),
        first_loss: logs.first().map_or(f64::NAN, |l| l.loss),
        last_loss: logs.last().map_or(f64::NAN, |l| l.loss),
    };
    std::fs::write(
        opts.out.join("finetune.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(report)
}

/// A plain Hugging Face model folder: config.json, model.safetensors (adapters merged),
/// tokenizer.json.
fn write_model_folder(
    model: &Decoder,
    tokenizer: &tokenizers::Tokenizer,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&model.config)?,
    )?;
    save_tensors(&model.merged_tensors()?, &dir.join("model.safetensors"))?;
    tokenizer
        .save(dir.join("tokenizer.json"), true)
        .map_err(|e| anyhow::anyhow!("{}: cannot save tokenizer ({e})", dir.display()))?;
    Ok(())
}
