//! An arm's describe stage, resumable: every profile is appended to `profiles.partial.tsv` the
//! moment it is finished, so a run that is killed loses at most the profiles in flight; the next
//! run with the same key describes only the genes missing from that file. Greedy decoding gives
//! each gene the same profile whatever batch it is decoded in, so the resumed result equals an
//! uninterrupted one. When all genes are done, `profiles.tsv` (symbol, profile; gene order) and
//! `summary.json` are written.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::eval::arms::DescribeSummary;
use crate::model::generate::{describe_each, write_profiles, DescribeOptions};

const PARTIAL: &str = "profiles.partial.tsv";
pub(crate) const PROFILES: &str = "profiles.tsv";
const SUMMARY: &str = "summary.json";

/// One finished profile as the partial file keeps it.
struct Done {
    stopped: bool,
    tokens: usize,
    text: String,
}

/// The complete lines of the partial file (`gene, stopped, tokens, profile`); a last line cut
/// by a kill is dropped, and the file rewritten without it.
fn read_partial(path: &Path) -> Result<HashMap<String, Done>> {
    let mut done = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(done);
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    for (k, line) in complete.lines().enumerate() {
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        let parsed = match f.as_slice() {
            [g, s, t, p] => t.parse::<usize>().ok().map(|tokens| {
                (
                    g.to_string(),
                    Done {
                        stopped: *s == "1",
                        tokens,
                        text: p.to_string(),
                    },
                )
            }),
            _ => None,
        };
        let Some((g, d)) = parsed else {
            bail!("{}:{}: not a profile line", path.display(), k + 1);
        };
        done.insert(g, d);
    }
    if complete.len() != text.len() {
        std::fs::write(path, complete)
            .with_context(|| format!("{}: cannot rewrite", path.display()))?;
    }
    Ok(done)
}

/// The stage's summary, as written when it finished.
pub(crate) fn read_summary(dir: &Path) -> Result<DescribeSummary> {
    let path = dir.join(SUMMARY);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a describe summary", path.display()))
}

/// Describes `genes` into `dir`, continuing what an earlier run left there. `stop_after` ends
/// the run with an error after that many new profiles, as a kill would (for tests).
/// `on_profile(done, total, tokens/s)` follows along.
pub(crate) fn describe_resumable(
    genes: &[String],
    opts: &DescribeOptions,
    dir: &Path,
    stop_after: Option<usize>,
    mut on_profile: impl FnMut(usize, usize, f64),
) -> Result<DescribeSummary> {
    let partial = dir.join(PARTIAL);
    let mut done = read_partial(&partial)?;
    let todo: Vec<String> = genes
        .iter()
        .filter(|g| !done.contains_key(*g))
        .cloned()
        .collect();
    let mut tokens_per_s = 0.0;
    if !todo.is_empty() {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&partial)
            .with_context(|| format!("{}: cannot open", partial.display()))?;
        let start = std::time::Instant::now();
        let (mut new, mut new_tokens) = (0usize, 0usize);
        let report = describe_each(&todo, opts, |i, text, g| {
            writeln!(
                file,
                "{}\t{}\t{}\t{text}",
                todo[i],
                g.stopped as u8,
                g.tokens.len()
            )
            .and_then(|_| file.flush())
            .with_context(|| format!("{}: cannot write", partial.display()))?;
            done.insert(
                todo[i].clone(),
                Done {
                    stopped: g.stopped,
                    tokens: g.tokens.len(),
                    text: text.to_string(),
                },
            );
            new += 1;
            new_tokens += g.tokens.len();
            let rate = new_tokens as f64 / start.elapsed().as_secs_f64().max(1e-9);
            on_profile(genes.len() - todo.len() + new, genes.len(), rate);
            if stop_after.is_some_and(|n| new >= n) {
                bail!("describe interrupted after {new} profiles");
            }
            Ok(())
        })?;
        tokens_per_s = report.tokens_per_s;
    }
    let mut profiles = Vec::with_capacity(genes.len());
    let mut summary = DescribeSummary {
        genes: genes.len(),
        tokens_per_s,
        ..DescribeSummary::default()
    };
    for g in genes {
        let d = &done[g];
        summary.generated_tokens += d.tokens;
        summary.stopped += d.stopped as usize;
        profiles.push((g.clone(), d.text.clone()));
    }
    write_profiles(&dir.join(PROFILES), &profiles)?;
    crate::io::write_file(&dir.join(SUMMARY), serde_json::to_string_pretty(&summary)?)?;
    Ok(summary)
}
