//! Decoder (LLM) text embeddings: mean or last-token pooling of the final hidden state of a
//! Llama/Qwen2-family model, sharing [`crate::model::Decoder`] with fine-tuning.
//!
//! Reads a Hugging Face folder: `config.json`, `tokenizer.json`, and `model.safetensors` or
//! shards listed in `model.safetensors.index.json`. Texts are length-sorted and right-padded per
//! batch; with the causal mask, padding never changes a real token's state, and pooling skips it.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

use super::bert::TextSide;
use super::bert::{EncodeOptions, Pooling};
use crate::model::{Decoder, DecoderConfig};

/// A loaded decoder with its tokenizer.
pub struct DecoderEncoder {
    model: Decoder,
    pub(crate) text: TextSide,
}

impl DecoderEncoder {
    /// Loads a decoder from a Hugging Face folder or a GGUF file (see
    /// [`crate::model::load_pretrained`]).
    pub fn load(path: &Path, max_len: Option<usize>, device: &Device) -> Result<Self> {
        let pre = crate::model::load_pretrained(path, device, DType::F32)?;
        let max_len = Self::max_len(&pre.config, max_len)?;
        let mut tokenizer = pre.tokenizer;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("tokenizer truncation: {e}"))?;
        let origin = path.display().to_string();
        Self::from_parts(pre.config, pre.tensors, tokenizer, max_len, device, &origin)
    }

    fn max_len(config: &DecoderConfig, max_len: Option<usize>) -> Result<usize> {
        let max_len = max_len.unwrap_or(512).min(config.max_position_embeddings);
        if max_len == 0 {
            bail!("--max-len must be at least 1");
        }
        Ok(max_len)
    }

    fn from_parts(
        config: DecoderConfig,
        tensors: HashMap<String, Tensor>,
        tokenizer: Tokenizer,
        max_len: usize,
        device: &Device,
        origin: &str,
    ) -> Result<Self> {
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let model = Decoder::load(vb, &config)
            .with_context(|| format!("{origin}: weights do not fit the configuration"))?;
        Ok(Self {
            text: TextSide::new(tokenizer, config.hidden_size, max_len),
            model,
        })
    }

    /// Encodes `texts` into a row-major `texts.len() x hidden_size` matrix.
    pub fn encode(
        &self,
        texts: &[&str],
        opts: &EncodeOptions,
        mut on_batch: impl FnMut(usize),
    ) -> Result<Vec<f32>> {
        if opts.pooling == Pooling::Cls {
            bail!("CLS pooling is for BERT encoders; use mean or last with a decoder");
        }
        if opts.batch_size == 0 {
            bail!("batch size must be at least 1");
        }
        let tokens = self.text.tokenize(texts)?;
        if let Some(i) = tokens.iter().position(|t| t.0.is_empty()) {
            bail!("text {} produced no tokens", i + 1);
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].0.len()));
        let h = self.text.hidden_size;
        let mut out = vec![0.0f32; texts.len() * h];
        let device = self.model.device().clone();
        for batch in order.chunks(opts.batch_size) {
            let t = tokens[batch[0]].0.len(); // longest first
            let mut ids = vec![0u32; batch.len() * t];
            for (r, &i) in batch.iter().enumerate() {
                let tok = &tokens[i].0;
                ids[r * t..r * t + tok.len()].copy_from_slice(tok);
            }
            let ids = Tensor::from_vec(ids, (batch.len(), t), &device)?;
            let hidden = self.model.forward_hidden(&ids)?; // (b, t, h)
            let hidden: Vec<Vec<Vec<f32>>> = hidden.to_dtype(DType::F32)?.to_vec3()?;
            for (r, &i) in batch.iter().enumerate() {
                let n = tokens[i].0.len();
                let rows = &hidden[r][..n];
                let mut v: Vec<f64> = match opts.pooling {
                    Pooling::Last => rows[n - 1].iter().map(|&x| x as f64).collect(),
                    _ => {
                        let mut acc = vec![0.0f64; h];
                        for row in rows {
                            acc.iter_mut().zip(row).for_each(|(a, &x)| *a += x as f64);
                        }
                        acc.iter().map(|a| a / n as f64).collect()
                    }
                };
                if opts.normalize {
                    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                for (o, x) in out[i * h..(i + 1) * h].iter_mut().zip(v) {
                    *o = x as f32;
                }
            }
            on_batch(batch.len());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::{Backend, TextEncoder};

    fn tiny(kind: &str) -> (tempfile::TempDir, TextEncoder) {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_decoder(dir.path(), kind).unwrap();
        let enc = TextEncoder::load(dir.path(), None, Backend::Fast, &Device::Cpu).unwrap();
        assert!(matches!(enc, TextEncoder::Decoder(_)));
        (dir, enc)
    }

    fn opts(pooling: Pooling) -> EncodeOptions {
        EncodeOptions {
            batch_size: 8,
            pooling,
            normalize: true,
        }
    }

    const SHORT: &str = "the kinase";
    const LONG: &str = "the tumor suppressor gene is a transcription factor in the cell cycle";

    #[test]
    fn pooled_vectors_ignore_padding_for_both_families() {
        for kind in ["llama", "qwen2"] {
            let (_d, enc) = tiny(kind);
            for pooling in [Pooling::Mean, Pooling::Last] {
                let alone = enc.encode(&[SHORT], &opts(pooling), |_| {}).unwrap();
                let batched = enc.encode(&[LONG, SHORT], &opts(pooling), |_| {}).unwrap();
                assert_eq!(batched.len(), 2 * 16);
                let diff = alone
                    .iter()
                    .zip(&batched[16..])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    diff < 1e-5,
                    "{kind} {pooling:?}: padding changed the vector by {diff}"
                );
                let norm: f32 = alone.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-5);
            }
            let mean = enc.encode(&[LONG], &opts(Pooling::Mean), |_| {}).unwrap();
            let last = enc.encode(&[LONG], &opts(Pooling::Last), |_| {}).unwrap();
            assert_ne!(mean, last);
            assert!(enc.encode(&[SHORT], &opts(Pooling::Cls), |_| {}).is_err());
        }
    }

    #[test]
    fn sharded_weights_load_like_one_file() {
        let (d, enc) = tiny("llama");
        let want = enc.encode(&[LONG], &opts(Pooling::Mean), |_| {}).unwrap();
        // Split the tensors over two shards with an index, as Hugging Face saves large models.
        let tensors = crate::model::weights::load_tensors(
            &[d.path().join("model.safetensors")],
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let (a, b) = names.split_at(names.len() / 2);
        let mut weight_map = serde_json::Map::new();
        for (file, part) in [
            ("model-00001-of-00002.safetensors", a),
            ("model-00002-of-00002.safetensors", b),
        ] {
            let sub: HashMap<String, Tensor> = part
                .iter()
                .map(|n| ((*n).clone(), tensors[*n].clone()))
                .collect();
            candle_core::safetensors::save(&sub, d.path().join(file)).unwrap();
            for n in part.iter() {
                weight_map.insert((*n).clone(), serde_json::Value::String(file.into()));
            }
        }
        std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
        std::fs::write(
            d.path().join("model.safetensors.index.json"),
            serde_json::json!({ "weight_map": weight_map }).to_string(),
        )
        .unwrap();
        let sharded = TextEncoder::load(d.path(), None, Backend::Fast, &Device::Cpu).unwrap();
        assert_eq!(
            sharded
                .encode(&[LONG], &opts(Pooling::Mean), |_| {})
                .unwrap(),
            want
        );
        std::fs::remove_file(d.path().join("model-00002-of-00002.safetensors")).unwrap();
        let e = TextEncoder::load(d.path(), None, Backend::Fast, &Device::Cpu)
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("shard listed in the index is missing"),
            "{e:#}"
        );
    }
}
