//! Reading a pretrained decoder from disk: a Hugging Face folder (`config.json`,
//! `tokenizer.json`, single or sharded safetensors) or a GGUF file, into its configuration,
//! named tensors and tokenizer. Building the model from them is `decoder`'s job.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use super::decoder::DecoderConfig;

/// The safetensors files of a Hugging Face folder (single file or index of shards).
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        bail!(
            "{}: no model.safetensors or model.safetensors.index.json",
            dir.display()
        );
    }
    let text = std::fs::read_to_string(&index)
        .with_context(|| format!("{}: cannot read", index.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid JSON", index.display()))?;
    let Some(map) = value.get("weight_map").and_then(|m| m.as_object()) else {
        bail!("{}: no weight_map", index.display());
    };
    let mut files: Vec<PathBuf> = map
        .values()
        .filter_map(|v| v.as_str())
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files.dedup();
    for f in &files {
        if !f.is_file() {
            bail!("{}: shard listed in the index is missing", f.display());
        }
    }
    Ok(files)
}

/// A fingerprint of the model at `path` (a GGUF file, or a folder): SHA-256 over the names and
/// sizes of its model files (`.json`, `.safetensors`, `.gguf`), the whole of its small files (configuration, tokenizer) and the first and
/// last MiB of each weight file. It tells whether a checkpoint was made from these weights
/// without reading gigabytes; moving the folder does not change it.
pub fn fingerprint(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    const WHOLE: u64 = 16 << 20;
    const EDGE: u64 = 1 << 20;
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot read", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().is_some_and(|e| {
                        ["json", "safetensors", "gguf"]
                            .iter()
                            .any(|x| e.eq_ignore_ascii_case(x))
                    })
            })
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    let mut hash = Sha256::new();
    for f in &files {
        let cannot = || format!("{}: cannot read", f.display());
        let mut file = std::fs::File::open(f).with_context(cannot)?;
        let len = file.metadata().with_context(cannot)?.len();
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        hash.update(name.unwrap_or_default().as_bytes());
        hash.update(len.to_le_bytes());
        let mut buf = Vec::new();
        if len <= WHOLE {
            file.read_to_end(&mut buf).with_context(cannot)?;
        } else {
            (&mut file)
                .take(EDGE)
                .read_to_end(&mut buf)
                .with_context(cannot)?;
            file.seek(SeekFrom::End(-(EDGE as i64)))
                .with_context(cannot)?;
            file.read_to_end(&mut buf).with_context(cannot)?;
        }
        hash.update(&buf);
    }
    Ok(format!("{:x}", hash.finalize()))
}

/// Reads a Hugging Face `tokenizer.json`. Invalid JSON is reported with its line and column;
/// and since the tokenizers library panics on some malformed (valid JSON) files instead of
/// returning an error, a panic there is caught and reported as an error naming the file.
pub fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    match std::panic::catch_unwind(|| text.parse::<Tokenizer>()) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => bail!("{}: not a tokenizer ({e})", path.display()),
        Err(_) => bail!(
            "{}: not a tokenizer (the tokenizers library failed on it)",
            path.display()
        ),
    }
}

/// Loads every tensor of the given safetensors files onto `device`.
pub fn load_tensors(files: &[PathBuf], device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut all = HashMap::new();
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("{}: cannot read", f.display()))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .with_context(|| format!("{}: not a valid safetensors file", f.display()))?;
        all.extend(tensors);
    }
    Ok(all)
}

/// A pretrained decoder as read from disk, before it becomes a [`super::decoder::Decoder`].
pub struct Pretrained {
    pub config: DecoderConfig,
    /// f32 tensors under Hugging Face names.
    pub tensors: HashMap<String, Tensor>,
    /// Linear weights kept in a GGUF file's quantisation ([`load_pretrained_quantized`] only).
    pub quantized: super::decoder::Quantized,
    /// The tokenizer, with any padding setting removed (bftkit pads itself).
    pub tokenizer: Tokenizer,
}

/// Reads a decoder: a `.gguf` file, a folder holding one GGUF file (and no `config.json`), or a
/// Hugging Face folder (`config.json`, `tokenizer.json`, single or sharded safetensors).
pub fn load_pretrained(path: &Path, device: &Device) -> Result<Pretrained> {
    read_pretrained(path, device, false)
}

/// [`load_pretrained`], a GGUF file's quantised linear weights kept in their blocks (for LoRA over
/// a quantised base).
pub fn load_pretrained_quantized(path: &Path, device: &Device) -> Result<Pretrained> {
    read_pretrained(path, device, true)
}

fn read_pretrained(path: &Path, device: &Device, keep_quantized: bool) -> Result<Pretrained> {
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
            let g = super::gguf::load(&file, device, keep_quantized)?;
            Pretrained {
                config: g.config,
                tensors: g.tensors,
                quantized: g.quantized,
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
            let config = DecoderConfig::read_json(&text)
                .with_context(|| format!("{}: not a Llama/Qwen2 config", cfg_path.display()))?;
            if config.model_type != "llama" && config.model_type != "qwen2" {
                bail!(
                    "{}: model_type '{}' is not a supported decoder",
                    cfg_path.display(),
                    config.model_type
                );
            }
            config
                .check()
                .with_context(|| format!("{}: invalid configuration", cfg_path.display()))?;
            let tok_path = path.join("tokenizer.json");
            let tokenizer = read_tokenizer(&tok_path)?;
            let files = weight_files(path)?;
            Pretrained {
                config,
                tensors: load_tensors(&files, device)?,
                quantized: HashMap::new(),
                tokenizer,
            }
        }
    };
    pre.tokenizer.with_padding(None);
    Ok(pre)
}
