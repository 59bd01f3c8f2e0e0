//! A strided single-threaded f32 GEMM on the `gemm` crate (the kernels candle uses), with
//! bounds checked before the unsafe call: the fast BERT path, the neighbour search and the
//! silhouettes multiply through it. Callers parallelise over blocks.

/// `c[m×n] (row stride ldc) = scale · a[m×k] · b[k×n]`, single-threaded, for operands given by
/// their first element and (row, column) strides. Bounds are checked before the unsafe call.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    c: &mut [f32],
    ldc: usize,
    scale: f32,
) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(m, k, a_rs, a_cs) < a.len(), "lhs out of bounds");
    assert!(last(k, n, b_rs, b_cs) < b.len(), "rhs out of bounds");
    assert!(last(m, n, ldc, 1) < c.len(), "dst out of bounds");
    // SAFETY: every element the kernel touches lies inside the slices (checked above), and
    // `c` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
