//! scIB integration metrics as scib-metrics 0.5 defines them and its `Benchmarker` calls them,
//! one metric family per file: silhouettes (`silhouette`: label, isolated labels, BRAS and the
//! classic silhouette batch), LISI (`lisi`: cLISI, iLISI), kBET (`kbet`), graph connectivity
//! (`connectivity`) and PCR comparison (`pcr`); k-means NMI/ARI come from
//! `numeric::cluster`. One neighbour search (90 neighbours, each cell itself first) is
//! shared by cLISI and iLISI (90), kBET (50) and graph connectivity (15).
//! Bio = mean(isolated labels, k-means NMI, k-means ARI, silhouette label, cLISI); Batch =
//! mean(BRAS, iLISI, kBET, graph connectivity, PCR comparison); Total = 0.6·Bio + 0.4·Batch.
//! docs/scib.md defines each metric. Every metric is a pure function of arrays.
//!
//! Neighbours are exact here (blocked GEMM); scib-metrics uses pynndescent (approximate), the
//! one source of disagreement besides k-means initialisation (bench/scib_vs_scib_metrics.py).

pub(crate) mod connectivity;
pub(crate) mod kbet;
pub(crate) mod lisi;
pub(crate) mod pcr;
pub(crate) mod silhouette;
mod stats;

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use connectivity::graph_connectivity;
use kbet::kbet_per_label;
use lisi::{clisi, ilisi};
use pcr::{pcr, pcr_comparison};
use silhouette::{
    batch_silhouette, isolated_labels, silhouette_label, silhouette_samples, Between, Distance,
};

use crate::error::Error;
use crate::eval::metric::{Metric, ScibMetric};
use crate::numeric::cluster::{ari, kmeans, nmi};
use crate::numeric::neighbors::Neighbors;
use stats::{codes, nanmean};

/// Every scIB metric of one embedding, and the aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScibScores {
    pub isolated_labels: f64,
    pub kmeans_nmi: f64,
    pub kmeans_ari: f64,
    pub silhouette_label: f64,
    pub clisi: f64,
    pub bras: f64,
    pub ilisi: f64,
    pub kbet: f64,
    pub graph_connectivity: f64,
    pub pcr_comparison: f64,
    /// The classic silhouette batch (euclidean, nearest cluster): reported, not in Batch.
    pub silhouette_batch: f64,
    pub bio: f64,
    pub batch: f64,
    pub total: f64,
}

impl ScibScores {
    /// The value of one metric.
    pub fn get(&self, metric: ScibMetric) -> f64 {
        match metric {
            ScibMetric::IsolatedLabels => self.isolated_labels,
            ScibMetric::KmeansNmi => self.kmeans_nmi,
            ScibMetric::KmeansAri => self.kmeans_ari,
            ScibMetric::SilhouetteLabel => self.silhouette_label,
            ScibMetric::Clisi => self.clisi,
            ScibMetric::Bras => self.bras,
            ScibMetric::Ilisi => self.ilisi,
            ScibMetric::Kbet => self.kbet,
            ScibMetric::GraphConnectivity => self.graph_connectivity,
            ScibMetric::PcrComparison => self.pcr_comparison,
            ScibMetric::SilhouetteBatch => self.silhouette_batch,
            ScibMetric::Bio => self.bio,
            ScibMetric::Batch => self.batch,
            ScibMetric::Total => self.total,
        }
    }

    /// (name, value) in report order, aggregates last.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        ScibMetric::ALL
            .iter()
            .map(|&m| (m.name(), self.get(m)))
            .collect()
    }

    /// Rebuilds the scores from their values by name (results files); `None` when one is
    /// missing.
    pub fn from_named(value: impl Fn(&str) -> Option<f64>) -> Option<Self> {
        let v = |m: ScibMetric| value(m.name());
        Some(Self {
            isolated_labels: v(ScibMetric::IsolatedLabels)?,
            kmeans_nmi: v(ScibMetric::KmeansNmi)?,
            kmeans_ari: v(ScibMetric::KmeansAri)?,
            silhouette_label: v(ScibMetric::SilhouetteLabel)?,
            clisi: v(ScibMetric::Clisi)?,
            bras: v(ScibMetric::Bras)?,
            ilisi: v(ScibMetric::Ilisi)?,
            kbet: v(ScibMetric::Kbet)?,
            graph_connectivity: v(ScibMetric::GraphConnectivity)?,
            pcr_comparison: v(ScibMetric::PcrComparison)?,
            silhouette_batch: v(ScibMetric::SilhouetteBatch)?,
            bio: v(ScibMetric::Bio)?,
            batch: v(ScibMetric::Batch)?,
            total: v(ScibMetric::Total)?,
        })
    }
}

/// How long each part took (seconds), for benchmarks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScibTimings(pub BTreeMap<String, f64>);

/// What the metrics are computed on: `n` cells' vectors (`n × dim`, row-major), their labels and
/// batches, and the unintegrated representation (`n × d_pre`) for PCR comparison.
pub struct ScibInput<'a> {
    pub x: &'a [f32],
    pub dim: usize,
    pub labels: &'a [usize],
    pub batches: &'a [usize],
    /// Without it, PCR comparison is NaN and Batch is the mean of the other four.
    pub pre: Option<(&'a [f32], usize)>,
}

/// Every metric of the input, and how long each part took; k-means is seeded.
pub fn scib(input: &ScibInput<'_>, seed: u64) -> Result<(ScibScores, ScibTimings)> {
    let ScibInput {
        x,
        dim: d,
        labels,
        batches,
        pre,
    } = *input;
    let n = labels.len();
    if n < 3
        || x.len() != n * d
        || batches.len() != n
        || pre.is_some_and(|(p, dp)| p.len() != n * dp)
    {
        bail!(
            "scIB: inconsistent sizes ({n} labels, {} batches, {} values for dim {d})",
            batches.len(),
            x.len()
        );
    }
    let nl = codes(labels).1;
    if nl < 2 || codes(batches).1 < 2 {
        return Err(Error::too_few(format!(
            "scIB needs at least two labels and two batches ({nl} labels)"
        )));
    }
    let mut times = ScibTimings::default();
    let mut clock = std::time::Instant::now();
    let mut lap = |name: &str, times: &mut ScibTimings| {
        times.0.insert(name.into(), clock.elapsed().as_secs_f64());
        clock = std::time::Instant::now();
    };
    let nb90 = Neighbors::exact(x, n, d, 90);
    lap("neighbors", &mut times);
    let sil = silhouette_samples(x, d, labels, Distance::Euclidean, Between::Nearest);
    let silhouette_label = silhouette_label(&sil);
    let isolated_labels = isolated_labels(&sil, labels, batches);
    lap("silhouette_label", &mut times);
    let (lab_codes, _) = codes(labels);
    let km = kmeans(x, d, nl, 10, seed);
    let (kmeans_nmi, kmeans_ari) = (nmi(&lab_codes, &km), ari(&lab_codes, &km));
    lap("kmeans", &mut times);
    let clisi = clisi(&nb90, labels);
    let ilisi = ilisi(&nb90, batches);
    lap("lisi", &mut times);
    let bras = batch_silhouette(x, d, labels, batches, Distance::Cosine, Between::MeanOther);
    let silhouette_batch =
        batch_silhouette(x, d, labels, batches, Distance::Euclidean, Between::Nearest);
    lap("batch_silhouettes", &mut times);
    let kbet = kbet_per_label(&nb90.first(50), batches, labels);
    lap("kbet", &mut times);
    let graph_connectivity = graph_connectivity(&nb90.first(15), labels);
    lap("graph_connectivity", &mut times);
    let pcr_comparison = match pre {
        Some((p, dp)) => pcr_comparison(pcr(p, dp, batches), pcr(x, d, batches)),
        None => f64::NAN,
    };
    lap("pcr", &mut times);
    let bio = nanmean(&[
        isolated_labels,
        kmeans_nmi,
        kmeans_ari,
        silhouette_label,
        clisi,
    ]);
    let batch = nanmean(&[bras, ilisi, kbet, graph_connectivity, pcr_comparison]);
    Ok((
        ScibScores {
            isolated_labels,
            kmeans_nmi,
            kmeans_ari,
            silhouette_label,
            clisi,
            bras,
            ilisi,
            kbet,
            graph_connectivity,
            pcr_comparison,
            silhouette_batch,
            bio,
            batch,
            total: 0.6 * bio + 0.4 * batch,
        },
        times,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    /// Three well-separated types; batches either mixed at random or pushed far apart.
    fn planted(separate_batches: bool) -> (Vec<f32>, Vec<usize>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let d = 8;
        let centres: Vec<Vec<f32>> = (0..3)
            .map(|_| {
                (0..d)
                    .map(|_| 10.0 * Distribution::<f32>::sample(&StandardNormal, &mut rng))
                    .collect()
            })
            .collect();
        let (mut x, mut labels, mut batches) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..600 {
            let (l, b) = (i % 3, rng.random_range(0..2usize));
            for (j, c) in centres[l].iter().enumerate() {
                let shift = if separate_batches && j == 0 {
                    40.0 * b as f32
                } else {
                    0.0
                };
                let noise: f32 = StandardNormal.sample(&mut rng);
                x.push(c + shift + noise);
            }
            labels.push(l);
            batches.push(b);
        }
        (x, labels, batches)
    }

    #[test]
    fn perfect_mixing_scores_high_and_perfect_separation_low() {
        let (mixed, labels, batches) = planted(false);
        let (split, _, _) = planted(true);
        let (m, _) = scib(&input(&mixed, &labels, &batches, Some(&split)), 0).unwrap();
        let (s, _) = scib(&input(&split, &labels, &batches, Some(&split)), 0).unwrap();
        // Bio: neighbourhoods stay pure either way; k-means with k = 3 finds the types only
        // when the batches are mixed (separated, there are six blobs).
        assert_eq!((m.kmeans_nmi, m.kmeans_ari), (1.0, 1.0), "{m:?}");
        assert!(s.kmeans_nmi < 0.8, "{s:?}");
        assert_eq!((m.clisi, s.clisi), (1.0, 1.0));
        assert!(m.silhouette_label > 0.8 && m.isolated_labels > 0.8, "{m:?}");
        assert!(s.silhouette_label < m.silhouette_label);
        // Batch: mixed is near the top of every scale, separated near the bottom.
        assert!(
            m.ilisi > 0.85 && s.ilisi < 0.05,
            "iLISI {} vs {}",
            m.ilisi,
            s.ilisi
        );
        assert!(
            m.kbet > 0.6 && s.kbet < 0.1,
            "kBET {} vs {}",
            m.kbet,
            s.kbet
        );
        assert!(
            m.bras > 0.9 && s.bras < 0.6,
            "BRAS {} vs {}",
            m.bras,
            s.bras
        );
        assert!(m.graph_connectivity > 0.9, "{}", m.graph_connectivity);
        assert!(m.pcr_comparison > 0.95 && s.pcr_comparison == 0.0);
        assert!(m.total > s.total + 0.2);
        assert!((m.total - (0.6 * m.bio + 0.4 * m.batch)).abs() < 1e-12);
        // Without an unintegrated representation PCR comparison is NaN and left out.
        let (n, _) = scib(&input(&mixed, &labels, &batches, None), 0).unwrap();
        assert!(n.pcr_comparison.is_nan() && n.batch.is_finite());
        let one_batch = vec![0; 600];
        assert!(scib(&input(&mixed, &labels, &one_batch, None), 0).is_err());
    }

    fn input<'a>(
        x: &'a [f32],
        labels: &'a [usize],
        batches: &'a [usize],
        pre: Option<&'a [f32]>,
    ) -> ScibInput<'a> {
        ScibInput {
            x,
            dim: 8,
            labels,
            batches,
            pre: pre.map(|p| (p, 8)),
        }
    }
}
