//! Language models: the trainable Llama/Qwen2-family decoder and its configuration.
//! Fine-tuning, generation (`generate`) and decoder embeddings all build on
//! [`decoder::Decoder`].

pub mod decoder;
pub mod generate;
pub mod gguf;
pub mod lora;

pub use decoder::{Decoder, DecoderConfig};

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

/// The compute device named by `spec`: `cpu`, `cuda` or `cuda:N` (CUDA needs a build with
/// `--features cuda`).
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let idx = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .with_context(|| format!("device '{s}': expected cuda:N"))?,
                None => 0,
            };
            if cfg!(feature = "cuda") {
                Device::new_cuda(idx).with_context(|| format!("device '{s}' is not available"))
            } else {
                bail!(
                    "device '{s}': this bftkit was built without CUDA; rebuild with \
                     `cargo build --release --features cuda`"
                )
            }
        }
        s => bail!("unknown device '{s}' (cpu, cuda, cuda:N)"),
    }
}

/// The weight and activation dtype named by `spec` (`f32`, `bf16`), or the device's default:
/// f32 on CPU, bf16 on CUDA.
pub fn parse_dtype(spec: Option<&str>, device: &Device) -> Result<candle_core::DType> {
    use candle_core::DType;
    match spec {
        None if device.is_cuda() => Ok(DType::BF16),
        None | Some("f32") => Ok(DType::F32),
        Some("bf16") => Ok(DType::BF16),
        Some(s) => bail!("unknown dtype '{s}' (f32, bf16)"),
    }
}

/// Largest absolute element-wise difference of two same-shaped tensors (parity checks).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    (a - b)?
        .abs()?
        .max_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_scalar::<f32>()
}

/// A pretrained decoder as read from disk, before it becomes a [`Decoder`].
pub struct Pretrained {
    pub config: DecoderConfig,
    /// f32 tensors under Hugging Face names.
    pub tensors: HashMap<String, Tensor>,
    /// The tokenizer, with any padding setting removed (bftkit pads itself).
    pub tokenizer: Tokenizer,
}

/// Reads a decoder: a `.gguf` file, a folder holding one GGUF file (and no `config.json`), or a
/// Hugging Face folder (`config.json`, `tokenizer.json`, single or sharded safetensors).
pub fn load_pretrained(path: &Path, device: &Device) -> Result<Pretrained> {
    let gguf = if path.is_file() {
        Some(path.to_path_buf())
    } else if path.is_dir() && !path.join("config.json").exists() {
        let found: Vec<_> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            })
            .collect();
        match found.len() {
            1 => found.into_iter().next(),
            0 => bail!("{}: no config.json and no GGUF file", path.display()),
            n => bail!("{}: {n} GGUF files; name the one to use", path.display()),
        }
    } else {
        None
    };
    let mut pre = match gguf {
        Some(file) => {
            let g = gguf::load(&file, device)?;
            Pretrained {
                config: g.config,
                tensors: g.tensors,
                tokenizer: g.tokenizer,
            }
        }
        None => {
            if !path.is_dir() {
                bail!("{}: model not found", path.display());
            }
            let cfg_path = path.join("config.json");
            let text = std::fs::read_to_string(&cfg_path)
                .with_context(|| format!("{}: cannot read", cfg_path.display()))?;
            let config: DecoderConfig = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a Llama/Qwen2 config", cfg_path.display()))?;
            if config.model_type != "llama" && config.model_type != "qwen2" {
                bail!(
                    "{}: model_type '{}' is not a supported decoder",
                    cfg_path.display(),
                    config.model_type
                );
            }
            let tok_path = path.join("tokenizer.json");
            let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| {
                anyhow::anyhow!("{}: cannot load tokenizer ({e})", tok_path.display())
            })?;
            let files = crate::embed::decoder::weight_files(path)?;
            Pretrained {
                config,
                tensors: crate::embed::decoder::load_tensors(&files, device)?,
                tokenizer,
            }
        }
    };
    pre.tokenizer.with_padding(None);
    Ok(pre)
}
