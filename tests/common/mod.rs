//! Helpers the end-to-end tests share: the binary run in a folder, and tiny seeded models.

#![allow(dead_code)] // each test file uses some of these

use std::path::Path;

use assert_cmd::Command;

/// `bftkit` with `dir` as its working folder, blind to a data folder set in the environment.
pub fn bftkit_in(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("bftkit").unwrap();
    c.current_dir(dir).env_remove("BFTKIT_DATA");
    c
}

/// What a successful command wrote to stdout, as JSON.
pub fn stdout_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

/// A tiny seeded model of `kind` (bert, llama or qwen2) at `dir/model` (replacing one there).
pub fn tiny_model(dir: &Path, kind: &str) {
    let all = dir.join("tiny-models");
    bftkit::fixtures::write_tiny_models(&all).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("model"));
    std::fs::rename(all.join(format!("tiny-{kind}")), dir.join("model")).unwrap();
}
