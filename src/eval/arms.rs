//! What an experiment run reports about its model arms, beside the probe scores: the stages it
//! ran or reused, each arm's training curves and describe run, how faithful its profiles are to
//! the curated texts (cosine in the encoder's space and ROUGE-L, seen and held-out genes apart),
//! its knowledge-check accuracies, and example profiles side by side. The fidelity metrics live
//! here too; they do no I/O.

use serde::{Deserialize, Serialize};

/// How a stage's output came to be in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Computed from scratch.
    Ran,
    /// Continued from what an interrupted run left (a checkpoint, the profiles written so far).
    Resumed,
    /// Taken as it was: same inputs and settings as the run that wrote it.
    Reused,
}

/// One stage of the run: its name (`finetune-bft`, `describe-base`, `probe`, ...), the hash of
/// its inputs and settings, and what happened to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: String,
    pub key: String,
    pub status: StageStatus,
    /// Time spent on it in this run (near zero when reused).
    pub seconds: f64,
}

/// One optimizer step of an arm's fine-tuning, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainPoint {
    pub step: usize,
    pub loss: f64,
    pub mean_sample_weight: f64,
}

/// One held-out evaluation of an arm's fine-tuning (step 0 = before training).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalPoint {
    pub step: usize,
    /// Mean response-token cross-entropy.
    pub cross_entropy: f64,
    /// Mean probability of the gold response tokens.
    pub mean_prob: f64,
}

/// Fidelity of an arm's profiles to the curated texts over one group of genes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    /// `seen` (in the fine-tuning data) or `held_out`.
    pub genes: String,
    pub n: usize,
    /// Mean and sd of the cosine between the generated and the curated profile's vectors.
    pub cosine: f64,
    pub cosine_sd: f64,
    /// Mean ROUGE-L F1 against the curated profile.
    pub rouge_l: f64,
}

/// One knowledge-check view of an arm (a benchmark, or MMLU's medical / other subjects).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnowledgeView {
    pub name: String,
    pub questions: usize,
    pub accuracy: f64,
    pub low: f64,
    pub high: f64,
    pub chance: f64,
}

/// What an arm's describe stage did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DescribeSummary {
    pub genes: usize,
    pub generated_tokens: usize,
    /// Profiles ended at an end-of-turn token (the rest were cut at the token limit).
    pub stopped: usize,
    /// Decoding speed of the run that wrote the profiles (of its last part, when resumed).
    pub tokens_per_s: f64,
}

/// One model arm: the base model, as is or fine-tuned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArmReport {
    pub name: String,
    pub model: String,
    /// The fine-tuning, in words (`None` = the base model as is).
    pub finetune: Option<String>,
    pub train: Vec<TrainPoint>,
    pub eval: Vec<EvalPoint>,
    pub describe: DescribeSummary,
    pub fidelity: Vec<Fidelity>,
    pub knowledge: Vec<KnowledgeView>,
}

/// A gene's curated profile and what each arm wrote for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileExample {
    pub gene: String,
    /// `seen` or `held_out`.
    pub genes: String,
    pub curated: String,
    /// (arm, profile), in arm order.
    pub generated: Vec<(String, String)>,
}

/// Which genes the arms described, and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GeneSelection {
    /// Where the list came from (`gene tasks: a, b`, or a file).
    pub source: String,
    /// Genes the source named, as symbols.
    pub from_source: usize,
    /// Source ids the gene id map could not turn into a symbol (not described).
    pub unmapped: usize,
    /// Kept after `max_genes` (a seeded sample).
    pub kept: usize,
    /// Genes added to measure fidelity: with curated text, seen in training and held out.
    pub fidelity_seen: usize,
    pub fidelity_held_out: usize,
    /// All genes described.
    pub described: usize,
}

/// The experiment part of a run's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentReport {
    /// The curated texts: fine-tuning data and fidelity reference.
    pub texts: String,
    pub encoder: String,
    pub train_genes: usize,
    pub held_out_genes: usize,
    pub genes: GeneSelection,
    pub stages: Vec<StageRecord>,
    pub arms: Vec<ArmReport>,
    pub examples: Vec<ProfileExample>,
}

/// Lower-cased alphanumeric runs: the tokens ROUGE-L compares (as the reference `rouge-score`
/// package's default tokenizer, without stemming).
pub fn rouge_tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// ROUGE-L F1 of `candidate` against `reference`: with L the length of their longest common
/// token subsequence, precision L / |candidate|, recall L / |reference|, F1 their harmonic mean
/// (0 when either text has no tokens).
pub fn rouge_l(candidate: &str, reference: &str) -> f64 {
    let (c, r) = (rouge_tokens(candidate), rouge_tokens(reference));
    if c.is_empty() || r.is_empty() {
        return 0.0;
    }
    // One row of the LCS table at a time.
    let mut prev = vec![0usize; r.len() + 1];
    let mut cur = vec![0usize; r.len() + 1];
    for a in &c {
        for (j, b) in r.iter().enumerate() {
            cur[j + 1] = if a == b {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let lcs = prev[r.len()] as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let (p, rec) = (lcs / c.len() as f64, lcs / r.len() as f64);
    2.0 * p * rec / (p + rec)
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Fidelity over one group of genes from each gene's (cosine, ROUGE-L); `None` for no genes.
pub fn fidelity(genes: &str, scores: &[(f64, f64)]) -> Option<Fidelity> {
    if scores.is_empty() {
        return None;
    }
    let n = scores.len() as f64;
    let mean = scores.iter().map(|s| s.0).sum::<f64>() / n;
    let var = if scores.len() > 1 {
        scores.iter().map(|s| (s.0 - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some(Fidelity {
        genes: genes.to_string(),
        n: scores.len(),
        cosine: mean,
        cosine_sd: var.sqrt(),
        rouge_l: scores.iter().map(|s| s.1).sum::<f64>() / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rouge_l_by_hand() {
        // Candidate "the cat sat on the mat" vs reference "the cat is on the mat": LCS "the cat
        // on the mat" = 5 tokens; P = 5/6, R = 5/6, F1 = 5/6.
        let f = rouge_l("The cat sat on the mat.", "the cat is on the mat");
        assert!((f - 5.0 / 6.0).abs() < 1e-12, "{f}");
        // "a b c d" vs "b d e": LCS "b d" = 2; P = 2/4, R = 2/3, F1 = 2·(1/2)(2/3)/(7/6) = 4/7.
        assert!((rouge_l("a b c d", "b d e") - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(rouge_l("x y", "z"), 0.0);
        assert_eq!(rouge_l("", "z"), 0.0);
        assert_eq!(rouge_l("TP53-binding, p21", "tp53 binding p21"), 1.0);
    }

    #[test]
    fn cosine_and_fidelity_summaries() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        let f = fidelity("seen", &[(0.5, 0.2), (0.7, 0.4)]).unwrap();
        assert_eq!(f.n, 2);
        assert!((f.cosine - 0.6).abs() < 1e-12);
        assert!((f.cosine_sd - 0.02f64.sqrt()).abs() < 1e-12);
        assert!((f.rouge_l - 0.3).abs() < 1e-12);
        assert!(fidelity("held_out", &[]).is_none());
    }
}
