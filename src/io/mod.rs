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

pub use embeddings::GeneEmbeddings;
pub use gene_ids::{GeneIdMap, GeneResolver};
pub use table::ColumnRef;
