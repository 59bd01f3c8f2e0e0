//! bftkit: Balanced Fine-Tuning for biomedical LLMs, gene-text embeddings, and the probing
//! benchmarks that judge them.
//!
//! Modules by domain:
//! - [`io`]: reading and writing embedding files and gene identifier maps (no maths);
//! - [`embed`]: gene texts to vectors with sentence encoders;
//! - [`eval`]: benchmark task definitions, probing classifiers, cross-validation and metrics;
//! - [`model`]: the trainable Llama/Qwen2 decoder, LoRA, GGUF, generation;
//! - [`train`]: the SFT/DFT/BFT losses, data and training loop;
//! - [`viz`]: UMAP, PNG figures and the HTML report;
//! - [`linalg`]: dense kernels shared by the modules above;
//! - [`pipeline`]: `bftkit run`, the whole benchmark and its report in one command;
//! - [`cli`]: the command-line front end (thin; parses, dispatches, prints).

pub mod cli;
pub mod embed;
pub mod eval;
pub mod fixtures;
pub mod io;
pub mod linalg;
pub mod model;
pub mod pipeline;
pub mod train;
pub mod viz;
