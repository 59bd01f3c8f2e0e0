//! Evaluation: benchmark tasks (data), datasets built from them, probing classifiers, splits and
//! metrics. Metrics and the classifier are pure; only `task` reads files.

pub mod cells;
pub mod dataset;
pub mod integration;
pub mod logreg;
pub mod metrics;
pub mod perturb;
pub mod probe;
pub mod scib;
pub mod split;
pub mod suite;
pub mod task;
