//! Graph connectivity: whether each label's cells stay connected in the kNN graph.

use petgraph::graph::DiGraph;

use super::stats::{mean, rows_by_label};
use crate::numeric::neighbors::Neighbors;

/// Largest strongly connected component of each label's cells in the directed kNN graph, as a
/// share of the label's cells, averaged over labels.
pub(crate) fn graph_connectivity(nb: &Neighbors, labels: &[usize]) -> f64 {
    let shares: Vec<f64> = rows_by_label(labels)
        .iter()
        .map(|rows| {
            let mut local = vec![u32::MAX; nb.n];
            rows.iter()
                .enumerate()
                .for_each(|(t, &i)| local[i] = t as u32);
            let mut g: DiGraph<(), ()> = DiGraph::with_capacity(rows.len(), rows.len() * nb.k);
            let nodes: Vec<_> = rows.iter().map(|_| g.add_node(())).collect();
            for (t, &i) in rows.iter().enumerate() {
                for &j in nb.row(i).0 {
                    let lj = local[j as usize];
                    if lj != u32::MAX {
                        g.add_edge(nodes[t], nodes[lj as usize], ());
                    }
                }
            }
            let largest = petgraph::algo::tarjan_scc(&g)
                .iter()
                .map(Vec::len)
                .max()
                .unwrap_or(0);
            largest as f64 / rows.len() as f64
        })
        .collect();
    mean(&shares)
}
