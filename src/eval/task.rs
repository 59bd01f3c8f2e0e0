//! Benchmark tasks as data: the TOML schema of `tasks/*.toml` and the registry of tasks.
//!
//! A task file holds what every task has — `name`, `title`, `description`, published reference
//! numbers — and a `group` that selects its kind, whose own sections follow (see
//! [`crate::eval::kinds`]): `[data]` and `[protocol]` for gene and pair tasks, `[cells]` for
//! cell tasks, `[integration]` and `[perturbation]` for those kinds, each with its `main_metric`.
//! Adding a task of an existing kind needs a TOML file, no Rust. docs/tasks.md describes the
//! schema and each kind's protocol.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::kinds::cell::CellTask;
use super::kinds::integration::IntegrationTask;
use super::kinds::labelled::LabelledTask;
use super::kinds::perturbation::PerturbationTask;
use super::kinds::TaskGroup;
use super::metric::{MainMetric, Metric};

/// One benchmark task, as written in `tasks/NAME.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub reference: Vec<Reference>,
    /// What kind of task it is (the file's `group`) and that kind's sections.
    #[serde(flatten)]
    pub kind: TaskKind,
}

/// A task's kind and the sections of its file that only that kind has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "group", rename_all = "lowercase")]
pub enum TaskKind {
    /// One gene per example.
    Gene(LabelledTask),
    /// Two genes per example.
    Pair(LabelledTask),
    /// Cells typed from an expression matrix and gene embeddings.
    Cell(CellTask),
    /// RNA and ADT of the same cells, scored with the scIB metrics.
    Integration(IntegrationTask),
    /// Perturb-seq responses predicted from the targets' embeddings.
    Perturbation(PerturbationTask),
}

impl TaskKind {
    pub fn group(&self) -> TaskGroup {
        match self {
            TaskKind::Gene(_) => TaskGroup::Gene,
            TaskKind::Pair(_) => TaskGroup::Pair,
            TaskKind::Cell(_) => TaskGroup::Cell,
            TaskKind::Integration(_) => TaskGroup::Integration,
            TaskKind::Perturbation(_) => TaskGroup::Perturbation,
        }
    }

    fn check(&self) -> Result<()> {
        match self {
            TaskKind::Gene(t) => t.check(1),
            TaskKind::Pair(t) => t.check(2),
            TaskKind::Cell(t) => t.check(),
            TaskKind::Integration(t) => t.check(),
            TaskKind::Perturbation(t) => t.check(),
        }
    }

    pub fn main_metric(&self) -> MainMetric {
        match self {
            TaskKind::Gene(t) | TaskKind::Pair(t) => MainMetric::Probe(t.main_metric),
            TaskKind::Cell(t) => MainMetric::Cell(t.main_metric),
            TaskKind::Integration(t) => MainMetric::Scib(t.main_metric),
            TaskKind::Perturbation(t) => MainMetric::Perturb(t.main_metric),
        }
    }
}

/// A published number to show beside bftkit's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Embedding set the number belongs to, e.g. "GenePT (ada-002, NCBI summaries)".
    pub name: String,
    pub metric: String,
    pub value: f64,
    #[serde(default)]
    pub sd: Option<f64>,
    pub source: String,
}

impl TaskSpec {
    /// Parses and checks one task file (`origin` names it in errors).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let spec: TaskSpec = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}", locate(text, e.message())))
            .with_context(|| format!("{origin}: invalid task file"))?;
        let check = || -> Result<()> {
            crate::io::check_file_name("task name", &spec.name)?;
            for f in spec.files() {
                crate::io::check_relative_path("data file", f)?;
            }
            spec.kind.check()
        };
        check().with_context(|| format!("{origin}: invalid task file"))?;
        Ok(spec)
    }

    pub fn group(&self) -> TaskGroup {
        self.kind.group()
    }

    pub fn main_metric(&self) -> MainMetric {
        self.kind.main_metric()
    }

    /// Every data file the task reads, relative to the data folder.
    pub fn files(&self) -> Vec<&str> {
        match &self.kind {
            TaskKind::Gene(t) | TaskKind::Pair(t) => t.files(),
            TaskKind::Cell(t) => t.files(),
            TaskKind::Integration(t) => t.files(),
            TaskKind::Perturbation(t) => t.files(),
        }
    }

    /// The task's files that are not under `data_dir`.
    pub fn missing_files(&self, data_dir: &Path) -> Vec<String> {
        self.files()
            .into_iter()
            .filter(|f| !data_dir.join(f).is_file())
            .map(str::to_string)
            .collect()
    }

    /// Whether every data file exists under `data_dir`.
    pub fn data_present(&self, data_dir: &Path) -> bool {
        self.missing_files(data_dir).is_empty()
    }

    /// The name of the main metric.
    pub fn main_metric_name(&self) -> &'static str {
        self.main_metric().name()
    }
}

/// A TOML error message with the line of the key or value it names. The kinds' sections are
/// read through serde's flattening, which loses TOML's positions; the name is still in the
/// message, so the first line holding it is found again.
fn locate(text: &str, message: &str) -> String {
    let named = ["unknown field `", "unknown variant `", "missing field `"]
        .iter()
        .find_map(|p| message.split(p).nth(1))
        .and_then(|rest| rest.split('`').next());
    let line = named.and_then(|name| {
        text.lines().position(|l| {
            let l = l.trim_start();
            l.starts_with(name) || l.contains(&format!("\"{name}\""))
        })
    });
    match line {
        Some(i) => format!("line {}: {message}", i + 1),
        None => message.to_string(),
    }
}

/// The task registry: every task file in a folder, or the set compiled into the binary.
pub struct TaskSet {
    pub tasks: Vec<TaskSpec>,
    pub origin: String,
}

include!(concat!(env!("OUT_DIR"), "/embedded_tasks.rs"));

impl TaskSet {
    /// The tasks shipped in `tasks/` at build time.
    pub fn embedded() -> Result<Self> {
        let tasks = EMBEDDED_TASKS
            .iter()
            .map(|(name, text)| TaskSpec::from_toml(text, &format!("tasks/{name}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            tasks,
            origin: "built-in tasks/".into(),
        })
    }

    /// Every `*.toml` in `dir`, sorted by file name.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot list task folder", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!("{}: no task files (*.toml)", dir.display());
        }
        let tasks = paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("{}: cannot read", p.display()))?;
                TaskSpec::from_toml(&text, &p.display().to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, t) in tasks.iter().enumerate() {
            if let Some(j) = names.insert(&t.name, i) {
                bail!(
                    "task name '{}' is used by both {} and {}",
                    t.name,
                    paths[j].display(),
                    paths[i].display()
                );
            }
        }
        Ok(Self {
            tasks,
            origin: dir.display().to_string(),
        })
    }

    /// The named tasks (`all` selects every one), with an error listing the known names.
    pub fn select(&self, names: &[String]) -> Result<Vec<&TaskSpec>> {
        if names.iter().any(|n| n == "all") {
            return Ok(self.tasks.iter().collect());
        }
        names
            .iter()
            .map(|n| {
                self.tasks.iter().find(|t| &t.name == n).ok_or_else(|| {
                    let known: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
                    anyhow::anyhow!("unknown task '{n}'; known tasks: {}", known.join(", "))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_tasks_parse_and_are_unique() {
        let set = TaskSet::embedded().unwrap();
        assert!(set.tasks.len() >= 12, "{} tasks", set.tasks.len());
        let mut names: Vec<&str> = set.tasks.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), set.tasks.len());
        assert!(set
            .select(&["nope".into()])
            .unwrap_err()
            .to_string()
            .contains("known tasks"));
    }

    #[test]
    fn rejects_inconsistent_specs() {
        let base = r#"
            name = "t"
            title = "T"
            group = "pair"
            [data]
            file = "x.tsv"
            genes = ["a"]
            id_type = "symbol"
            label_column = "label"
            positive = ["1"]
            negative = ["0"]
            [protocol]
            split = "stratified_kfold"
        "#;
        let e = format!("{:#}", TaskSpec::from_toml(base, "t.toml").unwrap_err());
        assert!(e.contains("t.toml") && e.contains("2 gene column"), "{e}");
        let typo = base.replace("id_type", "idtype");
        let e = format!("{:#}", TaskSpec::from_toml(&typo, "t.toml").unwrap_err());
        assert!(e.contains("idtype"), "{e}");
        // A misspelt top-level key, metric or kind is named with its line.
        let typo = base.replace("title = \"T\"", "title = \"T\"\nmain_metrc = \"f1\"");
        let e = format!("{:#}", TaskSpec::from_toml(&typo, "t.toml").unwrap_err());
        assert!(e.contains("line 4") && e.contains("main_metrc"), "{e}");
        let typo = base.replace(
            "group = \"pair\"",
            "group = \"pair\"\nmain_metric = \"auroc\"",
        );
        let e = format!("{:#}", TaskSpec::from_toml(&typo, "t.toml").unwrap_err());
        assert!(e.contains("auroc") && e.contains("roc_auc"), "{e}");
        let e = format!(
            "{:#}",
            TaskSpec::from_toml(&base.replace("\"pair\"", "\"pairs\""), "t.toml").unwrap_err()
        );
        assert!(e.contains("line 4") && e.contains("pairs"), "{e}");
    }
}
