//! The suite file's experiment sections: `[experiment]` (curated texts, genes to describe, the
//! describe settings, the encoder, optional knowledge checks) and `[[arms]]` (a base model, with
//! an optional `[arms.finetune]` section), and how they become the library's options.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::eval::knowledge::{Benchmark, KnowledgeOptions};
use crate::model::chat::ChatTemplate;
use crate::model::generate::DescribeOptions;
use crate::model::lora::LoraConfig;
use crate::model::{DeviceSpec, Precision};
use crate::train::finetune::FinetuneOptions;
use crate::train::loss::{LossConfig, LossVariant};
use crate::train::trainer::TrainConfig;

/// Which genes the arms describe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneSource {
    /// The genes of the selected gene-level tasks.
    #[default]
    GeneTasks,
    /// The genes of the selected gene- and pair-level tasks.
    Tasks,
}

/// `[experiment]`: what every arm shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// Curated gene profiles (TSV/CSV/JSON, as `bftkit embed --texts` reads): split by gene into
    /// the fine-tuning data and held-out genes, and the reference of the fidelity measure.
    pub texts: PathBuf,
    #[serde(default)]
    pub id_col: Option<String>,
    #[serde(default)]
    pub text_col: Option<String>,
    /// Fraction of the texts' genes held out of fine-tuning.
    #[serde(default = "tenth")]
    pub test_fraction: f64,
    /// Held-out conversations each fine-tuning evaluates on (the first of the held-out genes).
    #[serde(default = "default_eval_genes")]
    pub eval_genes: usize,
    /// Genes to describe: `gene_tasks` (default), `tasks`, ...
    #[serde(default)]
    pub genes: GeneSource,
    /// ... or a gene list file (one symbol per line), instead of the tasks' genes.
    #[serde(default)]
    pub gene_list: Option<PathBuf>,
    /// Describe at most this many of them (a seeded sample), for a reduced run.
    #[serde(default)]
    pub max_genes: Option<usize>,
    /// Genes with curated text added to measure fidelity, from the training genes and from the
    /// held-out genes each (a seeded sample).
    #[serde(default = "default_fidelity_genes")]
    pub fidelity_genes: usize,
    /// Example profiles shown side by side in the report.
    #[serde(default = "three")]
    pub examples: usize,
    /// The sentence encoder that embeds every arm's profiles (and the curated ones).
    pub encoder: PathBuf,
    /// Cut every reference set (`[[embeddings]]`) to the described genes, so all sets are probed
    /// on the same examples.
    #[serde(default = "yes")]
    pub same_genes: bool,
    #[serde(default)]
    pub describe: DescribeSection,
    /// Knowledge checks of every arm (omit to skip).
    #[serde(default)]
    pub knowledge: Option<KnowledgeSection>,
}

fn tenth() -> f64 {
    0.1
}
fn default_eval_genes() -> usize {
    48
}
fn default_fidelity_genes() -> usize {
    32
}
fn three() -> usize {
    3
}

/// `[experiment.describe]`: how every arm writes its profiles.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescribeSection {
    #[serde(default = "default_new_tokens")]
    pub max_new_tokens: usize,
    #[serde(default = "default_describe_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub device: DeviceSpec,
    #[serde(default)]
    pub dtype: Option<Precision>,
}

fn default_new_tokens() -> usize {
    DescribeOptions::default().max_new_tokens
}
fn default_describe_batch() -> usize {
    DescribeOptions::default().batch_size
}

impl Default for DescribeSection {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// `[experiment.knowledge]`: multiple-choice benchmarks every arm answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSection {
    /// Benchmarks (`mmlu`, `medqa`, `medmcqa`, `pubmedqa`) [default: all].
    #[serde(default)]
    pub benchmarks: Vec<Benchmark>,
    #[serde(default)]
    pub shots: usize,
    /// The first this many questions of each subject.
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default = "eight")]
    pub batch_size: usize,
}

fn eight() -> usize {
    8
}

/// `[[arms]]`: a model, as is or fine-tuned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmSection {
    pub name: String,
    /// A Hugging Face folder or a GGUF file.
    pub model: PathBuf,
    #[serde(default)]
    pub template: ChatTemplate,
    /// Fine-tune first (omit for the base model as is).
    #[serde(default)]
    pub finetune: Option<FinetuneSection>,
}

/// `[arms.finetune]`: the fine-tuning of an arm; unset fields take `bftkit finetune`'s defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSection {
    pub loss: LossVariant,
    /// Conversations to train on [default: the experiment's training genes].
    #[serde(default)]
    pub data: Option<PathBuf>,
    #[serde(default)]
    pub epochs: Option<usize>,
    #[serde(default)]
    pub max_steps: Option<usize>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub warmup_ratio: Option<f64>,
    #[serde(default)]
    pub max_len: Option<usize>,
    /// Train LoRA adapters (default) or every weight.
    #[serde(default = "yes")]
    pub lora: bool,
    #[serde(default)]
    pub lora_rank: Option<usize>,
    #[serde(default)]
    pub lora_alpha: Option<f64>,
    #[serde(default)]
    pub window: Option<usize>,
    #[serde(default)]
    pub gamma: Option<f64>,
    /// Held-out evaluation every this many steps.
    #[serde(default)]
    pub eval_every: Option<usize>,
    /// A checkpoint every this many steps, for resuming an interrupted run [default: 10].
    #[serde(default)]
    pub save_every: Option<usize>,
    /// [default: the suite's seed]
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub device: DeviceSpec,
    #[serde(default)]
    pub dtype: Option<Precision>,
}

fn yes() -> bool {
    true
}

impl ExperimentSection {
    /// Makes relative paths relative to `base` (the suite file's folder).
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        for p in [
            Some(&mut self.texts),
            Some(&mut self.encoder),
            self.gene_list.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The describe options of an arm's model (and adapter).
    pub(crate) fn describe_options(
        &self,
        arm: &ArmSection,
        adapter: Option<&Path>,
    ) -> DescribeOptions {
        DescribeOptions {
            model: arm.model.clone(),
            adapter: adapter.map(Path::to_path_buf),
            template: arm.template,
            max_new_tokens: self.describe.max_new_tokens,
            batch_size: self.describe.batch_size,
            device: self.describe.device,
            precision: self.describe.dtype,
            ..DescribeOptions::default()
        }
    }

    /// The knowledge-check options of an arm, when the experiment asks for them.
    pub(crate) fn knowledge_options(
        &self,
        arm: &ArmSection,
        adapter: Option<&Path>,
        data: &Path,
    ) -> Option<KnowledgeOptions> {
        let k = self.knowledge.as_ref()?;
        Some(KnowledgeOptions {
            model: arm.model.clone(),
            adapter: adapter.map(Path::to_path_buf),
            data: data.to_path_buf(),
            benchmarks: if k.benchmarks.is_empty() {
                Benchmark::ALL.to_vec()
            } else {
                k.benchmarks.clone()
            },
            shots: k.shots,
            limit: k.limit,
            batch_size: k.batch_size,
            device: self.describe.device,
            precision: self.describe.dtype,
            ..KnowledgeOptions::default()
        })
    }
}

impl ArmSection {
    /// Makes relative paths relative to `base` (the suite file's folder).
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        if self.model.is_relative() {
            self.model = base.join(&self.model);
        }
        if let Some(d) = self.finetune.as_mut().and_then(|f| f.data.as_mut()) {
            if d.is_relative() {
                *d = base.join(&*d);
            }
        }
    }
}

impl FinetuneSection {
    /// `bftkit finetune`'s options for this arm: its model, `data` (the section's, else the
    /// experiment's training conversations) and `eval_data`, into `out`.
    pub(crate) fn options(
        &self,
        arm: &ArmSection,
        data: &Path,
        eval_data: Option<&Path>,
        out: &Path,
        seed: u64,
    ) -> Result<FinetuneOptions> {
        let d = FinetuneOptions::default();
        let t = TrainConfig::default();
        let loss = LossConfig {
            variant: self.loss,
            window: self.window.unwrap_or(t.loss.window),
            gamma: self.gamma.unwrap_or(t.loss.gamma),
            ..t.loss
        };
        let train = TrainConfig {
            loss,
            lr: self.lr.unwrap_or(t.lr),
            warmup_ratio: self.warmup_ratio.unwrap_or(t.warmup_ratio),
            epochs: self.epochs.unwrap_or(t.epochs),
            max_steps: self.max_steps.or(t.max_steps),
            batch_size: self.batch_size.unwrap_or(t.batch_size),
            seed: self.seed.unwrap_or(seed),
            ..t
        };
        let lora = if self.lora {
            let l = LoraConfig::default();
            Some(LoraConfig {
                r: self.lora_rank.unwrap_or(l.r),
                lora_alpha: self.lora_alpha.unwrap_or(l.lora_alpha),
                ..l
            })
        } else {
            if self.lora_rank.is_some() || self.lora_alpha.is_some() {
                bail!(
                    "arm {}: lora_rank / lora_alpha given with lora = false",
                    arm.name
                );
            }
            None
        };
        Ok(FinetuneOptions {
            model: arm.model.clone(),
            data: self.data.clone().unwrap_or_else(|| data.to_path_buf()),
            out: out.to_path_buf(),
            template: arm.template,
            max_len: self.max_len.unwrap_or(d.max_len),
            lora,
            train,
            save_every: Some(self.save_every.unwrap_or(10)),
            eval_data: eval_data.map(Path::to_path_buf),
            eval_every: self.eval_every.unwrap_or(d.eval_every),
            device: self.device,
            precision: self.dtype,
            ..d
        })
    }

    /// The fine-tuning in words, for the report.
    pub(crate) fn summary(&self, o: &FinetuneOptions) -> String {
        let what = match &o.lora {
            Some(l) => format!("LoRA r{} α{}", l.r, l.lora_alpha),
            None => "full".into(),
        };
        let steps = match o.train.max_steps {
            Some(s) => format!("≤ {s} steps"),
            None => format!("{} epoch(s)", o.train.epochs),
        };
        let loss = serde_json::to_value(o.train.loss.variant)
            .ok()
            .and_then(|v| v.as_str().map(str::to_uppercase))
            .unwrap_or_default();
        format!(
            "{loss} loss, {what}, lr {}, batch {}, max length {}, {steps}, seed {}",
            o.train.lr, o.train.batch_size, o.max_len, o.train.seed
        )
    }
}
