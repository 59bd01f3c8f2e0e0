//! The model arms of a suite: the paper's experiment as stages. The curated texts are split by
//! gene into fine-tuning data and held-out genes (`data`); each arm is fine-tuned (`finetune-ARM`,
//! unless it is the base model as is), writes a profile for every chosen gene (`describe-ARM`),
//! and its profiles are embedded with the experiment's encoder (`embed-ARM`) into an embedding
//! set the suite then probes beside its reference sets; optionally it answers the knowledge
//! benchmarks (`knowledge-ARM`). Every stage is cached by a hash of its inputs and settings
//! (`stage`), and the two long ones resume: fine-tuning from its last checkpoint, describe from
//! the last profile written (`profiles`). The report gets each arm's training curves, profile
//! fidelity to the curated texts, knowledge accuracies and example profiles.
//!
//! - `config`: the suite file's `[experiment]` and `[[arms]]` sections;
//! - `genes`: which genes are described;
//! - `profiles`: the resumable describe stage;
//! - `stage`: the cache.

mod config;
mod genes;
mod profiles;
pub(crate) mod stage;

pub use config::{
    ArmSection, DescribeSection, ExperimentSection, FinetuneSection, GeneSource, KnowledgeSection,
};

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use self::stage::Stages;
use super::data::Inputs;
use crate::embed::{self, EmbedRequest, EncodeOptions, TextEncoder};
use crate::eval::arms::{
    self, ArmReport, DescribeSummary, EvalPoint, ExperimentReport, KnowledgeView, ProfileExample,
    TrainPoint,
};
use crate::eval::knowledge;
use crate::eval::sets::EmbeddingSet;
use crate::eval::task::TaskSpec;
use crate::io::embeddings::file_sha256;
use crate::io::texts::{self, GeneTexts};
use crate::io::GeneEmbeddings;
use crate::model::chat::{PROFILE_SYSTEM, PROFILE_USER};
use crate::train::data::{write_profile_conversations, ProfileDataOptions};
use crate::train::finetune::EvalLog;
use crate::train::trainer::StepLog;

/// What the arms need from the suite.
pub(crate) struct ArmsRun<'a> {
    pub exp: &'a ExperimentSection,
    pub arms: &'a [ArmSection],
    pub seed: u64,
    pub ctx: &'a Inputs,
    pub tasks: &'a [&'a TaskSpec],
    /// For tests: end describe with an error after this many new profiles, as a kill would.
    pub stop_after_profiles: Option<usize>,
}

/// The arms' embedding sets (with their stage keys) and the experiment's report (its stage list
/// is filled in by the suite, which runs more stages).
pub(crate) struct ArmsOutput {
    pub sets: Vec<(EmbeddingSet, String)>,
    /// The genes described, sorted.
    pub genes: Vec<String>,
    pub report: ExperimentReport,
}

/// The sentence encoder, loaded when a stage first needs it.
struct Encoder<'a> {
    path: &'a Path,
    loaded: Option<TextEncoder>,
}

impl Encoder<'_> {
    /// Embeds `genes` of `texts` (all of them without `genes`).
    fn embed(&mut self, texts: &GeneTexts, genes: Option<&[String]>) -> Result<GeneEmbeddings> {
        if self.loaded.is_none() {
            self.loaded = Some(TextEncoder::load(
                self.path,
                None,
                embed::Backend::Fast,
                &candle_core::Device::Cpu,
            )?);
        }
        let encoder = self.loaded.as_ref().expect("loaded above");
        let request = EmbedRequest {
            texts,
            genes,
            strict: false,
            encode: EncodeOptions {
                pooling: encoder.default_pooling(),
                ..EncodeOptions::default()
            },
        };
        Ok(embed::embed_genes(encoder, &request, |_| {})?.0)
    }
}

/// The files of a folder (recursively) with their sizes and modification times: what a stage
/// reading them depends on, without hashing gigabytes.
pub(crate) fn folder_identity(dir: &Path) -> serde_json::Value {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata() {
                let modified = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
                files.push((rel, m.len(), modified));
            }
        }
    }
    files.sort();
    json!({ "folder": dir.display().to_string(), "files": files })
}

/// A model's identity for stage keys: the fingerprint of its weights (and their sizes).
fn model_key(path: &Path) -> Result<String> {
    crate::model::weights::fingerprint(path)
}

/// Runs every arm's stages; `note` hears what is going on.
pub(crate) fn run_arms(
    run: &ArmsRun,
    stages: &mut Stages,
    mut note: impl FnMut(&str),
) -> Result<ArmsOutput> {
    let exp = run.exp;
    check_arms(run.arms)?;
    let texts = GeneTexts::read(
        &exp.texts,
        exp.id_col.as_deref().unwrap_or(texts::ID_COLUMN),
        exp.text_col.as_deref().unwrap_or(texts::TEXT_COLUMN),
    )?;
    let texts_sha = file_sha256(&exp.texts)?;

    // The fine-tuning data: the curated texts split by gene.
    note("splitting the curated texts by gene");
    let data = stages.open(
        "data",
        json!({ "texts": texts_sha, "test_fraction": exp.test_fraction, "seed": run.seed,
                "eval_genes": exp.eval_genes, "system": PROFILE_SYSTEM, "user": PROFILE_USER }),
    )?;
    if !data.reused() {
        let opts = ProfileDataOptions {
            test_fraction: exp.test_fraction,
            seed: run.seed,
            ..ProfileDataOptions::default()
        };
        let split = crate::train::data::write_profile_data(
            &texts,
            &exp.texts.display().to_string(),
            &data.dir,
            &opts,
        )?;
        let eval = genes::sample(&split.test, exp.eval_genes, run.seed ^ 0xE7A1);
        write_profile_conversations(
            &data.dir.join("eval.jsonl"),
            &eval,
            |g| texts.get(g).map(str::to_string),
            &opts.system,
            &opts.user,
        )?;
    }
    let train_genes = texts::read_gene_list(&data.dir.join("train_genes.txt"))?;
    let test_genes = texts::read_gene_list(&data.dir.join("test_genes.txt"))?;
    let (train_data, eval_data) = (data.dir.join("train.jsonl"), data.dir.join("eval.jsonl"));
    let data_key = data.key.clone();
    stages.finish(data)?;

    let chosen = genes::choose(
        exp,
        run.tasks,
        &run.ctx.data.path,
        run.ctx.gene_map.get().map(|(m, _)| m),
        (&train_genes, &test_genes),
        run.seed,
    )?;
    let genes_key = stage::key_of("genes", &json!(chosen.genes));
    let encoder_key = model_key(&exp.encoder)?;
    let mut encoder = Encoder {
        path: &exp.encoder,
        loaded: None,
    };

    // The curated profiles of the fidelity genes, embedded once for every arm.
    let fidelity_genes: Vec<String> = chosen
        .seen
        .iter()
        .chain(&chosen.held_out)
        .cloned()
        .collect();
    let curated = stages.open(
        "embed-curated",
        json!({ "texts": texts_sha, "genes": fidelity_genes, "encoder": encoder_key }),
    )?;
    let curated_path = curated.dir.join("embeddings.safetensors");
    if !curated.reused() {
        note("embedding the curated profiles");
        encoder
            .embed(&texts, Some(&fidelity_genes))?
            .write(&curated_path)?;
    }
    stages.finish(curated)?;
    let curated_emb = GeneEmbeddings::read(&curated_path)?;

    let mut sets = Vec::new();
    let mut reports = Vec::new();
    let mut generated: Vec<GeneTexts> = Vec::new();
    for arm in run.arms {
        let base_key = model_key(&arm.model)?;
        // Fine-tuning.
        let mut finetune_key = None;
        let mut adapter: Option<PathBuf> = None;
        let mut model = arm.model.clone();
        let mut report = ArmReport {
            name: arm.name.clone(),
            model: arm.model.display().to_string(),
            finetune: None,
            train: Vec::new(),
            eval: Vec::new(),
            describe: DescribeSummary::default(),
            fidelity: Vec::new(),
            knowledge: Vec::new(),
        };
        if let Some(ft) = &arm.finetune {
            let name = format!("finetune-{}", arm.name);
            let data_id = match &ft.data {
                Some(d) => file_sha256(d)?,
                None => data_key.clone(),
            };
            let probe_opts =
                ft.options(arm, &train_data, Some(&eval_data), Path::new(""), run.seed)?;
            let st = stages.open(
                &name,
                json!({ "model": base_key, "data": data_id, "eval": data_key,
                        "template": arm.template, "max_len": probe_opts.max_len,
                        "train": probe_opts.train, "lora": probe_opts.lora,
                        "device": probe_opts.device, "dtype": probe_opts.precision }),
            )?;
            let mut opts = ft.options(arm, &train_data, Some(&eval_data), &st.dir, run.seed)?;
            report.finetune = Some(ft.summary(&opts));
            if !st.reused() {
                opts.resume = crate::train::checkpoint::any(&st.dir)?;
                opts.overwrite = !opts.resume;
                let how = if opts.resume {
                    "resuming"
                } else {
                    "fine-tuning"
                };
                crate::train::finetune::finetune(&opts, |p| {
                    if let crate::train::finetune::Progress::Step { log, total } = p {
                        note(&format!(
                            "{how} {}: step {}/{total}, loss {:.4}",
                            arm.name, log.step, log.loss
                        ))
                    }
                })
                .with_context(|| format!("arm {}: fine-tuning", arm.name))?;
            }
            report.train = read_jsonl::<StepLog>(&st.dir.join("train_log.jsonl"))?
                .into_iter()
                .map(|l| TrainPoint {
                    step: l.step,
                    loss: l.loss,
                    mean_sample_weight: l.mean_sample_weight,
                })
                .collect();
            report.eval = read_jsonl::<EvalLog>(&st.dir.join("eval_log.jsonl"))?
                .into_iter()
                .map(|l| EvalPoint {
                    step: l.step,
                    cross_entropy: l.loss,
                    mean_prob: l.mean_prob,
                })
                .collect();
            if opts.lora.is_some() {
                adapter = Some(st.dir.clone());
            } else {
                model = st.dir.clone();
            }
            finetune_key = Some(st.key.clone());
            stages.finish(st)?;
        }
        let arm_for_model = ArmSection {
            model: model.clone(),
            ..arm.clone()
        };

        // Profiles.
        let dopts = exp.describe_options(&arm_for_model, adapter.as_deref());
        let st = stages.open(
            &format!("describe-{}", arm.name),
            json!({ "model": base_key, "finetune": finetune_key, "genes": genes_key,
                    "template": arm.template, "system": dopts.system, "user": dopts.user,
                    "max_new_tokens": dopts.max_new_tokens, "device": dopts.device,
                    "dtype": dopts.precision }),
        )?;
        report.describe = if st.reused() {
            profiles::read_summary(&st.dir)?
        } else {
            let what = if st.status == crate::eval::arms::StageStatus::Resumed {
                "resuming describe"
            } else {
                "describe"
            };
            profiles::describe_resumable(
                &chosen.genes,
                &dopts,
                &st.dir,
                run.stop_after_profiles,
                |done, total, rate| {
                    note(&format!(
                        "{what} {}: {done}/{total} genes, {rate:.0} tokens/s",
                        arm.name
                    ))
                },
            )
            .with_context(|| format!("arm {}: describe", arm.name))?
        };
        let profiles_path = st.dir.join(profiles::PROFILES);
        let describe_key = st.key.clone();
        stages.finish(st)?;
        let arm_texts = GeneTexts::read(&profiles_path, texts::ID_COLUMN, texts::TEXT_COLUMN)?;

        // Embedding.
        let st = stages.open(
            &format!("embed-{}", arm.name),
            json!({ "profiles": describe_key, "encoder": encoder_key }),
        )?;
        let emb_path = st.dir.join("embeddings.safetensors");
        if !st.reused() {
            note(&format!("embedding the profiles of {}", arm.name));
            encoder.embed(&arm_texts, None)?.write(&emb_path)?;
        }
        let embed_key = st.key.clone();
        stages.finish(st)?;
        let emb = GeneEmbeddings::read(&emb_path)?;
        report.fidelity = fidelity(&emb, &curated_emb, &arm_texts, &texts, &chosen);
        let set = EmbeddingSet::new(
            arm.name.clone(),
            emb.with_source(format!(
                "{} profiles of {} embedded with {}",
                arm.name,
                arm.model.display(),
                exp.encoder.display()
            )),
            emb_path.display().to_string(),
        );
        sets.push((set, embed_key));

        // Knowledge checks.
        if let Some(kopts) =
            exp.knowledge_options(&arm_for_model, adapter.as_deref(), &run.ctx.data.path)
        {
            let st = stages.open(
                &format!("knowledge-{}", arm.name),
                json!({ "model": base_key, "finetune": finetune_key,
                        "benchmarks": kopts.benchmarks, "shots": kopts.shots,
                        "limit": kopts.limit, "device": kopts.device, "dtype": kopts.precision,
                        "data": folder_identity(&run.ctx.data.path.join("mcq")) }),
            )?;
            let path = st.dir.join("knowledge.json");
            if !st.reused() {
                let r = knowledge::knowledge(&kopts, |done, total| {
                    note(&format!(
                        "knowledge checks of {}: {done}/{total} rows",
                        arm.name
                    ))
                })
                .with_context(|| format!("arm {}: knowledge checks", arm.name))?;
                knowledge::write_report(&r, &path)?;
            }
            stages.finish(st)?;
            let r: knowledge::KnowledgeReport = serde_json::from_str(
                &std::fs::read_to_string(&path)
                    .with_context(|| format!("{}: cannot read", path.display()))?,
            )
            .with_context(|| format!("{}: not a knowledge report", path.display()))?;
            report.knowledge = r
                .groups
                .iter()
                .map(|g| KnowledgeView {
                    name: g.name.clone(),
                    questions: g.overall.n,
                    accuracy: g.overall.accuracy,
                    low: g.overall.ci95[0],
                    high: g.overall.ci95[1],
                    chance: g.chance,
                })
                .collect();
        }
        generated.push(arm_texts);
        reports.push(report);
    }
    let examples = examples(exp, &chosen, &texts, run.arms, &generated);
    Ok(ArmsOutput {
        sets,
        genes: chosen.genes.clone(),
        report: ExperimentReport {
            texts: exp.texts.display().to_string(),
            encoder: exp.encoder.display().to_string(),
            train_genes: train_genes.len(),
            held_out_genes: test_genes.len(),
            genes: chosen.selection,
            stages: Vec::new(),
            arms: reports,
            examples,
        },
    })
}

/// Arm names become folder names and report rows: present, unique, and safe as file names.
fn check_arms(arms: &[ArmSection]) -> Result<()> {
    for (k, a) in arms.iter().enumerate() {
        crate::io::check_file_name("arm name", &a.name)?;
        if arms[..k].iter().any(|b| b.name == a.name) {
            bail!("two arms are named '{}'", a.name);
        }
    }
    Ok(())
}

/// Every line of a JSONL log (none when the file does not exist: a run without held-out data).
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a log line", path.display(), i + 1))
        })
        .collect()
}

/// Fidelity of an arm's profiles on the seen and the held-out fidelity genes.
fn fidelity(
    emb: &GeneEmbeddings,
    curated_emb: &GeneEmbeddings,
    generated: &GeneTexts,
    curated: &GeneTexts,
    chosen: &genes::Chosen,
) -> Vec<arms::Fidelity> {
    let row = |e: &GeneEmbeddings, g: &str| e.ids().iter().position(|x| x == g);
    let group = |name: &str, genes: &[String]| {
        let scores: Vec<(f64, f64)> = genes
            .iter()
            .filter_map(|g| {
                let (a, b) = (row(emb, g)?, row(curated_emb, g)?);
                let (t, c) = (generated.get(g)?, curated.get(g)?);
                Some((
                    arms::cosine(emb.row(a), curated_emb.row(b)),
                    arms::rouge_l(t, c),
                ))
            })
            .collect();
        arms::fidelity(name, &scores)
    };
    [
        group("seen", &chosen.seen),
        group("held_out", &chosen.held_out),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A few genes with their curated profile and every arm's: held-out genes first, then seen.
fn examples(
    exp: &ExperimentSection,
    chosen: &genes::Chosen,
    curated: &GeneTexts,
    arms: &[ArmSection],
    generated: &[GeneTexts],
) -> Vec<ProfileExample> {
    let n_held = exp.examples.div_ceil(2).min(chosen.held_out.len());
    let picks = chosen.held_out[..n_held]
        .iter()
        .map(|g| (g, "held_out"))
        .chain(chosen.seen.iter().map(|g| (g, "seen")))
        .take(exp.examples);
    picks
        .filter_map(|(g, which)| {
            Some(ProfileExample {
                gene: g.clone(),
                genes: which.to_string(),
                curated: curated.get(g)?.to_string(),
                generated: arms
                    .iter()
                    .zip(generated)
                    .map(|(a, t)| (a.name.clone(), t.get(g).unwrap_or("").to_string()))
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_names_are_checked() {
        let arm = |n: &str| ArmSection {
            name: n.into(),
            model: "m".into(),
            template: Default::default(),
            finetune: None,
        };
        assert!(check_arms(&[arm("a"), arm("b")]).is_ok());
        let e = check_arms(&[arm("a"), arm("a")]).unwrap_err();
        assert!(e.to_string().contains("two arms"), "{e}");
        assert!(check_arms(&[arm("../x")]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        std::fs::write(&p, "{\"step\": 1}\nnot json\n").unwrap();
        let e = read_jsonl::<serde_json::Value>(&p).unwrap_err();
        assert!(format!("{e:#}").contains("log.jsonl:2"), "{e:#}");
        assert!(read_jsonl::<serde_json::Value>(&dir.path().join("none"))
            .unwrap()
            .is_empty());
    }
}
