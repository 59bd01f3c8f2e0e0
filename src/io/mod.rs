//! Input and output: embedding files and gene identifier maps.
//!
//! Readers here validate and convert; they never compute results. Every error names the file and,
//! where there is one, the line, so a user can fix the input without reading the code.

pub mod embeddings;
pub mod gene_ids;
pub mod table;

pub use embeddings::GeneEmbeddings;
pub use gene_ids::{GeneIdMap, GeneResolver};
