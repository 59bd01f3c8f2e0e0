//! One training step's loss on a decoder: teacher-forced log-probabilities of the gold tokens,
//! weighted by [`super::loss`] (docs/bft.md), as a differentiable scalar.
//!
//! The weights come from detached values (the log-probabilities are copied off the graph, weighed,
//! and multiplied back in as constants), so gradients flow only through `−log p`, exactly the
//! stop-gradient of the specification.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};

use super::loss::{sample_weights, LossConfig, SampleWeights};
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

/// Teacher-forced gold-token log-probabilities of a right-padded batch: the (b, t) tensor (on the
/// graph) and, per sample, the positions whose target is a response token.
fn gold_logprobs(
    model: &Decoder,
    samples: &[Sample],
    dropout: Option<&mut Dropout>,
) -> Result<(Tensor, Vec<Vec<usize>>)> {
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
    let (mut input, mut target) = (vec![0u32; b * t], vec![0u32; b * t]);
    let mut positions = Vec::with_capacity(b);
    for (r, s) in samples.iter().enumerate() {
        let n = s.tokens.len() - 1;
        input[r * t..r * t + n].copy_from_slice(&s.tokens[..n]);
        target[r * t..r * t + n].copy_from_slice(&s.tokens[1..]);
        positions.push((0..n).filter(|&j| s.is_response[j + 1]).collect());
    }
    let device = model.device();
    let input = Tensor::from_vec(input, (b, t), device)?;
    let target = Tensor::from_vec(target, (b, t, 1), device)?;
    let logits = model.logits(&model.forward_hidden_t(&input, dropout)?)?; // (b, t, v)
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    Ok((
        logp.gather(&target, D::Minus1)?.squeeze(D::Minus1)?,
        positions,
    )) // (b, t)
}

/// The model's log-probabilities of each sample's response tokens (no gradient needed).
pub fn response_logprobs(model: &Decoder, samples: &[Sample]) -> Result<Vec<Vec<f64>>> {
    let (gold, positions) = gold_logprobs(model, samples, None)?;
    let values: Vec<Vec<f32>> = gold.detach().to_vec2()?;
    Ok(positions
        .iter()
        .zip(&values)
        .map(|(pos, row)| pos.iter().map(|&j| row[j] as f64).collect())
        .collect())
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
