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
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CheckpointState, RunIdentity};
use super::data::read_conversations;
use super::step::{response_logprobs, Sample};
use super::trainer::{planned_steps, train, StepContext, StepLog, TrainConfig, TrainHook};
use crate::model::chat::{render, tokenize, ChatTemplate};
use crate::model::lora::{BaseQuant, LoraConfig};
use crate::model::weights::load_pretrained_quantized;
use crate::model::{load_pretrained, Decoder, DeviceSpec, Precision, Pretrained};

#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub model: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    pub template: ChatTemplate,
    pub max_len: usize,
    /// `None` = full fine-tuning.
    pub lora: Option<LoraConfig>,
    /// How LoRA holds the frozen base (quantised or dense).
    pub base_quant: BaseQuant,
    pub train: TrainConfig,
    pub merge: bool,
    /// Write `checkpoint-STEP/` every this many optimizer steps.
    pub save_every: Option<usize>,
    /// Continue from the latest `checkpoint-STEP/` in `out` (made by this same run).
    pub resume: bool,
    /// Replace what a previous run left in `out`; without it (and without `resume`), an `out`
    /// that holds a run is refused, so no result is lost to a mistyped folder.
    pub overwrite: bool,
    /// Held-out conversations, evaluated before training and every `eval_every` steps.
    pub eval_data: Option<PathBuf>,
    pub eval_every: usize,
    pub device: DeviceSpec,
    /// Base weights and activations (LoRA adapters and full fine-tuning stay f32); `None` = the
    /// device's default (f32 on CPU, bf16 on CUDA).
    pub precision: Option<Precision>,
}

impl Default for FinetuneOptions {
    /// LoRA with the authors' setting, [`TrainConfig::default`], ChatML, 512 tokens, held-out
    /// evaluation every 10 steps, no checkpoints, on the CPU; the paths are empty (to be set).
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            data: PathBuf::new(),
            out: PathBuf::new(),
            template: ChatTemplate::default(),
            max_len: 512,
            lora: Some(LoraConfig::default()),
            base_quant: BaseQuant::default(),
            train: TrainConfig::default(),
            merge: false,
            save_every: None,
            resume: false,
            overwrite: false,
            eval_data: None,
            eval_every: 10,
            device: DeviceSpec::Cpu,
            precision: None,
        }
    }
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

/// What `bftkit finetune` did (written as `finetune.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneReport {
    pub bftkit_version: String,
    pub model: String,
    pub data: String,
    pub template: ChatTemplate,
    pub max_len: usize,
    pub lora: Option<LoraConfig>,
    /// How the frozen base was held, and its linear weights' bytes.
    #[serde(default)]
    pub base_quant: BaseQuant,
    #[serde(default)]
    pub frozen_linear_bytes: usize,
    pub train: TrainConfig,
    pub samples: usize,
    /// Samples cut at `max_len`, and those left with no response token (they add no loss).
    pub truncated: usize,
    pub without_response: usize,
    /// Optimizer steps of the whole run (a resumed run counts those before the checkpoint),
    /// and the losses of its first and last step.
    pub steps: usize,
    pub first_loss: f64,
    pub last_loss: f64,
    /// The checkpoint step this invocation continued from.
    #[serde(default)]
    pub resumed_from: Option<usize>,
    /// Fingerprint of the base model's files and SHA-256 of the training data: with the
    /// settings above, what a checkpoint must match to be resumed.
    #[serde(default)]
    pub model_fingerprint: String,
    #[serde(default)]
    pub data_sha256: String,
}

fn save_tensors(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    crate::io::write_with(path, |tmp| Ok(candle_core::safetensors::save(&map, tmp)?))
}

/// The decoder to train and its trainable variables (sorted by name): LoRA adapters over the
/// frozen base in `dtype`, or every weight in f32 for full fine-tuning.
fn trainable_model(
    opts: &FinetuneOptions,
    pre: &mut Pretrained,
    varmap: &VarMap,
    device: &Device,
    dtype: DType,
) -> Result<(Decoder, Vec<(String, Var)>)> {
    let model = match &opts.lora {
        Some(l) => {
            // The base's tensors move into the decoder: no second copy stays behind.
            let tensors = std::mem::take(&mut pre.tensors);
            let mut model = Decoder::load_parts(
                VarBuilder::from_tensors(tensors, dtype, device),
                &pre.config,
                Some((l, VarBuilder::from_varmap(varmap, DType::F32, device))),
                &std::mem::take(&mut pre.quantized),
            )?;
            if let Some(q) = opts.base_quant.ggml() {
                model
                    .quantize_base(q)
                    .with_context(|| format!("--base-quant {q:?}"))?;
            }
            model
        }
        None => {
            let model = Decoder::load(
                VarBuilder::from_varmap(varmap, DType::F32, device),
                &pre.config,
            )?;
            // Copied into the variables and then dropped: one copy of the weights.
            let tensors = std::mem::take(&mut pre.tensors);
            for (name, var) in varmap.data().lock().expect("varmap lock").iter() {
                let Some(t) = tensors.get(name) else {
                    bail!("{}: no weight '{name}'", opts.model.display());
                };
                var.set(t)?;
            }
            model
        }
    };
    let mut params: Vec<(String, Var)> = varmap
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
    Ok((model, params))
}

/// The lines of a JSONL log whose `step` is at most `max_step` (what a resumed run keeps of
/// the log it continues).
fn kept_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
    max_step: usize,
    step_of: impl Fn(&T) -> usize,
) -> Result<String> {
    let mut kept = String::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<T>(line) else {
                continue;
            };
            if step_of(&entry) <= max_step {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    Ok(kept)
}

/// A JSONL log file, started afresh with the lines a resumed run keeps.
fn open_log(path: &Path, kept: &str) -> Result<std::fs::File> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("{}: cannot write", path.display()))?;
    f.write_all(kept.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(f)
}

/// Appends every step's [`StepLog`] to `train_log.jsonl`, and keeps the run's steps (those a
/// resumed run continues from included) for its report.
struct StepLogHook {
    file: std::fs::File,
    path: PathBuf,
    entries: Vec<StepLog>,
}

impl StepLogHook {
    /// `out/train_log.jsonl`, keeping the steps a resumed run's checkpoint includes.
    fn open(out: &Path, resumed_at: Option<usize>) -> Result<Self> {
        let path = out.join("train_log.jsonl");
        let kept = match resumed_at {
            Some(step) => kept_lines(&path, step, |s: &StepLog| s.step)?,
            None => String::new(),
        };
        let entries = kept
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok(Self {
            file: open_log(&path, &kept)?,
            path,
            entries,
        })
    }
}

impl TrainHook for StepLogHook {
    fn after_step(&mut self, log: &StepLog, _: &StepContext<'_>) -> Result<()> {
        writeln!(self.file, "{}", serde_json::to_string(log)?)
            .with_context(|| format!("{}: cannot write", self.path.display()))?;
        self.entries.push(log.clone());
        Ok(())
    }
}

/// Writes `checkpoint-STEP/` every `every` optimizer steps.
struct CheckpointHook<'a> {
    out: &'a Path,
    varmap: &'a VarMap,
    every: usize,
    state: CheckpointState,
}

impl TrainHook for CheckpointHook<'_> {
    fn after_step(&mut self, log: &StepLog, ctx: &StepContext<'_>) -> Result<()> {
        if self.every > 0 && log.step.is_multiple_of(self.every) {
            self.state.step = log.step;
            checkpoint::save(self.out, self.varmap, ctx.optimizer, &self.state)?;
        }
        Ok(())
    }
}

/// Held-out evaluation to `eval_log.jsonl`: before training (unless resumed), every `every`
/// optimizer steps, and at the last step.
struct EvalHook {
    file: std::fs::File,
    path: PathBuf,
    /// Steps already in the log (those a resumed run keeps).
    logged: std::collections::BTreeSet<usize>,
    samples: Vec<Sample>,
    batch_size: usize,
    every: usize,
}

impl EvalHook {
    /// `out/eval_log.jsonl` when there is held-out data, keeping the evaluations a resumed
    /// run's checkpoint includes.
    fn open(
        opts: &FinetuneOptions,
        samples: Vec<Sample>,
        resumed_at: Option<usize>,
    ) -> Result<Option<Self>> {
        if samples.is_empty() {
            return Ok(None);
        }
        let path = opts.out.join("eval_log.jsonl");
        let kept = match resumed_at {
            Some(step) => kept_lines(&path, step, |e: &EvalLog| e.step)?,
            None => String::new(),
        };
        let logged = kept
            .lines()
            .filter_map(|l| serde_json::from_str::<EvalLog>(l).ok())
            .map(|e| e.step)
            .collect();
        Ok(Some(Self {
            file: open_log(&path, &kept)?,
            path,
            logged,
            samples,
            batch_size: opts.train.batch_size,
            every: opts.eval_every,
        }))
    }

    fn evaluate(&mut self, step: usize, model: &Decoder) -> Result<()> {
        let (loss, mean_prob, tokens) = held_out_loss(model, &self.samples, self.batch_size)?;
        let e = EvalLog {
            step,
            loss,
            mean_prob,
            tokens,
            samples: self.samples.len(),
        };
        writeln!(self.file, "{}", serde_json::to_string(&e)?)
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

impl TrainHook for EvalHook {
    fn start(&mut self, model: &Decoder, resumed_at: usize) -> Result<()> {
        // A fresh run evaluates the base model; a resumed one the checkpoint's weights when
        // their evaluation is due but missing (a run killed between the two).
        let due = resumed_at == 0 || (self.every > 0 && resumed_at.is_multiple_of(self.every));
        if due && !self.logged.contains(&resumed_at) {
            self.evaluate(resumed_at, model)?;
        }
        Ok(())
    }

    fn after_step(&mut self, log: &StepLog, ctx: &StepContext<'_>) -> Result<()> {
        if self.every > 0 && log.step.is_multiple_of(self.every) {
            self.evaluate(log.step, ctx.model)?;
        }
        Ok(())
    }

    fn finish(&mut self, last: Option<&StepLog>, model: &Decoder) -> Result<()> {
        // The final weights are always evaluated.
        match last {
            Some(l) if self.every == 0 || l.step % self.every != 0 => self.evaluate(l.step, model),
            _ => Ok(()),
        }
    }
}

/// What a run tells its caller as it goes (progress bars, notes).
pub enum Progress<'a> {
    /// The base model is on the device: its parameters, their bytes there (quantised weights at
    /// their packed size), and the seconds loading took.
    Loaded {
        parameters: usize,
        bytes: usize,
        seconds: f64,
    },
    /// An optimizer step, and the planned number of steps.
    Step { log: &'a StepLog, total: usize },
}

/// Parameters and bytes of a loaded base (dense tensors in their dtype, quantised at their size).
fn weight_size(pre: &Pretrained) -> (usize, usize) {
    let dense = pre
        .tensors
        .values()
        .map(|t| (t.elem_count(), t.elem_count() * t.dtype().size_in_bytes()));
    let quantized = pre
        .quantized
        .values()
        .map(|q| (q.shape().elem_count(), q.storage_size_in_bytes()));
    dense
        .chain(quantized)
        .fold((0, 0), |(n, b), (dn, db)| (n + dn, b + db))
}

/// Hands every step and the planned total to the caller.
struct ProgressHook<F: FnMut(Progress<'_>)> {
    on_progress: F,
    total: usize,
}

impl<F: FnMut(Progress<'_>)> TrainHook for ProgressHook<F> {
    fn after_step(&mut self, log: &StepLog, _: &StepContext<'_>) -> Result<()> {
        (self.on_progress)(Progress::Step {
            log,
            total: self.total,
        });
        Ok(())
    }
}

/// Refuses an `out` that holds a previous run unless this run continues it (`resume`) or
/// replaces it (`overwrite`); checked before anything is loaded.
fn check_out_folder(opts: &FinetuneOptions) -> Result<()> {
    if opts.resume && opts.overwrite {
        bail!("--resume continues the run in the output folder and --overwrite replaces it: choose one");
    }
    let holds_run = opts.out.join("finetune.json").is_file()
        || opts.out.join("train_log.jsonl").is_file()
        || checkpoint::any(&opts.out)?;
    if opts.resume && !checkpoint::any(&opts.out)? {
        bail!(
            "{}: no checkpoint-STEP folder to resume from",
            opts.out.display()
        );
    }
    if holds_run && !opts.resume && !opts.overwrite {
        bail!(
            "{}: holds a previous run (finetune.json, train_log.jsonl or checkpoints); continue \
             it with --resume, replace it with --overwrite, or choose another --out",
            opts.out.display()
        );
    }
    Ok(())
}

/// Runs a fine-tuning job; `on_progress` hears when the model is loaded and sees every step.
pub fn finetune(
    opts: &FinetuneOptions,
    mut on_progress: impl FnMut(Progress<'_>),
) -> Result<FinetuneReport> {
    // Settings first: nothing on disk is touched by a run that cannot start.
    opts.train.check()?;
    check_out_folder(opts)?;
    let device = opts.device.open()?;
    let dtype = Precision::resolve(opts.precision, &device);
    if let Some(l) = &opts.lora {
        l.check()?;
    } else if dtype != DType::F32 {
        bail!("full fine-tuning keeps f32 weights; use --dtype f32 or LoRA");
    } else if opts.base_quant.ggml().is_some() {
        bail!(
            "--base-quant quantises the frozen base of LoRA; full fine-tuning trains every weight"
        );
    }
    let keep_quantized = opts.lora.is_some() && opts.base_quant == BaseQuant::Auto;
    let started = std::time::Instant::now();
    let mut pre = if keep_quantized {
        load_pretrained_quantized(&opts.model, &device, dtype)?
    } else {
        load_pretrained(&opts.model, &device, dtype)?
    };
    let (parameters, bytes) = weight_size(&pre);
    on_progress(Progress::Loaded {
        parameters,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    });
    let (samples, truncated, without_response) =
        load_samples(&opts.data, opts.template, &pre.tokenizer, opts.max_len)?;
    let eval_samples = match &opts.eval_data {
        Some(p) => load_samples(p, opts.template, &pre.tokenizer, opts.max_len)?.0,
        None => Vec::new(),
    };
    let run = RunIdentity {
        model: crate::model::weights::fingerprint(&opts.model)?,
        data: crate::io::embeddings::file_sha256(&opts.data)?,
        eval_data: opts
            .eval_data
            .as_deref()
            .map(crate::io::embeddings::file_sha256)
            .transpose()?,
        template: opts.template,
        max_len: opts.max_len,
        train: opts.train.clone(),
        lora: opts.lora.clone(),
        base_quant: opts.base_quant,
    };
    if opts.overwrite {
        checkpoint::clear_previous_run(&opts.out)?;
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("{}: cannot create", opts.out.display()))?;
    let varmap = VarMap::new();
    let (model, params) = trainable_model(opts, &mut pre, &varmap, &device, dtype)?;
    let (resumed_at, resume) = if opts.resume {
        let (step, opt) = checkpoint::restore(&opts.out, &varmap, &params, &run)?;
        (Some(step), Some(opt))
    } else {
        (None, None)
    };
    let mut step_log = StepLogHook::open(&opts.out, resumed_at)?;
    let mut eval = EvalHook::open(opts, eval_samples, resumed_at)?;
    let mut checkpoints = CheckpointHook {
        out: &opts.out,
        varmap: &varmap,
        every: opts.save_every.unwrap_or(0),
        state: CheckpointState {
            step: 0,
            run: run.clone(),
        },
    };
    let mut progress = ProgressHook {
        on_progress,
        total: planned_steps(samples.len(), &opts.train),
    };
    // Logs before checkpoints: a checkpoint's steps and evaluations are always on disk.
    let mut hooks: Vec<&mut dyn TrainHook> = vec![&mut step_log];
    if let Some(e) = eval.as_mut() {
        hooks.push(e);
    }
    hooks.push(&mut checkpoints);
    hooks.push(&mut progress);
    train(&model, params, &samples, &opts.train, resume, &mut hooks)?;
    write_outputs(opts, &model, &pre.tokenizer, &varmap)?;
    let logs = &step_log.entries;
    let report = FinetuneReport {
        bftkit_version: env!("CARGO_PKG_VERSION").to_string(),
        model: opts.model.display().to_string(),
        data: opts.data.display().to_string(),
        template: opts.template,
        max_len: opts.max_len,
        lora: opts.lora.clone(),
        base_quant: opts.base_quant,
        frozen_linear_bytes: model.frozen_linear_bytes(),
        train: opts.train.clone(),
        samples: samples.len(),
        truncated,
        without_response,
        steps: logs.last().map_or(0, |l| l.step),
        first_loss: logs.first().map_or(f64::NAN, |l| l.loss),
        last_loss: logs.last().map_or(f64::NAN, |l| l.loss),
        resumed_from: resumed_at,
        model_fingerprint: run.model,
        data_sha256: run.data,
    };
    let path = opts.out.join("finetune.json");
    crate::io::write_file(&path, serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

/// The trained weights: PEFT adapter files (LoRA) or a model folder (full), and `merged/` when
/// asked for.
fn write_outputs(
    opts: &FinetuneOptions,
    model: &Decoder,
    tokenizer: &tokenizers::Tokenizer,
    varmap: &VarMap,
) -> Result<()> {
    match &opts.lora {
        Some(l) => {
            crate::io::write_with(&opts.out.join("adapter_model.safetensors"), |tmp| {
                Ok(varmap.save(tmp)?)
            })?;
            let cfg = l.peft_json(&opts.model.display().to_string());
            crate::io::write_file(
                &opts.out.join("adapter_config.json"),
                serde_json::to_string_pretty(&cfg)?,
            )?;
        }
        None => write_model_folder(model, tokenizer, &opts.out)?,
    }
    if opts.merge {
        write_model_folder(model, tokenizer, &opts.out.join("merged"))?;
    }
    Ok(())
}

/// A plain Hugging Face model folder: config.json, model.safetensors (adapters merged),
/// tokenizer.json.
fn write_model_folder(
    model: &Decoder,
    tokenizer: &tokenizers::Tokenizer,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    crate::io::write_file(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&model.config)?,
    )?;
    save_tensors(&model.merged_tensors()?, &dir.join("model.safetensors"))?;
    crate::io::write_with(&dir.join("tokenizer.json"), |tmp| {
        tokenizer
            .save(tmp, true)
            .map_err(|e| anyhow::anyhow!("cannot save tokenizer ({e})"))
    })
}
