//! `bftkit probe`: the selected tasks on one or more embedding files (and the random control),
//! without the report; the result can be written as JSON.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::data::{DataOptions, Inputs};
use crate::eval::result::ProbeReport;
use crate::eval::sets::{unique_names, Baseline, EmbeddingSet};
use crate::eval::suite::{run_probe, ProbeInput, ProbeOptions};
use crate::eval::task::TaskSpec;

/// What to probe and how.
#[derive(Debug, Clone, Default)]
pub struct ProbeRequest {
    pub data: DataOptions,
    /// Task names; `all` selects every task and skips (and lists) those that cannot run.
    pub tasks: Vec<String>,
    /// Embedding files [default with the built-in fixtures: their planted embeddings].
    pub embeddings: Vec<PathBuf>,
    pub baseline: Option<Baseline>,
    /// The probe's settings (its data folder is the resolved one, whatever this says).
    pub options: ProbeOptions,
    /// Write the report here as JSON.
    pub out: Option<PathBuf>,
}

impl ProbeRequest {
    /// The tasks the request selects from the resolved task files.
    pub fn selected<'a>(&self, inputs: &'a Inputs) -> Result<Vec<&'a TaskSpec>> {
        inputs.tasks.select(&self.tasks)
    }
}

/// Runs the request on resolved inputs; `on_task` sees each task before it runs.
pub fn probe(
    request: &ProbeRequest,
    inputs: &Inputs,
    on_task: impl FnMut(&TaskSpec),
) -> Result<ProbeReport> {
    let selected = request.selected(inputs)?;
    let mut paths = request.embeddings.clone();
    if paths.is_empty() {
        match inputs.data.fixture_embeddings() {
            Some(p) => paths.push(p),
            None => bail!(
                "--embeddings FILE is required (a .tsv, .csv or .safetensors of gene vectors)"
            ),
        }
    }
    let mut sets = paths
        .iter()
        .map(|p| EmbeddingSet::from_file(p))
        .collect::<Result<Vec<_>>>()?;
    unique_names(&mut sets);
    if let Some(Baseline::Random) = request.baseline {
        let random = EmbeddingSet::random_like(&sets[0].embeddings, request.options.seed);
        sets.push(random);
    }
    let opts = ProbeOptions {
        data_dir: inputs.data.path.clone(),
        skip_unavailable: request.options.skip_unavailable
            || request.tasks.iter().any(|t| t == "all"),
        ..request.options.clone()
    };
    let input = ProbeInput {
        tasks: &selected,
        sets: &sets,
        gene_map: inputs.gene_map.get(),
        tasks_origin: &inputs.tasks.origin,
    };
    let report = run_probe(&input, &opts, on_task)?;
    if let Some(out) = &request.out {
        let json = serde_json::to_string_pretty(&report)?;
        crate::io::write_file(out, json)?;
    }
    Ok(report)
}
