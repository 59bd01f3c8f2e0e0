//! `bftkit run` and the commands around it: the whole benchmark in one call. For each embedding
//! set (a file, or texts embedded on the fly with a model) it runs every task whose data is
//! present, lays genes and cells out with UMAP, and writes the report (`viz::report`).
//!
//! - `suite_file`: the suite file (TOML) naming the sets, tasks, seed and model arms;
//! - `data`: where the data, the task files and the gene id map come from (a folder, or the
//!   built-in fixtures);
//! - `experiment`: model arms (fine-tune → describe → embed → knowledge) as cached stages;
//! - `suite`: running a suite (sets, arms, the probe) and its layouts;
//! - `probe`: `bftkit probe`, the tasks without the report;
//! - this module: [`RunRequest`] and [`run`] for a whole request.

mod data;
mod experiment;
mod probe;
mod suite;
mod suite_file;

pub use data::{load_tasks, DataFolder, DataOptions, GeneMap, Inputs, GENE_MAP_FILE};
pub use experiment::{
    ArmSection, DescribeSection, ExperimentSection, FinetuneSection, GeneSource, KnowledgeSection,
};
pub use probe::{probe, ProbeRequest};
pub use suite::run_suite;
pub use suite_file::{EmbeddingSource, SuiteConfig};

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::viz::report::ReportData;

/// The folder reports go to unless told otherwise.
pub const REPORTS_DIR: &str = "reports";

/// `bftkit run`: a suite file (optional), embedding files on top of its sets, and settings that
/// override the file's.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub config: Option<PathBuf>,
    pub embeddings: Vec<PathBuf>,
    /// The report's name (its folder under `out`) [default: the suite's name, else "fixtures" or
    /// "run"].
    pub name: Option<String>,
    pub out: PathBuf,
    pub seed: Option<u64>,
    /// Lay the sets out with UMAP (unless the suite file says no).
    pub umap: bool,
    /// Inputs; an unset data folder falls back to the suite file's.
    pub data: DataOptions,
    /// Run every stage of a suite with model arms again, whatever earlier runs left.
    pub fresh: bool,
    /// For tests: end describe with an error after this many new profiles, as a kill would.
    #[doc(hidden)]
    pub stop_after_profiles: Option<usize>,
}

impl Default for RunRequest {
    fn default() -> Self {
        Self {
            config: None,
            embeddings: Vec::new(),
            name: None,
            out: PathBuf::from(REPORTS_DIR),
            seed: None,
            umap: true,
            data: DataOptions::default(),
            fresh: false,
            stop_after_profiles: None,
        }
    }
}

/// A run ready to go: the suite to run and its resolved inputs.
pub struct PreparedRun {
    pub suite: SuiteConfig,
    pub inputs: Inputs,
    /// Where the report goes (`out/name`); a suite with model arms keeps its stages in
    /// `out/name/stages`.
    pub out: PathBuf,
    pub fresh: bool,
    pub stop_after_profiles: Option<usize>,
}

/// What a run wrote.
pub struct RunOutput {
    pub report: ReportData,
    /// The report's `index.html`.
    pub index: PathBuf,
}

impl RunRequest {
    /// Reads the suite file (if any), resolves the inputs and puts the request's sets and
    /// settings on top: the suite to run.
    pub fn prepare(&self) -> Result<PreparedRun> {
        let mut suite = match &self.config {
            Some(p) => SuiteConfig::read(p)?,
            None => SuiteConfig::default(),
        };
        let data = DataOptions {
            data: self.data.data.clone().or_else(|| suite.data.clone()),
            ..self.data.clone()
        };
        let inputs = Inputs::resolve(&data)?;
        suite.embeddings.extend(
            self.embeddings
                .iter()
                .map(|e| EmbeddingSource::file(e, None)),
        );
        if suite.embeddings.is_empty() && suite.arms.is_empty() {
            let Some(file) = inputs.data.fixture_embeddings() else {
                bail!("no embedding sets: give --embeddings FILE or a --config suite file");
            };
            suite
                .embeddings
                .push(EmbeddingSource::file(file, Some("fixture_planted".into())));
        }
        if let Some(s) = self.seed {
            suite.seed = s;
        }
        suite.umap &= self.umap;
        let fallback = if inputs.data.fixtures {
            "fixtures"
        } else {
            "run"
        };
        let name = self
            .name
            .clone()
            .or_else(|| suite.name.clone())
            .unwrap_or_else(|| fallback.to_string());
        crate::io::check_file_name("report name", &name)?;
        suite.name = Some(name.clone());
        Ok(PreparedRun {
            suite,
            inputs,
            out: self.out.join(name),
            fresh: self.fresh,
            stop_after_profiles: self.stop_after_profiles,
        })
    }
}

/// Runs a prepared suite and renders its report; `progress(step, total, what)` follows along.
pub fn run(run: &PreparedRun, progress: impl FnMut(usize, usize, &str)) -> Result<RunOutput> {
    let results = if run.suite.arms.is_empty() {
        run_suite(&run.suite, &run.inputs, progress)?
    } else {
        let mut cache = suite::Caching {
            stages: experiment::stage::Stages::new(&run.out.join("stages"), run.fresh),
            stop_after_profiles: run.stop_after_profiles,
        };
        suite::run_suite_cached(&run.suite, &run.inputs, Some(&mut cache), progress)?
    };
    let report = ReportData {
        runs: vec![results],
    };
    let index = crate::viz::report::render(&report, &run.out)?;
    Ok(RunOutput { report, index })
}
