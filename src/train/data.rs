//! Fine-tuning data: JSONL conversations → chat-templated token sequences whose response tokens
//! (and only those) carry loss; seeded, length-bucketed batches.
//!
//! Each line is `{"messages": [{"role": ..., "content": ...}, ...]}` or
//! `{"prompt": ..., "response": ...}` (a user turn and an assistant turn). Templates: ChatML
//! (`<|im_start|>role\ncontent<|im_end|>\n`; Qwen2, SmolLM2) and Llama-3. Every turn is tokenised
//! piece by piece, so the loss mask follows the assistant text (and its end-of-turn marker)
//! exactly. Sequences longer than `max_len` are cut at the end.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::step::Sample;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ChatTemplate {
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` (Qwen2, SmolLM2).
    Chatml,
    /// `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>` after `<|begin_of_text|>`.
    Llama3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Text pieces of a conversation: (text, carries loss). The assistant's content and its
/// end-of-turn marker carry loss; headers, other turns and the opening marker do not.
pub fn render(template: ChatTemplate, messages: &[Message]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    if template == ChatTemplate::Llama3 {
        out.push(("<|begin_of_text|>".to_string(), false));
    }
    for m in messages {
        let learn = m.role == "assistant";
        let (head, end) = match template {
            ChatTemplate::Chatml => (format!("<|im_start|>{}\n", m.role), "<|im_end|>"),
            ChatTemplate::Llama3 => (
                format!("<|start_header_id|>{}<|end_header_id|>\n\n", m.role),
                "<|eot_id|>",
            ),
        };
        out.push((head, false));
        out.push((m.content.clone(), learn));
        out.push((end.to_string(), learn));
        if template == ChatTemplate::Chatml {
            out.push(("\n".to_string(), false));
        }
    }
    out
}

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
            let ms: Vec<Message> = serde_json::from_value(ms.clone()).with_context(|| {
                format!("{at}: \"messages\" must be a list of {{\"role\", \"content\"}} objects")
            })?;
            if let Some(m) = ms
                .iter()
                .find(|m| !["system", "user", "assistant"].contains(&m.role.as_str()))
            {
                bail!("{at}: unknown role '{}' (system, user, assistant)", m.role);
            }
            ms
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
                Message {
                    role: "user".into(),
                    content: field("prompt")?,
                },
                Message {
                    role: "assistant".into(),
                    content: field("response")?,
                },
            ]
        };
        if !messages
            .iter()
            .any(|m| m.role == "assistant" && !m.content.is_empty())
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

/// Tokenises a rendered conversation, cut to `max_len` tokens.
pub fn tokenize(
    tokenizer: &Tokenizer,
    pieces: &[(String, bool)],
    max_len: usize,
) -> Result<Sample> {
    let (mut tokens, mut is_response) = (Vec::new(), Vec::new());
    for (text, learn) in pieces {
        let enc = tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        // Keep real tokens only, whatever padding the tokenizer file asks for.
        let real: Vec<u32> = enc
            .get_ids()
            .iter()
            .zip(enc.get_attention_mask())
            .filter(|(_, &m)| m == 1)
            .map(|(&id, _)| id)
            .collect();
        is_response.extend(std::iter::repeat_n(*learn, real.len()));
        tokens.extend(real);
    }
    tokens.truncate(max_len);
    is_response.truncate(max_len);
    Ok(Sample {
        tokens,
        is_response,
    })
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
/// *by gene*, each becoming the SPEC §1 conversation (system, "tell me about gene X.", the text).
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
        let mut messages = crate::model::generate::profile_messages(system, user, g);
        messages.push(Message {
            role: "assistant".into(),
            content: t,
        });
        out.push_str(&serde_json::to_string(
            &serde_json::json!({ "messages": messages }),
        )?);
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(genes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
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
    fn templates_render_exactly() {
        let conv = [
            msg("user", "tell me about gene TP53."),
            msg("assistant", "A tumour suppressor."),
        ];
        let chatml: String = render(ChatTemplate::Chatml, &conv)
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(
            chatml,
            "<|im_start|>user\ntell me about gene TP53.<|im_end|>\n<|im_start|>assistant\nA tumour suppressor.<|im_end|>\n"
        );
        let llama: String = render(ChatTemplate::Llama3, &conv)
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(
            llama,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\ntell me about gene TP53.<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nA tumour suppressor.<|eot_id|>"
        );
        let learned: Vec<String> = render(ChatTemplate::Chatml, &conv)
            .into_iter()
            .filter(|p| p.1)
            .map(|p| p.0)
            .collect();
        assert_eq!(learned, vec!["A tumour suppressor.", "<|im_end|>"]);
    }

    #[test]
    fn only_response_tokens_carry_loss_and_truncation_cuts_the_end() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_decoder(dir.path(), "qwen2").unwrap();
        let tok = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
        let pieces = vec![
            ("the gene".to_string(), false),
            ("is a kinase".to_string(), true),
        ];
        let s = tokenize(&tok, &pieces, 100).unwrap();
        assert_eq!(s.tokens.len(), 5);
        assert_eq!(s.is_response, vec![false, false, true, true, true]);
        let cut = tokenize(&tok, &pieces, 3).unwrap();
        assert_eq!(cut.is_response, vec![false, false, true]);
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
        assert_eq!(c[0].1[1], msg("assistant", "A does x."));
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
