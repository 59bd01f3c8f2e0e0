//! Numerical building blocks shared by evaluation (`eval`) and figures (`viz`), with no knowledge
//! of genes, tasks or files: a strided GEMM, exact nearest neighbours, one sparse-graph type and
//! the fuzzy graph, clustering and its agreement scores, dense symmetric eigensolvers, and fast
//! seedable generators. Nothing here reads files or prints.

pub mod cluster;
pub mod eigen;
pub mod gemm;
pub mod graph;
pub mod neighbors;
pub mod rng;
#[cfg(test)]
pub(crate) mod testdata;
