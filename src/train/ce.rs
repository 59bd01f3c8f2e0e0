//! The output layer's cross-entropy in chunks of rows: gold-token log-probabilities, and the
//! gradients of `−log p` with respect to the final hidden states and to the output weight,
//! computed a few hundred rows at a time so that the (tokens × vocabulary) logits never exist
//! whole, and never on the autograd graph.
//!
//! For a row with hidden state `h`, output weight `W` (vocab × hidden), `p = softmax(W h)` and
//! gold token `y`: `∂(−log p_y)/∂h = Wᵀ p − W_y` and `∂(−log p_y)/∂W = (p − e_y) hᵀ`. The loss
//! weights of DFT/BFT need every log-probability of a sample before any gradient can be weighed,
//! so the hidden-state gradient is returned unweighted (the caller scales each row by its
//! factor) and the weight gradient, needed only when the output weight trains, is a second pass
//! that takes the factors.

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Tensor, D};

/// Elements of one chunk's logits (rows × vocabulary). On the CPU 30 MiB in f32 (160 rows of a
/// 49,152-token vocabulary): below glibc's largest mmap threshold (32 MiB), so chunks reuse heap
/// memory instead of fresh pages the kernel must zero (with 64 MiB chunks, zeroing pages took 13%
/// of a SmolLM2 training step), and rows enough for the product `p·W` to run at full speed (85
/// rows: 118 GFLOP/s; 170: 153 GFLOP/s on two cores). On a GPU 256 MiB, for matrix products
/// large enough to fill it.
fn chunk_elems(device: &candle_core::Device) -> usize {
    if device.is_cpu() {
        (30 << 20) / 4
    } else {
        1 << 26
    }
}

fn chunk_rows(vocab: usize, elems: usize) -> usize {
    (elems / vocab.max(1)).max(1)
}

/// Gold log-probabilities of `n` rows, and (with `with_grad`) the unweighted hidden-state
/// gradients (n, hidden) in f32.
pub struct GoldLogprobs {
    pub logp: Vec<f32>,
    pub hidden_grad: Option<Tensor>,
}

/// One chunk's softmax: the gold tokens' log-probabilities and the probabilities (rows, vocab) in
/// f32, or `p − e_y` where `minus_gold` says so.
struct Chunk {
    logp: Vec<f32>,
    p: Tensor,
    minus_gold: bool,
}

/// The softmax of a chunk's logits, in place, on the CPU (see [`crate::numeric::softmax`]).
struct SoftmaxGold<'a> {
    targets: &'a [u32],
    minus_gold: bool,
    logp: std::sync::Mutex<Vec<f32>>,
}

impl InplaceOp1 for SoftmaxGold<'_> {
    fn name(&self) -> &'static str {
        "softmax-gold"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(v) = storage else {
            candle_core::bail!("softmax-gold: f32 logits expected");
        };
        let (rows, vocab) = layout.shape().dims2()?;
        if !layout.is_contiguous() || layout.start_offset() != 0 || v.len() < rows * vocab {
            candle_core::bail!("softmax-gold: logits must be one contiguous buffer");
        }
        let lp = crate::numeric::activation::softmax_rows_gold(
            &mut v[..rows * vocab],
            vocab,
            self.targets,
            self.minus_gold,
        )
        .ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "softmax-gold: {} targets for {rows} rows, or a target outside 0..{vocab}",
                self.targets.len()
            ))
        })?;
        *self
            .logp
            .lock()
            .map_err(|_| candle_core::Error::Msg("softmax-gold: poisoned lock".into()))? = lp;
        Ok(())
    }
}

/// The softmax of the logits `h Wᵀ` of one chunk. `fused` (on the CPU): one in-place pass per
/// row, with `p − e_y` when `minus_gold`; otherwise candle's ops, and `p` as is.
fn chunk(w: &Tensor, h: &Tensor, targets: &[u32], minus_gold: bool, fused: bool) -> Result<Chunk> {
    let logits = h.matmul(&w.t()?)?.to_dtype(DType::F32)?;
    if fused {
        let op = SoftmaxGold {
            targets,
            minus_gold,
            logp: Default::default(),
        };
        logits.inplace_op1(&op)?;
        let logp = op
            .logp
            .into_inner()
            .map_err(|_| candle_core::Error::Msg("softmax-gold: poisoned lock".into()))?;
        return Ok(Chunk {
            logp,
            p: logits,
            minus_gold,
        });
    }
    let tc = Tensor::from_slice(targets, targets.len(), h.device())?;
    let max = logits.max_keepdim(D::Minus1)?;
    let e = logits.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    let gold = logits.gather(&tc.unsqueeze(1)?, D::Minus1)?;
    let logp = ((gold - max)? - sum.log()?)?.squeeze(1)?.to_vec1::<f32>()?;
    Ok(Chunk {
        logp,
        p: e.broadcast_div(&sum)?,
        minus_gold: false,
    })
}

/// `h` (n, hidden) are final hidden states (detached, the weight's dtype), `targets` their gold
/// tokens.
pub fn gold_logprobs(
    w: &Tensor,
    h: &Tensor,
    targets: &[u32],
    with_grad: bool,
) -> Result<GoldLogprobs> {
    gold_logprobs_in(
        w,
        h,
        targets,
        with_grad,
        chunk_rows(w.dim(0)?, chunk_elems(w.device())),
        w.device().is_cpu(),
    )
}

fn gold_logprobs_in(
    w: &Tensor,
    h: &Tensor,
    targets: &[u32],
    with_grad: bool,
    rows: usize,
    fused: bool,
) -> Result<GoldLogprobs> {
    // Values only: nothing computed here may carry a trainable weight's graph.
    let (w, h) = (&w.detach(), &h.detach());
    let n = h.dim(0)?;
    if n != targets.len() {
        candle_core::bail!("{n} hidden rows for {} targets", targets.len());
    }
    let (mut logp, mut grads) = (Vec::with_capacity(n), Vec::new());
    for start in (0..n).step_by(rows) {
        let len = rows.min(n - start);
        let hc = h.narrow(0, start, len)?;
        let tc = &targets[start..start + len];
        let c = chunk(w, &hc, tc, with_grad, fused)?;
        logp.extend(c.logp);
        if with_grad {
            // ∂(−log p_y)/∂h = (p − e_y) W.
            let mut g = c.p.to_dtype(w.dtype())?.matmul(w)?;
            if !c.minus_gold {
                let tc = Tensor::from_slice(tc, len, h.device())?;
                g = (g - w.index_select(&tc, 0)?)?;
            }
            grads.push(g.to_dtype(DType::F32)?);
        }
    }
    let hidden_grad = match (with_grad, grads.is_empty()) {
        (false, _) => None,
        (true, true) => Some(Tensor::zeros((0, h.dim(1)?), DType::F32, h.device())?),
        (true, false) => Some(Tensor::cat(&grads, 0)?),
    };
    Ok(GoldLogprobs { logp, hidden_grad })
}

/// `Σ_rows factor · (p − e_y) hᵀ`: the output weight's gradient (vocab, hidden), in its dtype.
pub fn weight_grad(w: &Tensor, h: &Tensor, targets: &[u32], factors: &[f32]) -> Result<Tensor> {
    weight_grad_in(
        w,
        h,
        targets,
        factors,
        chunk_rows(w.dim(0)?, chunk_elems(w.device())),
        w.device().is_cpu(),
    )
}

fn weight_grad_in(
    w: &Tensor,
    h: &Tensor,
    targets: &[u32],
    factors: &[f32],
    rows: usize,
    fused: bool,
) -> Result<Tensor> {
    let (w, h) = (&w.detach(), &h.detach());
    let n = h.dim(0)?;
    let mut acc = Tensor::zeros(w.shape(), DType::F32, w.device())?;
    for start in (0..n).step_by(rows) {
        let len = rows.min(n - start);
        let hc = h.narrow(0, start, len)?;
        let tc = &targets[start..start + len];
        let f = Tensor::from_slice(&factors[start..start + len], (len, 1), h.device())?;
        let c = chunk(w, &hc, tc, true, fused)?;
        let hf = hc.to_dtype(DType::F32)?.broadcast_mul(&f)?;
        // (p − e_y)ᵀ (factor · h).
        acc = (acc + c.p.t()?.matmul(&hf)?)?;
        if !c.minus_gold {
            let tc = Tensor::from_slice(tc, len, h.device())?;
            let gold = Tensor::zeros(w.shape(), DType::F32, w.device())?.index_add(&tc, &hf, 0)?;
            acc = (acc - gold)?;
        }
    }
    acc.to_dtype(w.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn chunks_give_autograds_log_probabilities_and_gradients() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (n, hd, vocab) = (7, 5, 11);
        let mut r =
            |k: usize| -> Vec<f32> { (0..k).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let w = Tensor::from_vec(r(vocab * hd), (vocab, hd), &Device::Cpu).unwrap();
        let h = Tensor::from_vec(r(n * hd), (n, hd), &Device::Cpu).unwrap();
        let targets: Vec<u32> = vec![0, 3, 10, 3, 7, 1, 3];
        let factors: Vec<f32> = vec![0.5, 1.0, 0.0, 2.0, 0.1, 0.3, 1.5];
        // Autograd through the whole logits.
        let (wv, hv) = (Var::from_tensor(&w).unwrap(), Var::from_tensor(&h).unwrap());
        let logits = hv.as_tensor().matmul(&wv.as_tensor().t().unwrap()).unwrap();
        let ls = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let t = Tensor::new(targets.as_slice(), &Device::Cpu).unwrap();
        let gold = ls
            .gather(&t.unsqueeze(1).unwrap(), 1)
            .unwrap()
            .squeeze(1)
            .unwrap();
        let f = Tensor::new(factors.as_slice(), &Device::Cpu).unwrap();
        let loss = (gold.clone() * &f)
            .unwrap()
            .sum_all()
            .unwrap()
            .neg()
            .unwrap();
        let g = loss.backward().unwrap();
        // Chunks of 3 rows: 7 rows make two full chunks and a short one; the CPU's in-place
        // softmax and candle's composed ops (the GPU's path) alike.
        for fused in [true, false] {
            let out = gold_logprobs_in(&w, &h, &targets, true, 3, fused).unwrap();
            let want: Vec<f32> = gold.to_vec1().unwrap();
            for (a, b) in out.logp.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b} (fused {fused})");
            }
            let hg = out
                .hidden_grad
                .unwrap()
                .broadcast_mul(&f.unsqueeze(1).unwrap())
                .unwrap();
            let d = crate::model::max_abs_diff(&hg, g.get(hv.as_tensor()).unwrap()).unwrap();
            assert!(d < 1e-5, "hidden gradient differs by {d} (fused {fused})");
            let wg = weight_grad_in(&w, &h, &targets, &factors, 3, fused).unwrap();
            let d = crate::model::max_abs_diff(&wg, g.get(wv.as_tensor()).unwrap()).unwrap();
            assert!(d < 1e-5, "weight gradient differs by {d} (fused {fused})");
        }
    }

    #[test]
    fn chunk_rows_cover_big_vocabularies() {
        let cpu = chunk_elems(&Device::Cpu);
        assert_eq!(chunk_rows(1 << 24, cpu), 1);
        assert_eq!(chunk_rows(1 << 30, cpu), 1);
        assert_eq!(chunk_rows(49_152, cpu), 160);
        assert!(chunk_rows(49_152, cpu) * 49_152 * 4 < 32 << 20);
    }
}
