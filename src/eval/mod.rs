//! Evaluation: what an experiment reports per model arm and its fidelity metrics (`arms`),
//! benchmark tasks as data (`task`), one module per task kind that reads its data,
//! scores embedding sets and returns typed outcomes (`kinds`), the probing classifier with its
//! splits and metrics (`probe`), the scIB integration metrics (`scib`, and `scib_files` for
//! `bftkit scib`), the typed main metrics (`metric`), coverage counts (`coverage`), the
//! embedding sets compared (`sets`), results and their JSON form (`result`), and the
//! orchestration over tasks and sets (`suite`). Metrics and the classifier are pure; only the
//! kinds and `scib_files` read files.

pub mod arms;
pub mod coverage;
pub mod kinds;
pub mod knowledge;
pub mod metric;
pub mod probe;
pub mod result;
pub mod scib;
pub mod scib_files;
pub mod sets;
pub mod suite;
pub mod task;
#[cfg(test)]
pub(crate) mod testing;
