//! Cached, resumable stages. Each stage writes into its own folder under the run's `stages/`,
//! with `stage.json` recording the hash of its inputs and settings (its key) and whether it
//! finished. A later run with the same key reuses a finished stage and continues an unfinished
//! one (the stage decides how: from a checkpoint, from the profiles written so far); a changed
//! key, or `fresh`, clears the folder and runs it again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::eval::arms::{StageRecord, StageStatus};

/// What `stage.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct StageFile {
    stage: String,
    key: String,
    complete: bool,
    /// What the key was computed from, for whoever wonders why a stage ran again.
    inputs: serde_json::Value,
}

/// The stages of one run, and what happened to each.
pub(crate) struct Stages {
    root: PathBuf,
    fresh: bool,
    pub records: Vec<StageRecord>,
}

/// A stage being worked on: its folder, key, and whether it starts from a partial run.
pub(crate) struct Stage {
    pub dir: PathBuf,
    pub key: String,
    pub name: String,
    /// `Reused`: the folder holds the finished output; `Resumed`: an unfinished run with the same
    /// key left something to continue from; `Ran`: the folder is empty.
    pub status: StageStatus,
    inputs: serde_json::Value,
    started: Instant,
}

/// The key of a stage: SHA-256 of its name, bftkit's version and its inputs (canonical JSON).
pub(crate) fn key_of(name: &str, inputs: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update([0]);
    h.update(inputs.to_string().as_bytes());
    format!("{:x}", h.finalize())
}

impl Stages {
    pub(crate) fn new(root: &Path, fresh: bool) -> Self {
        Self {
            root: root.to_path_buf(),
            fresh,
            records: Vec::new(),
        }
    }

    /// Opens stage `name` with `inputs` (everything its output depends on, upstream stages' keys
    /// included).
    pub(crate) fn open(&mut self, name: &str, inputs: serde_json::Value) -> Result<Stage> {
        crate::io::check_file_name("stage name", name)?;
        let dir = self.root.join(name);
        let key = key_of(name, &inputs);
        let file = dir.join("stage.json");
        let previous: Option<StageFile> = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let status = match previous {
            Some(p) if p.key == key && !self.fresh => {
                if p.complete {
                    StageStatus::Reused
                } else {
                    StageStatus::Resumed
                }
            }
            _ => StageStatus::Ran,
        };
        if status == StageStatus::Ran && dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("{}: cannot clear a stale stage", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        let stage = Stage {
            dir,
            key,
            name: name.to_string(),
            status,
            inputs,
            started: Instant::now(),
        };
        if status != StageStatus::Reused {
            stage.write(false)?;
        }
        Ok(stage)
    }

    /// Marks `stage` finished (unless it was reused) and records it.
    pub(crate) fn finish(&mut self, stage: Stage) -> Result<()> {
        if stage.status != StageStatus::Reused {
            stage.write(true)?;
        }
        self.records.push(StageRecord {
            stage: stage.name.clone(),
            key: stage.key.clone(),
            status: stage.status,
            seconds: stage.started.elapsed().as_secs_f64(),
        });
        Ok(())
    }
}

impl Stage {
    /// The folder holds the stage's finished output.
    pub(crate) fn reused(&self) -> bool {
        self.status == StageStatus::Reused
    }

    fn write(&self, complete: bool) -> Result<()> {
        let f = StageFile {
            stage: self.name.clone(),
            key: self.key.clone(),
            complete,
            inputs: self.inputs.clone(),
        };
        crate::io::write_file(
            &self.dir.join("stage.json"),
            serde_json::to_string_pretty(&f)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_reused_resumed_or_rerun_by_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = serde_json::json!({"model": "m", "steps": 3});
        let mut st = Stages::new(dir.path(), false);
        let s = st.open("describe-a", inputs.clone()).unwrap();
        assert_eq!(s.status, StageStatus::Ran);
        std::fs::write(s.dir.join("partial.tsv"), "x").unwrap();
        // Interrupted before `finish`: the same inputs continue it, its files kept.
        let s = Stages::new(dir.path(), false)
            .open("describe-a", inputs.clone())
            .unwrap();
        assert_eq!(s.status, StageStatus::Resumed);
        assert!(s.dir.join("partial.tsv").is_file());
        st.finish(s).unwrap();
        let s = Stages::new(dir.path(), false)
            .open("describe-a", inputs.clone())
            .unwrap();
        assert!(s.reused());
        // A changed setting, or `fresh`, clears the folder and runs again.
        let changed = serde_json::json!({"model": "m", "steps": 4});
        let s = Stages::new(dir.path(), false)
            .open("describe-a", changed)
            .unwrap();
        assert_eq!(s.status, StageStatus::Ran);
        assert!(!s.dir.join("partial.tsv").exists());
        let s = Stages::new(dir.path(), true)
            .open("describe-a", inputs.clone())
            .unwrap();
        assert_eq!(s.status, StageStatus::Ran);
        assert_ne!(key_of("a", &inputs), key_of("b", &inputs));
        assert!(Stages::new(dir.path(), false).open("../x", inputs).is_err());
    }
}
