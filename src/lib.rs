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
//! - [`numeric`]: neighbours, sparse graphs, clustering, eigensolvers and GEMM, shared by the
//!   modules above;
//! - [`pipeline`]: `bftkit run`, the whole benchmark and its report in one command;
//! - [`cli`]: the command-line front end (thin; parses, dispatches, prints).

pub mod cli;
pub mod embed;
pub mod error;
pub mod eval;
pub mod fixtures;
pub mod io;
pub mod model;
pub mod numeric;
pub mod pipeline;
pub mod train;
pub mod viz;

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
