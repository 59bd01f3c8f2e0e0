//! Input and output: embedding files, gene identifier maps, tables, expression matrices
//! (MatrixMarket, dense, AnnData), and gene lists and per-gene texts.
//!
//! Readers here validate and convert; they never compute results. Every error names the file and,
//! where there is one, the line, so a user can fix the input without reading the code.

pub mod embeddings;
pub mod gene_ids;
pub mod h5ad;
pub mod matrix;
pub(crate) mod table;
pub mod texts;
pub mod write;

pub use embeddings::GeneEmbeddings;
pub use gene_ids::{GeneIdMap, GeneResolver};
pub use table::ColumnRef;
pub use write::{write_file, write_with};

/// Refuses a name that would not stay one file name inside its folder when used as one (task
/// and report names become file and folder names): letters, digits, `_`, `-`, `.`, spaces, not
/// starting with a dot.
pub fn check_file_name(what: &str, name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '+' | ','));
    if !ok {
        anyhow::bail!(
            "{what} '{name}' cannot be a file name (letters, digits, spaces and _-.+, not \
             starting with a dot)"
        );
    }
    Ok(())
}

/// Refuses a data-file path that is not inside the data folder it is relative to (absolute, or
/// climbing out with `..`).
pub fn check_relative_path(what: &str, path: &str) -> anyhow::Result<()> {
    use std::path::Component;
    let p = std::path::Path::new(path);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        anyhow::bail!("{what} '{path}' must be a path inside the data folder");
    }
    Ok(())
}
