//! The training loop: AdamW, linear warmup then cosine decay, gradient accumulation (each
//! micro-batch's loss divided by the accumulation steps; the authors' code effectively summed
//! them), global gradient-norm clipping, a seed for data order, and a log record per step.
//! A NaN or infinite loss stops training with an error before the weights are touched.
//! Logging, evaluation, checkpoints and progress are [`TrainHook`]s around the step.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::data::length_bucketed_batches;
use super::loss::LossConfig;
use super::optim::AdamW;
use super::step::{loss_and_grads, Gradients, Sample};
use crate::model::lora::Dropout;
use crate::model::Decoder;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub loss: LossConfig,
    pub lr: f64,
    /// Fraction of the optimizer steps spent warming up linearly.
    pub warmup_ratio: f64,
    pub epochs: usize,
    /// Stop after this many optimizer steps (if fewer than the epochs give).
    pub max_steps: Option<usize>,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Keep only each decoder layer's input in the forward pass and recompute the layer in the
    /// backward pass (less memory, one more forward pass of compute).
    #[serde(default)]
    pub gradient_checkpointing: bool,
}

impl Default for TrainConfig {
    /// BFT (official form), lr 2e-4 with 3% warmup then cosine decay, one epoch, batches of 4,
    /// no accumulation, gradients clipped at norm 1, no weight decay, seed 0.
    fn default() -> Self {
        Self {
            loss: LossConfig::default(),
            lr: 2e-4,
            warmup_ratio: 0.03,
            epochs: 1,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            max_grad_norm: 1.0,
            weight_decay: 0.0,
            seed: 0,
            gradient_checkpointing: false,
        }
    }
}

impl TrainConfig {
    /// Refuses settings that cannot train (named as the command line names them).
    pub fn check(&self) -> Result<()> {
        self.loss.check()?;
        for (flag, v) in [
            ("--batch-size", self.batch_size),
            ("--grad-accum", self.grad_accum),
            ("--epochs", self.epochs),
        ] {
            if v == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        if self.max_steps == Some(0) {
            bail!("--max-steps must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number, not {}", self.lr);
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            bail!(
                "--warmup-ratio must be in [0, 1], not {}",
                self.warmup_ratio
            );
        }
        for (flag, v) in [
            ("--max-grad-norm", self.max_grad_norm),
            ("--weight-decay", self.weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{flag} must be a number >= 0, not {v}");
            }
        }
        Ok(())
    }
}

/// One optimizer step, as written to the JSONL log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub mean_sample_weight: f64,
    pub mean_token_weight: f64,
    pub tokens: usize,
    pub tokens_per_s: f64,
    /// The step's samples: 0-based positions among the training conversations (those of the
    /// data file with at least two tokens, in file order), micro-batch after micro-batch.
    #[serde(default)]
    pub samples: Vec<usize>,
}

/// Learning rate at optimizer step `step` (0-based) of `total`: linear warmup over `warmup`
/// steps, then cosine decay to 0.
pub fn lr_at(step: usize, total: usize, warmup: usize, lr: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// What a hook sees after an optimizer step.
pub struct StepContext<'a> {
    pub model: &'a Decoder,
    pub optimizer: &'a AdamW,
}

/// Work done around the training step, outside it: logging, held-out evaluation, checkpoints,
/// progress. `finetune` composes the hooks it needs; the loop knows none of them.
pub trait TrainHook {
    /// Before the first step this run takes (`resumed_at` optimizer steps were restored).
    fn start(&mut self, _model: &Decoder, _resumed_at: usize) -> Result<()> {
        Ok(())
    }
    /// After every optimizer step, in the order the hooks were given.
    fn after_step(&mut self, log: &StepLog, ctx: &StepContext<'_>) -> Result<()>;
    /// After the last step (`last`: its log; `None` when this run took no step).
    fn finish(&mut self, _last: Option<&StepLog>, _model: &Decoder) -> Result<()> {
        Ok(())
    }
}

/// Optimizer steps a run takes: batches per epoch / accumulation, times epochs, capped by
/// `max_steps`; at least 1.
pub fn planned_steps(samples: usize, cfg: &TrainConfig) -> usize {
    let per_epoch = samples
        .div_ceil(cfg.batch_size.max(1))
        .div_ceil(cfg.grad_accum.max(1));
    cfg.max_steps
        .unwrap_or(usize::MAX)
        .min(per_epoch * cfg.epochs)
        .max(1)
}

/// One optimizer step's gradients, summed over its micro-batches, and what to log of them.
struct Accumulated {
    grads: Gradients,
    loss: f64,
    tokens: usize,
    sample_weight_sum: f64,
    token_weight_sum: f64,
    samples: usize,
}

/// Whether an error is the device running out of memory (CUDA's driver error, or an allocation
/// the allocator refused).
pub(crate) fn is_out_of_memory(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        let m = c.to_string();
        m.contains("OUT_OF_MEMORY") || m.to_ascii_lowercase().contains("out of memory")
    })
}

/// A failed training step, said for the user: out of memory becomes one line naming the step,
/// the batch and the flags that lower memory (the driver's message and its backtrace add
/// nothing); any other error gets the step as context.
fn step_failed(err: anyhow::Error, step: usize, batch: usize, longest: usize) -> anyhow::Error {
    if is_out_of_memory(&err) {
        anyhow::anyhow!(
            "out of memory at step {step} (batch size {batch}, longest sequence {longest} tokens); \
             lower it with --batch-size (with --grad-accum to keep the effective batch), \
             --max-len, --dtype bf16, or LoRA instead of full fine-tuning"
        )
    } else {
        err.context(format!("training step {step}"))
    }
}

/// Forward and backward passes of the micro-batches of one optimizer step (each micro-batch's
/// loss divided by their number); a non-finite loss stops training before any update.
fn accumulate(
    model: &Decoder,
    vars: &[Var],
    group: &[Vec<usize>],
    samples: &[Sample],
    cfg: &TrainConfig,
    step: usize,
) -> Result<Accumulated> {
    let mut grads = Gradients::new();
    let (mut loss_sum, mut tokens, mut sw, mut tw, mut n) = (0.0, 0, 0.0, 0.0, 0);
    for (micro, batch) in group.iter().enumerate() {
        let batch: Vec<Sample> = batch.iter().map(|&i| samples[i].clone()).collect();
        // Dropout masks depend only on (seed, step, micro-batch): resume repeats them.
        let mut dropout = (model.lora_dropout > 0.0).then(|| {
            let key = (step as u64) << 16 | micro as u64;
            Dropout::new(
                model.lora_dropout,
                cfg.seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )
        });
        let (out, g) = loss_and_grads(
            model,
            vars,
            &batch,
            &cfg.loss,
            dropout.as_mut(),
            1.0 / group.len() as f64,
            cfg.gradient_checkpointing,
        )?;
        let Some(g) = g else {
            bail!(
                "loss became {} at step {}; stopped before updating the weights (outputs \
                 not written; checkpoints so far are intact)",
                out.loss,
                step + 1
            );
        };
        loss_sum += out.loss;
        tokens += out.tokens;
        for w in &out.weights {
            sw += w.sample_weight;
            tw += w.mean_token_weight();
            n += 1;
        }
        if grads.is_empty() {
            grads = g;
        } else {
            for (acc, new) in grads.iter_mut().zip(g) {
                if let Some(new) = new {
                    *acc = Some(match acc.take() {
                        Some(old) => (old + new)?,
                        None => new,
                    });
                }
            }
        }
    }
    Ok(Accumulated {
        grads,
        loss: loss_sum,
        tokens,
        sample_weight_sum: sw,
        token_weight_sum: tw,
        samples: n,
    })
}

/// The global gradient norm (one reduction on the device, one read back), and the gradients
/// scaled down to `max_norm` when above it (0 = no clipping).
fn clip(grads: &mut Gradients, max_norm: f64) -> Result<f64> {
    let mut sq: Option<Tensor> = None;
    for g in grads.iter().flatten() {
        let s = g.to_dtype(candle_core::DType::F32)?.sqr()?.sum_all()?;
        sq = Some(match sq {
            Some(acc) => (acc + s)?,
            None => s,
        });
    }
    let norm = match sq {
        Some(s) => (s.to_scalar::<f32>()? as f64).sqrt(),
        None => 0.0,
    };
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / norm;
        for g in grads.iter_mut() {
            if let Some(t) = g.take() {
                *g = Some((t * scale)?);
            }
        }
    }
    Ok(norm)
}

/// Trains the named `params` (the LoRA adapters, or every weight) of `model` on `samples`.
/// `resume` carries an optimizer restored from a checkpoint: the `opt.t` optimizer steps it has
/// taken are skipped in the same seeded data order, so training continues exactly. The hooks
/// run before the first step, after each step and at the end.
pub fn train(
    model: &Decoder,
    params: Vec<(String, Var)>,
    samples: &[Sample],
    cfg: &TrainConfig,
    resume: Option<AdamW>,
    hooks: &mut [&mut dyn TrainHook],
) -> Result<Vec<StepLog>> {
    let vars: Vec<Var> = params.iter().map(|(_, v)| v.clone()).collect();
    cfg.check()?;
    if samples.is_empty() {
        bail!("no training samples");
    }
    let lengths: Vec<usize> = samples.iter().map(|s| s.tokens.len()).collect();
    let total = planned_steps(samples.len(), cfg);
    let warmup = (cfg.warmup_ratio * total as f64).round() as usize;
    let mut opt = match resume {
        Some(opt) => opt,
        None => AdamW::new(params, cfg.weight_decay)?,
    };
    let done = opt.t;
    for h in hooks.iter_mut() {
        h.start(model, done)?;
    }
    let mut logs = Vec::new();
    let mut step = 0;
    'epochs: for epoch in 0..cfg.epochs {
        // A different, seeded order each epoch.
        let batches = length_bucketed_batches(&lengths, cfg.batch_size, cfg.seed + epoch as u64);
        for group in batches.chunks(cfg.grad_accum) {
            if step >= total {
                break 'epochs;
            }
            if step < done {
                step += 1;
                continue;
            }
            let start = Instant::now();
            let longest = group.iter().flatten().map(|&i| lengths[i]).max();
            let failed = |e| step_failed(e, step + 1, cfg.batch_size, longest.unwrap_or(0));
            let mut acc = accumulate(model, &vars, group, samples, cfg, step).map_err(failed)?;
            let grad_norm = clip(&mut acc.grads, cfg.max_grad_norm).map_err(failed)?;
            if !grad_norm.is_finite() {
                bail!(
                    "gradient norm became {grad_norm} at step {}; stopped before updating the \
                     weights (outputs not written; checkpoints so far are intact)",
                    step + 1
                );
            }
            let lr = lr_at(step, total, warmup, cfg.lr);
            opt.step(&acc.grads, lr).map_err(failed)?;
            let n = acc.samples.max(1) as f64;
            let log = StepLog {
                step: step + 1,
                epoch: epoch + 1,
                loss: acc.loss,
                lr,
                grad_norm,
                mean_sample_weight: acc.sample_weight_sum / n,
                mean_token_weight: acc.token_weight_sum / n,
                tokens: acc.tokens,
                tokens_per_s: acc.tokens as f64 / start.elapsed().as_secs_f64(),
                samples: group.iter().flatten().copied().collect(),
            };
            let ctx = StepContext {
                model,
                optimizer: &opt,
            };
            for h in hooks.iter_mut() {
                h.after_step(&log, &ctx)?;
            }
            logs.push(log);
            step += 1;
        }
    }
    for h in hooks.iter_mut() {
        h.finish(logs.last(), model)?;
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((lr_at(0, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert!(lr_at(99, 100, 10, 1.0) < 0.01);
        assert!((lr_at(0, 10, 0, 2.0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn out_of_memory_is_one_line_naming_the_step_and_the_remedies() {
        let driver = candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
        );
        let e = step_failed(anyhow::Error::from(driver).context("backward"), 2, 8, 256);
        let m = format!("{e:#}");
        assert_eq!(m.lines().count(), 1, "{m}");
        for want in [
            "step 2",
            "batch size 8",
            "256 tokens",
            "--batch-size",
            "--max-len",
        ] {
            assert!(m.contains(want), "{want}: {m}");
        }
        assert!(!m.contains("DriverError"), "{m}");
        let other = step_failed(anyhow::anyhow!("shape mismatch"), 3, 8, 10);
        assert_eq!(format!("{other:#}"), "training step 3: shape mismatch");
    }
}
