//! Training checkpoints: `OUT/checkpoint-STEP/` holds the trainable weights, the optimizer state
//! and the settings they were made with (`state.json`), written atomically (a temporary folder
//! renamed when complete), found again by [`latest`] and restored by [`restore`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Var;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::optim::AdamW;
use super::trainer::TrainConfig;
use crate::model::lora::LoraConfig;

/// What a checkpoint folder's `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointState {
    pub step: usize,
    pub train: TrainConfig,
    pub lora: Option<LoraConfig>,
    pub max_len: usize,
}

impl CheckpointState {
    /// Whether a run with these settings may continue from this checkpoint.
    fn same_settings(&self, other: &CheckpointState) -> Result<bool> {
        Ok(
            serde_json::to_value(&self.train)? == serde_json::to_value(&other.train)?
                && self.lora == other.lora
                && self.max_len == other.max_len,
        )
    }
}

/// The `checkpoint-STEP` folder of `out` with the highest step (one with a `state.json`).
pub(crate) fn latest(out: &Path) -> Result<Option<PathBuf>> {
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

/// Restores the latest checkpoint of `out` into `varmap` (whose variables `params` are) and
/// returns its state and optimizer; fails when there is none or it was saved with other
/// settings than `expected`.
pub(crate) fn restore(
    out: &Path,
    varmap: &VarMap,
    params: &[(String, Var)],
    expected: &CheckpointState,
) -> Result<(CheckpointState, AdamW)> {
    let Some(dir) = latest(out)? else {
        bail!(
            "{}: no checkpoint-STEP folder to resume from",
            out.display()
        );
    };
    let state: CheckpointState =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)
            .with_context(|| format!("{}: invalid state.json", dir.display()))?;
    if !state.same_settings(expected)? {
        bail!(
            "{}: saved with different settings; resume with the same options",
            dir.display()
        );
    }
    // A VarMap clone shares its variables; `load` needs `&mut` only to fill them.
    let mut shared = varmap.clone();
    shared.load(dir.join("weights.safetensors"))?;
    let mut opt = AdamW::new(params.to_vec(), expected.train.weight_decay)?;
    opt.load(&dir.join("optimizer.safetensors"))?;
    Ok((state, opt))
}
