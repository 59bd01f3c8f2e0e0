//! LoRA adapters (Hu et al. 2021) on the decoder's linear layers: `y = x Wᵀ (+ b) + (α/r) · x Aᵀ Bᵀ`,
//! with the base W frozen, A Kaiming-initialised and B zero (so training starts from the base
//! model). Adapters are saved with PEFT's tensor names and an `adapter_config.json`.
//! Dropout (`lora_dropout`) acts on the adapter's input during training only, with masks drawn
//! from a seeded generator so that runs and resumed runs repeat exactly.
//! The frozen base may be quantised ([`Frozen::Quantized`], QLoRA-style): its blocks stay in
//! memory and are dequantised for each forward and backward use, one layer at a time.

use std::sync::Arc;

use anyhow::{bail, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// PEFT-compatible LoRA settings (`adapter_config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    /// Module names (`q_proj`, ..., `down_proj`) that get adapters.
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    /// The authors' setting: rank 16 on every linear layer.
    fn default() -> Self {
        Self {
            r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.0,
            target_modules: ALL_LINEAR.iter().map(|s| s.to_string()).collect(),
        }
    }
}

pub const ALL_LINEAR: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl LoraConfig {
    pub fn check(&self) -> Result<()> {
        if self.r == 0 {
            bail!("LoRA rank must be at least 1");
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            bail!("LoRA dropout must be in [0, 1), not {}", self.lora_dropout);
        }
        if let Some(m) = self
            .target_modules
            .iter()
            .find(|m| !ALL_LINEAR.contains(&m.as_str()))
        {
            bail!(
                "unknown LoRA target module '{m}' (known: {})",
                ALL_LINEAR.join(", ")
            );
        }
        Ok(())
    }

    pub fn scale(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }

    /// The `adapter_config.json` PEFT reads.
    pub fn peft_json(&self, base_model: &str) -> serde_json::Value {
        serde_json::json!({
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
            "r": self.r, "lora_alpha": self.lora_alpha, "lora_dropout": self.lora_dropout,
            "target_modules": self.target_modules, "bias": "none", "fan_in_fan_out": false,
            "inference_mode": false
        })
    }
}

/// How the frozen base weights of a LoRA run are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BaseQuant {
    /// A GGUF file's linear weights stay in its own quantisation; other models stay dense.
    #[default]
    Auto,
    /// Dense weights in the run's dtype (a GGUF file is dequantised at load).
    Dense,
    /// 8-bit blocks of 32 (8.5 bits per weight).
    #[value(name = "q8_0")]
    #[serde(rename = "q8_0")]
    Q8_0,
    /// 4-bit k-quant super-blocks of 256 (4.5 bits per weight).
    #[value(name = "q4_k")]
    #[serde(rename = "q4_k")]
    Q4K,
}

impl BaseQuant {
    /// The block format to quantise dense weights into, if any.
    pub fn ggml(self) -> Option<GgmlDType> {
        match self {
            Self::Q8_0 => Some(GgmlDType::Q8_0),
            Self::Q4K => Some(GgmlDType::Q4K),
            Self::Auto | Self::Dense => None,
        }
    }
}

/// A linear layer's frozen base: a dense weight (and bias), or a quantised weight dequantised to
/// `dtype` for each use.
#[derive(Debug, Clone)]
pub enum Frozen {
    Dense(Linear),
    Quantized {
        weight: Arc<QTensor>,
        bias: Option<Tensor>,
        dtype: DType,
    },
}

impl Frozen {
    /// The weight (out, in), dense in the run's dtype.
    pub fn weight(&self) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(l) => Ok(l.weight().clone()),
            Self::Quantized { weight, dtype, .. } => match dequantize_on_cpu(weight)? {
                Some(w) => w.to_dtype(*dtype),
                None => weight.dequantize(&weight.device())?.to_dtype(*dtype),
            },
        }
    }

    pub fn bias(&self) -> Option<&Tensor> {
        match self {
            Self::Dense(l) => l.bias(),
            Self::Quantized { bias, .. } => bias.as_ref(),
        }
    }

    /// (out, in).
    pub fn dims(&self) -> candle_core::Result<(usize, usize)> {
        match self {
            Self::Dense(l) => l.weight().dims2(),
            Self::Quantized { weight, .. } => weight.shape().dims2(),
        }
    }

    /// Whether the weight trains (full fine-tuning).
    fn trains(&self) -> bool {
        matches!(self, Self::Dense(l) if l.weight().track_op())
    }

    /// This weight in `q` blocks (its input size must be a multiple of the block size).
    pub fn quantize(&self, q: GgmlDType) -> Result<Self> {
        let (out, inp) = self.dims()?;
        if !inp.is_multiple_of(q.block_size()) {
            bail!(
                "{q:?} stores blocks of {} weights along the input; this layer's input has {inp}",
                q.block_size()
            );
        }
        let w = self.weight()?;
        let dtype = w.dtype();
        let host = w
            .to_device(&candle_core::Device::Cpu)?
            .to_dtype(DType::F32)?;
        let weight = QTensor::quantize_onto(&host, q, w.device())?;
        debug_assert_eq!(weight.shape().dims2()?, (out, inp));
        Ok(Self::Quantized {
            weight: Arc::new(weight),
            bias: self.bias().cloned(),
            dtype,
        })
    }
}

/// A CPU-resident quantised weight dequantised to f32 by blocks in parallel (candle's
/// `dequantize` runs on one thread, and a frozen base is dequantised twice a step: 1.8% of a
/// SmolLM2 training step's samples on the main thread while the other core waited). `None` for
/// other devices and formats: the caller dequantises the usual way.
fn dequantize_on_cpu(q: &QTensor) -> candle_core::Result<Option<Tensor>> {
    use candle_core::quantized::k_quants::{
        BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
        BlockQ6K, BlockQ8K, BlockQ8_0, GgmlType,
    };
    fn blocks<T: GgmlType>(bytes: &[u8], out: &mut [f32]) -> bool {
        use rayon::prelude::*;
        let n = out.len() / T::BLCK_SIZE;
        if n * T::BLCK_SIZE != out.len()
            || bytes.len() != n * std::mem::size_of::<T>()
            || !bytes.as_ptr().cast::<T>().is_aligned()
        {
            return false;
        }
        // SAFETY: `bytes` is the storage of a CPU QTensor of block type T (the caller matched its
        // dtype): `n` whole blocks, aligned for T (both checked above), alive for this call.
        let xs = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), n) };
        const PER_TASK: usize = 64;
        xs.par_chunks(PER_TASK)
            .zip(out.par_chunks_mut(PER_TASK * T::BLCK_SIZE))
            .for_each(|(x, y)| T::to_float(x, y));
        true
    }
    if !q.device().is_cpu() {
        return Ok(None);
    }
    let bytes = q.data()?;
    let mut out = vec![0f32; q.shape().elem_count()];
    let done = match q.dtype() {
        GgmlDType::Q4_0 => blocks::<BlockQ4_0>(&bytes, &mut out),
        GgmlDType::Q4_1 => blocks::<BlockQ4_1>(&bytes, &mut out),
        GgmlDType::Q5_0 => blocks::<BlockQ5_0>(&bytes, &mut out),
        GgmlDType::Q5_1 => blocks::<BlockQ5_1>(&bytes, &mut out),
        GgmlDType::Q8_0 => blocks::<BlockQ8_0>(&bytes, &mut out),
        GgmlDType::Q2K => blocks::<BlockQ2K>(&bytes, &mut out),
        GgmlDType::Q3K => blocks::<BlockQ3K>(&bytes, &mut out),
        GgmlDType::Q4K => blocks::<BlockQ4K>(&bytes, &mut out),
        GgmlDType::Q5K => blocks::<BlockQ5K>(&bytes, &mut out),
        GgmlDType::Q6K => blocks::<BlockQ6K>(&bytes, &mut out),
        GgmlDType::Q8K => blocks::<BlockQ8K>(&bytes, &mut out),
        _ => false,
    };
    if !done {
        return Ok(None);
    }
    Tensor::from_vec(out, q.shape(), &candle_core::Device::Cpu).map(Some)
}

/// A linear layer with an optional adapter.
#[derive(Debug, Clone)]
pub struct AdaptedLinear {
    pub base: Frozen,
    /// (A: (r, in), B: (out, r), scale)
    pub adapter: Option<(Tensor, Tensor, f64)>,
}

impl AdaptedLinear {
    /// Adds an adapter for the module at `name` (e.g. `model.layers.0.self_attn.q_proj`) whose
    /// tensors live in `vb` under PEFT's names.
    pub fn with_adapter(
        base: Frozen,
        cfg: &LoraConfig,
        vb: &VarBuilder,
        name: &str,
    ) -> Result<Self> {
        let (out, inp) = base.dims()?;
        let vb = vb.pp(format!("base_model.model.{name}"));
        let bound = 1.0 / (inp as f64).sqrt();
        let a = vb.get_with_hints(
            (cfg.r, inp),
            "lora_A.weight",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        let b = vb.get_with_hints((out, cfg.r), "lora_B.weight", Init::Const(0.0))?;
        Ok(Self {
            base,
            adapter: Some((a, b, cfg.scale())),
        })
    }

    /// W + scale · B A: the weight with the adapter folded in (in f32).
    pub fn merged_weight(&self) -> candle_core::Result<Tensor> {
        let w = self.base.weight()?.to_dtype(candle_core::DType::F32)?;
        match &self.adapter {
            None => Ok(w),
            Some((a, b, scale)) => w + (b.matmul(a)? * *scale)?,
        }
    }
}

/// Draws every `lora_A` matrix anew (Kaiming-uniform, as PEFT) from a generator seeded with
/// `seed`, in name order: candle's own initialiser is unseeded, which made runs differ.
pub fn seed_adapters(params: &[(String, candle_core::Var)], seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut names: Vec<&(String, candle_core::Var)> = params.iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in names {
        if !name.ends_with("lora_A.weight") {
            continue;
        }
        let (r, inp) = var.dims2()?;
        let bound = 1.0 / (inp as f64).sqrt();
        let values: Vec<f32> = (0..r * inp)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        let t = Tensor::from_vec(values, (r, inp), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// Seeded inverted dropout for adapter inputs (training only). Cloning it replays its masks
/// (gradient checkpointing recomputes a layer with the masks of its first pass).
#[derive(Clone)]
pub struct Dropout {
    pub p: f64,
    rng: ChaCha8Rng,
}

impl Dropout {
    pub fn new(p: f64, seed: u64) -> Self {
        Self {
            p,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// `x` with each element zeroed with probability p and the rest scaled by 1/(1-p).
    pub fn apply(&mut self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.mask(x.shape(), x.device())? {
            Some(m) => x * m.to_dtype(x.dtype())?,
            None => Ok(x.clone()),
        }
    }
}

impl Dropout {
    /// The next mask of `shape` (0 or 1/(1-p) per element), or `None` without dropout.
    pub fn mask(
        &mut self,
        shape: &candle_core::Shape,
        device: &candle_core::Device,
    ) -> candle_core::Result<Option<Tensor>> {
        if self.p <= 0.0 {
            return Ok(None);
        }
        let keep = 1.0 / (1.0 - self.p) as f32;
        let mask: Vec<f32> = (0..shape.elem_count())
            .map(|_| {
                if self.rng.random::<f64>() < self.p {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        Tensor::from_vec(mask, shape, device).map(Some)
    }
}

impl AdaptedLinear {
    /// The forward pass, with dropout on the adapter's input when `dropout` is given.
    ///
    /// A frozen base weight goes through one [`fused`](super::fused) node whose backward gives
    /// the input and the adapter their gradients and the frozen weight none: candle's autograd
    /// would compute a weight gradient for every frozen matrix (one per batch row, kept until the
    /// step ends — at batch 4 four f32 copies of the model) and keep the adapter's intermediates.
    /// A trainable weight (full fine-tuning) goes through plain autograd, the input flattened so
    /// its gradient is one matrix product.
    pub fn forward_t(
        &self,
        x: &Tensor,
        dropout: Option<&mut Dropout>,
    ) -> candle_core::Result<Tensor> {
        let w = self.base.weight()?;
        let dims = x.dims().to_vec();
        let (inp, out) = (dims[dims.len() - 1], w.dim(0)?);
        let mut out_dims = dims.clone();
        *out_dims.last_mut().expect("a linear input has dimensions") = out;
        let x2 = x.reshape(((), inp))?;
        let bias = self.base.bias().cloned();
        let with_bias = |y: Tensor| match &bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        };
        if self.base.trains() {
            let y = with_bias(x2.matmul(&w.t()?)?)?;
            let y = match &self.adapter {
                None => y,
                Some(ad) => (y + low_rank(&x2, ad, dropout)?.to_dtype(w.dtype())?)?,
            };
            return y.reshape(out_dims);
        }
        // The node takes `x` in its own shape and gives `y` in its shape: reshapes on the graph
        // would each cost the backward a zero-filled gradient and an addition.
        let xd = x2.detach();
        let base = with_bias(xd.matmul(&w.t()?)?)?;
        let dtype = w.dtype();
        // The backward takes the weight again: a quantised one is dequantised then, not kept.
        drop(w);
        let frozen = self.base.clone();
        let (in_dims, y_dims) = (dims, out_dims);
        let flat = move |g: &Tensor| g.reshape(((), out));
        let y = match &self.adapter {
            None => super::fused::attach(
                "linear",
                &[x],
                base.reshape(y_dims)?,
                Box::new(move |_, _, g| {
                    let dx = flat(g)?.matmul(&frozen.weight()?)?;
                    Ok(vec![Some(dx.reshape(in_dims.as_slice())?)])
                }),
            )?,
            Some((a, b, scale)) => {
                let mask = match dropout {
                    Some(d) => d.mask(xd.shape(), xd.device())?,
                    None => None,
                };
                let xa = dropped(xd.to_dtype(a.dtype())?, &mask)?;
                let low = (xa.matmul(&a.detach().t()?)? * *scale)?.matmul(&b.detach().t()?)?;
                let value = (base + low.to_dtype(dtype)?)?.reshape(y_dims)?;
                let s = *scale;
                super::fused::attach(
                    "lora-linear",
                    &[x, a, b],
                    value,
                    Box::new(move |args, _, g| {
                        let (x, a, b) = (&args[0].reshape(((), inp))?, args[1], args[2]);
                        let g = &flat(g)?;
                        let gf = g.to_dtype(a.dtype())?;
                        // The scale multiplies the (m, r) products, not the wide ones.
                        let gb = (gf.matmul(b)? * s)?; // (m, r)
                        let xa = dropped(x.to_dtype(a.dtype())?, &mask)?;
                        let dxa = dropped(gb.matmul(a)?, &mask)?;
                        let dx = (g.matmul(&frozen.weight()?)? + dxa.to_dtype(g.dtype())?)?
                            .reshape(in_dims.as_slice())?;
                        let da = gb.t()?.matmul(&xa)?;
                        let db = gf.t()?.matmul(&(xa.matmul(&a.t()?)? * s)?)?;
                        Ok(vec![Some(dx), Some(da), Some(db)])
                    }),
                )?
            }
        };
        Ok(y)
    }

    /// The forward pass from candle's composed ops and autograd: the reference the fused pass is
    /// tested against.
    pub(crate) fn forward_composed(
        &self,
        x: &Tensor,
        dropout: Option<&mut Dropout>,
    ) -> candle_core::Result<Tensor> {
        let y = match &self.base {
            Frozen::Dense(l) => l.forward(x)?,
            q => Linear::new(q.weight()?, q.bias().cloned()).forward(x)?,
        };
        match &self.adapter {
            None => Ok(y),
            Some(ad) => {
                let dtype = y.dtype();
                y + low_rank(x, ad, dropout)?.to_dtype(dtype)?
            }
        }
    }
}

/// `x ⊙ mask` (the dropout mask), or `x` without one.
fn dropped(x: Tensor, mask: &Option<Tensor>) -> candle_core::Result<Tensor> {
    match mask {
        Some(m) => x * m,
        None => Ok(x),
    }
}

/// `scale · dropout(x) Aᵀ Bᵀ` by composed ops; adapters stay f32 (AdamW needs it) under bf16
/// base weights.
fn low_rank(
    x: &Tensor,
    (a, b, scale): &(Tensor, Tensor, f64),
    dropout: Option<&mut Dropout>,
) -> candle_core::Result<Tensor> {
    let x = x.to_dtype(a.dtype())?;
    let x = match dropout {
        Some(d) => d.apply(&x)?,
        None => x,
    };
    x.broadcast_matmul(&a.t()?)?
        .broadcast_matmul(&b.t()?)?
        .affine(*scale, 0.0)
}

impl Module for AdaptedLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_t(x, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Decoder, DecoderConfig};
    use crate::train::loss::{LossConfig, LossVariant};
    use crate::train::step::{weighted_loss, Sample};
    use candle_core::{DType, Device};
    use candle_nn::{Optimizer, VarMap};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::model::max_abs_diff(a, b).unwrap()
    }

    #[test]
    fn adapters_train_alone_save_with_peft_names_and_merge_exactly() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_decoder(dir.path(), "llama").unwrap();
        let cfg: DecoderConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
                .unwrap();
        let base = crate::model::weights::load_tensors(
            &[dir.path().join("model.safetensors")],
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        let base_vb = || VarBuilder::from_tensors(base.clone(), DType::F32, &Device::Cpu);
        let lc = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
            ..LoraConfig::default()
        };
        lc.check().unwrap();
        let adapters = VarMap::new();
        let model = Decoder::load_with_lora(
            base_vb(),
            &cfg,
            Some((
                &lc,
                VarBuilder::from_varmap(&adapters, DType::F32, &Device::Cpu),
            )),
        )
        .unwrap();
        let plain = Decoder::load(base_vb(), &cfg).unwrap();
        let ids = Tensor::new(&[[2u32, 7, 9, 11, 3]], &Device::Cpu).unwrap();
        let logits = |m: &Decoder| m.logits(&m.forward_hidden(&ids).unwrap()).unwrap();
        assert!(
            max_diff(&logits(&model), &logits(&plain)) < 1e-6,
            "B = 0: starts at the base"
        );
        assert_eq!(
            adapters.all_vars().len(),
            2 * 2 * 3,
            "A and B per layer per target"
        );

        let samples = vec![Sample {
            tokens: vec![2, 7, 9, 11, 13, 17, 3],
            is_response: vec![false, false, true, true, true, true, true],
        }];
        let sft = LossConfig {
            variant: LossVariant::Sft,
            ..LossConfig::default()
        };
        let before = weighted_loss(&model, &samples, &sft)
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap();
        let mut opt = candle_nn::AdamW::new(
            adapters.all_vars(),
            candle_nn::ParamsAdamW {
                lr: 2e-2,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..20 {
            opt.backward_step(&weighted_loss(&model, &samples, &sft).unwrap().loss)
                .unwrap();
        }
        let after = weighted_loss(&model, &samples, &sft)
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap();
        assert!(after < 0.9 * before, "{before} -> {after}");
        // The base weights on disk and in memory are untouched; only adapters moved.
        let reread = crate::model::weights::load_tensors(
            &[dir.path().join("model.safetensors")],
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        for (name, t) in &base {
            assert_eq!(max_diff(t, &reread[name]), 0.0, "{name}");
        }
        assert!(
            max_diff(&logits(&model), &logits(&plain)) > 1e-3,
            "adapters changed the output"
        );

        // Saved adapters carry PEFT names and reload to the same model.
        let path = dir.path().join("adapter_model.safetensors");
        adapters.save(&path).unwrap();
        let saved = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert!(
            saved.contains_key("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")
        );
        assert!(saved.contains_key("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"));
        let reloaded = Decoder::load_with_lora(
            base_vb(),
            &cfg,
            Some((
                &lc,
                VarBuilder::from_tensors(saved, DType::F32, &Device::Cpu),
            )),
        )
        .unwrap();
        assert!(max_diff(&logits(&reloaded), &logits(&model)) < 1e-6);

        // Merging folds W + (α/r)·B·A into plain weights with the same outputs.
        let merged: std::collections::HashMap<String, Tensor> =
            model.merged_tensors().unwrap().into_iter().collect();
        let merged = Decoder::load(
            VarBuilder::from_tensors(merged, DType::F32, &Device::Cpu),
            &cfg,
        )
        .unwrap();
        assert!(max_diff(&logits(&merged), &logits(&model)) < 1e-5);
    }

    #[test]
    fn parallel_dequantisation_equals_candles_for_every_block_format() {
        let w = Tensor::randn(0f32, 1.0, (6, 512), &Device::Cpu).unwrap();
        for q in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::Q8K,
        ] {
            let qt = QTensor::quantize(&w, q).unwrap();
            let want = qt.dequantize(&Device::Cpu).unwrap();
            let got = dequantize_on_cpu(&qt).unwrap().expect("a CPU block format");
            assert_eq!(got.dims(), want.dims());
            assert_eq!(max_diff(&got, &want), 0.0, "{q:?}");
        }
        let f16 = QTensor::quantize(&w, GgmlDType::F16).unwrap();
        assert!(dequantize_on_cpu(&f16).unwrap().is_none());
    }

    #[test]
    fn config_is_checked_and_written_for_peft() {
        assert!(LoraConfig {
            r: 0,
            ..LoraConfig::default()
        }
        .check()
        .is_err());
        let bad = LoraConfig {
            target_modules: vec!["qkv".into()],
            ..LoraConfig::default()
        };
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("unknown LoRA target"));
        let d = LoraConfig::default();
        assert_eq!((d.r, d.target_modules.len(), d.scale()), (16, 7, 2.0));
        let j = d.peft_json("models/x");
        assert_eq!(j["peft_type"], "LORA");
        assert_eq!(j["r"], 16);
    }
}
