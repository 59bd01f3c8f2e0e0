//! Fine-tuning data: JSONL conversations → chat-templated token sequences whose response tokens
//! (and only those) carry loss; seeded, length-bucketed batches.
//!
//! Each line is `{"messages": [{"role": ..., "content": ...}, ...]}` or
//! `{"prompt": ..., "response": ...}` (a user turn and an assistant turn). Rendering and
//! tokenisation are [`crate::model::chat`]'s: every turn is tokenised piece by piece, so the loss
//! mask follows the assistant text (and its end-of-turn marker) exactly. Sequences longer than
//! `max_len` are cut at the end.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::io::texts::GeneTexts;
use crate::model::chat::{profile_messages, Message, Role, PROFILE_SYSTEM, PROFILE_USER};

/// Reads a JSONL file of conversations; errors name the line.
pub fn read_conversations(path: &Path) -> Result<Vec<(usize, Vec<Message>)>> {
    let file = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("{file}: cannot read"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{file}:{}", i + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{at}: not valid JSON"))?;
        let messages = if let Some(ms) = v.get("messages") {
            /// A turn as written, its role still a string (so an unknown one names the line).
            #[derive(Deserialize)]
            struct Turn {
                role: String,
                content: String,
            }
            let ms: Vec<Turn> = serde_json::from_value(ms.clone()).with_context(|| {
                format!("{at}: \"messages\" must be a list of {{\"role\", \"content\"}} objects")
            })?;
            ms.into_iter()
                .map(|t| Ok(Message::new(Role::parse(&t.role)?, t.content)))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("{at}: bad message"))?
        } else {
            let field = |k: &str| -> Result<String> {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "{at}: expected \"messages\", or \"prompt\" and \"response\" strings"
                        )
                    })
            };
            vec![
                Message::new(Role::User, field("prompt")?),
                Message::new(Role::Assistant, field("response")?),
            ]
        };
        if !messages
            .iter()
            .any(|m| m.role == Role::Assistant && !m.content.is_empty())
        {
            bail!("{at}: no assistant turn to learn from");
        }
        out.push((i + 1, messages));
    }
    if out.is_empty() {
        bail!("{file}: no conversations");
    }
    Ok(out)
}

/// Batches of sample indices: shuffled with `seed`, grouped into buckets of 50 batches, each
/// bucket sorted by length (so a batch holds similar lengths and little padding), batch order
/// shuffled again. Every index appears exactly once.
pub fn length_bucketed_batches(lengths: &[usize], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "batch size must be positive");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::new();
    for bucket in order.chunks(batch_size * 50) {
        let mut bucket = bucket.to_vec();
        bucket.sort_by_key(|&i| lengths[i]);
        batches.extend(bucket.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Gene-profile SFT data: the genes of `texts` split at random (seeded) into train and test sets
/// *by gene*, each becoming the gene-profile conversation (system, "tell me about gene X.", the
/// text).
pub struct ProfileSplit {
    pub train: Vec<String>,
    pub test: Vec<String>,
}

/// Splits `genes` (sorted first, so the split depends only on the set and the seed) with
/// `ceil(test_fraction · n)` genes held out.
pub fn split_genes(genes: &[String], test_fraction: f64, seed: u64) -> Result<ProfileSplit> {
    if !(0.0..1.0).contains(&test_fraction) {
        bail!("test fraction must be in [0, 1), not {test_fraction}");
    }
    let mut all = genes.to_vec();
    all.sort();
    all.dedup();
    all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_test = (test_fraction * all.len() as f64).ceil() as usize;
    let train = all.split_off(n_test);
    if train.is_empty() {
        bail!("no genes left to train on");
    }
    let (mut train, mut test) = (train, all);
    train.sort();
    test.sort();
    Ok(ProfileSplit { train, test })
}

/// How `bftkit sft-data` splits gene texts and which prompt it asks with.
#[derive(Debug, Clone)]
pub struct ProfileDataOptions {
    /// Fraction of genes held out for testing.
    pub test_fraction: f64,
    pub seed: u64,
    pub system: String,
    /// The user turn; `{gene}` becomes the symbol.
    pub user: String,
}

impl Default for ProfileDataOptions {
    /// 10% of genes held out, seed 0, the gene-profile prompt.
    fn default() -> Self {
        Self {
            test_fraction: 0.1,
            seed: 0,
            system: PROFILE_SYSTEM.to_string(),
            user: PROFILE_USER.to_string(),
        }
    }
}

/// Gene-profile SFT data in `out`: `train.jsonl` and `test.jsonl` (one conversation per gene,
/// split by gene), the gene lists `train_genes.txt` and `test_genes.txt`, and `split.json`
/// recording how (with `texts_origin`, where the texts came from).
pub fn write_profile_data(
    texts: &GeneTexts,
    texts_origin: &str,
    out: &Path,
    opts: &ProfileDataOptions,
) -> Result<ProfileSplit> {
    // Genes whose text is empty have nothing to learn from: left out, and counted.
    let with_text: Vec<String> = texts
        .genes()
        .iter()
        .filter(|g| texts.get(g).is_some())
        .cloned()
        .collect();
    let without_text = texts.genes().len() - with_text.len();
    let split = split_genes(&with_text, opts.test_fraction, opts.seed)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let text = |g: &str| texts.get(g).map(str::to_string);
    for (name, genes) in [("train", &split.train), ("test", &split.test)] {
        let path = out.join(format!("{name}.jsonl"));
        write_profile_conversations(&path, genes, text, &opts.system, &opts.user)?;
        let list = out.join(format!("{name}_genes.txt"));
        crate::io::write_file(&list, genes.join("\n") + "\n")?;
    }
    let summary = serde_json::json!({
        "bftkit_version": env!("CARGO_PKG_VERSION"), "texts": texts_origin,
        "seed": opts.seed, "test_fraction": opts.test_fraction,
        "train_genes": split.train.len(), "test_genes": split.test.len(),
        "genes_without_text": without_text,
        "system": opts.system, "user": opts.user,
    });
    let path = out.join("split.json");
    crate::io::write_file(&path, serde_json::to_string_pretty(&summary)?)?;
    Ok(split)
}

/// Writes one `{"messages": [...]}` line per gene: the profile prompt and the gene's text.
pub fn write_profile_conversations(
    path: &Path,
    genes: &[String],
    text: impl Fn(&str) -> Option<String>,
    system: &str,
    user: &str,
) -> Result<usize> {
    let mut out = String::new();
    for g in genes {
        let Some(t) = text(g) else {
            bail!("gene '{g}' has no text");
        };
        let mut messages = profile_messages(system, user, g);
        messages.push(Message::new(Role::Assistant, t));
        out.push_str(&serde_json::to_string(
            &serde_json::json!({ "messages": messages }),
        )?);
        out.push('\n');
    }
    crate::io::write_file(path, out)?;
    Ok(genes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> Message {
        Message::new(role, content)
    }

    #[test]
    fn gene_split_is_seeded_disjoint_and_order_free() {
        let genes: Vec<String> = (0..50).map(|i| format!("G{i}")).collect();
        let a = split_genes(&genes, 0.1, 7).unwrap();
        assert_eq!((a.train.len(), a.test.len()), (45, 5));
        assert!(a.test.iter().all(|g| !a.train.contains(g)));
        let mut rev = genes.clone();
        rev.reverse();
        let b = split_genes(&rev, 0.1, 7).unwrap();
        assert_eq!((a.train.clone(), a.test.clone()), (b.train, b.test));
        assert_ne!(split_genes(&genes, 0.1, 8).unwrap().test, a.test);
        assert!(split_genes(&genes, 1.0, 7).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        let text = |g: &str| (g != "G3").then(|| format!("{g} is a gene"));
        write_profile_conversations(&p, &a.test[..1], text, "sys", "tell me about gene {gene}.")
            .unwrap();
        let conv = read_conversations(&p).unwrap();
        let g = &a.test[0];
        assert_eq!(conv[0].1[1].content, format!("tell me about gene {g}."));
        assert_eq!(conv[0].1[2].content, format!("{g} is a gene"));
        let missing = write_profile_conversations(&p, &["G3".into()], text, "", "{gene}");
        assert!(missing.unwrap_err().to_string().contains("G3"));
    }

    #[test]
    fn reads_both_line_shapes_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(
            &p,
            "{\"prompt\": \"tell me about gene A.\", \"response\": \"A does x.\"}\n\n\
             {\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n",
        )
        .unwrap();
        let c = read_conversations(&p).unwrap();
        assert_eq!((c.len(), c[1].0), (2, 3));
        assert_eq!(c[0].1[1], msg(Role::Assistant, "A does x."));
        for (bad, want) in [
            ("{\"prompt\": \"x\"}", "d.jsonl:1: expected"),
            ("not json", "d.jsonl:1: not valid JSON"),
            (
                "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}",
                "unknown role 'bot'",
            ),
            (
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}",
                "no assistant turn",
            ),
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = format!("{:#}", read_conversations(&p).unwrap_err());
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn batches_are_seeded_complete_and_length_grouped() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 7919) % 500 + 1).collect();
        let b = length_bucketed_batches(&lengths, 8, 3);
        let mut all: Vec<usize> = b.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(b, length_bucketed_batches(&lengths, 8, 3));
        assert_ne!(b, length_bucketed_batches(&lengths, 8, 4));
        // Padding (max - len summed over batches) is far below that of unsorted batches.
        let pad = |bs: &[Vec<usize>]| -> usize {
            bs.iter()
                .map(|x| {
                    let m = x.iter().map(|&i| lengths[i]).max().unwrap();
                    x.iter().map(|&i| m - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        let plain: Vec<Vec<usize>> = (0..1000)
            .collect::<Vec<_>>()
            .chunks(8)
            .map(<[usize]>::to_vec)
            .collect();
        assert!(pad(&b) * 10 < pad(&plain), "{} vs {}", pad(&b), pad(&plain));
    }
}
