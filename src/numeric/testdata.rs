//! Synthetic point clouds with planted structure, for the tests of the numeric code and the
//! layouts built on it.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// `c` Gaussian clusters of `m` points in `d` dims, far apart (centre 10 on every `c`-th axis),
/// and each point's cluster.
pub fn clusters(c: usize, m: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for k in 0..c {
        for _ in 0..m {
            for t in 0..d {
                let centre = if t % c == k { 10.0 } else { 0.0 };
                let z: f32 = StandardNormal.sample(&mut rng);
                x.push(centre + z);
            }
            y.push(k);
        }
    }
    (x, y)
}
