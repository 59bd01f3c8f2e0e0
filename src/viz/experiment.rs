//! The report's model-arms section, for runs that fine-tuned and described with model arms: a
//! table per arm (fine-tuning, held-out cross-entropy and gold-token probability, describe run,
//! profile fidelity on seen and held-out genes, knowledge checks), training curves as PNG,
//! example profiles side by side (escaped), and which stages ran, resumed or were reused.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::html::esc;
use super::plot;
use crate::eval::arms::{ArmReport, ExperimentReport, Fidelity, StageStatus};

/// The training-curve figures of run `k` in `out`, as (caption, path); none when no arm was
/// fine-tuned.
pub(super) fn figures(
    exp: &ExperimentReport,
    k: usize,
    out: &Path,
) -> Result<Vec<(String, PathBuf)>> {
    if exp.arms.iter().all(|a| a.train.is_empty()) {
        return Ok(Vec::new());
    }
    type Pick = fn(&ArmReport) -> Vec<(f64, f64)>;
    let curves: [(&str, &str, &str, Pick); 4] = [
        ("loss", "training loss (per step)", "loss", |a| {
            a.train.iter().map(|p| (p.step as f64, p.loss)).collect()
        }),
        (
            "sample_weight",
            "mean sample weight (per step)",
            "weight",
            |a| {
                a.train
                    .iter()
                    .map(|p| (p.step as f64, p.mean_sample_weight))
                    .collect()
            },
        ),
        (
            "heldout_ce",
            "held-out response cross-entropy",
            "cross-entropy",
            |a| {
                a.eval
                    .iter()
                    .map(|p| (p.step as f64, p.cross_entropy))
                    .collect()
            },
        ),
        (
            "heldout_p",
            "held-out mean gold-token probability",
            "probability",
            |a| {
                a.eval
                    .iter()
                    .map(|p| (p.step as f64, p.mean_prob))
                    .collect()
            },
        ),
    ];
    let tuned: Vec<&ArmReport> = exp.arms.iter().filter(|a| !a.train.is_empty()).collect();
    let mut out_figs = Vec::new();
    for (file, title, y, pick) in curves {
        let series: Vec<(String, Vec<(f64, f64)>)> =
            tuned.iter().map(|a| (a.name.clone(), pick(a))).collect();
        let path = out.join(format!("curve_{k}_{file}.png"));
        crate::io::write_with(&path, |tmp| {
            plot::lines_png(tmp, title, ("optimizer step", y), &series, (760, 440))
        })?;
        out_figs.push((format!("Fine-tuning: {title}, per arm"), path));
    }
    Ok(out_figs)
}

fn fidelity_cell(f: Option<&Fidelity>) -> String {
    match f {
        Some(f) => format!(
            "<td>{:.3} ± {:.3}</td><td>{:.3}</td><td>{}</td>",
            f.cosine, f.cosine_sd, f.rouge_l, f.n
        ),
        None => "<td>–</td><td>–</td><td>0</td>".into(),
    }
}

/// First and last value of a curve, as "a → b".
fn first_last(v: &[f64]) -> String {
    match (v.first(), v.last()) {
        (Some(a), Some(b)) if v.len() > 1 => format!("{a:.4} → {b:.4}"),
        (Some(a), _) => format!("{a:.4}"),
        _ => "–".into(),
    }
}

/// The section itself; `figures` are the curve figures, inlined after the arms table.
pub(super) fn section(
    h: &mut String,
    run: &str,
    exp: &ExperimentReport,
    figures: &[String],
) -> Result<()> {
    writeln!(h, "<h2>Model arms ({})</h2>", esc(run))?;
    let g = &exp.genes;
    writeln!(
        h,
        "<p class=\"note\">Curated profiles: {} ({} genes to fine-tune on, {} held out, split by \
         gene). Profiles embedded with {}. Genes described: {} — from {} ({} named, {} without a \
         symbol in the gene id map, {} kept), plus {} seen and {} held-out genes with curated text \
         for the fidelity measure.</p>",
        esc(&exp.texts),
        exp.train_genes,
        exp.held_out_genes,
        esc(&exp.encoder),
        g.described,
        esc(&g.source),
        g.from_source,
        g.unmapped,
        g.kept,
        g.fidelity_seen,
        g.fidelity_held_out
    )?;
    let views: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for a in &exp.arms {
            for k in &a.knowledge {
                if !v.contains(&k.name) {
                    v.push(k.name.clone());
                }
            }
        }
        v
    };
    write!(
        h,
        "<div class=\"wide\"><table><tr><th class=\"name\" rowspan=\"2\">arm</th>\
         <th class=\"name\" rowspan=\"2\">fine-tuning</th><th rowspan=\"2\">steps</th>\
         <th rowspan=\"2\">held-out CE</th><th rowspan=\"2\">held-out mean p</th>\
         <th rowspan=\"2\">profiles (ended / cut)</th><th rowspan=\"2\">tokens/s</th>\
         <th colspan=\"3\">fidelity, seen genes</th><th colspan=\"3\">fidelity, held-out genes</th>"
    )?;
    if !views.is_empty() {
        write!(
            h,
            "<th colspan=\"{}\">knowledge: accuracy [95% interval]</th>",
            views.len()
        )?;
    }
    write!(
        h,
        "</tr><tr><th>cosine</th><th>ROUGE-L</th><th>n</th><th>cosine</th><th>ROUGE-L</th><th>n</th>"
    )?;
    for v in &views {
        write!(h, "<th>{}</th>", esc(v))?;
    }
    writeln!(h, "</tr>")?;
    for a in &exp.arms {
        let ce: Vec<f64> = a.eval.iter().map(|e| e.cross_entropy).collect();
        let p: Vec<f64> = a.eval.iter().map(|e| e.mean_prob).collect();
        let find = |which: &str| a.fidelity.iter().find(|f| f.genes == which);
        write!(
            h,
            "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{} ({} / {})</td><td>{:.1}</td>{}{}",
            esc(&a.name),
            esc(a.finetune.as_deref().unwrap_or("none (base model)")),
            a.train.last().map_or(0, |t| t.step),
            first_last(&ce),
            first_last(&p),
            a.describe.genes,
            a.describe.stopped,
            a.describe.genes - a.describe.stopped.min(a.describe.genes),
            a.describe.tokens_per_s,
            fidelity_cell(find("seen")),
            fidelity_cell(find("held_out")),
        )?;
        for v in &views {
            match a.knowledge.iter().find(|k| &k.name == v) {
                Some(k) => write!(
                    h,
                    "<td title=\"{} questions, chance {:.2}\">{:.3} [{:.3}, {:.3}]</td>",
                    k.questions, k.chance, k.accuracy, k.low, k.high
                )?,
                None => write!(h, "<td>–</td>")?,
            }
        }
        writeln!(h, "</tr>")?;
    }
    writeln!(h, "</table></div>")?;
    writeln!(
        h,
        "<p class=\"note\">Held-out CE and mean p: the fine-tuning's held-out conversations, before \
         training → after the last step. Fidelity: cosine between the vectors of the generated and \
         the curated profile (mean ± sd over genes) and ROUGE-L F1 of their words; seen genes were \
         in the fine-tuning data, held-out genes were not. The arms' probe scores are rows of the \
         summary table above.</p>"
    )?;
    for uri in figures {
        writeln!(
            h,
            "<figure><img alt=\"training curve\" src=\"{uri}\"></figure>"
        )?;
    }
    if !exp.examples.is_empty() {
        write!(
            h,
            "<h3>Example profiles</h3><div class=\"wide\"><table><tr><th class=\"name\">gene</th>\
             <th class=\"name\">curated</th>"
        )?;
        for a in &exp.arms {
            write!(h, "<th class=\"name\">{}</th>", esc(&a.name))?;
        }
        writeln!(h, "</tr>")?;
        for e in &exp.examples {
            write!(
                h,
                "<tr><td class=\"name\">{}<br><span class=\"note\">{}</span></td><td class=\"text\">{}</td>",
                esc(&e.gene),
                esc(&e.genes.replace('_', "-")),
                esc(&e.curated)
            )?;
            for a in &exp.arms {
                let text = e
                    .generated
                    .iter()
                    .find(|(n, _)| n == &a.name)
                    .map_or("–", |(_, t)| t.as_str());
                write!(h, "<td class=\"text\">{}</td>", esc(text))?;
            }
            writeln!(h, "</tr>")?;
        }
        writeln!(h, "</table></div>")?;
    }
    let reused = exp
        .stages
        .iter()
        .filter(|s| s.status == StageStatus::Reused)
        .count();
    writeln!(
        h,
        "<h3>Stages</h3><p class=\"note\">{reused} of {} stages reused from an earlier run with \
         the same inputs and settings (keyed by a hash of both).</p><table><tr>\
         <th class=\"name\">stage</th><th class=\"name\">key</th><th class=\"name\">status</th>\
         <th>seconds</th></tr>",
        exp.stages.len()
    )?;
    for s in &exp.stages {
        let status = match s.status {
            StageStatus::Ran => "ran",
            StageStatus::Resumed => "resumed",
            StageStatus::Reused => "reused",
        };
        writeln!(
            h,
            "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td class=\"name\">{status}</td>\
             <td>{:.1}</td></tr>",
            esc(&s.stage),
            esc(&s.key[..s.key.len().min(12)]),
            s.seconds
        )?;
    }
    writeln!(h, "</table>")?;
    Ok(())
}
