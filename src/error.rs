//! The errors a caller branches on. bftkit's functions return `anyhow::Error`; when a failure is
//! a fact about the data rather than a fault (a task's files are not in the data folder, or too
//! few of its examples have an embedding to score it), its root cause is an [`Error`], and a
//! caller that runs many tasks lists the task as not evaluated and goes on. Any other error is a
//! fault to fix (a malformed file, a bad setting) and stops the run.

use std::path::PathBuf;

/// A task that cannot be scored on this data or with this embedding set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Data files the task names are not under the data folder.
    #[error("data not found under {}: {}", dir.display(), files.join(", "))]
    DataMissing { dir: PathBuf, files: Vec<String> },
    /// Too few examples (genes, pairs, cells, targets) have an embedding, or too few remain per
    /// class or fold, for the task's protocol.
    #[error("{0}")]
    TooFewExamples(String),
}

impl Error {
    /// The [`Error`] at the root of `err`, if that is what it is.
    pub fn of(err: &anyhow::Error) -> Option<&Error> {
        err.chain().find_map(|e| e.downcast_ref::<Error>())
    }

    /// A [`Error::TooFewExamples`] as an `anyhow::Error`.
    pub fn too_few(msg: impl Into<String>) -> anyhow::Error {
        Error::TooFewExamples(msg.into()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_root_cause_is_found_under_context() {
        let e: anyhow::Result<()> = Err(Error::too_few("3 cells"));
        let e = e.context("task 'x'").context("on 'set'").unwrap_err();
        assert_eq!(
            Error::of(&e),
            Some(&Error::TooFewExamples("3 cells".into()))
        );
        assert!(Error::of(&anyhow::anyhow!("broken file")).is_none());
        let missing = Error::DataMissing {
            dir: "data".into(),
            files: vec!["a.tsv".into(), "b.tsv".into()],
        };
        assert_eq!(
            missing.to_string(),
            "data not found under data: a.tsv, b.tsv"
        );
    }
}
