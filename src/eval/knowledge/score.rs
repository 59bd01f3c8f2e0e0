//! Log-likelihood scoring of continuations, as lm-evaluation-harness does it for multiple
//! choice: the context and each continuation are tokenised as `context` and `context +
//! continuation` (no special tokens added), the continuation's tokens are those of the second
//! beyond the first's length, and a choice's score is the sum of its tokens' log-probabilities.
//!
//! When every continuation of a question is one token (the letters and yes/no/maybe in common
//! tokenizers) one forward pass over the context scores all of them from the last position's
//! distribution; otherwise each continuation gets its own row. Rows are sorted by length and
//! batched with left padding (masked), so a question scores the same alone or in any batch.
//! A context longer than `max_len` minus the continuation is cut on the left, as the harness
//! does, and counted.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};
use tokenizers::Tokenizer;

use crate::model::decoder::KvCache;
use crate::model::generate::{left_padded, LeftPadded};
use crate::model::Decoder;

/// What is asked of the model: a context and the continuations to score after it.
pub(crate) struct Item<'a> {
    pub context: &'a str,
    pub continuations: &'a [String],
}

/// The scores of one item: each continuation's summed log-probability, and whether the
/// context was cut.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scored {
    pub logprobs: Vec<f64>,
    pub truncated: bool,
    /// Tokens the model read for this item (all its rows).
    pub tokens: usize,
}

/// One forward row: its tokens, and (item, continuation, target tokens) scored at its end.
struct Row {
    tokens: Vec<u32>,
    targets: Vec<(usize, usize, Vec<u32>)>,
}

fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tokenizer
        .encode(text, false)
        .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?
        .get_ids()
        .to_vec())
}

/// The forward rows of one item, with the context cut on the left to fit `max_len`.
fn rows_of(
    tokenizer: &Tokenizer,
    index: usize,
    item: &Item<'_>,
    max_len: usize,
) -> Result<(Vec<Row>, bool)> {
    let context = encode(tokenizer, item.context)?;
    if context.is_empty() {
        bail!("item {index}: the context has no tokens");
    }
    let mut conts = Vec::with_capacity(item.continuations.len());
    for c in item.continuations {
        let whole = encode(tokenizer, &format!("{}{c}", item.context))?;
        let cont = whole.get(context.len()..).unwrap_or_default().to_vec();
        if cont.is_empty() {
            bail!("item {index}: continuation '{c}' adds no token to the context");
        }
        conts.push(cont);
    }
    let longest = conts.iter().map(Vec::len).max().unwrap_or(1);
    if longest >= max_len {
        bail!("item {index}: a continuation of {longest} tokens does not fit {max_len}");
    }
    // A row holds the context and all but the last continuation token.
    let keep = max_len - (longest - 1);
    let truncated = context.len() > keep;
    let context = &context[context.len().saturating_sub(keep)..];
    let rows = if conts.iter().all(|c| c.len() == 1) {
        vec![Row {
            tokens: context.to_vec(),
            targets: conts
                .into_iter()
                .enumerate()
                .map(|(k, c)| (index, k, c))
                .collect(),
        }]
    } else {
        conts
            .into_iter()
            .enumerate()
            .map(|(k, c)| Row {
                tokens: [context, &c[..c.len() - 1]].concat(),
                targets: vec![(index, k, c)],
            })
            .collect()
    };
    Ok((rows, truncated))
}

/// Scores every item with `model`; `on_batch` sees how many items are done so far (by rows).
pub(crate) fn score(
    model: &Decoder,
    tokenizer: &Tokenizer,
    items: &[Item<'_>],
    batch_size: usize,
    max_len: usize,
    mut on_rows: impl FnMut(usize, usize),
) -> Result<Vec<Scored>> {
    let max_len = max_len.min(model.config.max_position_embeddings);
    let mut out: Vec<Scored> = items
        .iter()
        .map(|i| Scored {
            logprobs: vec![f64::NAN; i.continuations.len()],
            truncated: false,
            tokens: 0,
        })
        .collect();
    let mut rows = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (r, truncated) = rows_of(tokenizer, i, item, max_len)?;
        out[i].truncated = truncated;
        out[i].tokens = r.iter().map(|r| r.tokens.len()).sum();
        rows.extend(r);
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.tokens.len()));
    let total = rows.len();
    let mut done = 0;
    for batch in rows.chunks(batch_size.max(1)) {
        for (item, k, lp) in score_batch(model, batch)? {
            out[item].logprobs[k] = lp;
        }
        done += batch.len();
        on_rows(done, total);
    }
    Ok(out)
}

/// One batch of rows: the summed log-probability of each target.
fn score_batch(model: &Decoder, rows: &[Row]) -> Result<Vec<(usize, usize, f64)>> {
    let device = model.device();
    let b = rows.len();
    let seqs: Vec<&[u32]> = rows.iter().map(|r| r.tokens.as_slice()).collect();
    let LeftPadded {
        l, ids, pos, mask, ..
    } = left_padded(&seqs);
    // The positions read: the last `k` of every row (a continuation of n tokens needs n).
    let k = rows
        .iter()
        .flat_map(|r| r.targets.iter().map(|t| t.2.len()))
        .max()
        .unwrap_or(1);
    let hidden = model.forward_cached(
        &Tensor::from_vec(ids, (b, l), device)?,
        &pos,
        &Tensor::from_vec(mask, (b, 1, l, l), device)?.to_dtype(model.dtype())?,
        &mut KvCache::default(),
    )?;
    let last = hidden.narrow(1, l - k, k)?;
    let logits = model.logits(&last)?.to_dtype(DType::F32)?;
    let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec3::<f32>()?;
    let mut out = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        for (item, choice, target) in &row.targets {
            let n = target.len();
            // Position k - n + j of the window predicts target token j.
            let lp: f64 = target
                .iter()
                .enumerate()
                .map(|(j, &t)| lsm[r][k - n + j][t as usize] as f64)
                .sum();
            out.push((*item, *choice, lp));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::generate::load_decoder;

    /// Reference: each (context + continuation) alone, unpadded, through the plain forward.
    fn direct(model: &Decoder, tok: &Tokenizer, context: &str, cont: &str) -> f64 {
        let c = encode(tok, context).unwrap();
        let whole = encode(tok, &format!("{context}{cont}")).unwrap();
        let ids = Tensor::new(whole.as_slice(), model.device())
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let h = model.forward_hidden(&ids).unwrap();
        let lsm = candle_nn::ops::log_softmax(&model.logits(&h).unwrap(), D::Minus1)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        (c.len()..whole.len())
            .map(|p| lsm[p - 1][whole[p] as usize] as f64)
            .sum()
    }

    /// With every block's output projections zeroed, each layer adds nothing to the residual
    /// stream, so the hidden state at a position is its token's embedding `e`, and
    /// log p(t | ..., c) = log_softmax(W · (g ⊙ e_c / rms(e_c)))[t] — computed here by hand in
    /// f64 from the weight file, without the model's code.
    #[test]
    fn scores_match_a_hand_computed_model() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_decoder(dir.path(), "llama").unwrap();
        let path = dir.path().join("model.safetensors");
        let cpu = candle_core::Device::Cpu;
        let mut t = crate::model::weights::load_tensors(
            std::slice::from_ref(&path),
            &cpu,
            candle_core::DType::F32,
        )
        .unwrap();
        for (name, v) in t.iter_mut() {
            if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
                *v = v.zeros_like().unwrap();
            }
        }
        candle_core::safetensors::save(&t, &path).unwrap();
        let (model, tok) = load_decoder(dir.path(), None, &cpu, DType::F32).unwrap();
        let emb = t["model.embed_tokens.weight"].to_vec2::<f32>().unwrap();
        let g = t["model.norm.weight"].to_vec1::<f32>().unwrap();
        let w = t["lm_head.weight"].to_vec2::<f32>().unwrap();
        let hand = |prev: u32, next: u32| -> f64 {
            let e = &emb[prev as usize];
            let rms =
                (e.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / e.len() as f64 + 1e-6).sqrt();
            let h: Vec<f64> = e
                .iter()
                .zip(&g)
                .map(|(&x, &g)| g as f64 * x as f64 / rms)
                .collect();
            let logits: Vec<f64> = w
                .iter()
                .map(|row| row.iter().zip(&h).map(|(&a, b)| a as f64 * b).sum())
                .collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
            logits[next as usize] - lse
        };
        let context = "the protein binding of the cell";
        let conts: Vec<String> = [" a", " gene kinase", " dna"].map(String::from).to_vec();
        let item = Item {
            context,
            continuations: &conts,
        };
        let scored = score(&model, &tok, &[item], 4, 64, |_, _| {}).unwrap();
        let ctx = encode(&tok, context).unwrap();
        for (c, &lp) in conts.iter().zip(&scored[0].logprobs) {
            let cont = encode(&tok, c).unwrap();
            assert!(!cont.is_empty());
            let mut prev = *ctx.last().unwrap();
            let mut want = 0.0;
            for &next in &cont {
                want += hand(prev, next);
                prev = next;
            }
            assert!((lp - want).abs() < 1e-4, "{c:?}: {lp} vs by hand {want}");
        }
    }

    #[test]
    fn batched_scores_equal_each_sequence_scored_alone() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_decoder(dir.path(), "llama").unwrap();
        let (model, tok) =
            load_decoder(dir.path(), None, &candle_core::Device::Cpu, DType::F32).unwrap();
        let letters: Vec<String> = [" a", " b", " c"].map(String::from).to_vec();
        // Multi-token continuations force one row per choice.
        let words: Vec<String> = [" gene kinase", " the cell", " dna"]
            .map(String::from)
            .to_vec();
        let contexts = [
            "the gene is a",
            "the protein binding of the cell cycle and dna repair is",
            "a",
        ];
        let mut items = Vec::new();
        for c in &contexts {
            items.push(Item {
                context: c,
                continuations: &letters,
            });
            items.push(Item {
                context: c,
                continuations: &words,
            });
        }
        let scored = score(&model, &tok, &items, 3, 512, |_, _| {}).unwrap();
        for (item, s) in items.iter().zip(&scored) {
            assert!(!s.truncated);
            for (cont, &lp) in item.continuations.iter().zip(&s.logprobs) {
                let want = direct(&model, &tok, item.context, cont);
                assert!(
                    (lp - want).abs() < 1e-4,
                    "{:?} + {cont:?}: {lp} vs {want}",
                    item.context
                );
            }
        }
        // A context longer than the limit is cut on the left and counted.
        let cut = score(&model, &tok, &items[2..3], 1, 4, |_, _| {}).unwrap();
        assert!(cut[0].truncated);
        assert!(cut[0].logprobs.iter().all(|l| l.is_finite()));
    }
}
