//! Reading a pretrained decoder from disk: a Hugging Face folder (`config.json`,
//! `tokenizer.json`, single or sharded safetensors) or a GGUF file, into its configuration,
//! named tensors and tokenizer. Building the model from them is `decoder`'s job.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
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

/// Loads every tensor of the given safetensors files onto `device`, floating-point tensors
/// converted to `dtype` (other element types kept).
///
/// Each tensor is read from its file on its own, into a buffer of its element type, converted
/// there and moved to `device`; host memory therefore holds the tensors loaded so far (none on a
/// GPU) plus one tensor in the file's type — no whole-file buffer, and no memory map whose touched
/// pages would count as resident until the end.
pub fn load_tensors(
    files: &[PathBuf],
    device: &Device,
    dtype: DType,
) -> Result<HashMap<String, Tensor>> {
    let mut all = HashMap::new();
    for f in files {
        read_safetensors(f, device, dtype, &mut all)
            .with_context(|| format!("{}: not a valid safetensors file", f.display()))?;
    }
    Ok(all)
}

fn read_safetensors(
    path: &Path,
    device: &Device,
    dtype: DType,
    into: &mut HashMap<String, Tensor>,
) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).context("cannot open")?;
    let file_len = file.metadata().context("cannot read")?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .context("shorter than its 8-byte header length")?;
    let header_len = u64::from_le_bytes(len);
    // The format's own bound on a header (100 MB), checked before allocating it.
    if header_len > 100_000_000 || 8 + header_len > file_len {
        bail!("header length {header_len} does not fit the file's {file_len} bytes");
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .context("cannot read the header")?;
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).context("invalid header")?;
    let mut infos = Vec::with_capacity(header.len());
    for (name, value) in header {
        if name != "__metadata__" {
            let info = safetensors::tensor::TensorInfo::deserialize(value)
                .with_context(|| format!("tensor '{name}': invalid header entry"))?;
            infos.push((name, info));
        }
    }
    // In file order: one forward pass over the disk.
    infos.sort_by_key(|(_, i)| i.data_offsets);
    let data_start = 8 + header_len;
    let data_len = infos
        .iter()
        .map(|(_, i)| i.data_offsets.1)
        .max()
        .unwrap_or(0) as u64;
    if data_start.checked_add(data_len) != Some(file_len) {
        bail!(
            "the header describes {data_len} bytes of tensors after its {data_start}, the file has {} (truncated?)",
            file_len.saturating_sub(data_start)
        );
    }
    for (name, info) in infos {
        let (start, end) = info.data_offsets;
        let shape = info.shape;
        let elems = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .with_context(|| format!("tensor '{name}': shape {shape:?} overflows"))?;
        let bits = elems.checked_mul(info.dtype.bitsize());
        if end < start || bits != Some(8 * (end - start)) {
            bail!(
                "tensor '{name}': {} bytes at {start}..{end} do not hold {shape:?} {:?}",
                end.saturating_sub(start),
                info.dtype
            );
        }
        file.seek(SeekFrom::Start(data_start + start as u64))?;
        let t = read_tensor(&mut file, info.dtype, elems, &shape, dtype)
            .with_context(|| format!("tensor '{name}'"))?;
        into.insert(name, t.to_device(device)?);
    }
    Ok(())
}

/// One tensor's little-endian data from `r`, as a CPU tensor: floating-point types converted to
/// `dtype`.
fn read_tensor(
    r: &mut impl std::io::Read,
    stored: safetensors::Dtype,
    elems: usize,
    shape: &[usize],
    dtype: DType,
) -> Result<Tensor> {
    use safetensors::Dtype as S;
    fn typed<T: bytemuck::Pod + candle_core::WithDType>(
        r: &mut impl std::io::Read,
        elems: usize,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let mut v = vec![T::zeroed(); elems];
        r.read_exact(bytemuck::cast_slice_mut(&mut v))
            .context("cannot read its data")?;
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dtype)?)
    }
    match stored {
        S::BF16 => typed::<half::bf16>(r, elems, shape, dtype),
        S::F16 => typed::<half::f16>(r, elems, shape, dtype),
        S::F32 => typed::<f32>(r, elems, shape, dtype),
        S::F64 => typed::<f64>(r, elems, shape, dtype),
        other => {
            let kept = match other {
                S::U8 => DType::U8,
                S::U32 => DType::U32,
                S::I64 => DType::I64,
                _ => bail!("element type {other:?} is not supported"),
            };
            let mut bytes = vec![0u8; elems * other.bitsize() / 8];
            r.read_exact(&mut bytes).context("cannot read its data")?;
            Ok(Tensor::from_raw_buffer(&bytes, kept, shape, &Device::Cpu)?)
        }
    }
}

/// A pretrained decoder as read from disk, before it becomes a [`super::decoder::Decoder`].
pub struct Pretrained {
    pub config: DecoderConfig,
    /// Tensors under Hugging Face names, floating-point ones in the dtype asked for.
    pub tensors: HashMap<String, Tensor>,
    /// Linear weights kept in a GGUF file's quantisation ([`load_pretrained_quantized`] only).
    pub quantized: super::decoder::Quantized,
    /// The tokenizer, with any padding setting removed (bftkit pads itself).
    pub tokenizer: Tokenizer,
}

/// Reads a decoder: a `.gguf` file, a folder holding one GGUF file (and no `config.json`), or a
/// Hugging Face folder (`config.json`, `tokenizer.json`, single or sharded safetensors), its
/// floating-point tensors in `dtype` (read straight into it: no copy in another dtype stays).
pub fn load_pretrained(path: &Path, device: &Device, dtype: DType) -> Result<Pretrained> {
    read_pretrained(path, device, dtype, false)
}

/// [`load_pretrained`], a GGUF file's quantised linear weights kept in their blocks (for LoRA over
/// a quantised base).
pub fn load_pretrained_quantized(path: &Path, device: &Device, dtype: DType) -> Result<Pretrained> {
    read_pretrained(path, device, dtype, true)
}

fn read_pretrained(
    path: &Path,
    device: &Device,
    dtype: DType,
    keep_quantized: bool,
) -> Result<Pretrained> {
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
            let g = super::gguf::load(&file, device, dtype, keep_quantized)?;
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
                tensors: load_tensors(&files, device, dtype)?,
                quantized: HashMap::new(),
                tokenizer,
            }
        }
    };
    pre.tokenizer.with_padding(None);
    Ok(pre)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of three tensors: bf16, f32 and u32.
    fn write_file(path: &Path) -> HashMap<String, Tensor> {
        let cpu = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (3, 5), &cpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let b = Tensor::randn(0f32, 1.0, (7,), &cpu).unwrap();
        let c = Tensor::new(&[1u32, 2, 3, 4], &cpu).unwrap();
        let map: HashMap<String, Tensor> = [("a", a), ("b", b), ("c", c)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        candle_core::safetensors::save(&map, path).unwrap();
        map
    }

    fn same(a: &Tensor, b: &Tensor) -> bool {
        a.dtype() == b.dtype()
            && a.dims() == b.dims()
            && a.flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
                == b.flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
    }

    #[test]
    fn safetensors_are_read_tensor_by_tensor_into_the_dtype_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let saved = write_file(&path);
        for dtype in [DType::BF16, DType::F32, DType::F16] {
            let got = load_tensors(std::slice::from_ref(&path), &Device::Cpu, dtype).unwrap();
            assert_eq!(got.len(), 3);
            for name in ["a", "b"] {
                let want = saved[name].to_dtype(dtype).unwrap();
                assert!(same(&got[name], &want), "{name} as {dtype:?}");
            }
            assert!(same(&got["c"], &saved["c"]), "integers keep their type");
        }
    }

    #[test]
    fn damaged_safetensors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write_file(&path);
        let bytes = std::fs::read(&path).unwrap();
        let err = |b: &[u8]| {
            std::fs::write(&path, b).unwrap();
            let e = load_tensors(std::slice::from_ref(&path), &Device::Cpu, DType::F32)
                .expect_err("an error");
            format!("{e:#}")
        };
        let e = err(&bytes[..bytes.len() - 4]);
        assert!(
            e.contains("model.safetensors") && e.contains("truncated"),
            "{e}"
        );
        let e = err(&bytes[..5]);
        assert!(e.contains("8-byte header length"), "{e}");
        let mut huge = bytes.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&huge).contains("header length"));
        // A shape that does not match its byte range: tensor "b" claims 8 floats in 7's bytes.
        let mut bad = bytes.clone();
        let at = bad.windows(3).position(|w| w == b"[7]").unwrap();
        bad[at + 1] = b'8';
        let e = err(&bad);
        assert!(e.contains("tensor 'b'") && e.contains("do not hold"), "{e}");
    }
}
