//! UMAP's optimisation: the curve 1 / (1 + a d^2b) fitted to `min_dist` and `spread`, its
//! gradient coefficients read from tables, and the seeded parallel SGD with negative sampling.

use rayon::prelude::*;

use super::options::UmapOptions;
use crate::numeric::rng::{splitmix, xorshift};

/// a, b of 1 / (1 + a x^2b) fitted (least squares) to 1 for x < min_dist and
/// exp(-(x - min_dist) / spread) beyond, on 300 points over [0, 3·spread], as umap-learn does.
pub(super) fn find_ab(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let sse = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| {
                let f = 1.0 / (1.0 + a * x.powf(2.0 * b));
                (f - y) * (f - y)
            })
            .sum()
    };
    // Levenberg-Marquardt on (a, b) from (1, 1), as scipy's curve_fit.
    let (mut a, mut b, mut lambda) = (1.0f64, 1.0f64, 1e-3);
    let mut cur = sse(a, b);
    for _ in 0..500 {
        let (mut jtj, mut jtr) = ([[0.0f64; 2]; 2], [0.0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x <= 0.0 {
                continue;
            }
            let p = x.powf(2.0 * b);
            let den = 1.0 + a * p;
            let f = 1.0 / den;
            let da = -p / (den * den);
            let db = -a * p * 2.0 * x.ln() / (den * den);
            let r = y - f;
            let jr = [da, db];
            for u in 0..2 {
                jtr[u] += jr[u] * r;
                for v in 0..2 {
                    jtj[u][v] += jr[u] * jr[v];
                }
            }
        }
        let m = [
            [jtj[0][0] * (1.0 + lambda), jtj[0][1]],
            [jtj[1][0], jtj[1][1] * (1.0 + lambda)],
        ];
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        if det.abs() < 1e-300 {
            break;
        }
        let da = (m[1][1] * jtr[0] - m[0][1] * jtr[1]) / det;
        let db = (m[0][0] * jtr[1] - m[1][0] * jtr[0]) / det;
        let (na, nb) = (a + da, b + db);
        let new = sse(na, nb);
        if new < cur {
            let done = (cur - new) < 1e-15 * cur.max(1e-300);
            (a, b, cur) = (na, nb, new);
            lambda *= 0.3;
            if done {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e12 {
                break;
            }
        }
    }
    (a, b)
}

/// A smooth positive function of d² > 0, tabulated for the SGD: 128 linear pieces per octave of
/// d² over [2^LO, 2^HI), indexed by the float's exponent and top mantissa bits (no log, no pow).
/// Relative error of the interpolation below 1e-4 for the UMAP gradient coefficients; outside
/// the range the function is evaluated directly. The layout's two coefficients, one pow and one
/// division each, were most of its time.
struct Table {
    /// (value at the piece's start, increase across the piece)
    pieces: Vec<(f32, f32)>,
    f: fn(f64, f64, f64) -> f64,
    a: f64,
    b: f64,
}

impl Table {
    const LO: i32 = -16;
    const HI: i32 = 12;
    const SEG: u32 = 7;

    fn new(f: fn(f64, f64, f64) -> f64, a: f64, b: f64) -> Self {
        let per = 1usize << Self::SEG;
        let octaves = (Self::HI - Self::LO) as usize;
        let at = |p: usize| {
            let (o, s) = (p / per, p % per);
            let x = 2f64.powi(Self::LO + o as i32) * (1.0 + s as f64 / per as f64);
            f(x, a, b)
        };
        let pieces = (0..octaves * per)
            .map(|p| (at(p) as f32, (at(p + 1) - at(p)) as f32))
            .collect();
        Table { pieces, f, a, b }
    }

    #[inline(always)]
    fn get(&self, d2: f32) -> f32 {
        let bits = d2.to_bits();
        let e = (bits >> 23) as i32 - 127;
        if !(Self::LO..Self::HI).contains(&e) {
            return (self.f)(d2 as f64, self.a, self.b) as f32;
        }
        let low = 23 - Self::SEG;
        let p = ((e - Self::LO) as usize) << Self::SEG
            | ((bits >> low) & ((1 << Self::SEG) - 1)) as usize;
        let t = (bits & ((1 << low) - 1)) as f32 * (1.0 / (1u32 << low) as f32);
        let (v, dv) = self.pieces[p];
        v + t * dv
    }
}

/// The attractive coefficient of an edge at squared distance d2 (umap-learn's
/// −2ab·d2^(b−1) / (1 + a·d2^b)).
fn attract(d2: f64, a: f64, b: f64) -> f64 {
    -2.0 * a * b * d2.powf(b - 1.0) / (a * d2.powf(b) + 1.0)
}

/// The repulsive coefficient of a negative sample (umap-learn's 2b / ((0.001 + d2)(1 + a·d2^b))).
fn repel(d2: f64, a: f64, b: f64) -> f64 {
    2.0 * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0))
}

/// The edges the SGD samples, sorted by head, with their sampling periods (in epochs).
pub(super) struct Edges {
    pub head: Vec<usize>,
    pub tail: Vec<usize>,
    pub eps: Vec<f64>,
    pub eps_neg: Vec<f64>,
}

#[inline(always)]
fn load<const D: usize>(v: &[f32], i: usize) -> [f32; D] {
    v[i * D..(i + 1) * D].try_into().unwrap()
}

#[inline(always)]
fn store<const D: usize>(v: &mut [f32], i: usize, p: [f32; D]) {
    v[i * D..(i + 1) * D].copy_from_slice(&p);
}

#[inline(always)]
fn dist2<const D: usize>(x: &[f32; D], y: &[f32; D]) -> f32 {
    let mut s = 0.0;
    for t in 0..D {
        s += (x[t] - y[t]) * (x[t] - y[t]);
    }
    s
}

/// The SGD epochs of the layout, in place, for points of `D` coordinates.
#[allow(clippy::too_many_arguments)]
pub(super) fn sgd<const D: usize>(
    emb: &mut [f32],
    edges: &Edges,
    n_epochs: usize,
    a: f32,
    b: f32,
    opts: &UmapOptions,
    base_seed: u64,
) {
    let n = emb.len() / D;
    let Edges {
        head,
        tail,
        eps,
        eps_neg,
    } = edges;
    let mut next = eps.clone();
    let mut next_neg = eps_neg.clone();
    let attract_t = Table::new(attract, a as f64, b as f64);
    let repel_t = Table::new(repel, a as f64, b as f64);
    // Parallel and still deterministic: the vertices are cut into a fixed number of chunks
    // (whatever the thread count), and each epoch runs in rounds. In a round a chunk processes
    // its share of the edges whose head it owns (edges are sorted by head), reads its own
    // vertices live and every other one from the snapshot taken at the start of the round, and
    // moves the tail of an edge at once when it owns it, else after the round (in chunk order).
    // Negative samples come from a generator per (epoch, round, chunk).
    const CHUNKS: usize = 32;
    // Each epoch runs in rounds with a fresh snapshot, so positions read are at most 1/ROUNDS
    // of an epoch old.
    const ROUNDS: usize = 4;
    let bounds: Vec<usize> = (0..=CHUNKS).map(|c| c * n / CHUNKS).collect();
    let edge_at = |v: usize| head.partition_point(|&h| h < v);
    let edge_bounds: Vec<usize> = bounds.iter().map(|&v| edge_at(v)).collect();
    let mut snapshot = emb.to_vec();
    for (epoch, round) in (0..n_epochs).flat_map(|e| (0..ROUNDS).map(move |r| (e, r))) {
        let alpha = (opts.learning_rate * (1.0 - epoch as f64 / n_epochs as f64)) as f32;
        let ep = epoch as f64;
        snapshot.copy_from_slice(emb);
        let snap = &snapshot;
        // Split positions, schedules and edge ranges by chunk.
        let mut pos_parts: Vec<&mut [f32]> = Vec::with_capacity(CHUNKS);
        let mut rest = &mut *emb;
        for c in 0..CHUNKS {
            let (a_, b_) = rest.split_at_mut((bounds[c + 1] - bounds[c]) * D);
            pos_parts.push(a_);
            rest = b_;
        }
        let mut next_parts: Vec<(&mut [f64], &mut [f64])> = Vec::with_capacity(CHUNKS);
        let (mut rn, mut rg) = (next.as_mut_slice(), next_neg.as_mut_slice());
        for c in 0..CHUNKS {
            let len = edge_bounds[c + 1] - edge_bounds[c];
            let (a1, b1) = rn.split_at_mut(len);
            let (a2, b2) = rg.split_at_mut(len);
            next_parts.push((a1, a2));
            rn = b1;
            rg = b2;
        }
        let pending: Vec<Vec<(usize, [f32; D])>> = pos_parts
            .into_par_iter()
            .zip(next_parts)
            .enumerate()
            .map(|(c, (own, (nx, nn)))| {
                let mut pending: Vec<(usize, [f32; D])> = Vec::new();
                let first = bounds[c];
                let last = bounds[c + 1];
                let key = ((epoch * ROUNDS + round) as u64) << 20 | c as u64;
                let mut state = splitmix(base_seed ^ key);
                let len = edge_bounds[c + 1] - edge_bounds[c];
                for le in len * round / ROUNDS..len * (round + 1) / ROUNDS {
                    if nx[le] > ep {
                        continue;
                    }
                    let e = edge_bounds[c] + le;
                    let (j, k) = (head[e], tail[e]);
                    let lj = j - first;
                    let mut cur: [f32; D] = load(own, lj);
                    let owned = k >= first && k < last;
                    let other: [f32; D] = if owned {
                        load(own, k - first)
                    } else {
                        load(snap, k)
                    };
                    let d2 = dist2(&cur, &other);
                    if d2 > 0.0 {
                        let coef = attract_t.get(d2);
                        let mut push = [0f32; D];
                        for t in 0..D {
                            let g = (coef * (cur[t] - other[t])).clamp(-4.0, 4.0) * alpha;
                            cur[t] += g;
                            push[t] = -g;
                        }
                        // The tail moves too, as in umap-learn: at once when this chunk owns
                        // it, else after the round (in chunk order, so still deterministic).
                        if owned {
                            // `other` still holds the tail's position: `own` is unchanged.
                            let mut o = other;
                            for t in 0..D {
                                o[t] += push[t];
                            }
                            store(own, k - first, o);
                        } else {
                            pending.push((k, push));
                        }
                    }
                    nx[le] += eps[e];
                    let n_neg = (((ep - nn[le]) / eps_neg[e]) as i64).max(0);
                    // The negative samples' repulsions are all taken at the position the
                    // vertex has after its positive move and then added together, rather than
                    // one after the other as in umap-learn: the same gradients to first order,
                    // and independent computations the CPU can overlap (the sequential chain
                    // of pow and division was most of the layout time).
                    let mut delta = [0f32; D];
                    for _ in 0..n_neg {
                        state = xorshift(state);
                        // Uniform in 0..n by multiply-shift (no division).
                        let k = (((state >> 32) * n as u64) >> 32) as usize;
                        if k == j {
                            continue;
                        }
                        let other: [f32; D] = if k >= first && k < last {
                            load(own, k - first)
                        } else {
                            load(snap, k)
                        };
                        let d2 = dist2(&cur, &other);
                        if d2 > 0.0 {
                            let coef = repel_t.get(d2);
                            for t in 0..D {
                                delta[t] += (coef * (cur[t] - other[t])).clamp(-4.0, 4.0) * alpha;
                            }
                        }
                    }
                    for t in 0..D {
                        cur[t] += delta[t];
                    }
                    store(own, lj, cur);
                    nn[le] += n_neg as f64 * eps_neg[e];
                }
                pending
            })
            .collect();
        for (k, push) in pending.into_iter().flatten() {
            for t in 0..D {
                emb[k * D + t] += push[t];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ab_fit_matches_umap_learn_defaults() {
        let (a, b) = find_ab(1.0, 0.1);
        // umap-learn 0.5: find_ab_params(1.0, 0.1) = (1.5769434603113077, 0.8950608779109733)
        assert!((a - 1.5769).abs() < 2e-3, "a = {a}");
        assert!((b - 0.8951).abs() < 2e-3, "b = {b}");
    }

    #[test]
    fn tabulated_coefficients_are_accurate() {
        let (a, b) = find_ab(1.0, 0.1);
        for f in [attract, repel] {
            let t = Table::new(f, a, b);
            let mut x = 1e-7f32;
            while x < 1e5 {
                let (got, want) = (t.get(x) as f64, f(x as f64, a, b));
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs(),
                    "{x}: {got} vs {want}"
                );
                x *= 1.0137;
            }
        }
    }
}
