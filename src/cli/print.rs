//! What the commands print: result tables and one-line summaries, views of the library's
//! result types (nothing is computed here).

use std::path::Path;

use crate::embed::EmbedReport;
use crate::eval::arms::{ExperimentReport, StageStatus};
use crate::eval::knowledge::KnowledgeReport;
use crate::eval::result::ProbeReport;
use crate::eval::task::TaskSet;
use crate::model::generate::DescribeReport;
use crate::pipeline::{GeneMap, Inputs};
use crate::train::finetune::FinetuneReport;
use crate::train::LossReport;

/// Notes about inputs that were looked for rather than given (stderr).
pub(super) fn input_notes(inputs: &Inputs) {
    if inputs.data.fixtures {
        eprintln!(
            "note: no data folder (--data, $BFTKIT_DATA or ./data): using the built-in \
             synthetic fixtures (the same as fixtures/ in the repository)"
        );
    }
    if let GeneMap::Absent { looked_for } = &inputs.gene_map {
        eprintln!(
            "note: no gene id map ({}); genes match embedding ids by name only",
            looked_for.display()
        );
    }
}

/// `bftkit tasks`: every task, its kind and whether its data is present.
pub(super) fn tasks(set: &TaskSet, data: &Path) {
    println!("tasks from {}; data folder {}", set.origin, data.display());
    println!("{:<34} {:<5} {:<7} title", "task", "group", "data");
    for t in &set.tasks {
        let present = if t.data_present(data) {
            "yes"
        } else {
            "missing"
        };
        println!(
            "{:<34} {:<5} {:<7} {}",
            t.name,
            t.group().name(),
            present,
            t.title
        );
    }
}

/// One line per task and set: counts, coverage, the classifier's scores (or the other
/// metrics below), and the first published reference.
pub(super) fn probe_table(r: &ProbeReport) {
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
        let counts = format!("{pos}/{neg}");
        let coverage = 100.0 * t.outcome.coverage().fraction();
        match t.outcome.probe_scores() {
            Some(s) => println!(
                "{:<34} {:<12} {:>11} {:>7.1}% {:>7.3} ± {:.3} {:>7.3} {:>7.3} {:>7.3} {:>4}{}  {}",
                t.task,
                t.embedding_set,
                counts,
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
                t.task, t.embedding_set, counts, coverage, reference
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

/// What `bftkit embed` did.
/// The model arms of an experiment run: fidelity, held-out loss, knowledge, and the stages.
pub(super) fn experiment(e: &ExperimentReport) {
    println!(
        "\nmodel arms ({} genes described; profile fidelity to the curated texts: cosine / ROUGE-L)",
        e.genes.described
    );
    println!(
        "{:<16} {:>7} {:>16} {:>16} {:>18}",
        "arm", "steps", "seen", "held-out", "held-out CE"
    );
    for a in &e.arms {
        let fid = |which: &str| {
            a.fidelity
                .iter()
                .find(|f| f.genes == which)
                .map_or("-".to_string(), |f| {
                    format!("{:.3} / {:.3}", f.cosine, f.rouge_l)
                })
        };
        let ce = match (a.eval.first(), a.eval.last()) {
            (Some(x), Some(y)) if a.eval.len() > 1 => {
                format!("{:.3} -> {:.3}", x.cross_entropy, y.cross_entropy)
            }
            _ => "-".into(),
        };
        println!(
            "{:<16} {:>7} {:>16} {:>16} {:>18}",
            a.name,
            a.train.last().map_or(0, |t| t.step),
            fid("seen"),
            fid("held_out"),
            ce
        );
        for k in &a.knowledge {
            println!(
                "    knowledge {:<14} {:.3} [{:.3}, {:.3}] of {} (chance {:.2})",
                k.name, k.accuracy, k.low, k.high, k.questions, k.chance
            );
        }
    }
    let count = |s: StageStatus| e.stages.iter().filter(|x| x.status == s).count();
    println!(
        "stages: {} ran, {} resumed, {} reused",
        count(StageStatus::Ran),
        count(StageStatus::Resumed),
        count(StageStatus::Reused)
    );
}

pub(super) fn embedded(report: &EmbedReport, out: &Path, report_path: &Path) {
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
    println!("wrote {} and {}", out.display(), report_path.display());
}

/// What `bftkit finetune` did.
pub(super) fn finetuned(report: &FinetuneReport, out: &Path) {
    println!(
        "{} steps on {} samples ({} truncated, {} without response tokens): loss {:.4} -> {:.4}",
        report.steps,
        report.samples,
        report.truncated,
        report.without_response,
        report.first_loss,
        report.last_loss
    );
    println!("wrote {}", out.display());
}

/// What `bftkit knowledge` measured: a line per benchmark and MMLU view.
pub(super) fn knowledge(report: &KnowledgeReport, out: &Path) {
    println!(
        "{:<14} {:>6}  {:>8}  {:>15}  {:>8}  {:>6}",
        "benchmark", "n", "accuracy", "95% interval", "macro", "chance"
    );
    for g in &report.groups {
        println!(
            "{:<14} {:>6}  {:>8.4}  [{:.4}, {:.4}]  {:>8.4}  {:>6.3}",
            g.name,
            g.overall.n,
            g.overall.accuracy,
            g.overall.ci95[0],
            g.overall.ci95[1],
            g.macro_accuracy,
            g.chance
        );
    }
    println!(
        "{} questions, {} shots, {} tokens in {:.1} s; {} prompts cut to {} tokens",
        report.questions.len(),
        report.shots,
        report.tokens,
        report.seconds,
        report.truncated,
        report.max_len
    );
    println!("wrote {}", out.display());
}

/// What `bftkit describe` did.
pub(super) fn described(report: &DescribeReport, out: &Path, report_path: &Path) {
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
    println!("wrote {} and {}", out.display(), report_path.display());
}

/// `bftkit weights`: the mean loss and the `top` samples BFT emphasises most.
pub(super) fn weights(report: &LossReport, top: usize) {
    let mut order: Vec<_> = report.samples.iter().collect();
    order.sort_by(|a, b| b.sample_weight.total_cmp(&a.sample_weight));
    println!(
        "{} samples, mean loss {:.4}; most emphasised (highest sample weight s_b):",
        report.batch_size, report.batch_loss
    );
    println!(
        "{:>6} {:>6} {:>8} {:>8} {:>8}",
        "line", "N", "p_conf", "s_b", "mean w"
    );
    for s in order.iter().take(top) {
        println!(
            "{:>6} {:>6} {:>8.4} {:>8.4} {:>8.4}",
            s.line, s.n, s.p_conf, s.sample_weight, s.mean_token_weight
        );
    }
}
