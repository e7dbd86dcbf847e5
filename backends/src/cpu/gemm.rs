//! Matrix products through the `gemm` crate: `dot`, `batch_dot`, `fully_connected`.
//!
//! The workspace enables gemm's `x86-v4` feature. That feature only *compiles in* the
//! AVX-512 micro-kernels; which kernel runs is decided at run time: gemm-common 0.19's
//! `init_gemm_fn` returns the AVX-512 kernel only when `is_x86_feature_detected!("avx512f")`
//! holds, else the AVX2+FMA kernel when `fma` is detected, else the scalar one
//! (`gemm-common/src/gemm.rs`, macro `gemm_def!`; `feature_detected!` in `lib.rs` maps to
//! `std::arch::is_x86_feature_detected!` with the default `std` feature). So the same binary
//! stays correct on CPUs without AVX-512, and runs about twice as fast on CPUs with it.
//!
//! On the 2-core AVX-512 build machine `gemm` (x86-v4) also beat `matrixmultiply` 0.3 at
//! 1024³ and at 64×784×256 (where `matrixmultiply` did not speed up with threads); see the
//! numbers in `benches/cpu_kernels.rs`'s header.

use super::{checked_numel, data_of, tensor_of, threads, with_real, zeros, Real};
/// How a product is split over threads (re-exported from the `gemm` crate).
pub use gemm::Parallelism;
use kiln_ir::{Tensor, TensorView};
use rayon::prelude::*;

/// Multiply-adds (m·n·k) from which one product is split across threads. Waking a second
/// rayon worker costs tens of µs on the 2-core build machine: at 64³ two column blocks ran at
/// 21 GFLOP/s against 150 for one thread; from 96³ to 256³ the two were within noise of each
/// other (110-230 either way); 64×784×256 (12.8M) gained clearly (196-237 vs 145) and 1024³
/// doubled. So products split from 2^23 (8.4M, about 200³) up.
pub const GEMM_PARALLEL_MIN_WORK: usize = 1 << 23;

/// Multiply-adds from which a batch of independent products (batch_dot, the images of a
/// convolution) is split across threads, each product single-threaded: one fork/join per op
/// instead of per product, so it pays earlier.
pub const BATCH_PARALLEL_MIN_WORK: usize = 1 << 22;

/// A read-only strided matrix: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A matrix view; `None` when some element would lie outside `data` (or on overflow).
    pub fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Option<Self> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(rs)?
                .checked_add((cols - 1).checked_mul(cs)?)?;
            if last >= data.len() {
                return None;
            }
        }
        Some(MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A contiguous row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Option<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// How to split one product over threads.
pub fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    let t = threads();
    let work = m.saturating_mul(n).saturating_mul(k);
    if t > 1 && work >= GEMM_PARALLEL_MIN_WORK {
        Parallelism::Rayon(t)
    } else {
        Parallelism::None
    }
}

/// `dst = a · b` (or `dst += a · b` when `accumulate`), `dst` a contiguous row-major
/// `a.rows × b.cols` matrix.
///
/// With `Parallelism::Rayon(t)` (t > 1; 0 means all threads) the product is split into `t`
/// independent single-threaded products over blocks of output columns (or rows, when there
/// are few columns). Measured against gemm's own threading (f32 GFLOP/s, 2 threads, best
/// rounds on the build machine): 64×784×256 196-218 vs 155-192, 1024³ 313-316 vs 272-308.
///
/// # Panics
/// When the operands' shapes disagree or `dst` has the wrong length: callers derive all three
/// from checked shapes, so this is an internal invariant, never a user-input error.
pub fn matmul<T: Real>(
    dst: &mut [T],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    par: Parallelism,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "matmul: inner dimensions differ");
    assert_eq!(dst.len(), m * n, "matmul: destination has the wrong size");
    if m == 0 || n == 0 {
        return;
    }
    let t = match par {
        Parallelism::Rayon(0) => threads(),
        Parallelism::Rayon(t) => t,
        _ => 1,
    };
    if t > 1 && n >= 64 * t {
        // Column blocks, a multiple of the AVX-512 f32 kernel width wide.
        let width = n.div_ceil(t).next_multiple_of(16);
        let out = SharedOut(dst.as_mut_ptr());
        let starts: Vec<usize> = (0..n).step_by(width).collect();
        starts.into_par_iter().for_each(|j0| {
            let nb = width.min(n - j0);
            // SAFETY: `dst` holds m×n elements; this task writes only elements (i, j) with
            // j in [j0, j0 + nb) ⊂ [0, n), at offset i*n + j, a set disjoint from every
            // other task's. `dst` stays mutably borrowed (unused elsewhere) until all tasks
            // end. `b.col_block` keeps its operand inside its slice.
            unsafe {
                raw_gemm(
                    out.at(j0),
                    n,
                    m,
                    nb,
                    a,
                    b.col_block(j0, nb),
                    accumulate,
                    Parallelism::None,
                )
            };
        });
    } else if t > 1 && m >= 16 * t {
        let rows = m.div_ceil(t);
        dst.par_chunks_mut(rows * n)
            .enumerate()
            .for_each(|(bi, d)| {
                let block = a.row_block(bi * rows, d.len() / n);
                // SAFETY: `d` is exactly this block's (d.len()/n) × n slice of `dst`.
                unsafe {
                    raw_gemm(
                        d.as_mut_ptr(),
                        n,
                        d.len() / n,
                        n,
                        block,
                        b,
                        accumulate,
                        Parallelism::None,
                    )
                };
            });
    } else {
        // SAFETY: `dst` is exactly the m×n output.
        unsafe { raw_gemm(dst.as_mut_ptr(), n, m, n, a, b, accumulate, par) };
    }
}

/// The output pointer, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut<T>(*mut T);

// SAFETY: tasks only write disjoint elements through it (see `matmul`).
unsafe impl<T: Send> Send for SharedOut<T> {}
// SAFETY: as above; the pointer itself is never written.
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// The pointer to element `offset` (a method, so closures capture the whole wrapper).
    fn at(self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

impl<'a, T> MatRef<'a, T> {
    /// Columns `j0 .. j0 + cols` (within bounds: callers pass a sub-range of `0..self.cols`).
    fn col_block(self, j0: usize, cols: usize) -> Self {
        assert!(j0 + cols <= self.cols, "col_block out of range");
        let start = if self.rows > 0 && cols > 0 {
            j0 * self.cs
        } else {
            0
        };
        MatRef {
            data: &self.data[start.min(self.data.len())..],
            cols,
            ..self
        }
    }

    /// Rows `i0 .. i0 + rows` (within bounds: callers pass a sub-range of `0..self.rows`).
    fn row_block(self, i0: usize, rows: usize) -> Self {
        assert!(i0 + rows <= self.rows, "row_block out of range");
        let start = if self.cols > 0 && rows > 0 {
            i0 * self.rs
        } else {
            0
        };
        MatRef {
            data: &self.data[start.min(self.data.len())..],
            rows,
            ..self
        }
    }
}

/// One gemm call writing the `m × n` block at `dst` (row stride `dst_rs`, column stride 1).
///
/// # Safety
/// `dst + i*dst_rs + j` must be valid for writes (and reads when `accumulate`) for all
/// i < m, j < n, and not aliased by anything else during the call; `a` is m×k and `b` k×n
/// (their bounds were checked when they were built).
#[allow(clippy::too_many_arguments)]
unsafe fn raw_gemm<T: Real>(
    dst: *mut T,
    dst_rs: usize,
    m: usize,
    n: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    par: Parallelism,
) {
    debug_assert!(a.rows == m && b.cols == n && a.cols == b.rows);
    // SAFETY: the caller guarantees `dst`; `MatRef` guarantees every element (i, j) of `a`
    // and `b` lies inside its slice. T is f32 or f64, which gemm supports. With
    // read_dst = false gemm never reads dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            a.cols,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

/// A row-major copy of `data` (of shape `dims`) with its axes reversed: MXNet's `transpose`
/// without axes, which is what `dot`'s flags mean for operands of rank > 2.
fn reverse_axes<T: Real>(data: &[T], dims: &[usize]) -> Vec<T> {
    let rank = dims.len();
    let mut out = Vec::with_capacity(data.len());
    // Output position (j_{r-1}, .., j_0) reads input (j_0, .., j_{r-1}): walk the output in
    // row-major order with the input's strides reversed.
    let mut in_strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * dims[i + 1];
    }
    let out_dims: Vec<usize> = dims.iter().rev().copied().collect();
    let out_strides: Vec<usize> = in_strides.iter().rev().copied().collect();
    let mut index = vec![0usize; rank];
    let mut offset = 0usize;
    for _ in 0..data.len() {
        out.push(data[offset]);
        for d in (0..rank).rev() {
            index[d] += 1;
            offset += out_strides[d];
            if index[d] < out_dims[d] {
                break;
            }
            offset -= out_strides[d] * out_dims[d];
            index[d] = 0;
        }
    }
    out
}

/// MXNet `dot`.
pub fn dot(ta: bool, tb: bool, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let [a, b] = inputs else { return None };
    with_real!(a.data, T => dot_typed::<T>(ta, tb, a, b))
}

fn dot_typed<T: Real>(
    ta: bool,
    tb: bool,
    a: &TensorView<'_>,
    b: &TensorView<'_>,
) -> Option<Tensor> {
    let (ad, bd) = (data_of::<T>(a)?, data_of::<T>(b)?);
    let (ash, bsh) = (a.shape.dims(), b.shape.dims());
    if ash.is_empty() || bsh.is_empty() {
        return None;
    }
    // A transposed operand of rank > 2 is a full axis reversal: materialize it. Rank 2 is a
    // strided view; rank 1 is unchanged.
    let a_rev;
    let (a_data, a_dims, a_strided_t) = if ta && ash.len() > 2 {
        a_rev = reverse_axes(ad, ash);
        (
            &a_rev[..],
            ash.iter().rev().copied().collect::<Vec<_>>(),
            false,
        )
    } else if ta && ash.len() == 2 {
        (ad, vec![ash[1], ash[0]], true)
    } else {
        (ad, ash.to_vec(), false)
    };
    let b_rev;
    let (b_data, b_dims, b_strided_t) = if tb && bsh.len() > 2 {
        b_rev = reverse_axes(bd, bsh);
        (
            &b_rev[..],
            bsh.iter().rev().copied().collect::<Vec<_>>(),
            false,
        )
    } else if tb && bsh.len() == 2 {
        (bd, vec![bsh[1], bsh[0]], true)
    } else {
        (bd, bsh.to_vec(), false)
    };
    let k = *a_dims.last()?;
    if b_dims[0] != k {
        return None;
    }
    let m = checked_numel(&a_dims[..a_dims.len() - 1])?;
    let n = checked_numel(&b_dims[1..])?;
    let am = if a_strided_t {
        MatRef::row_major(a_data, k, m)?.t()
    } else {
        MatRef::row_major(a_data, m, k)?
    };
    let bm = if b_strided_t {
        MatRef::row_major(b_data, n, k)?.t()
    } else {
        MatRef::row_major(b_data, k, n)?
    };
    let mut out = zeros::<T>(m.checked_mul(n)?);
    matmul(&mut out, am, bm, false, parallelism(m, n, k));
    let mut dims = a_dims[..a_dims.len() - 1].to_vec();
    dims.extend_from_slice(&b_dims[1..]);
    tensor_of(out, &dims)
}

/// `batch_dot`: one product per leading index.
pub fn batch_dot(ta: bool, tb: bool, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let [a, b] = inputs else { return None };
    with_real!(a.data, T => batch_dot_typed::<T>(ta, tb, a, b))
}

fn batch_dot_typed<T: Real>(
    ta: bool,
    tb: bool,
    a: &TensorView<'_>,
    b: &TensorView<'_>,
) -> Option<Tensor> {
    let (ad, bd) = (data_of::<T>(a)?, data_of::<T>(b)?);
    let (ash, bsh) = (a.shape.dims(), b.shape.dims());
    let r = ash.len();
    if r < 3 || bsh.len() != r || ash[..r - 2] != bsh[..r - 2] {
        return None;
    }
    let (n, k) = if ta {
        (ash[r - 1], ash[r - 2])
    } else {
        (ash[r - 2], ash[r - 1])
    };
    let (kb, m) = if tb {
        (bsh[r - 1], bsh[r - 2])
    } else {
        (bsh[r - 2], bsh[r - 1])
    };
    if k != kb {
        return None;
    }
    let batches = checked_numel(&ash[..r - 2])?;
    let (a_size, b_size, c_size) = (n.checked_mul(k)?, k.checked_mul(m)?, n.checked_mul(m)?);
    let mut out = zeros::<T>(batches.checked_mul(c_size)?);
    let operands = |i: usize| -> Option<(MatRef<'_, T>, MatRef<'_, T>)> {
        let a_i = &ad[i * a_size..(i + 1) * a_size];
        let b_i = &bd[i * b_size..(i + 1) * b_size];
        let am = if ta {
            MatRef::row_major(a_i, k, n)?.t()
        } else {
            MatRef::row_major(a_i, n, k)?
        };
        let bm = if tb {
            MatRef::row_major(b_i, m, k)?.t()
        } else {
            MatRef::row_major(b_i, k, m)?
        };
        Some((am, bm))
    };
    // Validate every batch's operands before computing (cheap: bounds only).
    for i in 0..batches {
        operands(i)?;
    }
    if c_size > 0 {
        let per_product = n.saturating_mul(m).saturating_mul(k);
        if threads() > 1
            && batches > 1
            && per_product < GEMM_PARALLEL_MIN_WORK
            && per_product.saturating_mul(batches) >= BATCH_PARALLEL_MIN_WORK
        {
            // Many small products: one per task, each single-threaded.
            out.par_chunks_mut(c_size).enumerate().for_each(|(i, c)| {
                if let Some((am, bm)) = operands(i) {
                    matmul(c, am, bm, false, Parallelism::None);
                }
            });
        } else {
            for (i, c) in out.chunks_mut(c_size).enumerate() {
                let (am, bm) = operands(i)?;
                matmul(c, am, bm, false, parallelism(n, m, k));
            }
        }
    }
    let mut dims = ash[..r - 2].to_vec();
    dims.push(n);
    dims.push(m);
    tensor_of(out, &dims)
}

/// `fully_connected`: `x · wᵀ + b`.
pub fn fully_connected(flatten: bool, no_bias: bool, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let x = inputs.first()?;
    with_real!(x.data, T => fc_typed::<T>(flatten, no_bias, inputs))
}

fn fc_typed<T: Real>(flatten: bool, no_bias: bool, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let (x, w, bias) = match (no_bias, inputs) {
        (true, [x, w]) => (x, w, None),
        (false, [x, w, b]) => (x, w, Some(b)),
        _ => return None,
    };
    let (xd, wd) = (data_of::<T>(x)?, data_of::<T>(w)?);
    let xs = x.shape.dims();
    let &[units, fan_in] = w.shape.dims() else {
        return None;
    };
    if xs.is_empty() {
        return None;
    }
    let mut dims: Vec<usize> = if flatten {
        vec![xs[0]]
    } else {
        xs[..xs.len() - 1].to_vec()
    };
    let inner = if flatten {
        checked_numel(&xs[1..])?
    } else {
        xs[xs.len() - 1]
    };
    if inner != fan_in {
        return None;
    }
    let rows = checked_numel(&dims)?;
    let mut out = zeros::<T>(rows.checked_mul(units)?);
    if let Some(b) = bias {
        let bd = data_of::<T>(b)?;
        if b.shape.dims() != [units] {
            return None;
        }
        if units > 0 {
            for row in out.chunks_mut(units) {
                row.copy_from_slice(bd);
            }
        }
    }
    let xm = MatRef::row_major(xd, rows, fan_in)?;
    let wt = MatRef::row_major(wd, units, fan_in)?.t();
    matmul(
        &mut out,
        xm,
        wt,
        bias.is_some(),
        parallelism(rows, units, fan_in),
    );
    dims.push(units);
    tensor_of(out, &dims)
}
