//! One training step's loss on a decoder: teacher-forced log-probabilities of the gold tokens,
//! weighted by [`super::loss`] (docs/bft.md), as a differentiable scalar.
//!
//! The weights come from detached values (the log-probabilities are copied off the graph, weighed,
//! and multiplied back in as constants), so gradients flow only through `−log p`, exactly the
//! stop-gradient of the specification.
//!
//! Training runs [`loss_and_grads`]: the output layer's cross-entropy in chunks ([`super::ce`]),
//! which gives the gradient `G` of the weighted loss with respect to the final hidden states
//! directly; the body's gradients then come from one backward pass of `Σ hidden ⊙ G` (same
//! gradients, no logits on the graph). With gradient checkpointing only each layer's input is
//! kept, and the layers are recomputed one at a time in the backward pass. [`weighted_loss`]
//! is the same loss by plain autograd through the full logits: the reference the fast path is
//! tested against.

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var, D};

use super::loss::{sample_weights, LossConfig, SampleWeights};
use crate::model::decoder::BlockInputs;
use crate::model::lora::Dropout;
use crate::model::Decoder;

/// One tokenised training sample (a chat-templated conversation; see [`crate::model::chat`]).
pub use crate::model::chat::Tokenized as Sample;

/// The weighted loss of a micro-batch, and each sample's weights.
pub struct StepLoss {
    pub loss: Tensor,
    pub weights: Vec<SampleWeights>,
    /// Response tokens in the batch.
    pub tokens: usize,
}

/// A right-padded batch: inputs (b, t), and every response position as a flat row `r·t + j`
/// with its gold token, in sample order.
struct Padded {
    input: Tensor,
    t: usize,
    /// Per sample, its response positions j (position j predicts token j + 1).
    positions: Vec<Vec<usize>>,
    rows: Vec<u32>,
    targets: Vec<u32>,
}

fn pad(samples: &[Sample], device: &candle_core::Device) -> Result<Padded> {
    if samples.is_empty() {
        bail!("empty batch");
    }
    for (i, s) in samples.iter().enumerate() {
        if s.tokens.len() != s.is_response.len() || s.tokens.len() < 2 {
            bail!("sample {i}: needs at least 2 tokens and one response flag per token");
        }
    }
    let b = samples.len();
    let t = samples
        .iter()
        .map(|s| s.tokens.len() - 1)
        .max()
        .expect("non-empty");
    let mut input = vec![0u32; b * t];
    let (mut positions, mut rows, mut targets) = (Vec::with_capacity(b), Vec::new(), Vec::new());
    for (r, s) in samples.iter().enumerate() {
        let n = s.tokens.len() - 1;
        input[r * t..r * t + n].copy_from_slice(&s.tokens[..n]);
        let pos: Vec<usize> = (0..n).filter(|&j| s.is_response[j + 1]).collect();
        for &j in &pos {
            rows.push((r * t + j) as u32);
            targets.push(s.tokens[j + 1]);
        }
        positions.push(pos);
    }
    Ok(Padded {
        input: Tensor::from_vec(input, (b, t), device)?,
        t,
        positions,
        rows,
        targets,
    })
}

/// Teacher-forced gold-token log-probabilities of a right-padded batch through the full logits
/// (composed ops): the (b, t) tensor (on the graph) and, per sample, its response positions.
fn gold_logprobs(
    model: &Decoder,
    samples: &[Sample],
    dropout: Option<&mut Dropout>,
) -> Result<(Tensor, Vec<Vec<usize>>)> {
    let p = pad(samples, model.device())?;
    let (b, t) = (samples.len(), p.t);
    let mut target = vec![0u32; b * t];
    for (r, s) in samples.iter().enumerate() {
        let n = s.tokens.len() - 1;
        target[r * t..r * t + n].copy_from_slice(&s.tokens[1..]);
    }
    let target = Tensor::from_vec(target, (b, t, 1), model.device())?;
    let logits = model.logits(&model.forward_hidden_t(&p.input, dropout)?)?; // (b, t, v)
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    Ok((
        logp.gather(&target, D::Minus1)?.squeeze(D::Minus1)?,
        p.positions,
    )) // (b, t)
}

/// The response rows of the final hidden states (b, t, h), detached: (rows, h).
fn response_rows(hidden: &Tensor, p: &Padded) -> Result<(Tensor, Tensor)> {
    let (b, t, h) = hidden.dims3()?;
    let idx = Tensor::from_slice(&p.rows, p.rows.len(), hidden.device())?;
    let rows = hidden.detach().reshape((b * t, h))?.index_select(&idx, 0)?;
    Ok((idx, rows))
}

/// The model's log-probabilities of each sample's response tokens (no gradient), through the
/// chunked output layer.
pub fn response_logprobs(model: &Decoder, samples: &[Sample]) -> Result<Vec<Vec<f64>>> {
    let p = pad(samples, model.device())?;
    let hidden = model.forward_hidden(&p.input)?;
    let (_, rows) = response_rows(&hidden, &p)?;
    let lp = super::ce::gold_logprobs(model.lm_head_weight(), &rows, &p.targets, false)?.logp;
    let mut at = 0;
    Ok(p.positions
        .iter()
        .map(|pos| {
            let v = lp[at..at + pos.len()].iter().map(|&x| x as f64).collect();
            at += pos.len();
            v
        })
        .collect())
}

/// What a training step's micro-batch reports: its weighted loss (times the step's scale) and
/// each sample's weights.
pub struct StepStats {
    pub loss: f64,
    pub weights: Vec<SampleWeights>,
    /// Response tokens in the batch.
    pub tokens: usize,
}

/// Gradients of the trainable variables, in their order (`None`: no gradient reached it).
pub type Gradients = Vec<Option<Tensor>>;

/// Adds the gradients in `store` of each of `vars` to `acc`. Detached: a gradient computed from
/// forward tensors would otherwise keep their whole graph alive as long as it lives.
pub fn add_grads(acc: &mut Gradients, store: &GradStore, vars: &[Var]) -> Result<()> {
    acc.resize(vars.len(), None);
    for (slot, v) in acc.iter_mut().zip(vars) {
        if let Some(g) = store.get(v.as_tensor()).map(Tensor::detach) {
            *slot = Some(match slot.take() {
                Some(old) => (old + g)?,
                None => g,
            });
        }
    }
    Ok(())
}

/// The weighted loss of a micro-batch times `scale` (1 / the accumulation steps) and the
/// gradients of `vars`, through the chunked output layer; `checkpointing` keeps only each
/// layer's input and recomputes the layer in the backward pass. The gradients are `None` when
/// the loss is not finite (nothing was differentiated).
pub fn loss_and_grads(
    model: &Decoder,
    vars: &[Var],
    samples: &[Sample],
    cfg: &LossConfig,
    mut dropout: Option<&mut Dropout>,
    scale: f64,
    checkpointing: bool,
) -> Result<(StepStats, Option<Gradients>)> {
    cfg.check()?;
    let p = pad(samples, model.device())?;
    let b = samples.len();
    // Forward: the full graph, or (checkpointing) each layer's input and the dropout state
    // it started from.
    let mut saved: Vec<(Tensor, Option<Dropout>)> = Vec::new();
    let (cos, sin, mask) = model.training_inputs(p.t)?;
    let inputs = BlockInputs {
        cos: &cos,
        sin: &sin,
        mask: &mask,
    };
    let embedded = model.embed_tokens(&p.input)?;
    let (top, hidden) = if checkpointing {
        let mut x = embedded.detach();
        for i in 0..model.num_layers() {
            saved.push((x.clone(), dropout.as_deref().cloned()));
            x = model
                .block(i, &x, &inputs, None, dropout.as_deref_mut())?
                .detach();
        }
        let top = Var::from_tensor(&x)?;
        let hidden = model.final_norm(top.as_tensor())?;
        (Some(top), hidden)
    } else {
        let mut x = embedded.clone();
        for i in 0..model.num_layers() {
            x = model.block(i, &x, &inputs, None, dropout.as_deref_mut())?;
        }
        (None, model.final_norm(&x)?)
    };
    // The output layer, chunked: log-probabilities, then the weights, then G.
    let w = model.lm_head_weight();
    let (idx, rows) = response_rows(&hidden, &p)?;
    let ce = super::ce::gold_logprobs(w, &rows, &p.targets, true)?;
    let (mut factors, mut weights, mut at) = (Vec::with_capacity(p.rows.len()), Vec::new(), 0);
    for pos in &p.positions {
        let lp: Vec<f64> = ce.logp[at..at + pos.len()]
            .iter()
            .map(|&x| x as f64)
            .collect();
        at += pos.len();
        let sw = sample_weights(cfg, &lp);
        factors.extend(sw.token_factors(b).into_iter().map(|f| (f * scale) as f32));
        weights.push(sw);
    }
    let loss: f64 = -factors
        .iter()
        .zip(&ce.logp)
        .map(|(&f, &l)| f as f64 * l as f64)
        .sum::<f64>();
    let stats = StepStats {
        loss,
        weights,
        tokens: p.rows.len(),
    };
    if !loss.is_finite() {
        return Ok((stats, None));
    }
    let (bsz, t, h) = hidden.dims3()?;
    let f = Tensor::from_slice(&factors, (factors.len(), 1), hidden.device())?;
    let g_rows = ce
        .hidden_grad
        .expect("asked for")
        .broadcast_mul(&f)?
        .to_dtype(hidden.dtype())?;
    let g = Tensor::zeros((bsz * t, h), hidden.dtype(), hidden.device())?
        .index_add(&idx, &g_rows, 0)?
        .reshape((bsz, t, h))?;
    let mut surrogate = (&hidden * &g)?.sum_all()?;
    if w.track_op() {
        let dw = super::ce::weight_grad(w, &rows, &p.targets, &factors)?;
        surrogate = (surrogate + (w * dw)?.sum_all()?)?;
    }
    let mut grads = Gradients::new();
    let store = surrogate.backward()?;
    add_grads(&mut grads, &store, vars)?;
    if let Some(top) = top {
        // Backward through the layers one at a time, each recomputed from its saved input.
        let mut g = match store.get(top.as_tensor()) {
            Some(g) => g.detach(),
            None => top.as_tensor().zeros_like()?,
        };
        drop(store);
        for (i, (x, mut drop_state)) in saved.into_iter().enumerate().rev() {
            let x = Var::from_tensor(&x)?;
            let y = model.block(i, x.as_tensor(), &inputs, None, drop_state.as_mut())?;
            let store = (y * &g)?.sum_all()?.backward()?;
            add_grads(&mut grads, &store, vars)?;
            g = match store.get(x.as_tensor()) {
                Some(gx) => gx.detach(),
                None => x.as_tensor().zeros_like()?,
            };
        }
        if embedded.track_op() {
            let store = (&embedded * &g)?.sum_all()?.backward()?;
            add_grads(&mut grads, &store, vars)?;
        }
    }
    Ok((stats, Some(grads)))
}

/// Computes `L = (1/B) Σ_b s_b Σ_t w[b,t] l[b,t] / (N_b + ε)` for `samples` (right-padded into one
/// batch). Position t predicts token t+1, which counts when it is a response token.
pub fn weighted_loss(model: &Decoder, samples: &[Sample], cfg: &LossConfig) -> Result<StepLoss> {
    weighted_loss_t(model, samples, cfg, None)
}

/// [`weighted_loss`] in training mode: `dropout` drives LoRA dropout (the BFT weights then come
/// from the same forward pass, as in the authors' training).
pub fn weighted_loss_t(
    model: &Decoder,
    samples: &[Sample],
    cfg: &LossConfig,
    dropout: Option<&mut Dropout>,
) -> Result<StepLoss> {
    cfg.check()?;
    let (gold, positions) = gold_logprobs(model, samples, dropout)?;
    let (b, t) = gold.dims2()?;
    // Detached copy for the weights.
    let values: Vec<Vec<f32>> = gold.detach().to_vec2()?;
    let mut factors = vec![0f32; b * t];
    let mut weights = Vec::with_capacity(b);
    let mut tokens = 0;
    for (r, pos) in positions.iter().enumerate() {
        let lp: Vec<f64> = pos.iter().map(|&j| values[r][j] as f64).collect();
        let w = sample_weights(cfg, &lp);
        for (&j, f) in pos.iter().zip(w.token_factors(b)) {
            factors[r * t + j] = f as f32;
        }
        tokens += pos.len();
        weights.push(w);
    }
    let factors = Tensor::from_vec(factors, (b, t), gold.device())?;
    let loss = (gold * factors)?.sum_all()?.neg()?;
    Ok(StepLoss {
        loss,
        weights,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::loss::{BftMode, LossVariant};
    use candle_core::Device;
    use candle_nn::{Optimizer, VarBuilder, VarMap};

    fn batch() -> Vec<Sample> {
        let s = |tokens: Vec<u32>, prompt: usize| Sample {
            is_response: (0..tokens.len()).map(|i| i >= prompt).collect(),
            tokens,
        };
        vec![
            s(vec![2, 7, 9, 11, 13, 17, 19, 3], 3),
            s(vec![2, 8, 10, 12, 14, 3], 2),
            s(vec![2, 5, 6, 7, 8, 9, 10, 11, 12, 3], 4),
        ]
    }

    fn model() -> (VarMap, Decoder) {
        let cfg: crate::model::DecoderConfig = serde_json::from_value(serde_json::json!({
            "model_type": "qwen2", "vocab_size": 24, "hidden_size": 16, "intermediate_size": 24,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6, "max_position_embeddings": 32, "tie_word_embeddings": true
        }))
        .unwrap();
        let vm = VarMap::new();
        let dec =
            Decoder::load(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu), &cfg).unwrap();
        // Seeded, Hugging Face-like initialisation: N(0, 0.02) weights, unit norms.
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let normal = rand_distr::Normal::new(0.0f32, 0.02).unwrap();
        let data = vm.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let n = var.elem_count();
            let values: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else {
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            };
            var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
        drop(data);
        (vm, dec)
    }

    /// Loss and gradients of `vars` by the reference (composed ops, full logits, autograd).
    fn reference(
        dec: &Decoder,
        vars: &[Var],
        cfg: &LossConfig,
        dropout: Option<Dropout>,
    ) -> (f64, Vec<Tensor>) {
        let mut dropout = dropout;
        let out = weighted_loss_t(dec, &batch(), cfg, dropout.as_mut()).unwrap();
        let store = out.loss.backward().unwrap();
        let loss = out.loss.to_scalar::<f32>().unwrap() as f64;
        let grads = vars
            .iter()
            .map(|v| store.get(v.as_tensor()).unwrap().clone())
            .collect();
        (loss, grads)
    }

    fn assert_same(
        what: &str,
        (loss, want): &(f64, Vec<Tensor>),
        dec: &Decoder,
        vars: &[Var],
        cfg: &LossConfig,
        dropout: Option<Dropout>,
    ) {
        for checkpointing in [false, true] {
            let mut dropout = dropout.clone();
            let (stats, got) = loss_and_grads(
                dec,
                vars,
                &batch(),
                cfg,
                dropout.as_mut(),
                1.0,
                checkpointing,
            )
            .unwrap();
            let got = got.unwrap();
            assert!(
                (stats.loss - loss).abs() < 1e-6 * loss.abs().max(1.0),
                "{what}, checkpointing {checkpointing}: loss {} vs {loss}",
                stats.loss
            );
            let mut worst = 0f32;
            for (g, w) in got.iter().zip(want) {
                let g = g.as_ref().expect("every variable gets a gradient");
                worst = worst.max(crate::model::max_abs_diff(g, w).unwrap());
            }
            assert!(
                worst < 1e-5,
                "{what}, checkpointing {checkpointing}: gradients differ by {worst}"
            );
        }
    }

    #[test]
    fn fused_chunked_and_checkpointed_gradients_equal_autograd_through_composed_ops() {
        let cfg = LossConfig {
            variant: LossVariant::Bft,
            mode: BftMode::Official,
            window: 3,
            gamma: 1.0,
        };
        // Full fine-tuning: every weight trains, the tied embedding through both its uses.
        let (vm, dec) = model();
        let vars = vm.all_vars();
        let composed = Decoder::load(
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
            &dec.config,
        )
        .unwrap()
        .composed();
        let want = reference(&composed, &vars, &cfg, None);
        assert_same("full", &want, &dec, &vars, &cfg, None);

        // LoRA with dropout on a frozen base: adapters only, B non-zero so A gets a gradient.
        let base: std::collections::HashMap<String, Tensor> = vm
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let lc = crate::model::lora::LoraConfig {
            r: 2,
            lora_alpha: 4.0,
            lora_dropout: 0.2,
            ..Default::default()
        };
        let adapters = VarMap::new();
        let load = || {
            Decoder::load_with_lora(
                VarBuilder::from_tensors(base.clone(), DType::F32, &Device::Cpu),
                &dec.config,
                Some((
                    &lc,
                    VarBuilder::from_varmap(&adapters, DType::F32, &Device::Cpu),
                )),
            )
            .unwrap()
        };
        let lora = load();
        let named = adapters.data().lock().unwrap().clone();
        for (i, (_, v)) in named.iter().enumerate() {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
            let values: Vec<f32> = (0..v.elem_count())
                .map(|_| rng.random_range(-0.3..0.3))
                .collect();
            v.set(&Tensor::from_vec(values, v.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
        let vars: Vec<Var> = named.values().cloned().collect();
        let dropout = Some(Dropout::new(0.2, 11));
        let want = reference(&load().composed(), &vars, &cfg, dropout.clone());
        assert_same("lora", &want, &lora, &vars, &cfg, dropout);
    }

    #[test]
    fn a_quantised_base_trains_adapters_whose_gradients_match_finite_differences() {
        use crate::model::lora::LoraConfig;
        use candle_core::quantized::GgmlDType;
        // Input sizes of 32 and 64: whole q8_0 blocks.
        let cfg: crate::model::DecoderConfig = serde_json::from_value(serde_json::json!({
            "model_type": "llama", "vocab_size": 24, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6, "max_position_embeddings": 32, "tie_word_embeddings": true
        }))
        .unwrap();
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let base_vm = VarMap::new();
        Decoder::load(
            VarBuilder::from_varmap(&base_vm, DType::F32, &Device::Cpu),
            &cfg,
        )
        .unwrap();
        let base: std::collections::HashMap<String, Tensor> = base_vm
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let n = v.elem_count();
                let values: Vec<f32> = if k.ends_with("norm.weight") {
                    vec![1.0; n]
                } else {
                    (0..n).map(|_| rng.random_range(-0.2..0.2)).collect()
                };
                (
                    k.clone(),
                    Tensor::from_vec(values, v.shape(), &Device::Cpu).unwrap(),
                )
            })
            .collect();
        let lc = LoraConfig {
            r: 2,
            lora_alpha: 4.0,
            ..Default::default()
        };
        let adapters = VarMap::new();
        let load = || {
            Decoder::load_with_lora(
                VarBuilder::from_tensors(base.clone(), DType::F32, &Device::Cpu),
                &cfg,
                Some((
                    &lc,
                    VarBuilder::from_varmap(&adapters, DType::F32, &Device::Cpu),
                )),
            )
            .unwrap()
        };
        let mut quantised = load();
        quantised.quantize_base(GgmlDType::Q8_0).unwrap();
        let dense_bytes = load().frozen_linear_bytes();
        assert!(quantised.frozen_linear_bytes() * 3 < dense_bytes);
        let named = adapters.data().lock().unwrap().clone();
        let mut names: Vec<&String> = named.keys().collect();
        names.sort();
        for (i, n) in names.iter().enumerate() {
            let v = &named[*n];
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(100 + i as u64);
            let values: Vec<f32> = (0..v.elem_count())
                .map(|_| r.random_range(-0.3..0.3))
                .collect();
            v.set(&Tensor::from_vec(values, v.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
        let vars: Vec<Var> = names.iter().map(|n| named[*n].clone()).collect();
        // SFT: its weights do not depend on the parameters, so the loss is a plain function.
        let sft = LossConfig {
            variant: LossVariant::Sft,
            ..LossConfig::default()
        };
        let loss = |m: &Decoder| -> f64 {
            weighted_loss(m, &batch(), &sft)
                .unwrap()
                .loss
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let (stats, grads) =
            loss_and_grads(&quantised, &vars, &batch(), &sft, None, 1.0, false).unwrap();
        let grads = grads.unwrap();
        assert!((stats.loss - loss(&quantised)).abs() < 1e-5);
        // Central differences on a few coordinates of several adapters.
        let h = 1e-2f32;
        for (vi, var) in vars.iter().enumerate().step_by(5) {
            let g: Vec<f32> = grads[vi]
                .as_ref()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let orig: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for j in [0, orig.len() / 2, orig.len() - 1] {
                let at = |d: f32| {
                    let mut v = orig.clone();
                    v[j] += d;
                    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                        .unwrap();
                    loss(&quantised)
                };
                let fd = (at(h) - at(-h)) / (2.0 * h as f64);
                var.set(&Tensor::from_vec(orig.clone(), var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                assert!(
                    (fd - g[j] as f64).abs() < 2e-3 + 0.02 * fd.abs(),
                    "{} [{j}]: finite difference {fd}, gradient {}",
                    names[vi],
                    g[j]
                );
            }
        }
        // q8_0 moves the forward a little off the dense one, and no more.
        let ids = Tensor::new(&[[2u32, 7, 9, 11]], &Device::Cpu).unwrap();
        let hq = quantised.forward_hidden(&ids).unwrap();
        let hd = load().forward_hidden(&ids).unwrap();
        let drift = crate::model::max_abs_diff(&hq, &hd).unwrap();
        assert!(
            drift > 0.0 && drift < 0.05,
            "q8_0 moves the hidden states by {drift}"
        );
        // A block size that does not divide the input is refused, naming the layer.
        let mut m = load();
        let err = m.quantize_base(GgmlDType::Q4K).unwrap_err().to_string();
        assert!(
            err.contains("model.layers.0.self_attn.q_proj") && err.contains("256"),
            "{err}"
        );
        assert_eq!(m.frozen_linear_bytes(), dense_bytes);
    }

    #[test]
    fn loss_value_is_the_spec_formula() {
        let (_, dec) = model();
        let cfg = LossConfig {
            variant: LossVariant::Bft,
            mode: BftMode::Official,
            window: 3,
            gamma: 1.0,
        };
        let out = weighted_loss(&dec, &batch(), &cfg).unwrap();
        assert_eq!(out.tokens, 5 + 4 + 6);
        let sum: f64 = out.weights.iter().map(|w| w.loss).sum::<f64>() / 3.0;
        let got = out.loss.to_scalar::<f32>().unwrap() as f64;
        assert!(
            (got - sum).abs() < 1e-5 * sum.abs().max(1.0),
            "{got} vs {sum}"
        );
        assert!(out
            .weights
            .iter()
            .all(|w| w.sample_weight > 0.0 && w.sample_weight < 1.0));
    }

    #[test]
    fn loss_decreases_on_a_fixed_batch_for_every_variant() {
        for variant in [
            LossVariant::Sft,
            LossVariant::Dft,
            LossVariant::Bft,
            LossVariant::BftNoToken,
            LossVariant::BftNoSample,
        ] {
            for mode in [BftMode::Official, BftMode::V3] {
                let (vm, dec) = model();
                let cfg = LossConfig {
                    variant,
                    mode,
                    window: 3,
                    gamma: 1.0,
                };
                let mut opt = candle_nn::AdamW::new(
                    vm.all_vars(),
                    candle_nn::ParamsAdamW {
                        lr: 1e-2,
                        ..Default::default()
                    },
                )
                .unwrap();
                // Judge progress by the plain cross-entropy of the response tokens.
                let sft = LossConfig {
                    variant: LossVariant::Sft,
                    ..cfg
                };
                let before = weighted_loss(&dec, &batch(), &sft)
                    .unwrap()
                    .loss
                    .to_scalar::<f32>()
                    .unwrap();
                for _ in 0..40 {
                    let step = weighted_loss(&dec, &batch(), &cfg).unwrap();
                    opt.backward_step(&step.loss).unwrap();
                }
                let after = weighted_loss(&dec, &batch(), &sft)
                    .unwrap()
                    .loss
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    after < 0.9 * before,
                    "{variant:?}/{mode:?}: {before} -> {after}"
                );
            }
        }
    }
}
