//! The metrics a task can name as its main one, as typed enums (one per task kind) that know
//! their name and which direction is better. Task files name them in snake_case; reports sort
//! and mark the best value by them.

use serde::{Deserialize, Serialize};

/// What every main metric knows about itself.
pub trait Metric: Copy {
    /// The name task files and results use.
    fn name(self) -> &'static str;
    /// Whether a larger value is better.
    fn higher_is_better(self) -> bool {
        true
    }
}

/// Generates a metric enum with its snake_case names.
macro_rules! metric_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }
     default $default:ident; lower_is_better [$($lower:ident),*]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl Default for $name {
            fn default() -> Self {
                Self::$default
            }
        }

        impl Metric for $name {
            fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            fn higher_is_better(self) -> bool {
                const LOWER: &[$name] = &[$($name::$lower),*];
                !LOWER.contains(&self)
            }
        }

        impl $name {
            /// Every metric of this kind, in declaration order.
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];
        }
    };
}

metric_enum! {
    /// Metrics of a binary probe (gene and pair tasks), averaged over folds.
    ProbeMetric {
        RocAuc = "roc_auc",
        AveragePrecision = "average_precision",
        Accuracy = "accuracy",
        F1 = "f1",
    }
    default RocAuc; lower_is_better []
}

metric_enum! {
    /// Metrics of a cell-type task: the one-vs-rest probe's (macro averages), the 10-nearest-
    /// neighbour classifier's, and k-means agreement with the labels.
    CellMetric {
        Accuracy = "accuracy",
        F1 = "f1",
        RocAuc = "roc_auc",
        AveragePrecision = "average_precision",
        Knn10Accuracy = "knn10_accuracy",
        Knn10MacroF1 = "knn10_macro_f1",
        KmeansAri = "kmeans_ari",
        KmeansNmi = "kmeans_nmi",
    }
    default Accuracy; lower_is_better []
}

metric_enum! {
    /// The scIB integration metrics and their aggregates (all in [0, 1], higher is better).
    ScibMetric {
        IsolatedLabels = "isolated_labels",
        KmeansNmi = "kmeans_nmi",
        KmeansAri = "kmeans_ari",
        SilhouetteLabel = "silhouette_label",
        Clisi = "clisi",
        Bras = "bras",
        Ilisi = "ilisi",
        Kbet = "kbet",
        GraphConnectivity = "graph_connectivity",
        PcrComparison = "pcr_comparison",
        /// The classic silhouette batch (reported, not part of Batch).
        SilhouetteBatch = "silhouette_batch",
        Bio = "bio",
        Batch = "batch",
        Total = "total",
    }
    default Total; lower_is_better []
}

metric_enum! {
    /// Metrics of the zero-shot perturbation prediction, averaged over held-out targets.
    PerturbMetric {
        PearsonDelta = "pearson_delta",
        PearsonDeltaTop20 = "pearson_delta_top20",
        Mse = "mse",
    }
    default PearsonDelta; lower_is_better [Mse]
}

/// The main metric of any task kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainMetric {
    Probe(ProbeMetric),
    Cell(CellMetric),
    Scib(ScibMetric),
    Perturb(PerturbMetric),
}

impl Metric for MainMetric {
    fn name(self) -> &'static str {
        match self {
            Self::Probe(m) => m.name(),
            Self::Cell(m) => m.name(),
            Self::Scib(m) => m.name(),
            Self::Perturb(m) => m.name(),
        }
    }

    fn higher_is_better(self) -> bool {
        match self {
            Self::Probe(m) => m.higher_is_better(),
            Self::Cell(m) => m.higher_is_better(),
            Self::Scib(m) => m.higher_is_better(),
            Self::Perturb(m) => m.higher_is_better(),
        }
    }
}

/// The metric of `all` called `name` (results files name metrics as strings).
pub fn by_name<M: Metric>(all: &[M], name: &str) -> Option<M> {
    all.iter().copied().find(|m| m.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_directions_are_right() {
        for m in ScibMetric::ALL {
            let json = serde_json::to_string(m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
            assert_eq!(by_name(ScibMetric::ALL, m.name()), Some(*m));
        }
        assert_eq!(
            serde_json::from_str::<CellMetric>("\"knn10_macro_f1\"").unwrap(),
            CellMetric::Knn10MacroF1
        );
        assert!(!PerturbMetric::Mse.higher_is_better());
        assert!(PerturbMetric::PearsonDelta.higher_is_better());
        assert!(ProbeMetric::ALL.iter().all(|m| m.higher_is_better()));
        assert_eq!(ProbeMetric::default(), ProbeMetric::RocAuc);
        assert!(serde_json::from_str::<ProbeMetric>("\"auc\"").is_err());
    }
}
