//! Training ops with a hand-written backward that keep only their output for it.
//!
//! candle's autograd keeps every intermediate of a composed op alive until the backward pass (an
//! RMSNorm built from primitives holds six tensors per layer; attention holds the scores twice
//! before the softmax), and its fused kernels (softmax, RMSNorm, RoPE) have no backward at all.
//! Each op here computes its value off the graph — with candle's fused kernel where there is one,
//! and on the CPU in f32 with the kernels of [`crate::numeric::activation`] (one pass where
//! candle's CPU ops take one per primitive) — and joins the graph as one node whose backward is
//! written out below, so a training step keeps one tensor per op. [`attach`] is the mechanism. The composed forms stay in
//! [`super::decoder`] as the reference; the tests at the end check every backward against the
//! composed ops' autograd.

use std::cell::Cell;
use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, CustomOp2, CustomOp3, DType, InplaceOp1, Layout, Result,
    Shape, Storage, Tensor, D,
};

use crate::numeric::activation;

/// A backward: (arguments, output, gradient of the output) → gradient of each argument.
pub(crate) type Backward =
    dyn Fn(&[&Tensor], &Tensor, &Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync;

/// The graph node: its forward hands over a value computed beforehand; its backward is given.
struct Attached {
    name: &'static str,
    /// Taken by the forward, so the graph does not hold a second copy of the output.
    value: Mutex<Option<Tensor>>,
    backward: Box<Backward>,
}

impl Attached {
    fn take(&self) -> Result<Tensor> {
        let value = self
            .value
            .lock()
            .map_err(|_| candle_core::Error::Msg("fused op: poisoned lock".into()))?
            .take();
        let v = value.ok_or_else(|| {
            candle_core::Error::Msg(format!("fused op {}: forward ran twice", self.name))
        })?;
        // The storage is handed over whole, so it must start at the value's first element.
        let v = v.contiguous()?;
        if v.layout().start_offset() != 0 {
            return v.affine(1.0, 0.0);
        }
        Ok(v)
    }

    fn cpu(&self) -> Result<(CpuStorage, Shape)> {
        let v = self.take()?;
        let (s, l) = v.storage_and_layout();
        match &*s {
            Storage::Cpu(c) => Ok((c.try_clone(l)?, v.shape().clone())),
            _ => candle_core::bail!("fused op {}: value not on the CPU", self.name),
        }
    }

    fn cuda(&self) -> Result<(CudaStorage, Shape)> {
        let v = self.take()?;
        let (s, l) = v.storage_and_layout();
        match &*s {
            Storage::Cuda(c) => Ok((c.try_clone(l)?, v.shape().clone())),
            _ => candle_core::bail!("fused op {}: value not on the GPU", self.name),
        }
    }

    fn grads(&self, args: &[&Tensor], res: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = (self.backward)(args, res, grad)?;
        if g.len() != args.len() {
            candle_core::bail!(
                "fused op {}: backward gave {} gradients",
                self.name,
                g.len()
            );
        }
        Ok(g)
    }
}

impl CustomOp1 for Attached {
    fn name(&self) -> &'static str {
        self.name
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }
    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
        self.cuda()
    }
    fn bwd(&self, a: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.grads(&[a], res, grad)?.remove(0))
    }
}

impl CustomOp2 for Attached {
    fn name(&self) -> &'static str {
        self.name
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }
    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.cuda()
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let mut g = self.grads(&[a, b], res, grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten()))
    }
}

impl CustomOp3 for Attached {
    fn name(&self) -> &'static str {
        self.name
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }
    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.cuda()
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut g = self.grads(&[a, b, c], res, grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten(), g.next().flatten()))
    }
}

thread_local! {
    /// Whether f32 CPU tensors go through [`activation`]'s kernels (the tests switch them off to
    /// check the composed path other devices take).
    static KERNELS: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` with the CPU kernels off on this thread: every op takes candle's composed path.
#[cfg(test)]
pub(crate) fn without_kernels<R>(f: impl FnOnce() -> R) -> R {
    KERNELS.with(|k| k.set(false));
    let r = f();
    KERNELS.with(|k| k.set(true));
    r
}

/// Whether [`activation`]'s kernels apply: every tensor f32 on the CPU.
fn kernels(ts: &[&Tensor]) -> bool {
    KERNELS.with(|k| k.get())
        && ts
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// `f` over the values of f32 CPU tensors (made contiguous); `None` from `f` (shapes that
/// disagree) is an error naming `op`.
fn on_cpu<R>(op: &str, ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Option<R>) -> Result<R> {
    let ts = ts
        .iter()
        .map(|t| t.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(ts.len());
    for (t, (s, l)) in ts.iter().zip(&guards) {
        match &**s {
            Storage::Cpu(CpuStorage::F32(v)) => {
                let start = l.start_offset();
                slices.push(&v[start..start + t.elem_count()]);
            }
            _ => candle_core::bail!("fused op {op}: f32 CPU tensors expected"),
        }
    }
    f(&slices).ok_or_else(|| candle_core::Error::Msg(format!("fused op {op}: shapes disagree")))
}

/// Softmax over the last dimension, in place (an f32 CPU tensor, contiguous from its start).
struct SoftmaxInPlace;

impl InplaceOp1 for SoftmaxInPlace {
    fn name(&self) -> &'static str {
        "softmax-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(v) = storage else {
            candle_core::bail!("softmax-in-place: f32 expected");
        };
        let n = layout.shape().elem_count();
        if !layout.is_contiguous() || layout.start_offset() != 0 || v.len() < n {
            candle_core::bail!("softmax-in-place: one contiguous buffer expected");
        }
        let width = layout.shape().dims().last().copied().unwrap_or(1);
        activation::softmax_rows(&mut v[..n], width)
            .ok_or_else(|| candle_core::Error::Msg("softmax-in-place: empty rows".into()))
    }
}

/// Softmax over the last dimension of attention scores, off the graph, in `dtype`: in place by
/// [`activation`]'s kernel for f32 CPU scores, otherwise candle's fused kernel in f32.
fn softmax_scores(scores: Tensor, dtype: DType) -> Result<Tensor> {
    if !kernels(&[&scores]) {
        return candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(dtype);
    }
    let scores = scores.contiguous()?;
    let scores = if scores.layout().start_offset() == 0 {
        scores
    } else {
        scores.copy()?
    };
    scores.inplace_op1(&SoftmaxInPlace)?;
    Ok(scores)
}

/// `value` (computed off the graph from `args`) as a graph node whose backward is `backward`.
/// When no argument needs a gradient the value is returned as it is.
pub(crate) fn attach(
    name: &'static str,
    args: &[&Tensor],
    value: Tensor,
    backward: Box<Backward>,
) -> Result<Tensor> {
    if !args.iter().any(|a| a.track_op()) {
        return Ok(value);
    }
    let op = Attached {
        name,
        value: Mutex::new(Some(value)),
        backward,
    };
    match args {
        [a] => a.apply_op1(op),
        [a, b] => a.apply_op2(b, op),
        [a, b, c] => a.apply_op3(b, c, op),
        _ => candle_core::bail!("fused op {name}: 1 to 3 arguments, not {}", args.len()),
    }
}

/// RMSNorm `w ⊙ x / sqrt(mean(x²) + eps)` over the last dimension (candle's fused kernel, run
/// in f32 and rounded once: its bf16 kernel rounds the norm and each product to bf16, which moved
/// a tiny model's loss by 2% against f32 where rounding once moves it by under 1%). Backward, with `r = 1/sqrt(mean(x²) + eps)`, `x̂ = x r`, `u = g ⊙ w`:
/// `dx = r (u − x̂ · mean(u ⊙ x̂))`, `dw = Σ_rows g ⊙ x̂`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let f32 = |t: &Tensor| t.detach().to_dtype(DType::F32);
    let value = candle_nn::ops::rms_norm(&f32(x)?.contiguous()?, &f32(w)?, eps as f32)?
        .to_dtype(x.dtype())?;
    attach(
        "rms-norm",
        &[x, w],
        value,
        Box::new(move |args, _, g| {
            let (x, w) = (args[0], args[1]);
            if !w.track_op() && kernels(&[x, w, g]) {
                let dx = on_cpu("rms-norm", &[x, w, g], |s| {
                    activation::rms_norm_grad(s[0], s[1], s[2], eps as f32)
                })?;
                return Ok(vec![
                    Some(Tensor::from_vec(dx, x.shape(), x.device())?),
                    None,
                ]);
            }
            let xf = x.to_dtype(DType::F32)?;
            let gf = g.to_dtype(DType::F32)?;
            let r = (xf.sqr()?.mean_keepdim(D::Minus1)? + eps)?
                .sqrt()?
                .recip()?;
            let xhat = xf.broadcast_mul(&r)?;
            let u = gf.broadcast_mul(&w.to_dtype(DType::F32)?)?;
            let dot = (&u * &xhat)?.mean_keepdim(D::Minus1)?;
            let dx = (u - xhat.broadcast_mul(&dot)?)?.broadcast_mul(&r)?;
            let dw = if w.track_op() {
                let h = w.dim(0)?;
                let rows = (gf * xhat)?.reshape(((), h))?.sum(0)?;
                Some(rows.to_dtype(w.dtype())?)
            } else {
                None
            };
            Ok(vec![Some(dx.to_dtype(x.dtype())?), dw])
        }),
    )
}

/// Rotary embedding, Hugging Face's half-split form, on `x` (b, heads, t, d) with `cos`, `sin`
/// (t, d/2) or (b, t, d/2) (candle's fused kernel). A rotation: its backward is the rotation by
/// the opposite angle, `rope(g, cos, −sin)`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let value = candle_nn::rotary_emb::rope(&x.detach().contiguous()?, cos, sin)?;
    let (cos, sin) = (cos.clone(), sin.neg()?);
    attach(
        "rope",
        &[x],
        value,
        Box::new(move |_, _, g| {
            Ok(vec![Some(candle_nn::rotary_emb::rope(
                &g.contiguous()?,
                &cos,
                &sin,
            )?)])
        }),
    )
}

/// Attention probabilities `softmax(scale · q kᵀ + mask)` for `q` (b, g, r, d) and `k`
/// (b, g, t, d); `mask` (additive, constant) broadcasts to (b, g, r, t): the cached decoding path
/// (training runs [`attention`]). The softmax runs in f32 (`softmax_scores`); only the
/// probabilities are kept. Backward, with `P` the output:
/// `dS = scale · P ⊙ (G − rowsum(G ⊙ P))`, `dq = dS k`, `dk = dSᵀ q`.
pub fn attention_probs(q: &Tensor, k: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let dtype = q.dtype();
    let scores = (q.detach().matmul(&k.detach().t()?)? * scale)?.broadcast_add(mask)?;
    let value = softmax_scores(scores, dtype)?;
    attach(
        "attention",
        &[q, k],
        value,
        Box::new(move |args, p, g| {
            let (q, k) = (args[0], args[1]);
            let ds = softmax_backward(p, g, scale)?;
            let dq = ds.matmul(k)?;
            let dk = ds.t()?.matmul(q)?;
            Ok(vec![Some(dq), Some(dk)])
        }),
    )
}

/// The softmax's backward: `scale · P ⊙ (G − rowsum(G ⊙ P))` for probabilities `p` and their
/// gradient `g`, in `p`'s dtype.
fn softmax_backward(p: &Tensor, g: &Tensor, scale: f64) -> Result<Tensor> {
    if kernels(&[p, g]) {
        let width = p.dim(D::Minus1)?;
        let ds = on_cpu("attention", &[p, g], |s| {
            activation::softmax_grad_rows(s[0], s[1], width, scale as f32)
        })?;
        return Tensor::from_vec(ds, p.shape(), p.device());
    }
    let pf = p.to_dtype(DType::F32)?;
    let gf = g.to_dtype(DType::F32)?;
    let row = (&gf * &pf)?.sum_keepdim(D::Minus1)?;
    ((gf.broadcast_sub(&row)? * pf)? * scale)?.to_dtype(p.dtype())
}

/// The heads of a layer's attention: which, how many and how wide.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub q: usize,
    /// Key/value heads (grouped-query attention shares each among `q / kv` query heads).
    pub kv: usize,
    /// Width of one head.
    pub dim: usize,
}

/// A layer's attention as one node, from the projections `q` (b, t, heads.q · d), `k` and `v`
/// (b, t, heads.kv · d) to the heads' outputs side by side (b, t, heads.q · d): the heads split
/// off, rotary embedding on queries and keys, `P = softmax(scale · q kᵀ + mask)` with the query
/// heads grouped under their key/value head (no copies of keys and values per query head), `P v`,
/// and the heads merged. `mask` (additive, constant; (t, t) or (b, 1, t, t)) is the same for
/// every query head. It keeps `P` and the rotated heads; the backward, with `G` the
/// output gradient split into heads: `dP = G vᵀ`, `dv = Pᵀ G`, `dS = scale · P ⊙ (dP −
/// rowsum(dP ⊙ P))`, `dq = dS k`, `dk = dSᵀ q`, rotated back (the rotation by the opposite angle)
/// and merged. Composed, each of those reshapes, transposes and products is a graph node whose
/// backward zero-fills a gradient and adds to it.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    (cos, sin): (&Tensor, &Tensor),
    mask: &Tensor,
    heads: Heads,
    scale: f64,
) -> Result<Tensor> {
    let (b, t, _) = q.dims3()?;
    let Heads {
        q: nh,
        kv: nkv,
        dim: hd,
    } = heads;
    if nkv == 0 || nh % nkv != 0 {
        candle_core::bail!("attention: {nh} query heads for {nkv} key/value heads");
    }
    let rep = nh / nkv;
    // (b, t, n·d) → (b, n, t, d), and back.
    let split = move |z: &Tensor, n: usize| -> Result<Tensor> {
        z.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()
    };
    let merge = move |z: &Tensor, n: usize| -> Result<Tensor> {
        z.reshape((b, n, t, hd))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, n * hd))
    };
    let rot = |z: Tensor| candle_nn::rotary_emb::rope(&z, cos, sin);
    let qh = rot(split(&q.detach(), nh)?)?.reshape((b, nkv, rep * t, hd))?;
    let kh = rot(split(&k.detach(), nkv)?)?;
    let vh = split(&v.detach(), nkv)?;
    let dtype = q.dtype();
    let mask = Tensor::cat(&vec![mask; rep], mask.rank() - 2)?;
    let scores = (qh.matmul(&kh.t()?)? * scale)?.broadcast_add(&mask)?;
    let p = softmax_scores(scores, dtype)?;
    let value = merge(&p.matmul(&vh)?, nh)?;
    let (cos, sin) = (cos.clone(), sin.neg()?);
    attach(
        "attention",
        &[q, k, v],
        value,
        Box::new(move |_, _, g| {
            let gh = split(g, nh)?.reshape((b, nkv, rep * t, hd))?;
            let dv = p.t()?.matmul(&gh)?;
            let ds = softmax_backward(&p, &gh.matmul(&vh.t()?)?, scale)?;
            let dq = ds.matmul(&kh)?.reshape((b, nh, t, hd))?;
            let dk = ds.t()?.matmul(&qh)?;
            let unrot = |z: &Tensor| candle_nn::rotary_emb::rope(&z.contiguous()?, &cos, &sin);
            Ok(vec![
                Some(merge(&unrot(&dq)?, nh)?),
                Some(merge(&unrot(&dk)?, nkv)?),
                Some(merge(&dv, nkv)?),
            ])
        }),
    )
}

/// SwiGLU `silu(a) ⊙ b` (the MLP's gate and up projections), `silu(a) = a σ(a)`. Backward:
/// `da = g ⊙ b ⊙ σ(a)(1 + a(1 − σ(a)))`, `db = g ⊙ silu(a)`; it keeps `a` and `b` only (candle's
/// composed `silu` and product keep four tensors and take nine passes).
pub fn swiglu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ad, bd) = (a.detach(), b.detach());
    let value = if kernels(&[&ad, &bd]) && a.shape() == b.shape() {
        let v = on_cpu("swiglu", &[&ad, &bd], |s| activation::swiglu(s[0], s[1]))?;
        Tensor::from_vec(v, a.shape(), a.device())?
    } else {
        (ad.silu()? * bd)?
    };
    attach(
        "swiglu",
        &[a, b],
        value,
        Box::new(move |args, _, g| {
            let (a, b) = (args[0], args[1]);
            if kernels(&[a, b, g]) && a.shape() == b.shape() {
                let (da, db) = on_cpu("swiglu", &[a, b, g], |s| {
                    activation::swiglu_grad(s[0], s[1], s[2])
                })?;
                return Ok(vec![
                    Some(Tensor::from_vec(da, a.shape(), a.device())?),
                    Some(Tensor::from_vec(db, b.shape(), b.device())?),
                ]);
            }
            let dtype = a.dtype();
            let (af, bf, gf) = (
                a.to_dtype(DType::F32)?,
                b.to_dtype(DType::F32)?,
                g.to_dtype(DType::F32)?,
            );
            let s = ((af.neg()?.exp()? + 1.0)?).recip()?;
            let silu = (&af * &s)?;
            let da = ((&gf * bf)? * (&s * ((&af * (1.0 - &s)?)? + 1.0)?)?)?;
            let db = (gf * silu)?;
            Ok(vec![Some(da.to_dtype(dtype)?), Some(db.to_dtype(dtype)?)])
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Gradients of `Σ c ⊙ f(args)` with respect to each argument, by autograd.
    fn grads(
        f: impl Fn(&[Tensor]) -> Result<Tensor>,
        args: &[Tensor],
        seed: u64,
    ) -> (Tensor, Vec<Tensor>) {
        let vars: Vec<Var> = args.iter().map(|a| Var::from_tensor(a).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&ts).unwrap();
        let c = random(y.dims(), seed);
        let g = (&y * &c).unwrap().sum_all().unwrap().backward().unwrap();
        let out = ts.iter().map(|t| g.get(t).unwrap().clone()).collect();
        (y.detach(), out)
    }

    fn random(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        let d = crate::model::max_abs_diff(a, b).unwrap();
        assert!(d < tol, "{what}: max difference {d}");
    }

    fn compare(
        fused: impl Fn(&[Tensor]) -> Result<Tensor>,
        composed: impl Fn(&[Tensor]) -> Result<Tensor>,
        args: &[Tensor],
    ) {
        // With the CPU kernels, and by the composed path other devices take.
        let (yc, gc) = grads(&composed, args, 9);
        for with_kernels in [true, false] {
            let (yf, gf) = if with_kernels {
                grads(&fused, args, 9)
            } else {
                without_kernels(|| grads(&fused, args, 9))
            };
            close(&yf, &yc, 1e-5, &format!("value (kernels {with_kernels})"));
            for (i, (a, b)) in gf.iter().zip(&gc).enumerate() {
                let what = format!("gradient of argument {i} (kernels {with_kernels})");
                close(a, b, 1e-5, &what);
            }
        }
    }

    #[test]
    fn rms_norm_backward_equals_the_composed_ops_backward() {
        let composed = |a: &[Tensor]| {
            let var = a[0].sqr()?.mean_keepdim(D::Minus1)?;
            a[0].broadcast_div(&(var + 1e-6)?.sqrt()?)?
                .broadcast_mul(&a[1])
        };
        let args = [random(&[2, 3, 8], 1), (random(&[8], 2) + 1.0).unwrap()];
        compare(|a| rms_norm(&a[0], &a[1], 1e-6), composed, &args);
    }

    #[test]
    fn rms_norm_backward_with_a_frozen_weight_equals_the_composed_ops_backward() {
        let w = (random(&[8], 2) + 1.0).unwrap();
        let composed = {
            let w = w.clone();
            move |a: &[Tensor]| {
                let var = a[0].sqr()?.mean_keepdim(D::Minus1)?;
                a[0].broadcast_div(&(var + 1e-6)?.sqrt()?)?
                    .broadcast_mul(&w)
            }
        };
        let fused = move |a: &[Tensor]| rms_norm(&a[0], &w, 1e-6);
        compare(fused, composed, &[random(&[2, 3, 8], 1)]);
    }

    #[test]
    fn swiglu_backward_equals_the_composed_ops_backward() {
        // 40,000 elements: more than one parallel block, and a tail after the vector lanes;
        // inputs out to ±9 where σ saturates.
        let a = (random(&[4, 10_000], 11) * 9.0).unwrap();
        let b = random(&[4, 10_000], 12);
        compare(|x| swiglu(&x[0], &x[1]), |x| x[0].silu()? * &x[1], &[a, b]);
    }

    #[test]
    fn rope_backward_equals_the_composed_ops_backward() {
        let (t, d) = (5, 8);
        let angles: Vec<f32> = (0..t * d / 2).map(|i| 0.37 * i as f32).collect();
        let ang = Tensor::from_vec(angles, (t, d / 2), &Device::Cpu).unwrap();
        let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
        let composed = {
            let (cos, sin) = (cos.clone(), sin.clone());
            move |a: &[Tensor]| candle_nn::rotary_emb::rope_slow(&a[0], &cos, &sin)
        };
        let fused = move |a: &[Tensor]| rope(&a[0], &cos, &sin);
        compare(fused, composed, &[random(&[2, 3, t, d], 3)]);
    }

    #[test]
    fn attention_backward_equals_the_composed_ops_backward() {
        let (b, g, r, t, d) = (2, 2, 6, 3, 4);
        // Causal mask for 2 query heads per key head: rows are (head, position).
        let mask: Vec<f32> = (0..r * t)
            .map(|i| {
                let (row, col) = (i / t % t, i % t);
                if col > row {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (r, t), &Device::Cpu).unwrap();
        let scale = 0.5;
        let composed = {
            let mask = mask.clone();
            move |a: &[Tensor]| {
                let s = (a[0].matmul(&a[1].t()?)? * scale)?.broadcast_add(&mask)?;
                candle_nn::ops::softmax(&s, D::Minus1)
            }
        };
        let fused = move |a: &[Tensor]| attention_probs(&a[0], &a[1], &mask, scale);
        compare(
            fused,
            composed,
            &[random(&[b, g, r, d], 4), random(&[b, g, t, d], 5)],
        );
    }

    #[test]
    fn attention_node_backward_equals_the_composed_ops_backward() {
        // Grouped-query attention: 4 query heads over 2 key/value heads, causal mask.
        let (b, t, d) = (2, 5, 4);
        let heads = Heads {
            q: 4,
            kv: 2,
            dim: d,
        };
        let angles: Vec<f32> = (0..t * d / 2).map(|i| 0.29 * i as f32).collect();
        let ang = Tensor::from_vec(angles, (t, d / 2), &Device::Cpu).unwrap();
        let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
        let mask =
            Tensor::from_vec(super::super::decoder::causal_mask(t), (t, t), &Device::Cpu).unwrap();
        let scale = 0.5;
        let composed = {
            let (cos, sin, mask) = (cos.clone(), sin.clone(), mask.clone());
            move |a: &[Tensor]| {
                let split =
                    |z: &Tensor, n: usize| z.reshape((b, t, n, d))?.transpose(1, 2)?.contiguous();
                let rot = |z: Tensor| candle_nn::rotary_emb::rope_slow(&z, &cos, &sin);
                let q = rot(split(&a[0], 4)?)?;
                let rep = |z: Tensor| {
                    z.unsqueeze(2)?
                        .expand((b, 2, 2, t, d))?
                        .reshape((b, 4, t, d))
                };
                let k = rep(rot(split(&a[1], 2)?)?)?;
                let v = rep(split(&a[2], 2)?)?;
                let s = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
                let o = candle_nn::ops::softmax(&s, D::Minus1)?.matmul(&v)?;
                o.transpose(1, 2)?.reshape((b, t, 4 * d))
            }
        };
        let fused =
            move |a: &[Tensor]| attention(&a[0], &a[1], &a[2], (&cos, &sin), &mask, heads, scale);
        compare(
            fused,
            composed,
            &[
                random(&[b, t, 4 * d], 21),
                random(&[b, t, 2 * d], 22),
                random(&[b, t, 2 * d], 23),
            ],
        );
    }

    #[test]
    fn an_op_off_the_graph_returns_its_value_and_a_second_forward_fails() {
        let x = random(&[2, 4], 6);
        let y = rms_norm(
            &x,
            &Tensor::ones(4, DType::F32, &Device::Cpu).unwrap(),
            1e-6,
        )
        .unwrap();
        assert!(!y.track_op());
        let op = Attached {
            name: "test",
            value: Mutex::new(Some(x.clone())),
            backward: Box::new(|_, _, _| Ok(vec![None])),
        };
        assert!(op.cpu().is_ok());
        assert!(op
            .cpu()
            .unwrap_err()
            .to_string()
            .contains("forward ran twice"));
    }
}
