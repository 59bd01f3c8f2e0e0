//! Numerical building blocks shared by evaluation (`eval`), figures (`viz`) and training
//! (`train`), with no knowledge of genes, tasks or files: a strided GEMM, exact nearest
//! neighbours, one sparse-graph type and the fuzzy graph, clustering and its agreement scores,
//! dense symmetric eigensolvers, the softmax, SwiGLU and RMSNorm kernels of a training step, and
//! fast seedable generators.
//! Nothing here reads files or prints.

pub(crate) mod activation;
pub(crate) mod cluster;
pub(crate) mod eigen;
pub(crate) mod gemm;
pub(crate) mod graph;
pub(crate) mod neighbors;
pub(crate) mod rng;
#[cfg(test)]
pub(crate) mod testdata;
