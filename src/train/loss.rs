//! The fine-tuning losses of docs/bft.md — SFT, DFT and Balanced Fine-Tuning (BFT) with its
//! ablations — as pure functions of the detached per-token log-probabilities of the gold tokens.
//!
//! For a micro-batch of B samples, with `l = −log p` per valid (response) token,
//! `L = (1/B) Σ_b s_b · Σ_t w[b,t] · l[b,t] / (N_b + ε)`. Every weight (`w`, `s`) is computed from
//! detached values, so a training step multiplies its per-token cross-entropy tensor by
//! [`SampleWeights::token_factors`] and sums: the gradient flows through `l` only.
//!
//! BFT modes: `official` (the authors' released code: `w = p` as DFT, `s = 1 − p_conf^γ` with
//! `p_conf` the minimum geometric-mean probability over full windows of `g` tokens, or over the
//! whole sample when it is shorter) and `v3` (the paper's group-normalised form: local arithmetic
//! window means `C(t)`, `w = clamp(p / C(t), 0, 1)`, `p_conf = min_t C(t)`). `γ` applies to the
//! official mode only, as in the specification. Both run in O(N) per sample via prefix sums.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

pub const EPS: f64 = 1e-8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossVariant {
    /// Plain cross-entropy: w = 1, s = 1.
    Sft,
    /// Dynamic fine-tuning: w = sg(p), s = 1.
    Dft,
    /// Balanced fine-tuning: token and sample weights of the chosen mode.
    Bft,
    /// BFT's sample weight only (w = 1).
    BftNoToken,
    /// BFT's token weight only (s = 1).
    BftNoSample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BftMode {
    Official,
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    pub variant: LossVariant,
    pub mode: BftMode,
    /// Group (window) size g in tokens.
    pub window: usize,
    pub gamma: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            variant: LossVariant::Bft,
            mode: BftMode::Official,
            window: 256,
            gamma: 1.0,
        }
    }
}

impl LossConfig {
    pub fn check(&self) -> Result<()> {
        if self.window == 0 {
            bail!("--window must be at least 1");
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            bail!("--gamma must be a positive number, got {}", self.gamma);
        }
        Ok(())
    }
}

/// The weights of one sample, and its contribution before the 1/B batch average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleWeights {
    /// Number of valid (response) tokens.
    pub n: usize,
    /// Group confidence (0 for an empty sample, and for variants that use none).
    pub p_conf: f64,
    /// Sample weight s_b.
    pub sample_weight: f64,
    /// Token weights `w[b,t]` (length n).
    pub token_weights: Vec<f64>,
    /// s_b · Σ_t w_t l_t / (N_b + ε).
    pub loss: f64,
}

impl SampleWeights {
    pub fn mean_token_weight(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.token_weights.iter().sum::<f64>() / self.n as f64
        }
    }

    /// Per-token multipliers of the cross-entropy, `s_b · w_t / (B (N_b + ε))`, for a batch of
    /// `batch` samples: the loss is `Σ_t factor_t · l_t` summed over the batch.
    pub fn token_factors(&self, batch: usize) -> Vec<f64> {
        let k = self.sample_weight / (batch as f64 * (self.n as f64 + EPS));
        self.token_weights.iter().map(|w| k * w).collect()
    }
}

/// Weights of one sample from the log-probabilities `v_1..v_N` (≤ 0) of its valid gold tokens.
pub fn sample_weights(cfg: &LossConfig, logprobs: &[f64]) -> SampleWeights {
    let n = logprobs.len();
    let probs: Vec<f64> = logprobs.iter().map(|v| v.exp()).collect();
    let use_token = matches!(
        cfg.variant,
        LossVariant::Dft | LossVariant::Bft | LossVariant::BftNoSample
    );
    let use_sample = matches!(cfg.variant, LossVariant::Bft | LossVariant::BftNoToken);
    let bft = matches!(
        cfg.variant,
        LossVariant::Bft | LossVariant::BftNoToken | LossVariant::BftNoSample
    );
    let (bft_token, p_conf) = match (bft, cfg.mode) {
        (false, _) => (probs.clone(), 0.0),
        (true, BftMode::Official) => (
            probs.clone(),
            official_confidence(logprobs, cfg.window, cfg.gamma),
        ),
        (true, BftMode::V3) => {
            let c = v3_window_means(&probs, cfg.window);
            let w = probs
                .iter()
                .zip(&c)
                .map(|(p, c)| (p / (c + EPS)).clamp(0.0, 1.0))
                .collect();
            let min = c.iter().copied().fold(f64::INFINITY, f64::min);
            (w, if n == 0 { 0.0 } else { min.clamp(0.0, 1.0) })
        }
    };
    let token_weights = if use_token { bft_token } else { vec![1.0; n] };
    let sample_weight = if use_sample { 1.0 - p_conf } else { 1.0 };
    let weighted: f64 = token_weights
        .iter()
        .zip(logprobs)
        .map(|(w, v)| -w * v)
        .sum();
    SampleWeights {
        n,
        p_conf,
        sample_weight,
        loss: sample_weight * weighted / (n as f64 + EPS),
        token_weights,
    }
}

/// Official BFT group confidence: exp of the minimum mean log-probability over full windows of
/// `g` consecutive valid tokens (stride 1), or of the whole sample when N < g; clamped to [0, 1]
/// and raised to γ. 0 for an empty sample.
pub fn official_confidence(logprobs: &[f64], g: usize, gamma: f64) -> f64 {
    let n = logprobs.len();
    if n == 0 {
        return 0.0;
    }
    let min_mean = if n < g {
        logprobs.iter().sum::<f64>() / n as f64
    } else {
        let mut sum: f64 = logprobs[..g].iter().sum();
        let mut min = sum;
        for k in g..n {
            sum += logprobs[k] - logprobs[k - g];
            min = min.min(sum);
        }
        min / g as f64
    };
    min_mean.exp().clamp(0.0, 1.0).powf(gamma)
}

/// v3 local window means: `C(t)` = mean of `p_j` for compacted j in
/// [t − ⌊g/2⌋, t + ⌈g/2⌉ − 1], clipped at the sequence ends (prefix sums, O(N)).
pub fn v3_window_means(probs: &[f64], g: usize) -> Vec<f64> {
    let n = probs.len();
    let mut prefix = vec![0.0; n + 1];
    for (i, p) in probs.iter().enumerate() {
        prefix[i + 1] = prefix[i] + p;
    }
    let (back, ahead) = (g / 2, g.div_ceil(2) - 1);
    (0..n)
        .map(|t| {
            let lo = t.saturating_sub(back);
            let hi = (t + ahead).min(n - 1);
            (prefix[hi + 1] - prefix[lo]) / (hi + 1 - lo) as f64
        })
        .collect()
}

/// The batch loss `(1/B) Σ_b` of the samples' contributions, and each sample's weights.
pub fn batch_loss(cfg: &LossConfig, samples: &[Vec<f64>]) -> (f64, Vec<SampleWeights>) {
    let weights: Vec<SampleWeights> = samples.iter().map(|s| sample_weights(cfg, s)).collect();
    let loss = weights.iter().map(|w| w.loss).sum::<f64>() / samples.len().max(1) as f64;
    (loss, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(variant: LossVariant, mode: BftMode, window: usize, gamma: f64) -> LossConfig {
        LossConfig {
            variant,
            mode,
            window,
            gamma,
        }
    }
    fn logs(p: &[f64]) -> Vec<f64> {
        p.iter().map(|v| v.ln()).collect()
    }
    /// Hand values ignore ε = 1e-8 in N + ε, a relative effect below 1e-8.
    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-8 * (1.0 + b.abs()), "{a} vs {b}");
    }
    const LN2: f64 = std::f64::consts::LN_2;

    #[test]
    fn sft_and_dft_by_hand() {
        let s = logs(&[0.5, 0.25]);
        let sft = sample_weights(&cfg(LossVariant::Sft, BftMode::Official, 256, 1.0), &s);
        close(sft.loss, (LN2 + 2.0 * LN2) / 2.0);
        assert_eq!((sft.sample_weight, sft.mean_token_weight()), (1.0, 1.0));
        let dft = sample_weights(&cfg(LossVariant::Dft, BftMode::Official, 256, 1.0), &s);
        close(dft.loss, (0.5 * LN2 + 0.25 * 2.0 * LN2) / 2.0);
        close(dft.mean_token_weight(), 0.375);
    }

    #[test]
    fn official_bft_by_hand() {
        // N = 2 < g: p_conf = geometric mean = sqrt(0.5 · 0.25).
        let s = logs(&[0.5, 0.25]);
        let b = sample_weights(&cfg(LossVariant::Bft, BftMode::Official, 256, 1.0), &s);
        close(b.p_conf, 0.125f64.sqrt());
        close(b.sample_weight, 1.0 - 0.125f64.sqrt());
        close(
            b.loss,
            (1.0 - 0.125f64.sqrt()) * (0.5 * LN2 + 0.5 * LN2) / 2.0,
        );
        // Windows of 2 over [.9, .1, .9, .9]: the worst is {.9, .1} -> sqrt(.09) = 0.3.
        let s = logs(&[0.9, 0.1, 0.9, 0.9]);
        let b = sample_weights(&cfg(LossVariant::Bft, BftMode::Official, 2, 1.0), &s);
        close(b.p_conf, 0.3);
        close(b.sample_weight, 0.7);
        let g2 = sample_weights(&cfg(LossVariant::Bft, BftMode::Official, 2, 2.0), &s);
        close(g2.p_conf, 0.09);
        // Ablations keep one factor each.
        let nt = sample_weights(&cfg(LossVariant::BftNoToken, BftMode::Official, 2, 1.0), &s);
        assert_eq!(nt.token_weights, vec![1.0; 4]);
        close(nt.sample_weight, 0.7);
        let ns = sample_weights(
            &cfg(LossVariant::BftNoSample, BftMode::Official, 2, 1.0),
            &s,
        );
        close(ns.sample_weight, 1.0);
        close(ns.token_weights[1], 0.1);
    }

    #[test]
    fn v3_by_hand() {
        // g = 2: W(t) = [t-1, t]; C = [.9, .5, .5, .9]; w = clamp(p / C) = [1, .2, 1, 1].
        let s = logs(&[0.9, 0.1, 0.9, 0.9]);
        let b = sample_weights(&cfg(LossVariant::Bft, BftMode::V3, 2, 1.0), &s);
        let want = [1.0, 0.2, 1.0, 1.0];
        for (w, x) in b.token_weights.iter().zip(want) {
            assert!((w - x).abs() < 1e-7, "{:?}", b.token_weights);
        }
        close(b.p_conf, 0.5);
        close(b.sample_weight, 0.5);
        // g = 3: W(t) = [t-1, t+1].
        let c = v3_window_means(&[0.9, 0.1, 0.9, 0.9], 3);
        for (a, x) in c.iter().zip([0.5, 1.9 / 3.0, 1.9 / 3.0, 0.9]) {
            close(*a, x);
        }
    }

    #[test]
    fn empty_samples_count_in_the_batch_but_add_nothing() {
        let c = LossConfig::default();
        let (loss, w) = batch_loss(&c, &[vec![], logs(&[0.5, 0.25])]);
        assert_eq!(w[0].loss, 0.0);
        close(w[0].p_conf, 0.0);
        close(loss, w[1].loss / 2.0);
        let f = w[1].token_factors(2);
        close(
            f.iter()
                .zip(logs(&[0.5, 0.25]))
                .map(|(f, v)| -f * v)
                .sum::<f64>(),
            loss,
        );
    }

    #[test]
    fn window_minimum_matches_brute_force() {
        let s: Vec<f64> = (0..300)
            .map(|i| -((i * 7919 % 101) as f64) / 50.0)
            .collect();
        for g in [1, 2, 17, 128, 299, 300] {
            let brute = (0..=s.len() - g)
                .map(|k| s[k..k + g].iter().sum::<f64>() / g as f64)
                .fold(f64::INFINITY, f64::min);
            close(official_confidence(&s, g, 1.0), brute.exp());
        }
    }
}
