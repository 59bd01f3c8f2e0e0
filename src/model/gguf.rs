//! GGUF model files (llama.cpp's format): configuration, dequantised weights under Hugging Face
//! names, and the BPE tokenizer rebuilt from the file's metadata with the tokenizers crate.
//!
//! llama.cpp's converter permutes the rows of Llama's q/k projections for its interleaved RoPE;
//! they are permuted back here, so [`super::decoder::Decoder`] (Hugging Face's half-split RoPE) runs GGUF
//! and safetensors weights alike. Qwen2 files are not permuted. Quantised tensors are dequantised
//! at load, one at a time and to the run's dtype, except, when asked (LoRA training over a
//! quantised base), the blocks' linear weights, which stay in the file's quantisation (Llama's
//! q/k rows are permuted with their blocks).
//! Tokenizers: `tokenizer.ggml.model = "gpt2"` (byte-level BPE) with the
//! pre-tokenizers `gpt2`/`default` (GPT-2 regex) and `smollm`/`starcoder`/`refact` (single digits,
//! then the GPT-2 regex); other kinds are an error rather than a silently different tokenizer.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use tokenizers::Tokenizer;

use super::decoder::DecoderConfig;

/// Everything bftkit needs from a GGUF file.
pub(crate) struct GgufModel {
    pub config: DecoderConfig,
    /// Tensors under Hugging Face names, in the dtype asked for (`model.layers.0.self_attn.q_proj.weight`, ...).
    pub tensors: HashMap<String, Tensor>,
    /// Linear weights kept quantised (only with `keep_quantized`).
    pub quantized: super::decoder::Quantized,
    pub tokenizer: Tokenizer,
}

fn meta<'a>(c: &'a Content, key: &str, file: &str) -> Result<&'a Value> {
    c.metadata
        .get(key)
        .ok_or_else(|| anyhow::anyhow!("{file}: GGUF metadata has no '{key}'"))
}

fn as_usize(v: &Value) -> Result<usize> {
    Ok(match v {
        Value::U8(x) => *x as usize,
        Value::U16(x) => *x as usize,
        Value::U32(x) => *x as usize,
        Value::U64(x) => *x as usize,
        Value::I32(x) if *x >= 0 => *x as usize,
        Value::I64(x) if *x >= 0 => *x as usize,
        other => bail!("expected an unsigned integer, found {other:?}"),
    })
}

fn as_f64(v: &Value) -> Result<f64> {
    Ok(match v {
        Value::F32(x) => *x as f64,
        Value::F64(x) => *x,
        other => bail!("expected a float, found {other:?}"),
    })
}

/// Whole-model tensors, GGUF name ↔ Hugging Face name.
const GLOBAL: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];
/// Per-layer tensors (`blk.N.<gguf>.*` ↔ `model.layers.N.<hf>.*`).
const LAYER: &[(&str, &str)] = &[
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// Hugging Face name of a GGUF tensor (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`).
pub(crate) fn hf_name(name: &str) -> Option<String> {
    if let Some((_, hf)) = GLOBAL.iter().find(|(g, _)| *g == name) {
        return Some(hf.to_string());
    }
    let (layer, rest) = name.strip_prefix("blk.")?.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    let (_, hf) = LAYER.iter().find(|(g, _)| *g == part)?;
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// GGUF name of a Hugging Face tensor (the inverse of [`hf_name`]; test fixtures write GGUF).
pub(crate) fn gguf_name(name: &str) -> Option<String> {
    if let Some((g, _)) = GLOBAL.iter().find(|(_, hf)| *hf == name) {
        return Some(g.to_string());
    }
    let (layer, rest) = name.strip_prefix("model.layers.")?.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    let (g, _) = LAYER.iter().find(|(_, hf)| *hf == part)?;
    Some(format!("blk.{layer}.{g}.{kind}"))
}

/// llama.cpp's q/k row permutation for interleaved RoPE: rows (head, pair, i) → (head, i, pair).
/// `inverse` undoes it.
pub(crate) fn permute_rows(w: &Tensor, heads: usize, inverse: bool) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let hd = dims[0] / heads;
    let rest: usize = dims[1..].iter().product();
    let split = if inverse {
        (heads, hd / 2, 2, rest)
    } else {
        (heads, 2, hd / 2, rest)
    };
    Ok(w.reshape(split)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

/// [`permute_rows`]'s inverse on a quantised matrix, block data kept: quantisation blocks run
/// along a row, so each row's bytes move as they are. Returns the tensor on `device`.
fn permute_quantized_rows(q: &QTensor, heads: usize, device: &Device) -> Result<QTensor> {
    let dims = q.shape().dims().to_vec();
    let dt = q.dtype();
    let (rows, cols) = match dims[..] {
        [rows, cols] if cols % dt.block_size() == 0 => (rows, cols),
        _ => bail!("{dims:?} is not a matrix of whole {dt:?} blocks per row"),
    };
    let row_bytes = cols / dt.block_size() * dt.type_size();
    let data = q.data()?;
    let bytes = Tensor::from_slice(&data, (rows, row_bytes), &Device::Cpu)?;
    let moved: Vec<u8> = permute_rows(&bytes, heads, true)?
        .flatten_all()?
        .to_vec1()?;
    Ok(QTensor::new(
        QStorage::from_data(std::borrow::Cow::Owned(moved), device, dt)?,
        dims,
    )?)
}

/// Rebuilds the file's byte-level BPE tokenizer as a Hugging Face `tokenizer.json`.
fn tokenizer(c: &Content, file: &str) -> Result<Tokenizer> {
    let model = meta(c, "tokenizer.ggml.model", file)?.to_string()?;
    if model != "gpt2" {
        bail!("{file}: tokenizer model '{model}' is not supported (only byte-level BPE, 'gpt2')");
    }
    let pre = match c.metadata.get("tokenizer.ggml.pre") {
        Some(v) => v.to_string()?.clone(),
        None => "default".into(),
    };
    let byte_level = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
    });
    let pre_tokenizer = match pre.as_str() {
        "gpt2" | "default" => byte_level.clone(),
        "smollm" | "starcoder" | "refact" => serde_json::json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]
        }),
        other => bail!("{file}: pre-tokenizer '{other}' is not supported yet"),
    };
    let tokens = meta(c, "tokenizer.ggml.tokens", file)?.to_vec()?;
    let types = c
        .metadata
        .get("tokenizer.ggml.token_type")
        .map(|v| v.to_vec())
        .transpose()?;
    let merges = meta(c, "tokenizer.ggml.merges", file)?.to_vec()?;
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, t) in tokens.iter().enumerate() {
        let t = t.to_string()?;
        vocab.insert(t.clone(), serde_json::json!(id));
        // Token type 3 = control (special) tokens, 4 = user-defined: matched before BPE.
        let kind = types.and_then(|ty| ty.get(id)).map(|v| match v {
            Value::I32(x) => *x,
            _ => 1,
        });
        if matches!(kind, Some(3) | Some(4)) {
            added.push(serde_json::json!({
                "id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": kind == Some(3)
            }));
        }
    }
    let merges: Vec<String> = merges
        .iter()
        .map(|m| m.to_string().cloned())
        .collect::<candle_core::Result<_>>()?;
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "vocab": vocab, "merges": merges
        }
    });
    json.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| anyhow::anyhow!("{file}: cannot build the tokenizer from GGUF metadata ({e})"))
}

/// Checks that tensor `name`'s shape and type fit in the file (a file of `file_size` bytes)
/// before its data is allocated: element count and byte size without overflow, and its bytes
/// within the file. (The GGUF reader computes them unchecked.)
fn check_tensor_extent(c: &Content, name: &str, file_size: u64) -> Result<()> {
    let info = &c.tensor_infos[name];
    let dims = info.shape.dims();
    let elems = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("shape {dims:?} has more elements than can be addressed"))?;
    if elems == 0 {
        // (No model has one; the reader would also build a slice from a dangling pointer.)
        bail!("shape {dims:?} has no elements");
    }
    let block = info.ggml_dtype.block_size();
    if !elems.is_multiple_of(block) {
        bail!("{elems} elements are not whole blocks of {block}");
    }
    let bytes = (elems / block)
        .checked_mul(info.ggml_dtype.type_size())
        .with_context(|| format!("shape {dims:?} has more bytes than can be addressed"))?;
    let end = c
        .tensor_data_offset
        .checked_add(info.offset)
        .and_then(|start| start.checked_add(bytes as u64));
    match end {
        Some(end) if end <= file_size => Ok(()),
        _ => bail!(
            "{bytes} bytes at offset {} + {} lie beyond the file's {file_size} bytes",
            c.tensor_data_offset,
            info.offset
        ),
    }
}

/// Reads a GGUF file: configuration, dequantised tensors, tokenizer.
pub(crate) fn load(
    path: &Path,
    device: &Device,
    dtype: DType,
    keep_quantized: bool,
) -> Result<GgufModel> {
    let file = path.display().to_string();
    let mut reader = std::fs::File::open(path).with_context(|| format!("{file}: cannot open"))?;
    let c =
        Content::read(&mut reader).map_err(|e| anyhow::anyhow!("{file}: not a GGUF file ({e})"))?;
    let arch = meta(&c, "general.architecture", &file)?
        .to_string()?
        .clone();
    if arch != "llama" && arch != "qwen2" {
        bail!("{file}: architecture '{arch}' is not supported (llama, qwen2)");
    }
    let key = |k: &str| format!("{arch}.{k}");
    let get = |k: &str| meta(&c, &key(k), &file).and_then(as_usize);
    let hidden = get("embedding_length")?;
    let heads = get("attention.head_count")?;
    let kv_heads = get("attention.head_count_kv").unwrap_or(heads);
    let tokens = meta(&c, "tokenizer.ggml.tokens", &file)?.to_vec()?.len();
    let config = DecoderConfig {
        model_type: arch.clone(),
        vocab_size: get("vocab_size").unwrap_or(tokens),
        hidden_size: hidden,
        intermediate_size: get("feed_forward_length")?,
        num_hidden_layers: get("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv_heads),
        head_dim: get("rope.dimension_count")
            .ok()
            .filter(|&d| d != hidden / heads),
        rms_norm_eps: meta(&c, &key("attention.layer_norm_rms_epsilon"), &file).and_then(as_f64)?,
        rope_theta: meta(&c, &key("rope.freq_base"), &file)
            .and_then(as_f64)
            .unwrap_or(10_000.0),
        rope_scaling: None,
        rope_parameters: None,
        max_position_embeddings: get("context_length")?,
        tie_word_embeddings: !c.tensor_infos.contains_key("output.weight"),
        attention_bias: false,
    };
    config
        .check()
        .with_context(|| format!("{file}: invalid model metadata"))?;
    let file_size = reader
        .metadata()
        .with_context(|| format!("{file}: cannot read"))?
        .len();
    let mut tensors = HashMap::new();
    let mut quantized = HashMap::new();
    for (name, info) in &c.tensor_infos {
        let Some(hf) = hf_name(name) else { continue };
        let permuted = arch == "llama" && (name.contains(".attn_q.") || name.contains(".attn_k."));
        let block_linear = hf.starts_with("model.layers.") && hf.ends_with("_proj.weight");
        let dense = matches!(
            info.ggml_dtype,
            candle_core::quantized::GgmlDType::F32
                | candle_core::quantized::GgmlDType::F16
                | candle_core::quantized::GgmlDType::BF16
        );
        if keep_quantized && block_linear && !dense {
            let q = (|| -> Result<_> {
                check_tensor_extent(&c, name, file_size)?;
                if !permuted {
                    return Ok(c.tensor(&mut reader, name, device)?);
                }
                let q = c.tensor(&mut reader, name, &Device::Cpu)?;
                let heads = if name.contains(".attn_q.") {
                    heads
                } else {
                    kv_heads
                };
                permute_quantized_rows(&q, heads, device)
            })()
            .with_context(|| format!("{file}: tensor '{name}'"))?;
            quantized.insert(hf, std::sync::Arc::new(q));
            continue;
        }
        let mut read = || -> Result<Tensor> {
            check_tensor_extent(&c, name, file_size)?;
            let q = c.tensor(&mut reader, name, device)?;
            let t = q.dequantize(device)?;
            let t = match arch.as_str() {
                "llama" if name.contains(".attn_q.") => permute_rows(&t, heads, true)?,
                "llama" if name.contains(".attn_k.") => permute_rows(&t, kv_heads, true)?,
                _ => t,
            };
            // One tensor at a time: no f32 copy of the model stays behind.
            Ok(t.to_dtype(dtype)?)
        };
        let t = read().with_context(|| format!("{file}: tensor '{name}'"))?;
        tensors.insert(hf, t);
    }
    Ok(GgufModel {
        tokenizer: tokenizer(&c, &file)?,
        config,
        tensors,
        quantized,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::VarBuilder;

    fn logits(cfg: &DecoderConfig, tensors: HashMap<String, Tensor>) -> Tensor {
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let dec = super::super::Decoder::load(vb, cfg).unwrap();
        let ids = Tensor::new(&[[1u32, 5, 9, 3, 22, 7]], &Device::Cpu).unwrap();
        dec.logits(&dec.forward_hidden(&ids).unwrap()).unwrap()
    }

    #[test]
    fn gguf_and_hf_weights_give_the_same_logits() {
        for kind in ["llama", "qwen2"] {
            let dir = tempfile::tempdir().unwrap();
            crate::fixtures::write_tiny_decoder(dir.path(), kind).unwrap();
            let gguf = dir.path().join("tiny.gguf");
            crate::fixtures::write_tiny_gguf(dir.path(), &gguf).unwrap();
            let cfg: DecoderConfig = serde_json::from_str(
                &std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
            )
            .unwrap();
            let hf = crate::model::weights::load_tensors(
                &[dir.path().join("model.safetensors")],
                &Device::Cpu,
                DType::F32,
            )
            .unwrap();
            let g = load(&gguf, &Device::Cpu, DType::F32, false).unwrap();
            assert_eq!(g.config.hidden_size, cfg.hidden_size);
            assert_eq!(
                g.config.tie_word_embeddings, cfg.tie_word_embeddings,
                "{kind}"
            );
            let (a, b) = (logits(&cfg, hf), logits(&g.config, g.tensors));
            let diff = crate::model::max_abs_diff(&a, &b).unwrap();
            assert!(diff < 1e-5, "{kind}: max |diff| {diff}");
        }
    }

    #[test]
    fn tokenizer_is_rebuilt_from_metadata() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_decoder(dir.path(), "llama").unwrap();
        let gguf = dir.path().join("tiny.gguf");
        crate::fixtures::write_tiny_gguf(dir.path(), &gguf).unwrap();
        let g = load(&gguf, &Device::Cpu, DType::F32, false).unwrap();
        let ids = |s: &str| g.tokenizer.encode(s, false).unwrap().get_ids().to_vec();
        // Merges: a b -> ab, Ġ a -> Ġa, ab c -> abc, Ġa b -> Ġab (ranks in that order).
        assert_eq!(ids("ab abc"), vec![5, 4, 7]);
        assert_eq!(
            ids("<|endoftext|>ab"),
            vec![0, 5],
            "control tokens match whole"
        );
        assert_eq!(ids("a12"), vec![1, 9, 10], "digits split one by one");
        assert_eq!(g.tokenizer.decode(&[5, 4, 7], false).unwrap(), "ab abc");
    }

    #[test]
    fn names_round_trip_and_permutation_inverts() {
        for hf in [
            "model.embed_tokens.weight",
            "model.layers.7.mlp.up_proj.weight",
            "lm_head.weight",
        ] {
            assert_eq!(hf_name(&gguf_name(hf).unwrap()).unwrap(), hf);
        }
        assert_eq!(
            hf_name("blk.0.attn_q.bias").unwrap(),
            "model.layers.0.self_attn.q_proj.bias"
        );
        assert!(hf_name("rope_freqs.weight").is_none());
        let w = Tensor::arange(0f32, 48.0, &Device::Cpu)
            .unwrap()
            .reshape((8, 6))
            .unwrap();
        let p = permute_rows(&w, 2, false).unwrap();
        assert_ne!(p.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        let back = permute_rows(&p, 2, true).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn quantised_rows_are_permuted_with_their_blocks() {
        use candle_core::quantized::GgmlDType;
        let cpu = Device::Cpu;
        // 4 heads of 8 rows, 64 columns: two q8_0 blocks per row.
        let w = Tensor::randn(0f32, 1.0, (32, 64), &cpu).unwrap();
        let in_file = permute_rows(&w, 4, false).unwrap();
        let q = QTensor::quantize(&in_file, GgmlDType::Q8_0).unwrap();
        let kept = permute_quantized_rows(&q, 4, &cpu).unwrap();
        assert_eq!(kept.dtype(), GgmlDType::Q8_0);
        let want = permute_rows(&q.dequantize(&cpu).unwrap(), 4, true).unwrap();
        let got = kept.dequantize(&cpu).unwrap();
        assert_eq!(crate::model::max_abs_diff(&got, &want).unwrap(), 0.0);
        assert!(crate::model::max_abs_diff(&got, &w).unwrap() < 0.05);
        let odd = QTensor::quantize(
            &Tensor::zeros((4, 32, 2), DType::F32, &cpu).unwrap(),
            GgmlDType::F32,
        )
        .unwrap();
        assert!(permute_quantized_rows(&odd, 2, &cpu).is_err());
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gguf");
        std::fs::write(&p, b"not a gguf").unwrap();
        let e = load(&p, &Device::Cpu, DType::F32, false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("x.gguf") && e.contains("not a GGUF file"), "{e}");
    }
}
