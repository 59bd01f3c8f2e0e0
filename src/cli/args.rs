//! The command line as clap types: raw flags, each default taken from the library's options
//! (so it is written once and `--help` shows it), and one conversion per command into the
//! library's options or request. Nothing here runs anything.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::embed::{Backend, EmbedJob, EncodeOptions, Pooling, TextSource};
use crate::eval::knowledge::{Benchmark, KnowledgeOptions};
use crate::eval::probe::logreg::LogisticRegression;
use crate::eval::probe::{PairFeature, Solver};
use crate::eval::scib_files::{AnnotationColumns, ScibFiles};
use crate::eval::sets::Baseline;
use crate::eval::suite::ProbeOptions;
use crate::io::texts;
use crate::model::chat::ChatTemplate;
use crate::model::generate::DescribeOptions;
use crate::model::lora::{BaseQuant, LoraConfig};
use crate::model::{DeviceSpec, Precision};
use crate::pipeline::{DataOptions, ProbeRequest, RunRequest, REPORTS_DIR};
use crate::train::data::ProfileDataOptions;
use crate::train::finetune::FinetuneOptions;
use crate::train::loss::{BftMode, LossConfig, LossVariant};
use crate::train::trainer::TrainConfig;
use crate::train::WeightsOptions;
use crate::viz::umap::UmapOptions;

#[derive(Parser, Debug)]
#[command(
    name = "bftkit",
    version,
    about = "Balanced Fine-Tuning toolkit: gene-text embeddings and the probes that judge them"
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Run every benchmark task whose data is present on one or more embedding sets, with UMAPs,
    /// and write reports/NAME/index.html, the PNGs and results.json (the main job).
    Run(RunArgs),
    /// Re-render a report from saved results.json files, without recomputing.
    Report(ReportArgs),
    /// 2-D UMAP layout of an embedding file (gene, x, y as TSV).
    Umap(UmapArgs),
    /// scIB integration metrics of a cell embedding (labels and batches from an annotation).
    Scib(ScibArgs),
    /// List the benchmark tasks and whether their data is present.
    Tasks(DataArgs),
    /// Probe gene embeddings with logistic regression on benchmark tasks.
    Probe(ProbeArgs),
    /// Embed one text per gene with a sentence encoder (GenePT protocol).
    Embed(EmbedArgs),
    /// Fine-tune a Llama/Qwen2 decoder (HF folder or GGUF) with SFT, DFT or BFT; LoRA by default.
    Finetune(FinetuneArgs),
    /// Have a (fine-tuned) decoder write a profile for each gene (greedy, KV cache, batched).
    Describe(DescribeArgs),
    /// Score a decoder (base, or with tuned adapters) on multiple-choice knowledge benchmarks
    /// (MMLU, MedQA, MedMCQA, PubMedQA) as lm-evaluation-harness does: what it knows of
    /// medicine, and what general knowledge it kept.
    Knowledge(KnowledgeArgs),
    /// Build gene-profile SFT data (train.jsonl, test.jsonl) from gene texts, split by gene.
    SftData(SftDataArgs),
    /// Show how a loss variant weighs a dataset under a model's own probabilities, and which
    /// samples BFT emphasises most.
    Weights(WeightsArgs),
    /// Show how a loss variant weighs samples, from their gold-token probabilities (JSONL).
    Loss(LossCmdArgs),
    /// Write the built-in synthetic dataset (data folder + planted embeddings) to a folder.
    Fixtures(FixturesArgs),
}

#[derive(Args, Debug, Clone)]
pub(super) struct DataArgs {
    /// Data folder holding the task files [default: $BFTKIT_DATA, else ./data, else the built-in
    /// synthetic fixtures].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Folder of task files (*.toml) to use instead of the built-in tasks.
    #[arg(long)]
    pub tasks: Option<PathBuf>,
    /// Gene id table (entrez_id, symbol, ensembl_ids, aliases) used to match task genes to
    /// embedding ids [default: DATA/gene_id_map/hs_gene_ids_orgHsEgDb_3.16.tsv when present].
    #[arg(long)]
    pub gene_map: Option<PathBuf>,
}

impl DataArgs {
    pub(super) fn options(&self) -> DataOptions {
        DataOptions {
            data: self.data.clone(),
            tasks: self.tasks.clone(),
            gene_map: self.gene_map.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct ProbeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Task name(s), or `all` (tasks whose data is absent are then skipped and listed).
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',')]
    pub task: Vec<String>,
    /// Gene embeddings (.tsv/.csv/.safetensors); repeat to compare sets
    /// [default with the built-in fixtures: their planted embeddings].
    #[arg(long)]
    pub embeddings: Vec<PathBuf>,
    /// Also probe a negative control: `random` = N(0,1) vectors of the same width.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Seed for fold assignment and the random baseline.
    #[arg(long, default_value_t = ProbeOptions::default().seed)]
    pub seed: u64,
    /// Number of folds for cross-validated tasks [default: the task's own, 5].
    #[arg(long)]
    pub folds: Option<usize>,
    /// How a gene pair's two vectors become one feature vector.
    #[arg(long, value_enum, default_value_t = ProbeOptions::default().pair_feature)]
    pub pair_feature: PairFeature,
    /// Inverse L2 regularisation strength of the logistic regression.
    #[arg(long, default_value_t = LogisticRegression::default().c)]
    pub c: f64,
    /// Maximum L-BFGS iterations.
    #[arg(long, default_value_t = LogisticRegression::default().max_iter)]
    pub max_iter: usize,
    /// Which solver fits the logistic regression.
    #[arg(long, value_enum, default_value_t = ProbeOptions::default().solver)]
    pub solver: Solver,
    /// Write each task's examples and fold assignment to DIR/TASK.tsv (rows of the first
    /// embedding file), for cross-checking with other tools.
    #[arg(long, value_name = "DIR")]
    pub export_folds: Option<PathBuf>,
    /// Write the full result (every fold, coverage, seeds, digests) as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ProbeArgs {
    pub(super) fn request(&self) -> ProbeRequest {
        ProbeRequest {
            data: self.data.options(),
            tasks: self.task.clone(),
            embeddings: self.embeddings.clone(),
            baseline: self.baseline,
            options: ProbeOptions {
                seed: self.seed,
                folds: self.folds,
                pair_feature: self.pair_feature,
                model: LogisticRegression {
                    c: self.c,
                    max_iter: self.max_iter,
                    ..LogisticRegression::default()
                },
                solver: self.solver,
                export_folds: self.export_folds.clone(),
                ..ProbeOptions::default()
            },
            out: self.out.clone(),
        }
    }
}

/// Where per-gene texts come from (`embed`, `sft-data`).
#[derive(Args, Debug)]
pub(super) struct TextsArgs {
    /// Per-gene texts: a JSON object {gene: text}, or a TSV/CSV with a header.
    #[arg(long)]
    pub texts: PathBuf,
    /// Gene id column of a --texts table.
    #[arg(long, default_value = texts::ID_COLUMN)]
    pub id_col: String,
    /// Text column of a --texts table.
    #[arg(long, default_value = texts::TEXT_COLUMN)]
    pub text_col: String,
}

impl TextsArgs {
    pub(super) fn source(&self) -> TextSource {
        TextSource {
            path: self.texts.clone(),
            id_col: self.id_col.clone(),
            text_col: self.text_col.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct EmbedArgs {
    /// Genes to embed, one per line (`#` comments) [default: every gene of --texts].
    pub genes: Option<PathBuf>,
    #[command(flatten)]
    pub texts: TextsArgs,
    /// Model folder (config.json, model.safetensors, tokenizer.json): a BERT-family encoder such
    /// as models/all-MiniLM-L6-v2, or a Llama/Qwen2 decoder (hidden-state pooling).
    #[arg(long)]
    pub model: PathBuf,
    /// Output file: .safetensors, .tsv or .csv. A report goes beside it as *.embed.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Fail when a listed gene has no text (default: count and list them).
    #[arg(long)]
    pub strict: bool,
    /// Pooling: mean, cls (BERT) or last (decoders) [default: the folder's setting, else mean].
    #[arg(long, value_enum)]
    pub pool: Option<Pooling>,
    /// Skip the L2 normalisation.
    #[arg(long)]
    pub no_normalize: bool,
    /// Maximum tokens per text [default: the model's sentence_bert_config.json, else 512].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Texts per forward pass (candle backend and decoders; texts are sorted by length first).
    #[arg(long, default_value_t = EncodeOptions::default().batch_size)]
    pub batch_size: usize,
    /// BERT implementation: `fast` (bftkit's CPU path) or `candle` (the reference).
    #[arg(long, value_enum, default_value_t = Backend::default())]
    pub backend: Backend,
}

impl EmbedArgs {
    pub(super) fn job(&self) -> EmbedJob {
        EmbedJob {
            genes: self.genes.clone(),
            strict: self.strict,
            pooling: self.pool,
            normalize: !self.no_normalize,
            max_len: self.max_len,
            batch_size: self.batch_size,
            backend: self.backend,
            ..EmbedJob::new(self.texts.source(), &self.model, &self.out)
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct LossCmdArgs {
    /// JSONL, one sample per line: {"probs": [...]} or {"logprobs": [...]}, all tokens valid;
    /// the whole file is one batch.
    #[arg(long)]
    pub probs: PathBuf,
    #[command(flatten)]
    pub loss: LossArgs,
}

/// The loss options `loss`, `weights` and `finetune` share (docs/bft.md).
#[derive(Args, Debug)]
pub(super) struct LossArgs {
    /// Which loss weighs the response tokens.
    #[arg(long, value_enum, default_value_t = LossConfig::default().variant)]
    pub loss: LossVariant,
    /// Which published form of BFT.
    #[arg(long, value_enum, default_value_t = LossConfig::default().mode)]
    pub bft_mode: BftMode,
    /// BFT group (window) size in tokens.
    #[arg(long, default_value_t = LossConfig::default().window)]
    pub window: usize,
    /// Exponent on the official BFT group confidence.
    #[arg(long, default_value_t = LossConfig::default().gamma)]
    pub gamma: f64,
}

impl LossArgs {
    pub(super) fn config(&self) -> LossConfig {
        LossConfig {
            variant: self.loss,
            mode: self.bft_mode,
            window: self.window,
            gamma: self.gamma,
        }
    }
}

/// Where a model runs (`finetune`, `describe`).
#[derive(Args, Debug)]
pub(super) struct DeviceArgs {
    /// cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(long, default_value_t = DeviceSpec::default())]
    pub device: DeviceSpec,
    /// Base weights and activations [default: f32 on CPU, bf16 on CUDA]. LoRA adapters (and,
    /// when training, their optimizer and the loss) stay f32.
    #[arg(long, value_enum)]
    pub dtype: Option<Precision>,
}

#[derive(Args, Debug)]
pub(super) struct FinetuneArgs {
    /// Base model: a Hugging Face folder or a GGUF file (or a folder holding one).
    #[arg(long)]
    pub model: PathBuf,
    /// Training data: JSONL with {"messages": [...]} or {"prompt", "response"} per line.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (adapters or weights, train_log.jsonl, finetune.json).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub loss: LossArgs,
    /// Train every weight instead of LoRA adapters.
    #[arg(long)]
    pub full: bool,
    /// LoRA rank.
    #[arg(long, default_value_t = LoraConfig::default().r)]
    pub lora_r: usize,
    /// LoRA scale numerator (the update is scaled by alpha / r).
    #[arg(long, default_value_t = LoraConfig::default().lora_alpha)]
    pub lora_alpha: f64,
    /// Dropout on the adapters' inputs during training (seeded).
    #[arg(long, default_value_t = LoraConfig::default().lora_dropout)]
    pub lora_dropout: f64,
    /// Comma-separated modules to adapt [default: all seven linear layers].
    #[arg(long, value_delimiter = ',')]
    pub lora_targets: Vec<String>,
    /// How LoRA holds the frozen base: auto (a GGUF file keeps its own quantisation, other
    /// models stay dense), dense, or quantised to q8_0 / q4_k (QLoRA-style: the blocks stay in
    /// memory and are dequantised one layer at a time for the forward and backward passes).
    #[arg(long, value_enum, default_value_t = BaseQuant::Auto)]
    pub base_quant: BaseQuant,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Stop after this many optimizer steps (if fewer than the epochs give).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Conversations per micro-batch.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step (each micro-batch loss is divided by this).
    #[arg(long, default_value_t = TrainConfig::default().grad_accum)]
    pub grad_accum: usize,
    /// Fraction of the optimizer steps spent warming up linearly (then cosine decay).
    #[arg(long, default_value_t = TrainConfig::default().warmup_ratio)]
    pub warmup_ratio: f64,
    /// Clip the global gradient norm to this (0 = no clipping).
    #[arg(long, default_value_t = TrainConfig::default().max_grad_norm)]
    pub max_grad_norm: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    pub weight_decay: f64,
    /// Tokens per conversation (longer ones are cut at the end).
    #[arg(long, default_value_t = FinetuneOptions::default().max_len)]
    pub max_len: usize,
    /// Keep only each decoder layer's input during the forward pass and recompute the layer in
    /// the backward pass: activation memory drops to about one layer's, for one more forward
    /// pass of compute. Gradients are the same.
    #[arg(long)]
    pub gradient_checkpointing: bool,
    #[arg(long, value_enum, default_value_t = FinetuneOptions::default().template)]
    pub template: ChatTemplate,
    /// Seed of the data order, the adapters' initialisation and dropout.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Also write OUT/merged: a plain model folder with the adapters folded in.
    #[arg(long)]
    pub merge: bool,
    /// Write OUT/checkpoint-STEP (weights, optimizer state, progress) every N steps.
    #[arg(long, value_name = "N")]
    pub save_every: Option<usize>,
    /// Continue from the latest OUT/checkpoint-STEP (same model, data and options required).
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace a previous run's results in OUT (checkpoints, logs, weights); without it, a
    /// folder that holds a run is refused.
    #[arg(long)]
    pub overwrite: bool,
    /// Held-out JSONL conversations: their mean response-token loss (plain cross-entropy, the
    /// same yardstick for every variant) goes to OUT/eval_log.jsonl.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Evaluate on --eval-data before training and every N optimizer steps.
    #[arg(long, value_name = "N", default_value_t = FinetuneOptions::default().eval_every)]
    pub eval_every: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl FinetuneArgs {
    pub(super) fn options(&self) -> FinetuneOptions {
        let lora = (!self.full).then(|| LoraConfig {
            r: self.lora_r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            target_modules: if self.lora_targets.is_empty() {
                LoraConfig::default().target_modules
            } else {
                self.lora_targets.clone()
            },
        });
        FinetuneOptions {
            model: self.model.clone(),
            data: self.data.clone(),
            out: self.out.clone(),
            template: self.template,
            max_len: self.max_len,
            lora,
            base_quant: self.base_quant,
            train: TrainConfig {
                loss: self.loss.config(),
                lr: self.lr,
                warmup_ratio: self.warmup_ratio,
                epochs: self.epochs,
                max_steps: self.max_steps,
                batch_size: self.batch_size,
                grad_accum: self.grad_accum,
                max_grad_norm: self.max_grad_norm,
                weight_decay: self.weight_decay,
                seed: self.seed,
                gradient_checkpointing: self.gradient_checkpointing,
            },
            merge: self.merge,
            save_every: self.save_every,
            resume: self.resume,
            overwrite: self.overwrite,
            eval_data: self.eval_data.clone(),
            eval_every: self.eval_every,
            device: self.device.device,
            precision: self.device.dtype,
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct RunArgs {
    /// Suite file (TOML): embedding sets (files, or texts + model), tasks, seed, UMAP colouring,
    /// and model arms (fine-tune → describe → embed → probe; docs/experiment.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Embedding files to compare (instead of, or besides, the suite's sets).
    #[arg(long)]
    pub embeddings: Vec<PathBuf>,
    /// Report name: the folder under --out [default: the suite file's name, else "fixtures" or
    /// "run"].
    #[arg(long)]
    pub name: Option<String>,
    /// Folder the report folder goes in.
    #[arg(long, default_value = REPORTS_DIR)]
    pub out: PathBuf,
    /// Seed of folds, the random baseline, k-means and UMAP [default: the suite's, else 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip the UMAP layouts.
    #[arg(long)]
    pub no_umap: bool,
    /// With model arms: run every stage again instead of reusing (or resuming) what earlier runs
    /// left in the report's stages/ folder.
    #[arg(long)]
    pub fresh: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

impl RunArgs {
    pub(super) fn request(&self) -> RunRequest {
        RunRequest {
            config: self.config.clone(),
            embeddings: self.embeddings.clone(),
            name: self.name.clone(),
            out: self.out.clone(),
            seed: self.seed,
            umap: !self.no_umap,
            data: self.data.options(),
            fresh: self.fresh,
            stop_after_profiles: None,
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct UmapArgs {
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Output TSV: gene, x, y.
    #[arg(long)]
    pub out: PathBuf,
    /// Neighbours of each point in the graph the layout keeps.
    #[arg(long, default_value_t = UmapOptions::default().n_neighbors)]
    pub n_neighbors: usize,
    /// How tightly points may pack in the layout.
    #[arg(long, default_value_t = UmapOptions::default().min_dist)]
    pub min_dist: f64,
    /// 0 = 200 above 10,000 points, else 500 (as umap-learn).
    #[arg(long, default_value_t = UmapOptions::default().n_epochs)]
    pub n_epochs: usize,
    #[arg(long, default_value_t = UmapOptions::default().seed)]
    pub seed: u64,
}

impl UmapArgs {
    pub(super) fn options(&self) -> UmapOptions {
        UmapOptions {
            n_neighbors: self.n_neighbors,
            min_dist: self.min_dist,
            n_epochs: self.n_epochs,
            seed: self.seed,
            ..UmapOptions::default()
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct ScibArgs {
    /// Cell embedding file (id, then the values; TSV/CSV or safetensors, as gene embeddings).
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Cell annotation (CSV/TSV with a header) holding the cell id, label and batch columns.
    #[arg(long)]
    pub obs: PathBuf,
    #[arg(long, default_value_t = AnnotationColumns::default().cell)]
    pub cell_col: String,
    #[arg(long, default_value_t = AnnotationColumns::default().label)]
    pub label_col: String,
    #[arg(long, default_value_t = AnnotationColumns::default().batch)]
    pub batch_col: String,
    /// The unintegrated representation (same cell ids), for PCR comparison.
    #[arg(long)]
    pub pre: Option<PathBuf>,
    /// Seed of k-means.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the JSON here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ScibArgs {
    pub(super) fn files(&self) -> ScibFiles {
        ScibFiles {
            embeddings: self.embeddings.clone(),
            annotation: self.obs.clone(),
            columns: AnnotationColumns {
                cell: self.cell_col.clone(),
                label: self.label_col.clone(),
                batch: self.batch_col.clone(),
            },
            pre: self.pre.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct ReportArgs {
    /// results.json files written by `bftkit run` (several are shown side by side).
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// Output folder for index.html, the PNGs and the merged results.json.
    #[arg(long, default_value = crate::viz::report::COMBINED_DIR)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub(super) struct KnowledgeArgs {
    /// Base model: a Hugging Face folder or a GGUF file (or a folder holding one).
    #[arg(long)]
    pub model: PathBuf,
    /// A `bftkit finetune` output folder with LoRA adapters to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Benchmarks, comma-separated.
    #[arg(long = "bench", value_enum, value_delimiter = ',', default_values_t = KnowledgeOptions::default().benchmarks)]
    pub benchmarks: Vec<Benchmark>,
    /// Few-shot examples for MMLU, from its dev split (0 to 5); the others are zero-shot.
    #[arg(long, default_value_t = KnowledgeOptions::default().shots)]
    pub shots: usize,
    /// Wrap each prompt in a chat template (one user turn, then the assistant header)
    /// [default: plain text, as the harness].
    #[arg(long, value_enum)]
    pub chat_template: Option<ChatTemplate>,
    /// The first N questions of each subject (MMLU subjects, MedMCQA's subject_name; MedQA and
    /// PubMedQA are one subject each), for quick runs.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Forward rows per batch.
    #[arg(long, default_value_t = KnowledgeOptions::default().batch_size)]
    pub batch_size: usize,
    /// Longest row in tokens (and at most the model's positions); longer prompts are cut on the
    /// left.
    #[arg(long, default_value_t = KnowledgeOptions::default().max_len)]
    pub max_len: usize,
    /// Output JSON: accuracies, intervals, views, and every question's label log-probabilities.
    #[arg(long, default_value = "knowledge.json")]
    pub out: PathBuf,
    /// Data folder holding mcq/ [default: $BFTKIT_DATA, else ./data, else the built-in synthetic
    /// fixtures].
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl KnowledgeArgs {
    pub(super) fn options(&self, data: &std::path::Path) -> KnowledgeOptions {
        KnowledgeOptions {
            model: self.model.clone(),
            adapter: self.adapter.clone(),
            data: data.to_path_buf(),
            benchmarks: self.benchmarks.clone(),
            shots: self.shots,
            template: self.chat_template,
            limit: self.limit,
            batch_size: self.batch_size,
            max_len: self.max_len,
            device: self.device.device,
            precision: self.device.dtype,
        }
    }
}

/// The gene-profile prompt (`describe`, `sft-data`).
#[derive(Args, Debug)]
pub(super) struct PromptArgs {
    /// System prompt [default: the gene-profile prompt's, docs/bft.md].
    #[arg(long)]
    pub system: Option<String>,
    /// User prompt; `{gene}` becomes the symbol [default: "tell me about gene {gene}."].
    #[arg(long)]
    pub prompt: Option<String>,
}

#[derive(Args, Debug)]
pub(super) struct DescribeArgs {
    /// Genes, one per line (`#` comments allowed).
    pub genes: PathBuf,
    /// Base model: a Hugging Face folder or a GGUF file (or a folder holding one).
    #[arg(long)]
    pub model: PathBuf,
    /// A `bftkit finetune` output folder with LoRA adapters (adapter_config.json +
    /// adapter_model.safetensors) to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Profiles as TSV (`symbol`, `profile`): what `bftkit embed --texts` reads by default.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = DescribeOptions::default().template)]
    pub template: ChatTemplate,
    /// Tokens each profile may have at most.
    #[arg(long, default_value_t = DescribeOptions::default().max_new_tokens)]
    pub max_new_tokens: usize,
    /// Sequences decoded together; a finished one frees its slot for the next prompt
    /// (continuous batching).
    #[arg(long, default_value_t = DescribeOptions::default().batch_size)]
    pub batch_size: usize,
    #[command(flatten)]
    pub prompt: PromptArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl DescribeArgs {
    pub(super) fn options(&self) -> DescribeOptions {
        let d = DescribeOptions::default();
        DescribeOptions {
            model: self.model.clone(),
            adapter: self.adapter.clone(),
            template: self.template,
            system: self.prompt.system.clone().unwrap_or(d.system),
            user: self.prompt.prompt.clone().unwrap_or(d.user),
            max_new_tokens: self.max_new_tokens,
            batch_size: self.batch_size,
            device: self.device.device,
            precision: self.device.dtype,
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct SftDataArgs {
    #[command(flatten)]
    pub texts: TextsArgs,
    /// Output folder: train.jsonl, test.jsonl, train_genes.txt, test_genes.txt, split.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Fraction of genes held out for testing.
    #[arg(long, default_value_t = ProfileDataOptions::default().test_fraction)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = ProfileDataOptions::default().seed)]
    pub seed: u64,
    #[command(flatten)]
    pub prompt: PromptArgs,
}

impl SftDataArgs {
    pub(super) fn options(&self) -> ProfileDataOptions {
        let d = ProfileDataOptions::default();
        ProfileDataOptions {
            test_fraction: self.test_fraction,
            seed: self.seed,
            system: self.prompt.system.clone().unwrap_or(d.system),
            user: self.prompt.prompt.clone().unwrap_or(d.user),
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct WeightsArgs {
    /// Model: a Hugging Face folder or a GGUF file (or a folder holding one).
    #[arg(long)]
    pub model: PathBuf,
    /// JSONL conversations, as for finetune.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub loss: LossArgs,
    #[arg(long, value_enum, default_value_t = WeightsOptions::default().template)]
    pub template: ChatTemplate,
    /// Tokens per conversation (longer ones are cut at the end).
    #[arg(long, default_value_t = WeightsOptions::default().max_len)]
    pub max_len: usize,
    /// Conversations per forward pass.
    #[arg(long, default_value_t = WeightsOptions::default().batch_size)]
    pub batch_size: usize,
    /// How many of the most emphasised samples to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Write every sample's weights as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl WeightsArgs {
    pub(super) fn options(&self) -> WeightsOptions {
        WeightsOptions {
            model: self.model.clone(),
            data: self.data.clone(),
            template: self.template,
            max_len: self.max_len,
            batch_size: self.batch_size,
            loss: self.loss.config(),
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct FixturesArgs {
    #[arg(long, default_value = crate::fixtures::DIR)]
    pub out: PathBuf,
    /// Also write tiny seeded models (BERT, Llama, Qwen2) to OUT/models, to try the model
    /// commands (embed, finetune, describe) without downloading one.
    #[arg(long)]
    pub models: bool,
}
