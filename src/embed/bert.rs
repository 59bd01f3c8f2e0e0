//! BERT-family sentence encoders (e.g. all-MiniLM-L6-v2) on candle: tokenise, run the encoder in
//! length-sorted batches, pool over the attention mask, L2-normalise.
//!
//! A model folder holds `config.json`, `model.safetensors` and `tokenizer.json` (as Hugging Face and
//! sentence-transformers save them); `sentence_bert_config.json` and `1_Pooling/config.json`, when
//! present, give the maximum length and pooling. The tokenizer's own padding and truncation settings
//! are replaced (MiniLM's file pads every input to 128): each batch is padded only to its longest
//! text, and padding is masked out of both attention and pooling, so it never changes a vector.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationParams};

use super::fastbert::FastBert;

/// Which implementation runs the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// bftkit's CPU forward pass (unpadded texts in parallel; see `fastbert`).
    #[default]
    Fast,
    /// candle-transformers' `BertModel` (the reference; runs on any candle device).
    Candle,
}

enum Engine {
    Candle { model: BertModel, device: Device },
    Fast(FastBert),
}

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean of the token vectors under the attention mask (sentence-transformers' default).
    Mean,
    /// The first (`[CLS]`) token's vector (encoders).
    Cls,
    /// The last real token's vector (decoders, whose last token has seen the whole text).
    Last,
}

#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Texts per forward pass (after sorting by length).
    pub batch_size: usize,
    pub pooling: Pooling,
    /// L2-normalise each text's vector.
    pub normalize: bool,
}

impl Default for EncodeOptions {
    /// 32 texts per pass, mean pooling, L2-normalised (the GenePT protocol).
    fn default() -> Self {
        Self {
            batch_size: 32,
            pooling: Pooling::Mean,
            normalize: true,
        }
    }
}

/// A loaded encoder.
pub struct BertEncoder {
    engine: Engine,
    pub(crate) text: TextSide,
    /// The pooling the model folder declares (mean unless `1_Pooling/config.json` says CLS).
    pub default_pooling: Pooling,
}

/// What every text encoder has on its input side: the tokenizer, the longest input it takes and
/// the width of the vectors it makes.
pub(crate) struct TextSide {
    tokenizer: Tokenizer,
    pub(crate) hidden_size: usize,
    pub(crate) max_len: usize,
}

impl TextSide {
    pub(crate) fn new(tokenizer: Tokenizer, hidden_size: usize, max_len: usize) -> Self {
        Self {
            tokenizer,
            hidden_size,
            max_len,
        }
    }

    /// Token ids and type ids of each text (with special tokens, truncated to `max_len`).
    pub(crate) fn tokenize(&self, texts: &[&str]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        tokenize(&self.tokenizer, texts)
    }
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
}

/// Refuses a BERT configuration no model can have, before anything is allocated for it.
fn check_config(c: &Config) -> Result<()> {
    if c.num_attention_heads == 0 || c.num_hidden_layers == 0 || c.hidden_size == 0 {
        bail!("num_attention_heads, num_hidden_layers and hidden_size must be at least 1");
    }
    if c.num_hidden_layers > crate::model::decoder::MAX_LAYERS {
        bail!(
            "num_hidden_layers {} is beyond any model (at most {})",
            c.num_hidden_layers,
            crate::model::decoder::MAX_LAYERS
        );
    }
    if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
        bail!("hidden_size is not a multiple of num_attention_heads");
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}

impl BertEncoder {
    /// Loads a model folder. `max_len` overrides the folder's maximum sequence length; `device`
    /// applies to the candle backend.
    pub fn load(
        dir: &Path,
        max_len: Option<usize>,
        backend: Backend,
        device: &Device,
    ) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: model folder not found", dir.display());
        }
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            if !dir.join(f).is_file() {
                bail!(
                    "{}: missing {f} (a BERT model folder holds config.json, model.safetensors \
                     and tokenizer.json)",
                    dir.display()
                );
            }
        }
        let config: Config = read_json(&dir.join("config.json"))?;
        check_config(&config).with_context(|| {
            format!(
                "{}: invalid configuration",
                dir.join("config.json").display()
            )
        })?;
        let weights_path = dir.join("model.safetensors");
        let engine = match backend {
            Backend::Fast => Engine::Fast(FastBert::load(&weights_path, &config)?),
            Backend::Candle => {
                let bytes = std::fs::read(&weights_path)
                    .with_context(|| format!("{}: cannot read", weights_path.display()))?;
                let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)
                    .with_context(|| {
                        format!("{}: not a valid safetensors file", weights_path.display())
                    })?;
                let model = BertModel::load(vb, &config).with_context(|| {
                    format!("{}: weights do not fit config.json", weights_path.display())
                })?;
                Engine::Candle {
                    model,
                    device: device.clone(),
                }
            }
        };
        let folder_max = match dir.join("sentence_bert_config.json") {
            p if p.is_file() => read_json::<SentenceBertConfig>(&p)?.max_seq_length,
            _ => None,
        };
        let max_len = max_len
            .or(folder_max)
            .unwrap_or(512)
            .min(config.max_position_embeddings);
        if max_len < 2 {
            bail!("--max-len must be at least 2 (room for [CLS] and [SEP])");
        }
        let default_pooling = match dir.join("1_Pooling/config.json") {
            p if p.is_file() && read_json::<PoolingConfig>(&p)?.pooling_mode_cls_token => {
                Pooling::Cls
            }
            _ => Pooling::Mean,
        };
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), max_len)?;
        Ok(Self {
            engine,
            text: TextSide::new(tokenizer, config.hidden_size, max_len),
            default_pooling,
        })
    }

    /// Encodes `texts` into a row-major `texts.len() x hidden_size` matrix. `on_batch` is told how
    /// many texts each finished batch (or group, on the fast path) held, for progress bars.
    pub fn encode(
        &self,
        texts: &[&str],
        opts: &EncodeOptions,
        mut on_batch: impl FnMut(usize) + Send,
    ) -> Result<Vec<f32>> {
        if opts.batch_size == 0 {
            bail!("batch size must be at least 1");
        }
        if opts.pooling == Pooling::Last {
            bail!("last-token pooling is for decoders; use mean or cls with a BERT encoder");
        }
        let tokens = self.text.tokenize(texts)?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].0.len()));
        let h = self.text.hidden_size;
        let mut out = vec![0.0f32; texts.len() * h];
        match &self.engine {
            Engine::Candle { model, device } => {
                for batch in order.chunks(opts.batch_size) {
                    let vectors =
                        self.encode_batch(model, device, batch.iter().map(|&i| &tokens[i]), opts)?;
                    place_rows(&mut out, h, batch, &vectors);
                    on_batch(batch.len());
                }
            }
            Engine::Fast(fast) => {
                // Groups of consecutive (length-sorted) texts of about GROUP_TOKENS tokens, so
                // the dense layers get tall GEMMs; each group runs unpadded on one core. All
                // groups go to the thread pool at once: a barrier per batch of groups left a
                // core idle at the end of every batch (7 groups on 2 cores take 4 rounds).
                const GROUP_TOKENS: usize = 1024;
                let mut groups: Vec<&[usize]> = Vec::new();
                let (mut from, mut size) = (0, 0);
                for (k, &i) in order.iter().enumerate() {
                    size += tokens[i].0.len();
                    if size >= GROUP_TOKENS {
                        groups.push(&order[from..=k]);
                        (from, size) = (k + 1, 0);
                    }
                }
                if from < order.len() {
                    groups.push(&order[from..]);
                }
                let progress = std::sync::Mutex::new(&mut on_batch);
                let rows: Vec<Vec<f32>> = groups
                    .par_iter()
                    .map(|group| {
                        let seqs: Vec<(&[u32], &[u32])> = group
                            .iter()
                            .map(|&i| (tokens[i].0.as_slice(), tokens[i].1.as_slice()))
                            .collect();
                        let hidden = fast.forward_many(&seqs)?;
                        let mut pooled = Vec::with_capacity(group.len() * h);
                        let mut r0 = 0;
                        for (ids, _) in &seqs {
                            let t = ids.len();
                            pooled.extend(pool_unpadded(&hidden[r0 * h..(r0 + t) * h], h, opts));
                            r0 += t;
                        }
                        // A poisoned lock only means another group's callback panicked.
                        let mut report = progress.lock().unwrap_or_else(|e| e.into_inner());
                        (*report)(group.len());
                        Ok(pooled)
                    })
                    .collect::<Result<_>>()?;
                for (group, vectors) in groups.iter().zip(&rows) {
                    place_rows(&mut out, h, group, vectors);
                }
            }
        }
        Ok(out)
    }

    fn encode_batch<'a>(
        &self,
        model: &BertModel,
        device: &Device,
        seqs: impl Iterator<Item = &'a (Vec<u32>, Vec<u32>)>,
        opts: &EncodeOptions,
    ) -> Result<Vec<f32>> {
        let seqs: Vec<_> = seqs.collect();
        let b = seqs.len();
        let t = seqs.iter().map(|s| s.0.len()).max().unwrap_or(0).max(1);
        let (mut ids, mut types, mut mask) =
            (vec![0u32; b * t], vec![0u32; b * t], vec![0f32; b * t]);
        for (r, (tok, ty)) in seqs.iter().enumerate() {
            ids[r * t..r * t + tok.len()].copy_from_slice(tok);
            types[r * t..r * t + ty.len()].copy_from_slice(ty);
            mask[r * t..r * t + tok.len()]
                .iter_mut()
                .for_each(|m| *m = 1.0);
        }
        let ids = Tensor::from_vec(ids, (b, t), device)?;
        let types = Tensor::from_vec(types, (b, t), device)?;
        let mask = Tensor::from_vec(mask, (b, t), device)?;
        let hidden = model.forward(&ids, &types, Some(&mask))?; // (b, t, h)
        let pooled = match opts.pooling {
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?; // (b, t, 1)
                let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (b, h)
                summed.broadcast_div(&m.sum(1)?)? // (b, h) / (b, 1)
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?, // (b, h)
            Pooling::Last => bail!("last-token pooling is for decoders; use mean or cls"),
        };
        let pooled = if opts.normalize {
            let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?; // (b, 1)
            pooled.broadcast_div(&norm.clamp(1e-12, f64::INFINITY)?)?
        } else {
            pooled
        };
        Ok(pooled.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// Row `k` of `vectors` (width `h`) becomes row `texts[k]` of `out`: results computed in
/// length order go back to input order.
fn place_rows(out: &mut [f32], h: usize, texts: &[usize], vectors: &[f32]) {
    for (k, &i) in texts.iter().enumerate() {
        out[i * h..(i + 1) * h].copy_from_slice(&vectors[k * h..(k + 1) * h]);
    }
}

/// Loads `tokenizer.json` with its own padding removed and truncation at `max_len` (MiniLM's
/// file pads every input to 128; bftkit pads per batch and masks the padding).
pub(crate) fn load_tokenizer(path: &Path, max_len: usize) -> Result<Tokenizer> {
    if !path.is_file() {
        bail!("{}: missing tokenizer.json", path.display());
    }
    let mut tokenizer = crate::model::weights::read_tokenizer(path)?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| anyhow::anyhow!("tokenizer truncation: {e}"))?;
    Ok(tokenizer)
}

/// Token ids and type ids of each text (special tokens added as the tokenizer defines them).
pub(crate) fn tokenize(tokenizer: &Tokenizer, texts: &[&str]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let enc = tokenizer
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
    Ok(enc
        .into_iter()
        .map(|e| (e.get_ids().to_vec(), e.get_type_ids().to_vec()))
        .collect())
}

/// Pools the hidden states (`[t, h]`) of one unpadded text, then normalises if asked.
fn pool_unpadded(hidden: &[f32], h: usize, opts: &EncodeOptions) -> Vec<f32> {
    let t = hidden.len() / h;
    let mut v = match opts.pooling {
        Pooling::Cls => hidden[..h].to_vec(),
        Pooling::Last => hidden[(t - 1) * h..].to_vec(),
        Pooling::Mean => {
            let mut acc = vec![0.0f64; h];
            for row in hidden.chunks_exact(h) {
                acc.iter_mut().zip(row).for_each(|(a, &x)| *a += x as f64);
            }
            acc.iter().map(|a| (a / t as f64) as f32).collect()
        }
    };
    if opts.normalize {
        let norm = v
            .iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (tempfile::TempDir, BertEncoder) {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_bert(dir.path()).unwrap();
        let enc = BertEncoder::load(dir.path(), None, Backend::Fast, &Device::Cpu).unwrap();
        (dir, enc)
    }

    fn opts(batch_size: usize) -> EncodeOptions {
        EncodeOptions {
            batch_size,
            pooling: Pooling::Mean,
            normalize: true,
        }
    }

    const SHORT: &str = "the kinase";
    const LONG: &str = "the tumor suppressor gene is a transcription factor in the cell cycle \
                        and dna repair pathway";

    #[test]
    fn shapes_norms_and_determinism() {
        let (_d, enc) = tiny();
        assert_eq!(enc.text.max_len, 32, "from sentence_bert_config.json");
        let texts = [SHORT, LONG, "receptor binding"];
        let v = enc.encode(&texts, &opts(2), |_| {}).unwrap();
        assert_eq!(v.len(), 3 * enc.text.hidden_size);
        for row in v.chunks(enc.text.hidden_size) {
            let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        }
        assert_eq!(v, enc.encode(&texts, &opts(2), |_| {}).unwrap());
        let raw = enc
            .encode(
                &texts,
                &EncodeOptions {
                    normalize: false,
                    ..opts(2)
                },
                |_| {},
            )
            .unwrap();
        assert!(raw
            .chunks(16)
            .any(|r| (r.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() > 1e-3));
    }

    #[test]
    fn padding_never_changes_a_vector() {
        let (_d, enc) = tiny();
        // The tokenizer file pads to 48: the encoder must not.
        assert_eq!(enc.text.tokenize(&[SHORT]).unwrap()[0].0.len(), 4);
        let alone = enc.encode(&[SHORT], &opts(1), |_| {}).unwrap();
        let batched = enc.encode(&[LONG, SHORT], &opts(8), |_| {}).unwrap();
        let diff = alone
            .iter()
            .zip(&batched[enc.text.hidden_size..])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "padding changed the vector by {diff}");
        for pooling in [Pooling::Cls, Pooling::Mean] {
            let o = EncodeOptions { pooling, ..opts(8) };
            let a = enc.encode(&[SHORT], &o, |_| {}).unwrap();
            let b = enc.encode(&[SHORT, LONG], &o, |_| {}).unwrap();
            assert!(
                a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5),
                "{pooling:?}"
            );
        }
    }

    #[test]
    fn a_group_of_texts_gives_each_text_its_own_hidden_states() {
        let (_d, enc) = tiny();
        let Engine::Fast(fast) = &enc.engine else {
            panic!("tiny() loads the fast backend")
        };
        let toks = enc
            .text
            .tokenize(&[SHORT, LONG, "receptor binding"])
            .unwrap();
        let seqs: Vec<(&[u32], &[u32])> = toks
            .iter()
            .map(|(i, t)| (i.as_slice(), t.as_slice()))
            .collect();
        let together = fast.forward_many(&seqs).unwrap();
        let alone: Vec<f32> = seqs
            .iter()
            .flat_map(|&(i, t)| fast.forward_many(&[(i, t)]).unwrap())
            .collect();
        assert_eq!(together.len(), alone.len());
        let diff = together
            .iter()
            .zip(&alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "max diff {diff}");
        assert!(fast.forward_many(&[]).is_err());
    }

    #[test]
    fn fast_path_matches_candle_reference() {
        let (d, fast) = tiny();
        let reference = BertEncoder::load(d.path(), None, Backend::Candle, &Device::Cpu).unwrap();
        let texts = [SHORT, LONG, "receptor binding", "membrane signal pathway ."];
        for pooling in [Pooling::Mean, Pooling::Cls] {
            for normalize in [true, false] {
                let o = EncodeOptions {
                    pooling,
                    normalize,
                    ..opts(3)
                };
                let a = fast.encode(&texts, &o, |_| {}).unwrap();
                let b = reference.encode(&texts, &o, |_| {}).unwrap();
                let diff = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    diff < 2e-5,
                    "{pooling:?} normalize={normalize}: max diff {diff}"
                );
            }
        }
    }

    #[test]
    fn truncates_at_max_len() {
        let (d, _) = tiny();
        let enc = BertEncoder::load(d.path(), Some(6), Backend::Fast, &Device::Cpu).unwrap();
        assert_eq!(enc.text.tokenize(&[LONG]).unwrap()[0].0.len(), 6);
        assert_eq!(enc.encode(&[LONG], &opts(1), |_| {}).unwrap().len(), 16);
    }

    #[test]
    fn missing_or_corrupt_files_are_clear_errors() {
        let (d, _) = tiny();
        let err = |dir: &Path| {
            format!(
                "{:#}",
                BertEncoder::load(dir, None, Backend::Fast, &Device::Cpu)
                    .err()
                    .unwrap()
            )
        };
        std::fs::write(d.path().join("model.safetensors"), b"garbage").unwrap();
        let e = err(d.path());
        assert!(
            e.contains("model.safetensors") && e.contains("not a valid safetensors"),
            "{e}"
        );
        std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
        let e = err(d.path());
        assert!(e.contains("missing model.safetensors"), "{e}");
        let e = err(&d.path().join("nope"));
        assert!(e.contains("model folder not found"), "{e}");
        let (d2, _) = tiny();
        std::fs::write(d2.path().join("config.json"), "{").unwrap();
        let e = err(d2.path());
        assert!(
            e.contains("config.json") && e.contains("invalid JSON"),
            "{e}"
        );
    }
}
