//! Small, fast, seedable generators for inner loops where ChaCha is too slow (UMAP's negative
//! sampling): SplitMix64 to derive well-mixed seeds, xorshift64 to draw.

/// A well-mixed 64-bit seed from any input (SplitMix64's finaliser).
pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// xorshift64: the negative-sampling generator (fast; seeded per epoch and chunk).
pub(crate) fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
