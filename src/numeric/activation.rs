//! The element-wise kernels of a CPU training step, over f32 rows: softmax (in place, with the
//! gold token's log-probability for the loss), the softmax's backward, SwiGLU and its backward,
//! and RMSNorm's backward. Each runs rows (or blocks) in parallel and reads its inputs once or
//! twice, where candle's CPU ops take one pass and one fresh buffer per primitive and call the
//! C library's scalar `expf`: a 49,152-wide softmax by candle's ops cost as much as the two
//! matrix products around it (0.33 s per 1,000 rows of SmolLM2's vocabulary on two cores,
//! against 0.39 s for the logits' product).
//!
//! `exp(x)`: x = n·ln 2 + r with n = round(x / ln 2) and |r| ≤ ln 2 / 2 (ln 2 split in a short
//! high part and a low correction, so n·ln 2 is exact enough without a fused multiply-add), then
//! `exp(r) ≈ 1 + r + r²·P(r)` with the degree-5 minimax polynomial P of the classic single-
//! precision `expf` (Cephes), and 2ⁿ built from exponent bits. Relative error ≤ 3e-7 (a few ulp;
//! tested against f64); below −87.33 the result is 0 (f32's smallest normal is e^−87.34), above
//! 88.72 it is +∞, and NaN stays NaN, so a non-finite input makes a non-finite loss. The kernels
//! are written branch-free so the compiler vectorises them, and compiled twice: for the baseline
//! CPU and for AVX2 + FMA, chosen at run time. Both compile the same operations in the same order
//! (Rust forms no fused multiply-adds on its own), so results do not depend on the CPU.

use rayon::prelude::*;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2²³: adding and subtracting it rounds an f32 of magnitude < 2²² to the nearest integer.
const ROUND: f32 = 12_582_912.0;
const LO: f32 = -87.33;
const HI: f32 = 88.72;

/// `exp(x)`, branch-free so that loops over it vectorise.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let xc = if x < LO { LO } else { x };
    let xc = if xc > HI { HI } else { xc };
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // n ∈ [−126, 128] (NaN becomes 0): 2ⁿ = 2^(n/2) · 2^(n − n/2), each factor a normal f32
    // built from its exponent bits.
    let n = n as i32;
    let half = n / 2;
    let two_to = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let y = y * two_to(half) * two_to(n - half);
    let y = if x < LO { 0.0 } else { y };
    if x > HI {
        f32::INFINITY
    } else {
        y
    }
}

const LANES: usize = 16;

#[inline(always)]
fn max_body(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    acc.iter().fold(tail, |m, &v| if v > m { v } else { m })
}

/// `x ← exp(x − shift)`; returns the sum of the new values.
#[inline(always)]
fn exp_sum_body(x: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let e = exp(c[i] - shift);
            c[i] = e;
            acc[i] += e;
        }
    }
    let mut tail = 0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - shift);
        tail += *v;
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn scale_body(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

/// Softmax of one row in place; returns (max, Σ exp(x − max)).
#[inline(always)]
fn softmax_body(row: &mut [f32]) -> (f32, f32) {
    let m = max_body(row);
    let s = exp_sum_body(row, m);
    scale_body(row, 1.0 / s);
    (m, s)
}

/// `Σ a ⊙ b`, in lanes.
#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out = scale · p ⊙ (g − Σ g ⊙ p)`: the gradient of a softmax row's input, for output `p`
/// and output gradient `g`.
#[inline(always)]
fn softmax_grad_body(p: &[f32], g: &[f32], scale: f32, out: &mut [f32]) {
    let dot = dot_body(g, p);
    for ((o, &pi), &gi) in out.iter_mut().zip(p).zip(g) {
        *o = scale * pi * (gi - dot);
    }
}

/// The logistic function `1 / (1 + e^−a)`.
#[inline(always)]
fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + exp(-a))
}

/// `out = silu(a) ⊙ b`, `silu(a) = a σ(a)`.
#[inline(always)]
fn swiglu_body(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &ai), &bi) in out.iter_mut().zip(a).zip(b) {
        *o = ai * sigmoid(ai) * bi;
    }
}

/// `da = g ⊙ b ⊙ σ(a)(1 + a(1 − σ(a)))`, `db = g ⊙ silu(a)`.
#[inline(always)]
fn swiglu_grad_body(a: &[f32], b: &[f32], g: &[f32], da: &mut [f32], db: &mut [f32]) {
    for i in 0..a
        .len()
        .min(b.len())
        .min(g.len())
        .min(da.len())
        .min(db.len())
    {
        let (ai, s) = (a[i], sigmoid(a[i]));
        db[i] = g[i] * ai * s;
        da[i] = g[i] * b[i] * s * (1.0 + ai * (1.0 - s));
    }
}

/// One row of RMSNorm's input gradient: with `r = 1/sqrt(mean(x²) + eps)`,
/// `dx = r (g ⊙ w − x r · mean(g ⊙ w ⊙ x) r)`.
#[inline(always)]
fn rms_norm_grad_body(x: &[f32], w: &[f32], g: &[f32], eps: f32, dx: &mut [f32]) {
    let n = x.len() as f32;
    let r = 1.0 / (dot_body(x, x) / n + eps).sqrt();
    for ((d, &gi), &wi) in dx.iter_mut().zip(g).zip(w) {
        *d = gi * wi;
    }
    let dot = dot_body(dx, x) * r / n;
    for (d, &xi) in dx.iter_mut().zip(x) {
        *d = r * (*d - xi * r * dot);
    }
}

/// Defines `fn NAME(args) -> RET` running `BODY(args)` compiled for AVX2 + FMA
/// when the CPU has them, for the baseline CPU otherwise.
macro_rules! dispatch {
    ($($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:ident;)*) => {$(
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `wide` is compiled for (checked above).
                    return unsafe { wide($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    )*};
}

dispatch! {
    /// `Σ a ⊙ b` in f32, in 16 independent lanes.
    pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 = dot_body;
    fn softmax_row(row: &mut [f32]) -> (f32, f32) = softmax_body;
    fn softmax_grad_row(p: &[f32], g: &[f32], scale: f32, out: &mut [f32]) = softmax_grad_body;
    fn swiglu_block(a: &[f32], b: &[f32], out: &mut [f32]) = swiglu_body;
    fn swiglu_grad_block(a: &[f32], b: &[f32], g: &[f32], da: &mut [f32], db: &mut [f32]) = swiglu_grad_body;
    fn rms_norm_grad_row(x: &[f32], w: &[f32], g: &[f32], eps: f32, dx: &mut [f32]) = rms_norm_grad_body;
}

/// Elements per parallel block of the element-wise kernels.
const BLOCK: usize = 1 << 14;

/// Softmax of each `width`-wide row of `x` in place, rows in parallel. `None` when `x` is not
/// made of whole rows.
pub(crate) fn softmax_rows(x: &mut [f32], width: usize) -> Option<()> {
    if width == 0 || !x.len().is_multiple_of(width) {
        return None;
    }
    x.par_chunks_mut(width).for_each(|row| {
        softmax_row(row);
    });
    Some(())
}

/// The softmax's backward over `width`-wide rows: `scale · p ⊙ (g − rowsum(g ⊙ p))`. `None`
/// when the shapes disagree.
pub(crate) fn softmax_grad_rows(
    p: &[f32],
    g: &[f32],
    width: usize,
    scale: f32,
) -> Option<Vec<f32>> {
    if width == 0 || !p.len().is_multiple_of(width) || g.len() != p.len() {
        return None;
    }
    let mut out = vec![0f32; p.len()];
    out.par_chunks_mut(width)
        .zip(p.par_chunks(width).zip(g.par_chunks(width)))
        .for_each(|(o, (p, g))| softmax_grad_row(p, g, scale, o));
    Some(out)
}

/// `silu(a) ⊙ b`. `None` when the lengths differ.
pub(crate) fn swiglu(a: &[f32], b: &[f32]) -> Option<Vec<f32>> {
    if a.len() != b.len() {
        return None;
    }
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(BLOCK)
        .zip(a.par_chunks(BLOCK).zip(b.par_chunks(BLOCK)))
        .for_each(|(o, (a, b))| swiglu_block(a, b, o));
    Some(out)
}

/// The gradients of `silu(a) ⊙ b` with respect to `a` and `b`, for output gradient `g`. `None`
/// when the lengths differ.
pub(crate) fn swiglu_grad(a: &[f32], b: &[f32], g: &[f32]) -> Option<(Vec<f32>, Vec<f32>)> {
    if a.len() != b.len() || g.len() != a.len() {
        return None;
    }
    let (mut da, mut db) = (vec![0f32; a.len()], vec![0f32; a.len()]);
    da.par_chunks_mut(BLOCK)
        .zip(db.par_chunks_mut(BLOCK))
        .zip(
            a.par_chunks(BLOCK)
                .zip(b.par_chunks(BLOCK))
                .zip(g.par_chunks(BLOCK)),
        )
        .for_each(|((da, db), ((a, b), g))| swiglu_grad_block(a, b, g, da, db));
    Some((da, db))
}

/// RMSNorm's input gradient over rows of `w.len()`: for each row `x` with output gradient `g`,
/// `dx = r (g ⊙ w − x r · mean(g ⊙ w ⊙ x) r)`, `r = 1/sqrt(mean(x²) + eps)`. `None` when the
/// shapes disagree.
pub(crate) fn rms_norm_grad(x: &[f32], w: &[f32], g: &[f32], eps: f32) -> Option<Vec<f32>> {
    let h = w.len();
    if h == 0 || !x.len().is_multiple_of(h) || g.len() != x.len() {
        return None;
    }
    let mut dx = vec![0f32; x.len()];
    dx.par_chunks_mut(h)
        .zip(x.par_chunks(h).zip(g.par_chunks(h)))
        .for_each(|(d, (x, g))| rms_norm_grad_row(x, w, g, eps, d));
    Some(dx)
}

/// Softmax of each `width`-wide row of `x` in place, rows in parallel, and each row's gold
/// log-probability `x[gold] − max − ln Σ exp(x − max)`. With `minus_gold` the row becomes
/// `p − e_gold` (the gradient of `−log p_gold` with respect to the logits). `None` when the
/// shapes disagree or a gold index is outside its row.
pub(crate) fn softmax_rows_gold(
    x: &mut [f32],
    width: usize,
    gold: &[u32],
    minus_gold: bool,
) -> Option<Vec<f32>> {
    if width == 0 || x.len() != width * gold.len() || gold.iter().any(|&g| g as usize >= width) {
        return None;
    }
    Some(
        x.par_chunks_mut(width)
            .zip(gold.par_iter())
            .map(|(row, &g)| {
                let g = g as usize;
                let xg = row[g];
                let (m, s) = softmax_row(row);
                if minus_gold {
                    row[g] -= 1.0;
                }
                xg - m - s.ln()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_f64_over_its_range() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x < 88.7 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.001_37;
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    fn reference(row: &[f32], g: usize) -> (Vec<f64>, f64) {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
        let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        let p = row.iter().map(|&v| (v as f64 - m).exp() / s).collect();
        (p, row[g] as f64 - m - s.ln())
    }

    #[test]
    fn rows_match_a_direct_f64_softmax_on_every_instruction_path() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        // Widths with and without a tail after the 16-lane blocks; logits spread like a
        // language model's (and one row far out, where most terms underflow).
        for width in [1usize, 7, 16, 33, 1000] {
            let rows = 5;
            let mut x: Vec<f32> = (0..rows * width)
                .map(|_| rng.random_range(-12.0f32..12.0))
                .collect();
            x[..width].iter_mut().for_each(|v| *v *= 20.0);
            let gold: Vec<u32> = (0..rows).map(|i| ((i * 7) % width) as u32).collect();
            for minus_gold in [false, true] {
                let mut y = x.clone();
                let lp = softmax_rows_gold(&mut y, width, &gold, minus_gold).unwrap();
                for r in 0..rows {
                    let (p, want) = reference(&x[r * width..(r + 1) * width], gold[r] as usize);
                    assert!((lp[r] as f64 - want).abs() < 1e-5 * want.abs().max(1.0));
                    for (j, &pj) in p.iter().enumerate() {
                        let got = y[r * width + j] as f64
                            + if minus_gold && j == gold[r] as usize {
                                1.0
                            } else {
                                0.0
                            };
                        assert!((got - pj).abs() < 1e-6, "row {r} col {j}: {got} vs {pj}");
                    }
                }
            }
            // The portable path gives bit-identical rows.
            let (mut a, mut b) = (x[..width].to_vec(), x[..width].to_vec());
            let ra = softmax_row(&mut a);
            let rb = softmax_body(&mut b);
            assert_eq!(ra, rb);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn gradient_kernels_match_f64_formulas_and_shape_errors_are_none() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let mut r =
            |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-s..s)).collect() };
        let (rows, width) = (3, 37);
        let (x, g, w) = (r(rows * width, 4.0), r(rows * width, 1.0), r(width, 2.0));
        let mut p = x.clone();
        softmax_rows(&mut p, width).unwrap();
        let ds = softmax_grad_rows(&p, &g, width, 0.5).unwrap();
        let dx = rms_norm_grad(&x, &w, &g, 1e-6).unwrap();
        for i in 0..rows {
            let row = |v: &[f32]| {
                v[i * width..(i + 1) * width]
                    .iter()
                    .map(|&z| z as f64)
                    .collect::<Vec<_>>()
            };
            let (xr, gr, pr) = (row(&x), row(&g), row(&p));
            let dot: f64 = gr.iter().zip(&pr).map(|(a, b)| a * b).sum();
            let ms = xr.iter().map(|v| v * v).sum::<f64>() / width as f64;
            let rr = 1.0 / (ms + 1e-6).sqrt();
            let dn: f64 =
                (0..width).map(|j| gr[j] * w[j] as f64 * xr[j]).sum::<f64>() * rr / width as f64;
            for j in 0..width {
                let want = 0.5 * pr[j] * (gr[j] - dot);
                assert!((ds[i * width + j] as f64 - want).abs() < 1e-6);
                let want = rr * (gr[j] * w[j] as f64 - xr[j] * rr * dn);
                assert!((dx[i * width + j] as f64 - want).abs() < 1e-5 * want.abs().max(1.0));
            }
        }
        let (a, b) = (r(100, 12.0), r(100, 2.0));
        let y = swiglu(&a, &b).unwrap();
        let (da, db) = swiglu_grad(&a, &b, &g[..100]).unwrap();
        for j in 0..100 {
            let (aj, bj, gj) = (a[j] as f64, b[j] as f64, g[j] as f64);
            let s = 1.0 / (1.0 + (-aj).exp());
            assert!((y[j] as f64 - aj * s * bj).abs() < 1e-5 * (aj * s * bj).abs().max(1.0));
            assert!((db[j] as f64 - gj * aj * s).abs() < 1e-5);
            let want = gj * bj * s * (1.0 + aj * (1.0 - s));
            assert!((da[j] as f64 - want).abs() < 1e-5 * want.abs().max(1.0));
        }
        assert!(softmax_rows(&mut [0.0; 5], 2).is_none());
        assert!(softmax_grad_rows(&p, &g[1..], width, 1.0).is_none());
        assert!(swiglu(&a, &b[1..]).is_none());
        assert!(swiglu_grad(&a, &b, &g[..99]).is_none());
        assert!(rms_norm_grad(&x[1..], &w, &g[1..], 1e-6).is_none());
    }

    #[test]
    fn non_finite_logits_give_non_finite_log_probabilities_and_bad_shapes_none() {
        let mut x = vec![0.0, f32::NAN, 1.0, 2.0, 0.5, 0.0];
        let lp = softmax_rows_gold(&mut x, 3, &[0, 1], false).unwrap();
        assert!(lp[0].is_nan());
        assert!(lp[1].is_finite());
        assert!(softmax_rows_gold(&mut [0.0; 6], 3, &[0, 3], false).is_none());
        assert!(softmax_rows_gold(&mut [0.0; 6], 3, &[0], false).is_none());
        assert!(softmax_rows_gold(&mut [], 0, &[], false).is_none());
    }
}
