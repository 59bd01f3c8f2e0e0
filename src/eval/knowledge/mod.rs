//! Knowledge checks of a decoder (base, or with tuned adapters): multiple-choice benchmarks
//! (MMLU, MedQA, MedMCQA, PubMedQA) scored as lm-evaluation-harness scores them — the prompt
//! (`prompt`), the log-likelihood of each answer label after it (`score`), the highest wins.
//! Accuracy per benchmark and subject with a 95% interval and the chance rate, and MMLU split
//! into its medical subjects and the rest: what a tuned model gained, and what it forgot.

pub mod bench;
pub mod prompt;
mod score;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

pub use bench::{Benchmark, Question};

use crate::model::chat::ChatTemplate;
use crate::model::generate::load_decoder;
use crate::model::{DeviceSpec, Precision};

/// MMLU's medical subjects (the "knowledge gained" view); every other subject is general
/// knowledge (the "knowledge forgotten" view).
pub const MMLU_MEDICAL: [&str; 6] = [
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
];

#[derive(Debug, Clone)]
pub struct KnowledgeOptions {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    /// The folder holding `mcq/`.
    pub data: PathBuf,
    pub benchmarks: Vec<Benchmark>,
    /// Few-shot examples for MMLU (its dev questions, at most 5); the others are zero-shot.
    pub shots: usize,
    /// Wrap each prompt in a chat template (`None`: plain text, as the harness by default).
    pub template: Option<ChatTemplate>,
    /// The first this many questions of each subject (MMLU subjects, MedMCQA's subject_name;
    /// MedQA and PubMedQA are one subject each).
    pub limit: Option<usize>,
    /// Forward rows per batch.
    pub batch_size: usize,
    /// Longest row in tokens (also capped by the model's positions); longer contexts are cut
    /// on the left.
    pub max_len: usize,
    pub device: DeviceSpec,
    pub precision: Option<Precision>,
}

impl Default for KnowledgeOptions {
    /// Every benchmark, zero-shot, plain prompts, 8 rows per batch, 2,048 tokens, on the CPU;
    /// the model and data paths are empty (to be set).
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            adapter: None,
            data: PathBuf::new(),
            benchmarks: Benchmark::ALL.to_vec(),
            shots: 0,
            template: None,
            limit: None,
            batch_size: 8,
            max_len: 2048,
            device: DeviceSpec::Cpu,
            precision: None,
        }
    }
}

/// Questions answered right out of a number, with the accuracy's 95% interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Wilson score interval (95%).
    pub ci95: [f64; 2],
}

impl Accuracy {
    pub fn new(correct: usize, n: usize) -> Self {
        let (lo, hi) = wilson(correct, n);
        Self {
            n,
            correct,
            accuracy: if n == 0 {
                f64::NAN
            } else {
                correct as f64 / n as f64
            },
            ci95: [lo, hi],
        }
    }
}

/// The Wilson score interval of a binomial proportion at 95% (z = 1.959964).
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) + z * z / (4.0 * n)) / n).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// A group of questions: overall (micro) accuracy, the mean over its subjects (macro) and each
/// subject's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupScores {
    pub name: String,
    pub overall: Accuracy,
    /// Mean of the subjects' accuracies (MMLU's usual average).
    pub macro_accuracy: f64,
    /// Accuracy of always choosing at random: 1 / the number of labels.
    pub chance: f64,
    pub subjects: BTreeMap<String, Accuracy>,
}

/// One question's outcome, for error analysis and cross-checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionScore {
    pub benchmark: Benchmark,
    pub id: String,
    pub subject: String,
    /// Summed log-probability of each label's continuation.
    pub logprobs: Vec<f64>,
    pub choice: usize,
    pub answer: usize,
    /// The context was cut on the left to fit.
    pub truncated: bool,
}

/// What `bftkit knowledge` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnowledgeReport {
    pub bftkit_version: String,
    pub model: String,
    pub adapter: Option<String>,
    pub data: String,
    pub shots: usize,
    pub template: Option<ChatTemplate>,
    pub limit: Option<usize>,
    /// The longest row scored: `--max-len`, capped by the model's positions.
    pub max_len: usize,
    pub scoring: String,
    /// One entry per benchmark, then the MMLU views `mmlu_medical` and `mmlu_other`.
    pub groups: Vec<GroupScores>,
    pub truncated: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub questions: Vec<QuestionScore>,
}

impl KnowledgeReport {
    /// A group's scores by name.
    pub fn group(&self, name: &str) -> Option<&GroupScores> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// The first `limit` questions of each subject (all without a limit), in order.
fn limited(questions: Vec<Question>, limit: Option<usize>) -> Vec<Question> {
    let Some(limit) = limit else {
        return questions;
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    questions
        .into_iter()
        .filter(|q| {
            let n = seen.entry(q.subject.clone()).or_default();
            *n += 1;
            *n <= limit
        })
        .collect()
}

/// Accuracy of a set of scored questions, grouped by subject.
fn group_scores(name: &str, chance: f64, scores: &[&QuestionScore]) -> GroupScores {
    let mut by_subject: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for s in scores {
        let e = by_subject.entry(s.subject.clone()).or_default();
        e.0 += (s.choice == s.answer) as usize;
        e.1 += 1;
    }
    let subjects: BTreeMap<String, Accuracy> = by_subject
        .into_iter()
        .map(|(k, (c, n))| (k, Accuracy::new(c, n)))
        .collect();
    let correct = subjects.values().map(|a| a.correct).sum();
    let macro_accuracy =
        subjects.values().map(|a| a.accuracy).sum::<f64>() / subjects.len().max(1) as f64;
    GroupScores {
        name: name.to_string(),
        overall: Accuracy::new(correct, scores.len()),
        macro_accuracy,
        chance,
        subjects,
    }
}

/// The label with the highest log-probability (the first on a tie, as the harness's argmax).
fn argmax(logprobs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in logprobs.iter().enumerate() {
        if v > logprobs[best] {
            best = i;
        }
    }
    best
}

/// Scores the model on the benchmarks; `on_progress` sees (rows done, rows in all).
pub fn knowledge(
    opts: &KnowledgeOptions,
    on_progress: impl FnMut(usize, usize),
) -> Result<KnowledgeReport> {
    if opts.benchmarks.is_empty() {
        bail!("no benchmark chosen (--bench)");
    }
    if opts.shots > 5 {
        bail!(
            "--shots {} : MMLU's dev split has 5 questions per subject",
            opts.shots
        );
    }
    // Read and check every file before the model is loaded.
    let mut asked: Vec<(Benchmark, Question, Vec<Question>)> = Vec::new();
    let dev = if opts.shots > 0 && opts.benchmarks.contains(&Benchmark::Mmlu) {
        bench::read_mmlu_dev(&opts.data)?
    } else {
        BTreeMap::new()
    };
    for &b in &opts.benchmarks {
        for q in limited(b.read(&opts.data)?, opts.limit) {
            let shots = match (b, dev.get(&q.subject)) {
                (Benchmark::Mmlu, Some(d)) if opts.shots > 0 => {
                    if d.len() < opts.shots {
                        bail!(
                            "MMLU dev has {} questions for '{}', fewer than --shots {}",
                            d.len(),
                            q.subject,
                            opts.shots
                        );
                    }
                    d[..opts.shots].to_vec()
                }
                (Benchmark::Mmlu, None) if opts.shots > 0 => {
                    bail!("MMLU dev has no questions for subject '{}'", q.subject)
                }
                _ => Vec::new(),
            };
            asked.push((b, q, shots));
        }
    }
    let device = opts.device.open()?;
    let dtype = Precision::resolve(opts.precision, &device);
    let (model, tokenizer) = load_decoder(&opts.model, opts.adapter.as_deref(), &device, dtype)?;
    // The longest row: the option, capped by the positions the model was trained for.
    let max_len = opts.max_len.min(model.config.max_position_embeddings);
    let start = Instant::now();
    let prompts: Vec<String> = asked
        .iter()
        .map(|(b, q, shots)| prompt::prompt(*b, q, shots, opts.template))
        .collect();
    let continuations: BTreeMap<Benchmark, Vec<String>> = opts
        .benchmarks
        .iter()
        .map(|&b| (b, prompt::continuations(b)))
        .collect();
    let items: Vec<score::Item<'_>> = asked
        .iter()
        .zip(&prompts)
        .map(|((b, _, _), p)| score::Item {
            context: p,
            continuations: &continuations[b],
        })
        .collect();
    let scored = score::score(
        &model,
        &tokenizer,
        &items,
        opts.batch_size,
        max_len,
        on_progress,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let questions: Vec<QuestionScore> = asked
        .iter()
        .zip(&scored)
        .map(|((b, q, _), s)| QuestionScore {
            benchmark: *b,
            id: q.id.clone(),
            subject: q.subject.clone(),
            choice: argmax(&s.logprobs),
            logprobs: s.logprobs.clone(),
            answer: q.answer,
            truncated: s.truncated,
        })
        .collect();
    let mut groups = Vec::new();
    for &b in &opts.benchmarks {
        let of: Vec<&QuestionScore> = questions.iter().filter(|q| q.benchmark == b).collect();
        groups.push(group_scores(b.name(), 1.0 / b.labels().len() as f64, &of));
    }
    if opts.benchmarks.contains(&Benchmark::Mmlu) {
        let (medical, other): (Vec<&QuestionScore>, Vec<&QuestionScore>) = questions
            .iter()
            .filter(|q| q.benchmark == Benchmark::Mmlu)
            .partition(|q| MMLU_MEDICAL.contains(&q.subject.as_str()));
        for (name, of) in [("mmlu_medical", medical), ("mmlu_other", other)] {
            if !of.is_empty() {
                groups.push(group_scores(name, 0.25, &of));
            }
        }
    }
    Ok(KnowledgeReport {
        bftkit_version: env!("CARGO_PKG_VERSION").to_string(),
        model: opts.model.display().to_string(),
        adapter: opts.adapter.as_ref().map(|a| a.display().to_string()),
        data: opts.data.display().to_string(),
        shots: opts.shots,
        template: opts.template,
        limit: opts.limit,
        max_len,
        scoring: "log-likelihood of each label's continuation (' A', ' yes', ...) after the \
                  prompt, lm-evaluation-harness style; highest wins"
            .into(),
        truncated: scored.iter().filter(|s| s.truncated).count(),
        tokens: scored.iter().map(|s| s.tokens).sum(),
        groups,
        seconds,
        questions,
    })
}

/// Writes the report as JSON.
pub fn write_report(report: &KnowledgeReport, path: &Path) -> Result<()> {
    crate::io::write_file(path, serde_json::to_string_pretty(report)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_matches_hand_values() {
        // 50 of 100: p ± 1.96·sqrt(.25/100) shrunk towards .5 (statsmodels: 0.4038, 0.5962).
        let (lo, hi) = wilson(50, 100);
        assert!((lo - 0.403_831).abs() < 1e-5 && (hi - 0.596_169).abs() < 1e-5);
        // 0 of 10: the lower bound is 0, the upper 0.2775 (statsmodels proportion_confint).
        let (lo, hi) = wilson(0, 10);
        assert!(lo == 0.0 && (hi - 0.277_533).abs() < 1e-5, "{hi}");
    }

    #[test]
    fn groups_count_micro_and_macro_accuracy() {
        let q = |subject: &str, choice, answer| QuestionScore {
            benchmark: Benchmark::Mmlu,
            id: String::new(),
            subject: subject.into(),
            logprobs: vec![],
            choice,
            answer,
            truncated: false,
        };
        let all = [q("a", 0, 0), q("a", 1, 0), q("a", 2, 2), q("b", 3, 1)];
        let g = group_scores("x", 0.25, &all.iter().collect::<Vec<_>>());
        assert_eq!((g.overall.correct, g.overall.n), (2, 4));
        assert!((g.macro_accuracy - (2.0 / 3.0 + 0.0) / 2.0).abs() < 1e-12);
        assert_eq!(argmax(&[-1.0, -0.5, -0.5]), 1);
    }
}
