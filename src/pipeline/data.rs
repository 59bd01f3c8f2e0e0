//! Where a run's inputs come from: the data folder (given, `$BFTKIT_DATA`, `./data`, or else the
//! built-in synthetic fixtures written to a temporary folder), the task files (a folder, or the
//! ones compiled in) and the gene id map (given, or the data folder's own).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::eval::task::TaskSet;
use crate::io::GeneIdMap;

pub use crate::io::gene_ids::GENE_MAP_FILE;

/// What a command was told about its inputs; everything unset is looked for.
#[derive(Debug, Clone, Default)]
pub struct DataOptions {
    /// The data folder [default: `$BFTKIT_DATA`, else `./data`, else the built-in fixtures].
    pub data: Option<PathBuf>,
    /// A folder of task files (`*.toml`) instead of the built-in tasks.
    pub tasks: Option<PathBuf>,
    /// The gene id table [default: the data folder's [`GENE_MAP_FILE`] when present].
    pub gene_map: Option<PathBuf>,
}

/// The data folder in use; for the fixtures, a temporary folder kept alive as long as this.
pub struct DataFolder {
    pub path: PathBuf,
    /// True when the built-in synthetic fixtures are in use.
    pub fixtures: bool,
    _tmp: Option<tempfile::TempDir>,
}

impl DataFolder {
    /// The folder `given`, else `$BFTKIT_DATA`, else `./data`; with none of them, the built-in
    /// fixtures written to a temporary folder.
    pub fn resolve(given: Option<&Path>) -> Result<Self> {
        let given = given
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("BFTKIT_DATA").map(PathBuf::from))
            .or_else(|| Some(PathBuf::from("data")).filter(|p| p.is_dir()));
        match given {
            Some(path) if path.is_dir() => Ok(Self {
                path,
                fixtures: false,
                _tmp: None,
            }),
            Some(path) => bail!("data folder {} does not exist", path.display()),
            None => {
                let tmp = tempfile::tempdir().context("cannot create a temporary folder")?;
                crate::fixtures::write(tmp.path())?;
                Ok(Self {
                    path: tmp.path().join("data"),
                    fixtures: true,
                    _tmp: Some(tmp),
                })
            }
        }
    }

    /// The fixtures' planted gene embeddings (`None` for a real data folder).
    pub fn fixture_embeddings(&self) -> Option<PathBuf> {
        let root = self.path.parent()?;
        self.fixtures.then(|| root.join("embeddings.tsv"))
    }
}

/// The task files: `dir`, or the ones compiled into bftkit.
pub fn load_tasks(dir: Option<&Path>) -> Result<TaskSet> {
    match dir {
        Some(dir) => TaskSet::from_dir(dir),
        None => TaskSet::embedded(),
    }
}

/// The gene id map in use, or where it was looked for.
pub enum GeneMap {
    Loaded {
        map: GeneIdMap,
        path: PathBuf,
    },
    /// None was given and the data folder has none: genes match embedding ids by name only.
    Absent {
        looked_for: PathBuf,
    },
}

impl GeneMap {
    /// The map given, else the data folder's own.
    pub fn load(given: Option<&Path>, data: &Path) -> Result<Self> {
        let path = match given {
            Some(p) => p.to_path_buf(),
            None => {
                let p = data.join(GENE_MAP_FILE);
                if !p.is_file() {
                    return Ok(Self::Absent { looked_for: p });
                }
                p
            }
        };
        Ok(Self::Loaded {
            map: GeneIdMap::read(&path)?,
            path,
        })
    }

    /// The map and its path, when one is in use.
    pub fn get(&self) -> Option<(&GeneIdMap, &Path)> {
        match self {
            Self::Loaded { map, path } => Some((map, path.as_path())),
            Self::Absent { .. } => None,
        }
    }
}

/// A command's resolved inputs: the data folder, the task files and the gene id map.
pub struct Inputs {
    pub data: DataFolder,
    pub tasks: TaskSet,
    pub gene_map: GeneMap,
}

impl Inputs {
    pub fn resolve(opts: &DataOptions) -> Result<Self> {
        let data = DataFolder::resolve(opts.data.as_deref())?;
        let tasks = load_tasks(opts.tasks.as_deref())?;
        let gene_map = GeneMap::load(opts.gene_map.as_deref(), &data.path)?;
        Ok(Self {
            data,
            tasks,
            gene_map,
        })
    }
}
