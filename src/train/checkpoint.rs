//! Training checkpoints: `OUT/checkpoint-STEP/` holds the trainable weights, the optimizer state
//! and the identity of the run that made it (`state.json`: the base model's and the data's
//! fingerprints and every setting that changes the run), written atomically (a temporary folder
//! renamed when complete). A run continues only from a checkpoint of its own identity
//! ([`restore`]); anything else is refused with the first difference named.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Var;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::optim::AdamW;
use super::trainer::TrainConfig;
use crate::model::chat::ChatTemplate;
use crate::model::lora::LoraConfig;

/// What makes a fine-tuning run the run it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunIdentity {
    /// Fingerprint of the base model's files ([`crate::model::weights::fingerprint`]).
    pub model: String,
    /// SHA-256 of the training data and of the held-out data.
    pub data: String,
    pub eval_data: Option<String>,
    pub template: ChatTemplate,
    pub max_len: usize,
    pub train: TrainConfig,
    pub lora: Option<LoraConfig>,
    /// Quantising the base changes the arithmetic; `auto` and `dense` give the same weights.
    #[serde(default)]
    pub base_quant: crate::model::lora::BaseQuant,
}

impl RunIdentity {
    /// The first way `saved` differs from this run, as the command line would name it.
    fn first_difference(&self, saved: &RunIdentity) -> Result<Option<String>> {
        let named = [
            (
                self.model != saved.model,
                "the base model (--model)".to_string(),
            ),
            (
                self.data != saved.data,
                "the training data (--data)".to_string(),
            ),
            (
                self.eval_data != saved.eval_data,
                "the held-out data (--eval-data)".to_string(),
            ),
            (
                self.template != saved.template,
                format!("--template ({:?} then)", saved.template),
            ),
            (
                self.max_len != saved.max_len,
                format!("--max-len ({} then)", saved.max_len),
            ),
            (
                self.lora != saved.lora,
                "the LoRA settings (or --full)".to_string(),
            ),
            (
                self.base_quant.ggml() != saved.base_quant.ggml(),
                format!("--base-quant ({:?} then)", saved.base_quant),
            ),
        ];
        if let Some((_, what)) = named.into_iter().find(|(differs, _)| *differs) {
            return Ok(Some(what));
        }
        // Checkpointing changes memory, not the arithmetic: a run may resume with or without it.
        let same_math = |t: &TrainConfig| TrainConfig {
            gradient_checkpointing: false,
            ..t.clone()
        };
        let (now, then) = (
            serde_json::to_value(same_math(&self.train))?,
            serde_json::to_value(same_math(&saved.train))?,
        );
        let flat = |v: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
            let mut out = Vec::new();
            for (k, x) in v.as_object().into_iter().flatten() {
                match x.as_object() {
                    Some(inner) => {
                        out.extend(inner.iter().map(|(k2, y)| (format!("{k}.{k2}"), y.clone())))
                    }
                    None => out.push((k.clone(), x.clone())),
                }
            }
            out
        };
        let then = flat(&then);
        Ok(flat(&now)
            .into_iter()
            .zip(then)
            .find(|(a, b)| a != b)
            .map(|((k, a), (_, b))| format!("the training setting {k} ({b} then, {a} now)")))
    }
}

/// What a checkpoint folder's `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointState {
    pub step: usize,
    pub run: RunIdentity,
}

/// The `checkpoint-STEP` folders of `out` (those with a `state.json`), newest first.
fn checkpoints(out: &Path) -> Result<Vec<(usize, PathBuf)>> {
    if !out.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for e in std::fs::read_dir(out)? {
        let p = e?.path();
        let step = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|s| s.parse::<usize>().ok());
        if let Some(s) = step {
            if p.join("state.json").is_file() {
                found.push((s, p));
            }
        }
    }
    found.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(found)
}

/// Whether `out` holds any checkpoint.
pub(crate) fn any(out: &Path) -> Result<bool> {
    Ok(!checkpoints(out)?.is_empty())
}

/// Writes `out/checkpoint-STEP` atomically: into a temporary folder, renamed when complete.
pub(crate) fn save(
    out: &Path,
    varmap: &VarMap,
    opt: &AdamW,
    state: &CheckpointState,
) -> Result<()> {
    let tmp = out.join(format!(".checkpoint-{}.tmp", state.step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    crate::io::write_with(&tmp.join("weights.safetensors"), |p| Ok(varmap.save(p)?))?;
    crate::io::write_with(&tmp.join("optimizer.safetensors"), |p| opt.save(p))?;
    crate::io::write_file(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(state)?,
    )?;
    let dest = out.join(format!("checkpoint-{}", state.step));
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&tmp, &dest).with_context(|| format!("{}: cannot write", dest.display()))
}

/// Restores the newest checkpoint of `out` that this run (`run`) made into `varmap` (whose
/// variables `params` are), and returns its step and optimizer. Checkpoints of another run are
/// never taken: when there is none of this one, the error names how the newest one differs.
pub(crate) fn restore(
    out: &Path,
    varmap: &VarMap,
    params: &[(String, Var)],
    run: &RunIdentity,
) -> Result<(usize, AdamW)> {
    let all = checkpoints(out)?;
    let mut newest_other: Option<(PathBuf, String)> = None;
    for (step, dir) in &all {
        let text = std::fs::read_to_string(dir.join("state.json"))
            .with_context(|| format!("{}: cannot read state.json", dir.display()))?;
        let why = match serde_json::from_str::<CheckpointState>(&text) {
            Ok(state) => match run.first_difference(&state.run)? {
                None => {
                    // A VarMap clone shares its variables; `load` needs `&mut` only to fill them.
                    let mut shared = varmap.clone();
                    shared.load(dir.join("weights.safetensors"))?;
                    let mut opt = AdamW::new(params.to_vec(), run.train.weight_decay)?;
                    opt.load(&dir.join("optimizer.safetensors"))?;
                    return Ok((*step, opt));
                }
                Some(why) => why,
            },
            Err(_) => "an unreadable state.json (or one from an older bftkit)".to_string(),
        };
        newest_other.get_or_insert((dir.clone(), why));
    }
    match newest_other {
        Some((dir, why)) => bail!(
            "{}: saved with different settings: {why}; resume with the same options, or start \
             again with --overwrite",
            dir.display()
        ),
        None => bail!(
            "{}: no checkpoint-STEP folder to resume from",
            out.display()
        ),
    }
}

/// Removes what a previous run left in `out` (checkpoints, logs, report, adapters or weights,
/// `merged/`), for `--overwrite`.
pub(crate) fn clear_previous_run(out: &Path) -> Result<()> {
    for (_, dir) in checkpoints(out)? {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("{}: cannot remove", dir.display()))?;
    }
    for f in [
        "train_log.jsonl",
        "eval_log.jsonl",
        "finetune.json",
        "adapter_model.safetensors",
        "adapter_config.json",
        "model.safetensors",
        "config.json",
        "tokenizer.json",
    ] {
        let p = out.join(f);
        if p.is_file() {
            std::fs::remove_file(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
        }
    }
    let merged = out.join("merged");
    if merged.is_dir() {
        std::fs::remove_dir_all(&merged)
            .with_context(|| format!("{}: cannot remove", merged.display()))?;
    }
    Ok(())
}
