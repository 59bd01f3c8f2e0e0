//! bftkit: Balanced Fine-Tuning for biomedical LLMs, gene-text embeddings, and the probing
//! benchmarks that judge them. docs/ describes what it computes.
//!
//! Modules by domain, each importing only from the ones listed after it:
//! - [`cli`]: the command-line front end (thin: parses, converts, calls, prints);
//! - [`pipeline`]: `bftkit run` and `bftkit probe` as requests: inputs, suites, reports;
//! - [`fixtures`]: the built-in synthetic data and tiny seeded models;
//! - [`viz`]: UMAP layouts, PNG figures and the HTML report;
//! - [`eval`]: benchmark tasks (one module per kind), probing classifiers, scIB, results;
//! - [`train`]: the SFT/DFT/BFT losses, data, the training loop and checkpoints;
//! - [`embed`]: gene texts to vectors with sentence encoders, genes to cells (GenePT-w);
//! - [`model`]: the Llama/Qwen2 decoder, LoRA, weights, chat templates, generation;
//! - [`io`]: reading and writing embeddings, gene id maps, tables, matrices, texts (no maths);
//! - `numeric` (crate-private): neighbours, sparse graphs, clustering, eigensolvers, shared by the above;
//! - [`error`]: the errors callers branch on.
//!
//! The common entry points are re-exported here: embed texts ([`EmbedJob`]), probe embedding
//! sets on tasks ([`run_probe`] or [`pipeline::probe`]), run the whole benchmark
//! ([`RunRequest`]), fine-tune ([`finetune`]) and describe genes ([`describe`]). See
//! `examples/embed_and_probe.rs`.

pub mod cli;
pub mod embed;
pub mod error;
pub mod eval;
pub mod fixtures;
pub mod io;
pub mod model;
pub(crate) mod numeric;
pub mod pipeline;
pub mod train;
pub mod viz;

pub use embed::{EmbedJob, EmbedReport, EncodeOptions, TextEncoder, TextSource};
pub use error::Error;
pub use eval::kinds::{Outcome, TaskGroup};
pub use eval::metric::Metric;
pub use eval::result::{ProbeReport, TaskResult};
pub use eval::sets::{Baseline, EmbeddingSet};
pub use eval::suite::{run_probe, ProbeInput, ProbeOptions};
pub use eval::task::{TaskSet, TaskSpec};
pub use io::{GeneEmbeddings, GeneIdMap};
pub use model::generate::{describe, DescribeOptions};
pub use model::{DeviceSpec, Precision};
pub use pipeline::{DataFolder, DataOptions, Inputs, ProbeRequest, RunRequest, SuiteConfig};
pub use train::finetune::{finetune, FinetuneOptions};
pub use train::loss::{LossConfig, LossVariant};
pub use viz::report::ReportData;

/// Training allocates and frees large activations every step. With glibc's defaults the heap is
/// trimmed back to the kernel after each free and refilled (page faults, pages zeroed again):
/// 78 s of a 120 s SmolLM2 run (2 steps, 2 evaluations) were system time; keeping freed memory
/// cut it to 91 s (29 s system).
/// (jemalloc was measured too: slower with its defaults, out of memory without decay.)
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 1 << 30);
    }
}
