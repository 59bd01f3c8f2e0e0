//! Command-line front end: argument parsing, choosing defaults (data folder, tasks, gene map),
//! printing tables and writing result files. No computation lives here.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::embed::{self, Backend, EncodeOptions, Pooling, TextEncoder};
use crate::eval::probe::logreg::LogisticRegression;
use crate::eval::probe::{PairFeature, Solver};
use crate::eval::result::ProbeReport;
use crate::eval::sets::{unique_names, EmbeddingSet};
use crate::eval::suite::{self, ProbeInput, ProbeOptions};
use crate::eval::task::TaskSet;
use crate::io::GeneIdMap;
use crate::model::chat::ChatTemplate;
use crate::model::{DeviceSpec, Precision};
use crate::train::loss::{BftMode, LossConfig, LossVariant};

#[derive(Parser, Debug)]
#[command(
    name = "bftkit",
    version,
    about = "Balanced Fine-Tuning toolkit: gene-text embeddings and the probes that judge them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// Build gene-profile SFT data (train.jsonl, test.jsonl) from gene texts, split by gene.
    SftData(SftDataArgs),
    /// Show how a loss variant weighs a dataset under a model's own probabilities, and which
    /// samples BFT emphasises most.
    Weights(WeightsArgs),
    /// Show how a loss variant weighs samples, from their gold-token probabilities (JSONL).
    Loss(LossCmdArgs),
    /// Write the built-in synthetic dataset (data folder + planted embeddings) to a folder.
    Fixtures {
        #[arg(long, default_value = "fixtures")]
        out: PathBuf,
        /// Also write tiny seeded models (BERT, Llama, Qwen2) to OUT/models, to try the model
        /// commands (embed, finetune, describe) without downloading one.
        #[arg(long)]
        models: bool,
    },
}

#[derive(Args, Debug, Clone)]
struct DataArgs {
    /// Data folder holding the task files [default: $BFTKIT_DATA, else ./data, else the built-in
    /// synthetic fixtures].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Folder of task files (*.toml) to use instead of the built-in tasks.
    #[arg(long)]
    tasks: Option<PathBuf>,
    /// Gene id table (entrez_id, symbol, ensembl_ids, aliases) used to match task genes to
    /// embedding ids [default: DATA/gene_id_map/hs_gene_ids_orgHsEgDb_3.16.tsv when present].
    #[arg(long)]
    gene_map: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ProbeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Task name(s), or `all` (tasks whose data is absent are then skipped and listed).
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',')]
    task: Vec<String>,
    /// Gene embeddings (.tsv/.csv/.safetensors); repeat to compare sets
    /// [default with the built-in fixtures: their planted embeddings].
    #[arg(long)]
    embeddings: Vec<PathBuf>,
    /// Also probe a negative control: `random` = N(0,1) vectors of the same width.
    #[arg(long, value_parser = ["random"])]
    baseline: Option<String>,
    /// Seed for fold assignment and the random baseline.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of folds for cross-validated tasks [default: the task's own, 5].
    #[arg(long)]
    folds: Option<usize>,
    /// How a gene pair's two vectors become one feature vector.
    #[arg(long, value_enum, default_value_t = PairFeature::Sum)]
    pair_feature: PairFeature,
    /// Inverse L2 regularisation strength of the logistic regression.
    #[arg(long, default_value_t = 1.0)]
    c: f64,
    /// Maximum L-BFGS iterations.
    #[arg(long, default_value_t = 1000)]
    max_iter: usize,
    #[arg(long, value_enum, default_value_t = Solver::Lbfgs)]
    solver: Solver,
    /// Write each task's examples and fold assignment to DIR/TASK.tsv (rows of the first
    /// embedding file), for cross-checking with other tools.
    #[arg(long, value_name = "DIR")]
    export_folds: Option<PathBuf>,
    /// Write the full result (every fold, coverage, seeds, digests) as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Where per-gene texts come from (`embed`, `sft-data`).
#[derive(Args, Debug)]
struct TextsArgs {
    /// Per-gene texts: a JSON object {gene: text}, or a TSV/CSV with a header.
    #[arg(long)]
    texts: PathBuf,
    /// Gene id column of a --texts table.
    #[arg(long, default_value = "symbol")]
    id_col: String,
    /// Text column of a --texts table.
    #[arg(long, default_value = "profile")]
    text_col: String,
}

impl TextsArgs {
    fn read(&self) -> Result<embed::texts::GeneTexts> {
        embed::texts::GeneTexts::read(&self.texts, &self.id_col, &self.text_col)
    }
}

#[derive(Args, Debug)]
struct EmbedArgs {
    /// Genes to embed, one per line (`#` comments) [default: every gene of --texts].
    genes: Option<PathBuf>,
    #[command(flatten)]
    texts: TextsArgs,
    /// Model folder (config.json, model.safetensors, tokenizer.json): a BERT-family encoder such
    /// as models/all-MiniLM-L6-v2, or a Llama/Qwen2 decoder (hidden-state pooling).
    #[arg(long)]
    model: PathBuf,
    /// Output file: .safetensors, .tsv or .csv. A report goes beside it as *.embed.json.
    #[arg(long)]
    out: PathBuf,
    /// Fail when a listed gene has no text (default: count and list them).
    #[arg(long)]
    strict: bool,
    /// Pooling: mean, cls (BERT) or last (decoders) [default: the folder's setting, else mean].
    #[arg(long, value_enum)]
    pool: Option<Pooling>,
    /// Skip the L2 normalisation.
    #[arg(long)]
    no_normalize: bool,
    /// Maximum tokens per text [default: the model's sentence_bert_config.json, else 512].
    #[arg(long)]
    max_len: Option<usize>,
    /// Texts per forward pass (candle backend and decoders; texts are sorted by length first).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// BERT implementation: `fast` (bftkit's CPU path) or `candle` (the reference).
    #[arg(long, value_enum, default_value_t = Backend::Fast)]
    backend: Backend,
}

#[derive(Args, Debug)]
struct LossCmdArgs {
    /// JSONL, one sample per line: {"probs": [...]} or {"logprobs": [...]}, all tokens valid;
    /// the whole file is one batch.
    #[arg(long)]
    probs: PathBuf,
    #[command(flatten)]
    loss: LossArgs,
}

/// The loss options `loss` and `finetune` share (SPEC §1).
#[derive(Args, Debug)]
struct LossArgs {
    #[arg(long, value_enum, default_value_t = LossVariant::Bft)]
    loss: LossVariant,
    #[arg(long, value_enum, default_value_t = BftMode::Official)]
    bft_mode: BftMode,
    /// BFT group (window) size in tokens.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Exponent on the official BFT group confidence.
    #[arg(long, default_value_t = 1.0)]
    gamma: f64,
}

impl LossArgs {
    fn config(&self) -> LossConfig {
        LossConfig {
            variant: self.loss,
            mode: self.bft_mode,
            window: self.window,
            gamma: self.gamma,
        }
    }
}

#[derive(Args, Debug)]
struct FinetuneArgs {
    /// Base model: a Hugging Face folder or a GGUF file (or a folder holding one).
    #[arg(long)]
    model: PathBuf,
    /// Training data: JSONL with {"messages": [...]} or {"prompt", "response"} per line.
    #[arg(long)]
    data: PathBuf,
    /// Output folder (adapters or weights, train_log.jsonl, finetune.json).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    loss: LossArgs,
    /// Train every weight instead of LoRA adapters.
    #[arg(long)]
    full: bool,
    #[arg(long, default_value_t = 16)]
    lora_r: usize,
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f64,
    /// Dropout on the adapters' inputs during training (seeded).
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f64,
    /// Comma-separated modules to adapt [default: all seven linear layers].
    #[arg(long, value_delimiter = ',')]
    lora_targets: Vec<String>,
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Micro-batches per optimizer step (each micro-batch loss is divided by this).
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    #[arg(long, default_value_t = 0.03)]
    warmup_ratio: f64,
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    #[arg(long, default_value_t = 512)]
    max_len: usize,
    #[arg(long, value_enum, default_value_t = ChatTemplate::Chatml)]
    template: ChatTemplate,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write OUT/merged: a plain model folder with the adapters folded in.
    #[arg(long)]
    merge: bool,
    /// Write OUT/checkpoint-STEP (weights, optimizer state, progress) every N steps.
    #[arg(long, value_name = "N")]
    save_every: Option<usize>,
    /// Continue from the latest OUT/checkpoint-STEP (same options required).
    #[arg(long)]
    resume: bool,
    /// Held-out JSONL conversations: their mean response-token loss (plain cross-entropy, the
    /// same yardstick for every variant) goes to OUT/eval_log.jsonl.
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Evaluate on --eval-data before training and every N optimizer steps.
    #[arg(long, value_name = "N", default_value_t = 10)]
    eval_every: usize,
    /// cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(long, default_value_t = DeviceSpec::Cpu)]
    device: DeviceSpec,
    /// Base weights and activations: f32 or bf16 [default: f32 on CPU, bf16 on CUDA]. LoRA
    /// adapters, their optimizer and the loss stay f32.
    #[arg(long, value_enum)]
    dtype: Option<Precision>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Suite file (TOML): embedding sets (files, or texts + model), tasks, seed, UMAP colouring.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Embedding files to compare (instead of, or besides, the suite's sets).
    #[arg(long)]
    embeddings: Vec<PathBuf>,
    /// Report name: the folder under --out [default: the suite file's name, else "fixtures" or
    /// "run"].
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    #[arg(long)]
    seed: Option<u64>,
    /// Skip the UMAP layouts.
    #[arg(long)]
    no_umap: bool,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args, Debug)]
struct UmapArgs {
    #[arg(long)]
    embeddings: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 15)]
    n_neighbors: usize,
    #[arg(long, default_value_t = 0.1)]
    min_dist: f64,
    /// 0 = 200 above 10,000 points, else 500 (as umap-learn).
    #[arg(long, default_value_t = 0)]
    n_epochs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug)]
struct ScibArgs {
    /// Cell embedding file (id, then the values; TSV/CSV or safetensors, as gene embeddings).
    #[arg(long)]
    embeddings: PathBuf,
    /// Cell annotation (CSV/TSV with a header) holding the cell id, label and batch columns.
    #[arg(long)]
    obs: PathBuf,
    #[arg(long, default_value = "cell")]
    cell_col: String,
    #[arg(long, default_value = "label")]
    label_col: String,
    #[arg(long, default_value = "batch")]
    batch_col: String,
    /// The unintegrated representation (same cell ids), for PCR comparison.
    #[arg(long)]
    pre: Option<PathBuf>,
    /// Seed of k-means.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the JSON here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// results.json files written by `bftkit run` (several are shown side by side).
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// Output folder for index.html, the PNGs and the merged results.json.
    #[arg(long, default_value = "reports/combined")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct DescribeArgs {
    /// Genes, one per line (`#` comments allowed).
    genes: PathBuf,
    /// Base model: a Hugging Face folder or a GGUF file (or a folder holding one).
    #[arg(long)]
    model: PathBuf,
    /// A `bftkit finetune` output folder with LoRA adapters (adapter_config.json +
    /// adapter_model.safetensors) to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Profiles as TSV (`symbol`, `profile`): what `bftkit embed --texts` reads by default.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = ChatTemplate::Chatml)]
    template: ChatTemplate,
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// System prompt [default: SPEC §1's].
    #[arg(long)]
    system: Option<String>,
    /// User prompt; `{gene}` becomes the symbol [default: "tell me about gene {gene}."].
    #[arg(long)]
    prompt: Option<String>,
    /// cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(long, default_value_t = DeviceSpec::Cpu)]
    device: DeviceSpec,
    /// f32 or bf16 [default: f32 on CPU, bf16 on CUDA].
    #[arg(long, value_enum)]
    dtype: Option<Precision>,
}

#[derive(Args, Debug)]
struct SftDataArgs {
    #[command(flatten)]
    texts: TextsArgs,
    /// Output folder: train.jsonl, test.jsonl, train_genes.txt, test_genes.txt, split.json.
    #[arg(long)]
    out: PathBuf,
    /// Fraction of genes held out for testing.
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// System prompt [default: SPEC §1's].
    #[arg(long)]
    system: Option<String>,
    /// User prompt; `{gene}` becomes the symbol.
    #[arg(long)]
    prompt: Option<String>,
}

#[derive(Args, Debug)]
struct WeightsArgs {
    /// Model: a Hugging Face folder or a GGUF file (or a folder holding one).
    #[arg(long)]
    model: PathBuf,
    /// JSONL conversations, as for finetune.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    loss: LossArgs,
    #[arg(long, value_enum, default_value_t = ChatTemplate::Chatml)]
    template: ChatTemplate,
    #[arg(long, default_value_t = 512)]
    max_len: usize,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// How many of the most emphasised samples to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Write every sample's weights as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Tasks(args) => tasks(&args),
        Command::Probe(args) => probe(args),
        Command::Embed(args) => embed(args),
        Command::Finetune(args) => finetune(args),
        Command::Weights(args) => {
            let report = crate::train::dataset_weights(
                &args.model,
                &args.data,
                args.template,
                args.max_len,
                args.batch_size,
                &args.loss.config(),
            )?;
            let mut order: Vec<&crate::train::SampleReport> = report.samples.iter().collect();
            order.sort_by(|a, b| b.sample_weight.total_cmp(&a.sample_weight));
            println!(
                "{} samples, mean loss {:.4}; most emphasised (highest sample weight s_b):",
                report.batch_size, report.batch_loss
            );
            println!(
                "{:>6} {:>6} {:>8} {:>8} {:>8}",
                "line", "N", "p_conf", "s_b", "mean w"
            );
            for s in order.iter().take(args.top) {
                println!(
                    "{:>6} {:>6} {:>8.4} {:>8.4} {:>8.4}",
                    s.line, s.n, s.p_conf, s.sample_weight, s.mean_token_weight
                );
            }
            if let Some(out) = &args.out {
                std::fs::write(out, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("{}: cannot write", out.display()))?;
            }
            Ok(())
        }
        Command::Describe(args) => describe(args),
        Command::Run(args) => run(args),
        Command::Scib(args) => {
            use crate::eval::scib_files::{scib_files, AnnotationColumns, ScibFiles};
            let files = ScibFiles {
                embeddings: args.embeddings.clone(),
                annotation: args.obs.clone(),
                columns: AnnotationColumns {
                    cell: args.cell_col.clone(),
                    label: args.label_col.clone(),
                    batch: args.batch_col.clone(),
                },
                pre: args.pre.clone(),
            };
            let report = scib_files(&files, args.seed)?;
            let json = serde_json::to_string_pretty(&report)?;
            match &args.out {
                Some(p) => {
                    std::fs::write(p, json + "\n")
                        .with_context(|| format!("cannot write {}", p.display()))?;
                    eprintln!("wrote {}", p.display());
                }
                None => println!("{json}"),
            }
            Ok(())
        }
        Command::Umap(args) => {
            let start = std::time::Instant::now();
            let e = crate::io::GeneEmbeddings::read(&args.embeddings)?;
            let opts = crate::viz::umap::UmapOptions {
                n_neighbors: args.n_neighbors,
                min_dist: args.min_dist,
                n_epochs: args.n_epochs,
                seed: args.seed,
                ..Default::default()
            };
            let xy = crate::viz::umap::umap(&e.values, e.len(), e.dim, &opts)?;
            let mut text = String::from("gene\tx\ty\n");
            for (g, p) in e.ids.iter().zip(xy.chunks(2)) {
                text.push_str(&format!("{g}\t{}\t{}\n", p[0], p[1]));
            }
            std::fs::write(&args.out, text)
                .with_context(|| format!("{}: cannot write", args.out.display()))?;
            println!(
                "UMAP of {} points x {} dims (seed {}) in {:.2} s; wrote {}",
                e.len(),
                e.dim,
                args.seed,
                start.elapsed().as_secs_f64(),
                args.out.display()
            );
            Ok(())
        }
        Command::Report(args) => {
            let data = crate::viz::report::ReportData::read_all(&args.results)?;
            let index = crate::viz::report::render(&data, &args.out)?;
            println!("report written to {}", index.display());
            Ok(())
        }
        Command::SftData(args) => sft_data(args),
        Command::Loss(args) => {
            let cfg = args.loss.config();
            let samples = crate::train::read_token_probs(&args.probs)?;
            let report = crate::train::loss_report(&cfg, &samples)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Fixtures { out, models } => {
            crate::fixtures::write(&out)?;
            println!(
                "wrote {}/data and {}/embeddings.tsv",
                out.display(),
                out.display()
            );
            if models {
                let dir = out.join("models");
                crate::fixtures::write_tiny_bert(&dir.join("tiny-bert"))?;
                for kind in ["llama", "qwen2"] {
                    crate::fixtures::write_tiny_decoder(&dir.join(format!("tiny-{kind}")), kind)?;
                }
                println!("wrote tiny seeded models to {}", dir.display());
            }
            Ok(())
        }
    }
}

/// The data folder to use, and whether it is the built-in fixture set (kept alive by `_tmp`).
struct DataDir {
    path: PathBuf,
    fixture: bool,
    _tmp: Option<tempfile::TempDir>,
}

fn resolve_data(args: &DataArgs) -> Result<DataDir> {
    let given = args
        .data
        .clone()
        .or_else(|| std::env::var_os("BFTKIT_DATA").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("data")).filter(|p| p.is_dir()));
    match given {
        Some(path) if path.is_dir() => Ok(DataDir {
            path,
            fixture: false,
            _tmp: None,
        }),
        Some(path) => bail!("data folder {} does not exist", path.display()),
        None => {
            let tmp = tempfile::tempdir().context("cannot create a temporary folder")?;
            crate::fixtures::write(tmp.path())?;
            eprintln!(
                "note: no data folder (--data, $BFTKIT_DATA or ./data): using the built-in \
                 synthetic fixtures (the same as fixtures/ in the repository)"
            );
            Ok(DataDir {
                path: tmp.path().join("data"),
                fixture: true,
                _tmp: Some(tmp),
            })
        }
    }
}

fn load_tasks(args: &DataArgs) -> Result<TaskSet> {
    match &args.tasks {
        Some(dir) => TaskSet::from_dir(dir),
        None => TaskSet::embedded(),
    }
}

fn load_gene_map(args: &DataArgs, data: &Path) -> Result<Option<(GeneIdMap, PathBuf)>> {
    let path = match &args.gene_map {
        Some(p) => p.clone(),
        None => {
            let p = data.join("gene_id_map/hs_gene_ids_orgHsEgDb_3.16.tsv");
            if !p.is_file() {
                eprintln!(
                    "note: no gene id map ({}); genes match embedding ids by name only",
                    p.display()
                );
                return Ok(None);
            }
            p
        }
    };
    Ok(Some((GeneIdMap::read(&path)?, path)))
}

fn tasks(args: &DataArgs) -> Result<()> {
    let data = resolve_data(args)?;
    let set = load_tasks(args)?;
    println!(
        "tasks from {}; data folder {}",
        set.origin,
        data.path.display()
    );
    println!("{:<34} {:<5} {:<7} title", "task", "group", "data");
    for t in &set.tasks {
        let present = if t.data_present(&data.path) {
            "yes"
        } else {
            "missing"
        };
        let group = t.group().name();
        println!("{:<34} {:<5} {:<7} {}", t.name, group, present, t.title);
    }
    Ok(())
}

fn probe(args: ProbeArgs) -> Result<()> {
    let data = resolve_data(&args.data)?;
    let set = load_tasks(&args.data)?;
    let selected = set.select(&args.task)?;
    let gene_map = load_gene_map(&args.data, &data.path)?;
    let mut paths = args.embeddings.clone();
    if paths.is_empty() {
        if !data.fixture {
            bail!("--embeddings FILE is required (a .tsv, .csv or .safetensors of gene vectors)");
        }
        paths.push(
            data.path
                .parent()
                .expect("fixture root")
                .join("embeddings.tsv"),
        );
    }
    let mut sets = paths
        .iter()
        .map(|p| EmbeddingSet::from_file(p))
        .collect::<Result<Vec<_>>>()?;
    unique_names(&mut sets);
    if args.baseline.is_some() {
        let random = EmbeddingSet::random_like(&sets[0].embeddings, args.seed);
        sets.push(random);
    }
    let opts = ProbeOptions {
        data_dir: data.path.clone(),
        seed: args.seed,
        folds: args.folds,
        pair_feature: args.pair_feature,
        model: LogisticRegression {
            c: args.c,
            max_iter: args.max_iter,
            ..LogisticRegression::default()
        },
        solver: args.solver,
        skip_unavailable: args.task.iter().any(|t| t == "all"),
        export_folds: args.export_folds.clone(),
    };
    let bar = indicatif::ProgressBar::new(selected.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} tasks  {msg}")
            .expect("valid template"),
    );
    let map_ref = gene_map.as_ref().map(|(m, p)| (m, p.as_path()));
    let input = ProbeInput {
        tasks: &selected,
        sets: &sets,
        gene_map: map_ref,
        tasks_origin: &set.origin,
    };
    let report = suite::run_probe(&input, &opts, |t| {
        bar.set_message(t.name.clone());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    print_table(&report);
    if let Some(out) = &args.out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(out, json).with_context(|| format!("{}: cannot write", out.display()))?;
        println!("results written to {}", out.display());
    }
    Ok(())
}

fn print_table(r: &ProbeReport) {
    println!(
        "{:<34} {:<12} {:>11} {:>8} {:>15} {:>7} {:>7} {:>7} {:>5}  reference",
        "task", "embeddings", "n (+/-)", "coverage", "ROC-AUC", "AP", "acc", "F1", "iter"
    );
    for t in &r.results {
        let reference = t
            .references
            .first()
            .map(|x| format!("{} {:.3}", x.name, x.value))
            .unwrap_or_default();
        let (pos, neg) = t.outcome.counts();
        let coverage = 100.0 * t.outcome.coverage().fraction();
        match t.outcome.probe_scores() {
            Some(s) => println!(
                "{:<34} {:<12} {:>11} {:>7.1}% {:>7.3} ± {:.3} {:>7.3} {:>7.3} {:>7.3} {:>4}{}  {}",
                t.task,
                t.embedding_set,
                format!("{pos}/{neg}"),
                coverage,
                s.roc_auc.mean,
                s.roc_auc.sd,
                s.average_precision.mean,
                s.accuracy.mean,
                s.f1.mean,
                s.max_iterations,
                if s.all_converged { " " } else { "!" },
                reference
            ),
            None => println!(
                "{:<34} {:<12} {:>11} {:>7.1}%  (metrics below)  {}",
                t.task,
                t.embedding_set,
                format!("{pos}/{neg}"),
                coverage,
                reference
            ),
        }
        let other = t.outcome.other_metrics();
        if !other.is_empty() {
            let extra: Vec<String> = other
                .iter()
                .map(|(k, v)| format!("{k} {:.3} ± {:.3}", v.mean, v.sd))
                .collect();
            println!("{:<34} {:<12} {}", "", "", extra.join(", "));
        }
    }
    for s in &r.skipped {
        println!("{:<34} skipped: {}", s.task, s.reason);
    }
    if r.results
        .iter()
        .any(|t| t.outcome.probe_scores().is_some_and(|s| !s.all_converged))
    {
        println!("! = a fold hit --max-iter before converging");
    }
    println!("seed {}, {:.2}s", r.seed, r.runtime_s);
}

fn embed(args: EmbedArgs) -> Result<()> {
    // Check the output format before spending time on encoding.
    crate::io::embeddings::EmbeddingFormat::from_path(&args.out)?;
    let genes = args
        .genes
        .as_deref()
        .map(embed::texts::read_gene_list)
        .transpose()?;
    let texts = args.texts.read()?;
    let device = candle_core::Device::Cpu;
    let encoder = TextEncoder::load(&args.model, args.max_len, args.backend, &device)?;
    let opts = EncodeOptions {
        batch_size: args.batch_size,
        pooling: args.pool.unwrap_or(encoder.default_pooling()),
        normalize: !args.no_normalize,
    };
    let total = genes.as_ref().map_or(texts.len(), Vec::len) as u64;
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} texts  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    let (emb, mut report) = embed::embed_genes(
        &encoder,
        genes.as_deref(),
        &texts,
        &opts,
        args.strict,
        |n| bar.inc(n as u64),
    )?;
    bar.finish_and_clear();
    let mut emb = emb;
    emb.source = format!(
        "{} over {} ({})",
        args.model.display(),
        args.texts.texts.display(),
        emb.source
    );
    emb.write(&args.out)?;
    report.model = args.model.display().to_string();
    report.texts = args.texts.texts.display().to_string();
    report.output = args.out.display().to_string();
    let report_path = embed::report_path(&args.out);
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("{}: cannot write", report_path.display()))?;
    println!(
        "embedded {} of {} genes ({} dims) in {:.1}s: {:.1} texts/s, {:.0} tokens/s, {} truncated at {} tokens",
        report.genes_embedded,
        report.genes_requested,
        report.dim,
        report.encode_seconds,
        report.texts_per_second,
        report.tokens_per_second,
        report.truncated,
        report.max_len
    );
    if !report.missing.is_empty() {
        let shown: Vec<&str> = report.missing.iter().take(10).map(String::as_str).collect();
        println!(
            "{} genes have no text and were not embedded: {}{} (all listed in {})",
            report.missing.len(),
            shown.join(", "),
            if report.missing.len() > 10 {
                ", ..."
            } else {
                ""
            },
            report_path.display()
        );
    }
    println!("wrote {} and {}", args.out.display(), report_path.display());
    Ok(())
}

fn finetune(args: FinetuneArgs) -> Result<()> {
    use crate::model::lora::{LoraConfig, ALL_LINEAR};
    use crate::train::finetune::{finetune, FinetuneOptions};
    use crate::train::trainer::TrainConfig;
    let lora = (!args.full).then(|| LoraConfig {
        r: args.lora_r,
        lora_alpha: args.lora_alpha,
        lora_dropout: args.lora_dropout,
        target_modules: if args.lora_targets.is_empty() {
            ALL_LINEAR.iter().map(|s| s.to_string()).collect()
        } else {
            args.lora_targets.clone()
        },
    });
    let opts = FinetuneOptions {
        model: args.model,
        data: args.data,
        out: args.out.clone(),
        template: args.template,
        max_len: args.max_len,
        lora,
        train: TrainConfig {
            loss: args.loss.config(),
            lr: args.lr,
            warmup_ratio: args.warmup_ratio,
            epochs: args.epochs,
            max_steps: args.max_steps,
            batch_size: args.batch_size,
            grad_accum: args.grad_accum,
            max_grad_norm: args.max_grad_norm,
            weight_decay: args.weight_decay,
            seed: args.seed,
        },
        merge: args.merge,
        save_every: args.save_every,
        resume: args.resume,
        eval_data: args.eval_data,
        eval_every: args.eval_every,
        device: args.device,
        precision: args.dtype,
    };
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}")
            .expect("valid template"),
    );
    let report = finetune(&opts, |s, total| {
        bar.set_length(total as u64);
        bar.set_position(s.step as u64);
        bar.set_message(format!(
            "loss {:.4}  lr {:.2e}  {:.0} tok/s",
            s.loss, s.lr, s.tokens_per_s
        ));
    })?;
    bar.finish_and_clear();
    println!(
        "{} steps on {} samples ({} truncated, {} without response tokens): loss {:.4} -> {:.4}",
        report.steps,
        report.samples,
        report.truncated,
        report.without_response,
        report.first_loss,
        report.last_loss
    );
    println!("wrote {}", args.out.display());
    Ok(())
}

fn describe(args: DescribeArgs) -> Result<()> {
    use crate::model::generate::{self, DescribeOptions};
    let genes = embed::texts::read_gene_list(&args.genes)?;
    let opts = DescribeOptions {
        precision: args.dtype,
        device: args.device,
        model: args.model,
        adapter: args.adapter,
        template: args.template,
        system: args
            .system
            .unwrap_or_else(|| crate::model::chat::PROFILE_SYSTEM.to_string()),
        user: args
            .prompt
            .unwrap_or_else(|| crate::model::chat::PROFILE_USER.to_string()),
        max_new_tokens: args.max_new_tokens,
        batch_size: args.batch_size,
    };
    let bar = indicatif::ProgressBar::new(genes.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} genes  {elapsed}")
            .expect("valid template"),
    );
    let (profiles, report) =
        generate::describe(&genes, &opts, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    generate::write_profiles(&args.out, &profiles)?;
    let report_path = PathBuf::from(format!("{}.describe.json", args.out.display()));
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("{}: cannot write", report_path.display()))?;
    println!(
        "{} profiles ({} ended at end of turn, {} cut at {} tokens), {} tokens in {:.1} s \
         ({:.1} tokens/s)",
        report.genes,
        report.stopped,
        report.cut_at_limit,
        report.max_new_tokens,
        report.generated_tokens,
        report.seconds,
        report.tokens_per_s
    );
    println!("wrote {} and {}", args.out.display(), report_path.display());
    Ok(())
}

fn sft_data(args: SftDataArgs) -> Result<()> {
    use crate::train::data::{split_genes, write_profile_conversations};
    let texts = args.texts.read()?;
    let split = split_genes(texts.genes(), args.test_fraction, args.seed)?;
    let system = args
        .system
        .unwrap_or_else(|| crate::model::chat::PROFILE_SYSTEM.to_string());
    let user = args
        .prompt
        .unwrap_or_else(|| crate::model::chat::PROFILE_USER.to_string());
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    let text = |g: &str| texts.get(g).map(str::to_string);
    for (name, genes) in [("train", &split.train), ("test", &split.test)] {
        write_profile_conversations(
            &args.out.join(format!("{name}.jsonl")),
            genes,
            text,
            &system,
            &user,
        )?;
        let list = args.out.join(format!("{name}_genes.txt"));
        std::fs::write(&list, genes.join("\n") + "\n")
            .with_context(|| format!("{}: cannot write", list.display()))?;
    }
    let summary = serde_json::json!({
        "bftkit_version": env!("CARGO_PKG_VERSION"), "texts": args.texts.texts.display().to_string(),
        "seed": args.seed, "test_fraction": args.test_fraction,
        "train_genes": split.train.len(), "test_genes": split.test.len(),
        "system": system, "user": user,
    });
    std::fs::write(
        args.out.join("split.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!(
        "{} train and {} test genes (seed {}) in {}",
        split.train.len(),
        split.test.len(),
        args.seed,
        args.out.display()
    );
    Ok(())
}

fn run(args: RunArgs) -> Result<()> {
    use crate::pipeline::{run_suite, EmbeddingSource, RunContext, SuiteConfig};
    let mut cfg = match &args.config {
        Some(p) => SuiteConfig::read(p)?,
        None => toml::from_str::<SuiteConfig>("").expect("defaults"),
    };
    let mut data_args = DataArgs {
        data: args.data.data.clone(),
        tasks: args.data.tasks.clone(),
        gene_map: args.data.gene_map.clone(),
    };
    if data_args.data.is_none() {
        data_args.data = cfg.data.clone();
    }
    let data = resolve_data(&data_args)?;
    for e in &args.embeddings {
        cfg.embeddings.push(EmbeddingSource {
            name: None,
            file: Some(e.clone()),
            texts: None,
            model: None,
            id_col: None,
            text_col: None,
        });
    }
    if cfg.embeddings.is_empty() {
        if !data.fixture {
            bail!("no embedding sets: give --embeddings FILE or a --config suite file");
        }
        let file = data
            .path
            .parent()
            .expect("fixture root")
            .join("embeddings.tsv");
        cfg.embeddings.push(EmbeddingSource {
            name: Some("fixture_planted".into()),
            file: Some(file),
            texts: None,
            model: None,
            id_col: None,
            text_col: None,
        });
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if args.no_umap {
        cfg.umap = false;
    }
    let name = args
        .name
        .clone()
        .or_else(|| cfg.name.clone())
        .unwrap_or_else(|| if data.fixture { "fixtures" } else { "run" }.to_string());
    cfg.name = Some(name.clone());
    let tasks = load_tasks(&data_args)?;
    let gene_map = load_gene_map(&data_args, &data.path)?;
    let ctx = RunContext {
        data_dir: data.path.clone(),
        fixtures: data.fixture,
        tasks: &tasks,
        gene_map: gene_map.as_ref().map(|(m, p)| (m, p.as_path())),
    };
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {elapsed}  {msg}")
            .expect("valid template"),
    );
    let results = run_suite(&cfg, &ctx, |step, total, what| {
        bar.set_length(total as u64);
        bar.set_position(step as u64);
        bar.set_message(what.to_string());
    })?;
    bar.finish_and_clear();
    print_table(&results.probe);
    let out = args.out.join(&name);
    let data = crate::viz::report::ReportData {
        runs: vec![results],
    };
    let index = crate::viz::report::render(&data, &out)?;
    println!(
        "report written to {} (every number in {})",
        index.display(),
        out.join("results.json").display()
    );
    Ok(())
}
