//! A Llama / Qwen2-family causal decoder on candle-nn that can be trained.
//!
//! Why not candle-transformers' models: their RMSNorm, softmax and RoPE are fused ops without a
//! backward pass (gradients silently stop; docs/dependencies.md), `llama::Llama::forward` returns only the
//! last position's logits, and Qwen2 keeps KV-cache state between calls. This decoder composes
//! every op from differentiable primitives and returns hidden states for every position
//! (`forward_hidden`) and logits for every position (`logits`). Grouped-query attention, SwiGLU,
//! Qwen2's q/k/v biases, tied embeddings and Llama-3 RoPE scaling follow the configuration.
//! Training pads on the right: with the causal mask, real tokens never see it. Generation
//! ([`Decoder::forward_cached`]) pads prompts on the left and masks the padding explicitly.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, Init, Linear, VarBuilder};

use super::lora::{AdaptedLinear, Dropout, Frozen, LoraConfig};
use serde::{Deserialize, Serialize};

/// The fields of a Hugging Face `config.json` this decoder reads (Llama and Qwen2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers ≥ 5 writes `rope_theta` and the scaling together as `rope_parameters`;
    /// [`DecoderConfig::read_json`] moves them into the two fields above.
    #[serde(default, skip_serializing)]
    pub rope_parameters: Option<RopeParameters>,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's optional q/k/v/o bias; Qwen2 always has q/k/v biases.
    #[serde(default)]
    pub attention_bias: bool,
}

fn default_theta() -> f64 {
    10_000.0
}

/// RoPE scaling as Hugging Face writes it (`rope_type` "default", "linear" or "llama3").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default = "one")]
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

/// `rope_parameters` of a transformers ≥ 5 config: the base and the scaling in one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(flatten)]
    pub scaling: RopeScaling,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}

/// The most layers a configuration may declare: far above any published model, and low enough
/// that a corrupt value is caught before anything is allocated for it.
pub(crate) const MAX_LAYERS: usize = 1024;

impl DecoderConfig {
    /// Parses a Hugging Face `config.json`, either layout: `rope_theta` / `rope_scaling` at the
    /// top (transformers < 5) or inside `rope_parameters` (transformers ≥ 5, which writes no
    /// top-level `rope_theta`: read naively, every such model would run with the default base
    /// 10,000 and write wrong text without an error).
    pub fn read_json(text: &str) -> serde_json::Result<Self> {
        let mut c: Self = serde_json::from_str(text)?;
        if let Some(p) = c.rope_parameters.take() {
            if let Some(theta) = p.rope_theta {
                c.rope_theta = theta;
            }
            if p.scaling.rope_type != "default" && c.rope_scaling.is_none() {
                c.rope_scaling = Some(p.scaling);
            }
        }
        Ok(c)
    }

    /// Refuses a configuration no model can have (zero or inconsistent sizes, absurd depth),
    /// before anything is allocated for it.
    pub fn check(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                anyhow::bail!("{name} is 0");
            }
        }
        if self.num_hidden_layers > MAX_LAYERS {
            anyhow::bail!(
                "num_hidden_layers {} is beyond any model (at most {MAX_LAYERS})",
                self.num_hidden_layers
            );
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            anyhow::bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        let kv = self.kv_heads();
        if kv == 0 || !self.num_attention_heads.is_multiple_of(kv) {
            anyhow::bail!(
                "num_key_value_heads {kv} does not divide num_attention_heads {}",
                self.num_attention_heads
            );
        }
        if self.head_dim == Some(0) || !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            anyhow::bail!("head_dim or rms_norm_eps is not positive");
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            anyhow::bail!("rope_theta {} is not a positive number", self.rope_theta);
        }
        if let Some(r) = &self.rope_scaling {
            if !["default", "linear", "llama3"].contains(&r.rope_type.as_str()) {
                anyhow::bail!(
                    "RoPE scaling '{}' is not supported (default, linear, llama3)",
                    r.rope_type
                );
            }
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }

    /// Rotary inverse frequencies, with the configured scaling applied.
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim();
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / d as f64))
            .collect();
        match &self.rope_scaling {
            Some(s) if s.rope_type == "linear" => base.iter().map(|f| f / s.factor).collect(),
            Some(s) if s.rope_type == "llama3" => {
                let orig = s.original_max_position_embeddings.unwrap_or(8192) as f64;
                let (low_wl, high_wl) = (orig / s.low_freq_factor, orig / s.high_freq_factor);
                base.iter()
                    .map(|&f| {
                        let wl = 2.0 * std::f64::consts::PI / f;
                        if wl < high_wl {
                            f
                        } else if wl > low_wl {
                            f / s.factor
                        } else {
                            let smooth = (orig / wl - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        }
                    })
                    .collect()
            }
            _ => base,
        }
    }
}

/// RMSNorm from differentiable ops, computed in f32.
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let var = x.sqr()?.mean_keepdim(D::Minus1)?;
    let y = x.broadcast_div(&(var + eps)?.sqrt()?)?;
    y.to_dtype(dtype)?.broadcast_mul(weight)
}

/// Hugging Face ("half-split") rotary embedding: x·cos + rotate_half(x)·sin, from composed ops.
/// x: (b, heads, t, d); cos, sin: (t, d/2), or (b, t, d/2) with a position per row.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let full = |c: &Tensor| -> Result<Tensor> {
        let c = Tensor::cat(&[c, c], D::Minus1)?;
        if c.rank() == 3 {
            c.unsqueeze(1)
        } else {
            Ok(c)
        }
    };
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(&full(cos)?)? + rotated.broadcast_mul(&full(sin)?)?
}

/// Which implementation of the decoder's ops runs: the fused ops with hand-written backward
/// passes ([`super::fused`]; the default), or candle's composed ops and autograd (the
/// reference they are tested against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ops {
    Fused,
    #[cfg_attr(not(test), allow(dead_code))]
    Composed,
}

fn linear(vb: VarBuilder, inp: usize, out: usize, bias: bool) -> Result<Linear> {
    if bias {
        candle_nn::linear(inp, out, vb)
    } else {
        candle_nn::linear_no_bias(inp, out, vb)
    }
}

struct Block {
    q: AdaptedLinear,
    k: AdaptedLinear,
    v: AdaptedLinear,
    o: AdaptedLinear,
    gate: AdaptedLinear,
    up: AdaptedLinear,
    down: AdaptedLinear,
    ln1: Tensor,
    ln2: Tensor,
}

impl Block {
    fn linears(&self) -> [(&'static str, &AdaptedLinear); 7] {
        [
            ("self_attn.q_proj", &self.q),
            ("self_attn.k_proj", &self.k),
            ("self_attn.v_proj", &self.v),
            ("self_attn.o_proj", &self.o),
            ("mlp.gate_proj", &self.gate),
            ("mlp.up_proj", &self.up),
            ("mlp.down_proj", &self.down),
        ]
    }

    fn linears_mut(&mut self) -> [(&'static str, &mut AdaptedLinear); 7] {
        [
            ("self_attn.q_proj", &mut self.q),
            ("self_attn.k_proj", &mut self.k),
            ("self_attn.v_proj", &mut self.v),
            ("self_attn.o_proj", &mut self.o),
            ("mlp.gate_proj", &mut self.gate),
            ("mlp.up_proj", &mut self.up),
            ("mlp.down_proj", &mut self.down),
        ]
    }
}

/// The decoder: token embedding, blocks, final norm and LM head.
/// Quantised linear weights under Hugging Face names.
pub type Quantized =
    std::collections::HashMap<String, std::sync::Arc<candle_core::quantized::QTensor>>;

pub struct Decoder {
    pub config: DecoderConfig,
    /// LoRA dropout probability (0 without adapters); used by training only.
    pub lora_dropout: f64,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Linear,
    /// Rotary inverse frequencies (1, head_dim / 2), f32.
    inv_freq: Tensor,
    /// The activations' dtype (that of the base weights).
    dtype: DType,
    ops: Ops,
}

impl Decoder {
    /// Builds the decoder from Hugging Face tensor names (`model.layers.N.self_attn.q_proj`, ...).
    pub fn load(vb: VarBuilder, cfg: &DecoderConfig) -> Result<Self> {
        Self::load_with_lora(vb, cfg, None)
    }

    /// Like [`Decoder::load`], adding LoRA adapters whose tensors come from the second
    /// VarBuilder (a VarMap for training, or saved adapter tensors).
    pub fn load_with_lora(
        vb: VarBuilder,
        cfg: &DecoderConfig,
        lora: Option<(&LoraConfig, VarBuilder)>,
    ) -> Result<Self> {
        Self::load_parts(vb, cfg, lora, &Quantized::new())
    }

    /// Like [`Decoder::load_with_lora`], the linear weights named in `quantized` (Hugging Face
    /// names) taken in their blocks instead of from `vb`.
    pub fn load_parts(
        vb: VarBuilder,
        cfg: &DecoderConfig,
        lora: Option<(&LoraConfig, VarBuilder)>,
        quantized: &Quantized,
    ) -> Result<Self> {
        let dtype = vb.dtype();
        let linear = |vb: VarBuilder, inp: usize, out: usize, bias: bool| -> Result<Frozen> {
            match quantized.get(&format!("{}.weight", vb.prefix())) {
                Some(q) => {
                    if q.shape().dims2()? != (out, inp) {
                        candle_core::bail!(
                            "{}.weight: {:?}, expected ({out}, {inp})",
                            vb.prefix(),
                            q.shape()
                        );
                    }
                    Ok(Frozen::Quantized {
                        weight: q.clone(),
                        bias: if bias {
                            Some(vb.get(out, "bias")?)
                        } else {
                            None
                        },
                        dtype,
                    })
                }
                None => linear(vb, inp, out, bias).map(Frozen::Dense),
            }
        };
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let m = vb.pp("model");
        let embed = candle_nn::embedding(cfg.vocab_size, h, m.pp("embed_tokens"))?;
        let ones = |vb: VarBuilder| vb.get_with_hints(h, "weight", Init::Const(1.0));
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = m.pp(format!("layers.{i}"));
            let a = l.pp("self_attn");
            let mlp = l.pp("mlp");
            let adapt = |base: Frozen, module: &str, group: &str| -> Result<AdaptedLinear> {
                match &lora {
                    Some((lc, lvb)) if lc.target_modules.iter().any(|t| t == module) => {
                        let name = format!("model.layers.{i}.{group}.{module}");
                        AdaptedLinear::with_adapter(base, lc, lvb, &name)
                            .map_err(|e| candle_core::Error::Msg(e.to_string()))
                    }
                    _ => Ok(AdaptedLinear {
                        base,
                        adapter: None,
                    }),
                }
            };
            let (inter, bias) = (cfg.intermediate_size, cfg.qkv_bias());
            blocks.push(Block {
                q: adapt(
                    linear(a.pp("q_proj"), h, nh * hd, bias)?,
                    "q_proj",
                    "self_attn",
                )?,
                k: adapt(
                    linear(a.pp("k_proj"), h, nkv * hd, bias)?,
                    "k_proj",
                    "self_attn",
                )?,
                v: adapt(
                    linear(a.pp("v_proj"), h, nkv * hd, bias)?,
                    "v_proj",
                    "self_attn",
                )?,
                o: adapt(
                    linear(a.pp("o_proj"), nh * hd, h, cfg.attention_bias)?,
                    "o_proj",
                    "self_attn",
                )?,
                gate: adapt(
                    linear(mlp.pp("gate_proj"), h, inter, false)?,
                    "gate_proj",
                    "mlp",
                )?,
                up: adapt(
                    linear(mlp.pp("up_proj"), h, inter, false)?,
                    "up_proj",
                    "mlp",
                )?,
                down: adapt(
                    linear(mlp.pp("down_proj"), inter, h, false)?,
                    "down_proj",
                    "mlp",
                )?,
                ln1: ones(l.pp("input_layernorm"))?,
                ln2: ones(l.pp("post_attention_layernorm"))?,
            });
        }
        let norm = ones(m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed.embeddings().clone(), None)
        } else {
            candle_nn::linear_no_bias(h, cfg.vocab_size, vb.pp("lm_head"))?
        };
        let inv: Vec<f32> = cfg.inv_freq().iter().map(|&f| f as f32).collect();
        let inv_freq = Tensor::from_vec(inv, (1, hd / 2), vb.device())?;
        let dtype = vb.dtype();
        Ok(Self {
            config: cfg.clone(),
            lora_dropout: lora.as_ref().map_or(0.0, |(l, _)| l.lora_dropout),
            embed,
            blocks,
            norm,
            lm_head,
            inv_freq,
            dtype,
            ops: Ops::Fused,
        })
    }

    /// Puts every dense frozen linear weight of the blocks into `q` blocks (QLoRA-style), freeing
    /// the dense copies. Errors name the first layer whose input size the block does not divide.
    pub fn quantize_base(&mut self, q: candle_core::quantized::GgmlDType) -> anyhow::Result<()> {
        for (i, blk) in self.blocks.iter_mut().enumerate() {
            for (name, lin) in blk.linears_mut() {
                if let Frozen::Dense(_) = lin.base {
                    lin.base = lin
                        .base
                        .quantize(q)
                        .map_err(|e| anyhow::anyhow!("model.layers.{i}.{name}: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// Bytes of the frozen linear weights as held (quantised blocks or dense).
    pub fn frozen_linear_bytes(&self) -> usize {
        self.blocks
            .iter()
            .flat_map(|b| b.linears())
            .map(|(_, l)| match &l.base {
                Frozen::Dense(d) => d.weight().elem_count() * d.weight().dtype().size_in_bytes(),
                Frozen::Quantized { weight, .. } => weight.storage_size_in_bytes(),
            })
            .sum()
    }

    /// The same decoder running candle's composed ops and autograd (the tests' reference).
    #[cfg(test)]
    pub(crate) fn composed(mut self) -> Self {
        self.ops = Ops::Composed;
        self
    }

    /// Rotary cos and sin, (n, head_dim / 2) each in the activations' dtype, for `positions`.
    /// Computed per call (n·head_dim values), so memory follows the run's sequences, not the
    /// model's maximum context (which configs put at 10^5 and beyond).
    fn rotary(&self, positions: &[u32]) -> Result<(Tensor, Tensor)> {
        let limit = self.config.max_position_embeddings;
        if let Some(&p) = positions.iter().max() {
            if p as usize >= limit {
                candle_core::bail!(
                    "position {p} is beyond the model's {limit} positions (max_position_embeddings)"
                );
            }
        }
        let n = positions.len();
        let pos: Vec<f32> = positions.iter().map(|&p| p as f32).collect();
        let pos = Tensor::from_vec(pos, (n, 1), self.inv_freq.device())?;
        let freqs = pos.matmul(&self.inv_freq)?; // (n, d/2)
        Ok((
            freqs.cos()?.to_dtype(self.dtype)?,
            freqs.sin()?.to_dtype(self.dtype)?,
        ))
    }

    pub fn device(&self) -> &Device {
        self.norm.device()
    }

    /// The dtype of activations (that of the weights).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Final (normed) hidden states for every position: ids (b, t) → (b, t, hidden).
    pub fn forward_hidden(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward_hidden_t(ids, None)
    }

    /// [`Decoder::forward_hidden`] for training: `dropout` (seeded) drives LoRA dropout.
    pub fn forward_hidden_t(&self, ids: &Tensor, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let (cos, sin, mask) = self.training_inputs(t)?;
        self.run(ids, &cos, &sin, &mask, None, dropout)
    }

    /// One step of incremental decoding. `ids` (b, t) are the new tokens, `positions` (b·t,
    /// row-major) their rotary positions, `mask` (b, 1, t, past + t) additive attention mask over the cached
    /// and new keys. The cache grows by `t`. Returns the final hidden states of the new tokens.
    pub fn forward_cached(
        &self,
        ids: &Tensor,
        positions: &[u32],
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if positions.len() != b * t {
            candle_core::bail!("{} positions for {b}×{t} tokens", positions.len());
        }
        let hd = self.config.head_dim();
        let (cos, sin) = self.rotary(positions)?;
        let (cos, sin) = (cos.reshape((b, t, hd / 2))?, sin.reshape((b, t, hd / 2))?);
        if cache.layers.len() != self.blocks.len() {
            cache.layers = vec![None; self.blocks.len()];
        }
        self.run(ids, &cos, &sin, mask, Some(cache), None)
    }

    /// The blocks and final norm, shared by training and cached generation.
    fn run(
        &self,
        ids: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        mut cache: Option<&mut KvCache>,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let mut x = self.embed.forward(ids)?; // (b, t, h)
        for i in 0..self.blocks.len() {
            let inputs = BlockInputs { cos, sin, mask };
            x = self.block(i, &x, &inputs, cache.as_deref_mut(), dropout.as_deref_mut())?;
        }
        self.final_norm(&x)
    }

    /// The token embeddings of `ids` (b, t) → (b, t, hidden).
    pub(crate) fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed.forward(ids)
    }

    /// The final RMSNorm.
    pub(crate) fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.norm_op(x, &self.norm)
    }

    pub(crate) fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    /// Rotary tables and causal mask for training on sequences of `t` tokens.
    pub(crate) fn training_inputs(&self, t: usize) -> Result<(Tensor, Tensor, Tensor)> {
        if t > self.config.max_position_embeddings {
            candle_core::bail!("sequence of {t} tokens exceeds max_position_embeddings");
        }
        let (cos, sin) = self.rotary(&(0..t as u32).collect::<Vec<_>>())?;
        let mask = Tensor::from_vec(causal_mask(t), (t, t), self.device())?.to_dtype(self.dtype)?;
        Ok((cos, sin, mask))
    }

    fn norm_op(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        match self.ops {
            Ops::Fused => super::fused::rms_norm(x, w, self.config.rms_norm_eps),
            Ops::Composed => rms_norm(x, w, self.config.rms_norm_eps),
        }
    }

    /// Decoder layer `i` on `x` (b, t, hidden). Gradient checkpointing runs the layers one at a
    /// time through this.
    pub(crate) fn block(
        &self,
        i: usize,
        x: &Tensor,
        inputs: &BlockInputs,
        cache: Option<&mut KvCache>,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let cfg = &self.config;
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.kv_heads(), cfg.head_dim());
        let BlockInputs { cos, sin, mask } = *inputs;
        let blk = &self.blocks[i];
        let fused = self.ops == Ops::Fused;
        let rotate = |x: &Tensor| {
            if fused {
                super::fused::rope(x, cos, sin)
            } else {
                rope(x, cos, sin)
            }
        };
        let y = self.norm_op(x, &blk.ln1)?;
        // LoRA dropout acts on each adapter's input, one mask per module, as in PEFT.
        let mut lin = |l: &AdaptedLinear, y: &Tensor| -> Result<Tensor> {
            if fused {
                l.forward_t(y, dropout.as_deref_mut())
            } else {
                l.forward_composed(y, dropout.as_deref_mut())
            }
        };
        let (q, k, v) = (lin(&blk.q, &y)?, lin(&blk.k, &y)?, lin(&blk.v, &y)?);
        let scale = 1.0 / (hd as f64).sqrt();
        if fused && cache.is_none() {
            // Training and full forward passes: the attention as one node.
            let heads = super::fused::Heads {
                q: nh,
                kv: nkv,
                dim: hd,
            };
            let att = super::fused::attention(&q, &k, &v, (cos, sin), mask, heads, scale)?;
            return self.mlp_residual(blk, x, &lin(&blk.o, &att)?, &mut lin);
        }
        let heads = |z: Tensor, n: usize| -> Result<Tensor> {
            z.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous() // (b, n, t, d)
        };
        let q = rotate(&heads(q, nh)?)?;
        let mut k = rotate(&heads(k, nkv)?)?;
        let mut v = heads(v, nkv)?;
        if let Some(c) = cache {
            if let Some((pk, pv)) = &c.layers[i] {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            c.layers[i] = Some((k.clone(), v.clone()));
        }
        let att = if fused {
            // Query heads grouped under their key/value head, (b, kv, rep·t, d): no copies of
            // the keys and values per query head.
            let rep = nh / nkv;
            let q = q.reshape((b, nkv, rep * t, hd))?;
            let mask = Tensor::cat(&vec![mask; rep], mask.rank() - 2)?;
            let p = super::fused::attention_probs(&q, &k, &mask, scale)?;
            p.matmul(&v)?.reshape((b, nh, t, hd))?
        } else {
            let (k, v) = (repeat_kv(k, nh / nkv)?, repeat_kv(v, nh / nkv)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
            let p = candle_nn::ops::softmax(&scores, D::Minus1)?;
            p.matmul(&v)?
        };
        let att = att.transpose(1, 2)?.reshape((b, t, nh * hd))?;
        self.mlp_residual(blk, x, &lin(&blk.o, &att)?, &mut lin)
    }

    /// The rest of a layer after its attention output `o`: `x + o`, then the MLP on its norm,
    /// added.
    fn mlp_residual(
        &self,
        blk: &Block,
        x: &Tensor,
        o: &Tensor,
        lin: &mut impl FnMut(&AdaptedLinear, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let x = (x + o)?;
        let y = self.norm_op(&x, &blk.ln2)?;
        let (gate, up) = (lin(&blk.gate, &y)?, lin(&blk.up, &y)?);
        let mlp = if self.ops == Ops::Fused {
            super::fused::swiglu(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        x + lin(&blk.down, &mlp)?
    }

    /// Logits for every position: hidden (b, t, h) → (b, t, vocab).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }

    /// The output projection (vocab, hidden): the token embeddings when they are tied.
    pub fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.weight()
    }

    /// Every weight under its Hugging Face name, adapters folded in, f32 (what `--merge` writes).
    pub fn merged_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![
            (
                "model.embed_tokens.weight".to_string(),
                self.embed.embeddings().clone(),
            ),
            ("model.norm.weight".to_string(), self.norm.clone()),
        ];
        if !self.config.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), self.lm_head.weight().clone()));
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.input_layernorm.weight"), blk.ln1.clone()));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                blk.ln2.clone(),
            ));
            for (name, lin) in blk.linears() {
                out.push((format!("{p}.{name}.weight"), lin.merged_weight()?));
                if let Some(b) = lin.base.bias() {
                    out.push((format!("{p}.{name}.bias"), b.clone()));
                }
            }
        }
        // Written as f32 whatever the compute dtype.
        out.into_iter()
            .map(|(n, t)| Ok((n, t.to_dtype(DType::F32)?)))
            .collect()
    }
}

/// What every layer of one forward pass shares: rotary tables and the additive attention mask.
#[derive(Clone, Copy)]
pub(crate) struct BlockInputs<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    pub mask: &'a Tensor,
}

/// Keys and values of every layer for the tokens seen so far (incremental decoding).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

/// Row surgery for continuous batching: rows (sequences) leave and join a running batch. Every
/// layer's keys and values are (b, kv, t, d); a row shorter than the batch is padded on the
/// left with zeros, which the caller masks.
impl KvCache {
    /// The cached positions (t), 0 when empty.
    pub(crate) fn len(&self) -> Result<usize> {
        match self.layers.first() {
            Some(Some((k, _))) => k.dim(2),
            _ => Ok(0),
        }
    }

    /// Keeps the rows `keep` (in that order); an empty `keep` empties the cache.
    pub(crate) fn keep_rows(&mut self, keep: &[u32]) -> Result<()> {
        if keep.is_empty() {
            self.layers.clear();
            return Ok(());
        }
        for layer in self.layers.iter_mut().flatten() {
            let idx = Tensor::new(keep, layer.0.device())?;
            *layer = (
                layer.0.index_select(&idx, 0)?,
                layer.1.index_select(&idx, 0)?,
            );
        }
        Ok(())
    }

    /// Drops the first `n` positions of every row (columns every row masks).
    pub(crate) fn drop_front(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        for layer in self.layers.iter_mut().flatten() {
            let t = layer.0.dim(2)?;
            *layer = (layer.0.narrow(2, n, t - n)?, layer.1.narrow(2, n, t - n)?);
        }
        Ok(())
    }

    /// Appends the rows of `other` below this cache's, padding the shorter of the two on the
    /// left to the longer's length; returns the columns added in front of (this cache's rows,
    /// `other`'s rows).
    pub(crate) fn append_rows(&mut self, other: KvCache) -> Result<(usize, usize)> {
        let (mine, theirs) = (self.len()?, other.len()?);
        if self.layers.is_empty() {
            *self = other;
            return Ok((0, 0));
        }
        let t = mine.max(theirs);
        let pad = |x: &Tensor, n: usize| -> Result<Tensor> {
            if n == 0 {
                return Ok(x.clone());
            }
            let (b, h, _, d) = x.dims4()?;
            let zeros = Tensor::zeros((b, h, n, d), x.dtype(), x.device())?;
            Tensor::cat(&[&zeros, x], 2)
        };
        for (a, b) in self.layers.iter_mut().zip(other.layers) {
            if let (Some(a), Some(b)) = (a.as_mut(), b) {
                let k = Tensor::cat(&[&pad(&a.0, t - mine)?, &pad(&b.0, t - theirs)?], 0)?;
                let v = Tensor::cat(&[&pad(&a.1, t - mine)?, &pad(&b.1, t - theirs)?], 0)?;
                *a = (k, v);
            }
        }
        Ok((t - mine, t - theirs))
    }
}

/// (b, kv, t, d) → (b, kv·n, t, d), each key/value head repeated for its `n` query heads.
/// The additive causal mask of `t` positions, row-major (t, t): 0 on and below the diagonal,
/// −∞ above.
pub(crate) fn causal_mask(t: usize) -> Vec<f32> {
    (0..t * t)
        .map(|i| {
            if i % t > i / t {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect()
}

fn repeat_kv(x: Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x);
    }
    let (b, kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, kv, n, t, d))?
        .reshape((b, kv * n, t, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn config(model_type: &str, tie: bool) -> DecoderConfig {
        serde_json::from_value(serde_json::json!({
            "model_type": model_type, "vocab_size": 40, "hidden_size": 16,
            "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "max_position_embeddings": 32, "tie_word_embeddings": tie,
            "sliding_window": 32, "max_window_layers": 2, "use_sliding_window": false,
            "hidden_act": "silu"
        }))
        .unwrap()
    }

    fn ids() -> Tensor {
        Tensor::new(
            &[[1u32, 5, 9, 3, 22, 7], [4, 4, 8, 30, 2, 11]],
            &Device::Cpu,
        )
        .unwrap()
    }

    /// Random weights: candle's own initialisers, then a random shift so norms are not all 1.
    fn random(cfg: &DecoderConfig) -> (VarMap, Decoder) {
        let vm = VarMap::new();
        let dec =
            Decoder::load(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu), cfg).unwrap();
        for (name, var) in vm.data().lock().unwrap().iter() {
            if name.ends_with("norm.weight") || name.ends_with("layernorm.weight") {
                let noise = var.as_tensor().randn_like(0.0, 0.2).unwrap();
                var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
            }
        }
        (vm, dec)
    }

    #[test]
    fn qwen2_matches_candle_transformers() {
        let cfg = config("qwen2", true);
        let (vm, dec) = random(&cfg);
        let ref_cfg: candle_transformers::models::qwen2::Config =
            serde_json::from_value(serde_json::json!({
                "vocab_size": 40, "hidden_size": 16, "intermediate_size": 24,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "max_position_embeddings": 32, "sliding_window": 32, "max_window_layers": 2,
                "tie_word_embeddings": true, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
                "use_sliding_window": false, "hidden_act": "silu"
            }))
            .unwrap();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let mut reference = candle_transformers::models::qwen2::Model::new(&ref_cfg, vb).unwrap();
        let want = reference.forward(&ids(), 0, None).unwrap();
        let got = dec.forward_hidden(&ids()).unwrap();
        let diff = crate::model::max_abs_diff(&want, &got).unwrap();
        assert!(diff < 1e-4, "max |diff| {diff}");
    }

    #[test]
    fn llama_matches_candle_transformers_last_logits() {
        let cfg = config("llama", false);
        let (vm, dec) = random(&cfg);
        let ref_cfg: candle_transformers::models::llama::LlamaConfig =
            serde_json::from_value(serde_json::json!({
                "hidden_size": 16, "intermediate_size": 24, "vocab_size": 40,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 32,
                "tie_word_embeddings": false
            }))
            .unwrap();
        let ref_cfg = ref_cfg.into_config(false);
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let reference = candle_transformers::models::llama::Llama::load(vb, &ref_cfg).unwrap();
        let mut cache = candle_transformers::models::llama::Cache::new(
            false,
            DType::F32,
            &ref_cfg,
            &Device::Cpu,
        )
        .unwrap();
        let want = reference.forward(&ids(), 0, &mut cache).unwrap(); // (b, vocab), last position
        let logits = dec.logits(&dec.forward_hidden(&ids()).unwrap()).unwrap();
        let got = logits.narrow(1, 5, 1).unwrap().squeeze(1).unwrap();
        let diff = crate::model::max_abs_diff(&want, &got).unwrap();
        assert!(diff < 1e-4, "max |diff| {diff}");
    }

    #[test]
    fn every_tensor_gets_a_gradient() {
        for (kind, tie) in [("qwen2", true), ("llama", false)] {
            let (vm, dec) = random(&config(kind, tie));
            let logits = dec.logits(&dec.forward_hidden(&ids()).unwrap()).unwrap();
            let loss = candle_nn::loss::cross_entropy(
                &logits.flatten_to(1).unwrap(),
                &ids().flatten_all().unwrap(),
            )
            .unwrap();
            let grads = loss.backward().unwrap();
            for (name, var) in vm.data().lock().unwrap().iter() {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{kind}: no gradient for {name}"));
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm > 0.0, "{kind}: zero gradient for {name}");
            }
        }
    }

    #[test]
    fn right_padding_does_not_change_real_tokens() {
        let (_, dec) = random(&config("qwen2", true));
        let short = Tensor::new(&[[1u32, 5, 9]], &Device::Cpu).unwrap();
        let padded = Tensor::new(&[[1u32, 5, 9, 0, 0, 0]], &Device::Cpu).unwrap();
        let a = dec.forward_hidden(&short).unwrap();
        let b = dec
            .forward_hidden(&padded)
            .unwrap()
            .narrow(1, 0, 3)
            .unwrap();
        let diff = crate::model::max_abs_diff(&a, &b).unwrap();
        assert!(diff < 1e-5, "{diff}");
    }

    /// transformers ≥ 5 writes the RoPE base and scaling inside `rope_parameters`; both layouts
    /// give the same configuration, and a scaling bftkit cannot compute is refused.
    #[test]
    fn both_config_layouts_give_the_same_rope() {
        let base = r#""model_type": "llama", "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "rms_norm_eps": 1e-6, "max_position_embeddings": 64"#;
        let old = format!(
            r#"{{{base}, "rope_theta": 500000.0, "rope_scaling": {{"rope_type": "llama3",
            "factor": 8.0, "original_max_position_embeddings": 8192}}}}"#
        );
        let new = format!(
            r#"{{{base}, "rope_parameters": {{"rope_theta": 500000.0, "rope_type": "llama3",
            "factor": 8.0, "original_max_position_embeddings": 8192}}}}"#
        );
        let (a, b) = (
            DecoderConfig::read_json(&old).unwrap(),
            DecoderConfig::read_json(&new).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(b.rope_theta, 500000.0);
        assert_eq!(a.inv_freq(), b.inv_freq());
        let plain = format!(
            r#"{{{base}, "rope_parameters": {{"rope_theta": 1e6, "rope_type": "default"}}}}"#
        );
        let c = DecoderConfig::read_json(&plain).unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling.is_none()), (1e6, true));
        let yarn =
            format!(r#"{{{base}, "rope_parameters": {{"rope_theta": 1e6, "rope_type": "yarn"}}}}"#);
        let e = DecoderConfig::read_json(&yarn)
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("'yarn' is not supported"), "{e}");
    }

    #[test]
    fn llama3_rope_scaling_changes_only_low_frequencies() {
        let mut cfg = config("llama", false);
        let base = cfg.inv_freq();
        cfg.rope_scaling = Some(RopeScaling {
            rope_type: "llama3".into(),
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: Some(64),
        });
        let scaled = cfg.inv_freq();
        assert_eq!(scaled[0], base[0], "highest frequency untouched");
        let last = base.len() - 1;
        assert!(
            (scaled[last] - base[last] / 8.0).abs() < 1e-12,
            "lowest frequency divided by factor"
        );
    }
}
