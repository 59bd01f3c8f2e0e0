//! For tests: the built-in fixtures written to a temporary folder, probed with the built-in
//! tasks and the planted embeddings.

use std::path::PathBuf;

use anyhow::Result;

use super::result::ProbeReport;
use super::sets::EmbeddingSet;
use super::suite::{run_probe, ProbeInput, ProbeOptions};
use super::task::{TaskSet, TaskSpec};
use crate::io::GeneIdMap;

pub(crate) struct Fixtures {
    pub dir: tempfile::TempDir,
    pub tasks: TaskSet,
    pub sets: Vec<EmbeddingSet>,
}

impl Fixtures {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write(dir.path()).unwrap();
        let sets = vec![EmbeddingSet::from_file(&dir.path().join("embeddings.tsv")).unwrap()];
        Self {
            dir,
            tasks: TaskSet::embedded().unwrap(),
            sets,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The tasks named (all when `names` is empty).
    pub fn tasks(&self, names: &[&str]) -> Vec<&TaskSpec> {
        self.tasks
            .tasks
            .iter()
            .filter(|t| names.is_empty() || names.contains(&t.name.as_str()))
            .collect()
    }

    /// Probes `tasks` on the planted set, with the fixtures' gene map when `gene_map`.
    pub fn probe(
        &self,
        tasks: &[&TaskSpec],
        gene_map: bool,
        opts: &ProbeOptions,
    ) -> Result<ProbeReport> {
        let map_path = self.data().join(crate::io::gene_ids::GENE_MAP_FILE);
        let map = GeneIdMap::read(&map_path).unwrap();
        let input = ProbeInput {
            tasks,
            sets: &self.sets,
            gene_map: gene_map.then_some((&map, map_path.as_path())),
            tasks_origin: "built-in",
        };
        run_probe(&input, opts, |_| {})
    }
}
