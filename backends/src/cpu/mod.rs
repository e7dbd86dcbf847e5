//! The CPU backend: fast kernels where they pay, the interpreter elsewhere.
//!
//! [`CpuBackend::execute`] first offers an op to the fast paths:
//! - [`gemm`]: `dot`, `batch_dot`, `fully_connected` through the `gemm` crate;
//! - [`conv`]: convolution (im2col + GEMM), deconvolution (GEMM + col2im) and the
//!   convolution weight gradient (im2col + GEMM), 1-D and 2-D;
//! - [`elementwise`]: unary, binary (same shape or broadcast) and scalar ops;
//! - [`reduce`]: sum/mean/max over the last axis or over all axes;
//! - [`softmax`]: softmax and log_softmax over the last axis;
//! - [`pool`]: 2-D (and 1-D) max and average pooling and their gradients.
//!
//! All of them handle f32 and f64. A fast path returns `None` when it does not apply — another
//! dtype, an unusual layout, or inputs that are invalid — and the op then goes to
//! [`kiln_ir::interp::eval`], so invalid inputs get exactly the interpreter's error. A fast path
//! only accepts inputs it has fully checked itself, so it never indexes out of bounds.
//!
//! Results equal the interpreter's up to float rounding: the interpreter computes in f64 and
//! rounds once, the fast paths compute f64 data in f64 and f32 data in f32 where that is exact
//! (`+ - * /`, comparisons, `max`), in f64 elsewhere (transcendentals), and GEMM/reductions
//! sum in a different order.

pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod pool;
pub mod reduce;
pub mod softmax;

use crate::Kernels;
use kiln_ir::{DataRef, Element, FusedKernel, Op, Result, Tensor, TensorView};

/// Tuned CPU kernels (multithreaded on rayon's global pool), falling back to the reference
/// interpreter for the ops and layouts they do not cover.
///
/// ```
/// use kiln_backends::{CpuBackend, Kernels};
/// use kiln_ir::{BinaryOp, Op, Tensor};
/// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [3]).unwrap();
/// let b = Tensor::from_vec(vec![10.0f32], [1]).unwrap();
/// let c = CpuBackend.execute(&Op::Binary { f: BinaryOp::Mul }, &[a.view(), b.view()]).unwrap();
/// assert_eq!(c.to_f64_vec(), vec![10.0, 20.0, 30.0]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    /// Runs `op` through a fast path if one applies; `None` means "use the interpreter".
    ///
    /// Exposed so that tests and benchmarks can tell which ops take a fast path.
    pub fn try_fast(op: &Op, inputs: &[TensorView<'_>]) -> Option<Tensor> {
        match op {
            Op::Unary { f } => elementwise::unary(*f, inputs),
            Op::Binary { f } => elementwise::binary(*f, inputs),
            Op::Scalar { f, scalar, reverse } => elementwise::scalar(*f, *scalar, *reverse, inputs),
            Op::Reduce { f, axes, keepdims } => {
                reduce::reduce(*f, axes.as_deref(), *keepdims, inputs)
            }
            Op::Dot {
                transpose_a,
                transpose_b,
            } => gemm::dot(*transpose_a, *transpose_b, inputs),
            Op::BatchDot {
                transpose_a,
                transpose_b,
            } => gemm::batch_dot(*transpose_a, *transpose_b, inputs),
            Op::FullyConnected { flatten, no_bias } => {
                gemm::fully_connected(*flatten, *no_bias, inputs)
            }
            Op::Softmax { axis } => softmax::softmax(*axis, false, inputs),
            Op::LogSoftmax { axis } => softmax::softmax(*axis, true, inputs),
            Op::Convolution { .. } => conv::convolution(op, inputs),
            Op::Deconvolution { .. } => conv::deconvolution(op, inputs),
            Op::ConvGradWeight { .. } => conv::conv_grad_weight(op, inputs),
            Op::Pooling { .. } => pool::pooling(op, inputs),
            Op::PoolingGrad { .. } => pool::pooling_grad(op, inputs),
            _ => None,
        }
    }
}

impl Kernels for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn execute(&self, op: &Op, inputs: &[TensorView<'_>]) -> Result<Tensor> {
        if let Op::Fused { kernel } = op {
            // A fused kernel runs op by op on these same kernels, so its results are bitwise
            // those of the unfused graph; the JIT backend compiles the kinds it knows.
            return kernel.eval(inputs, &mut |op, xs| self.execute(op, xs));
        }
        match CpuBackend::try_fast(op, inputs) {
            Some(t) => Ok(t),
            None => kiln_ir::interp::eval(op, inputs),
        }
    }

    /// Every output of a fused kernel, its body run once op by op on these kernels (bitwise
    /// the unfused graph's values, as for [`Kernels::execute`]).
    fn execute_fused(
        &self,
        kernel: &FusedKernel,
        inputs: &[TensorView<'_>],
    ) -> Result<Vec<Tensor>> {
        kernel.eval_all(inputs, &mut |op, xs| self.execute(op, xs))
    }

    /// The fast paths that build their result in one output vector (elementwise unary,
    /// binary and scalar ops, GEMM, fully connected, convolution and its gradients, pooling,
    /// softmax) take it from `out` when its dtype matches and its capacity suffices; the
    /// vector is zero-filled first, exactly as a fresh one, so results are bitwise those of
    /// [`Kernels::execute`]. Other ops (fused kernels included) ignore `out`.
    fn execute_into(&self, op: &Op, inputs: &[TensorView<'_>], out: Tensor) -> Result<Tensor> {
        if let Op::Fused { .. } = op {
            // Its body runs op by op through `execute` (see there).
            drop(out);
            return self.execute(op, inputs);
        }
        let result = offering(out, || CpuBackend::try_fast(op, inputs));
        match result {
            Some(t) => Ok(t),
            None => kiln_ir::interp::eval(op, inputs),
        }
    }

    /// Unary, scalar and binary ops on f32/f64 (the target being the full-shape operand of
    /// a broadcast) compute in place over `buf` (see [`elementwise::overwrite`]), bitwise as
    /// [`Kernels::execute`] would; everything else falls back to `execute`.
    fn execute_overwriting(
        &self,
        op: &Op,
        others: &[TensorView<'_>],
        target: usize,
        mut buf: Tensor,
    ) -> Result<Tensor> {
        if elementwise::overwrite(op, others, target, &mut buf) {
            return Ok(buf);
        }
        let full = crate::with_target(others, target, &buf);
        self.execute(op, &full)
    }
}

thread_local! {
    /// The allocation [`CpuBackend::execute_into`] offers to the fast path it calls: the
    /// first [`zeros`] of the matching dtype on this thread that fits takes it.
    static RECYCLED: std::cell::RefCell<Option<kiln_ir::Storage>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `out`'s allocation on offer to the first [`zeros`] on this thread that it
/// fits (see [`crate::Kernels::execute_into`]); an allocation nobody took is dropped.
pub(crate) fn offering<R>(out: Tensor, f: impl FnOnce() -> R) -> R {
    let (_, storage) = out.into_parts();
    let previous = RECYCLED.with(|r| r.replace(Some(storage)));
    let result = f();
    RECYCLED.with(|r| r.replace(previous));
    result
}

/// The recycled allocation, as a zero-filled vector of `n` elements, when one of type `T`
/// with room for `n` is on offer on this thread.
pub(crate) fn take_recycled<T: Real>(n: usize) -> Option<Vec<T>> {
    RECYCLED.with(|r| {
        let mut slot = r.borrow_mut();
        let fits = slot
            .as_mut()
            .and_then(T::vec_mut)
            .is_some_and(|v| v.capacity() >= n);
        if !fits {
            return None;
        }
        let mut v = std::mem::take(slot.take().as_mut().and_then(T::vec_mut)?);
        v.clear();
        v.resize(n, T::zero());
        Some(v)
    })
}

/// The float element types the fast paths handle (f32 and f64).
pub trait Real:
    Element + num_traits::Float + std::iter::Sum + std::ops::AddAssign + Send + Sync + 'static
{
    /// The typed slice of `data`, if it holds this type.
    fn of<'a>(data: DataRef<'a>) -> Option<&'a [Self]> {
        Self::slice(data)
    }
    /// Widens exactly to f64 (what the interpreter computes in).
    fn to_wide(self) -> f64;
    /// Rounds an f64 to this type (once, to nearest).
    fn from_wide(v: f64) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn to_wide(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_wide(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    #[inline(always)]
    fn to_wide(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_wide(v: f64) -> Self {
        v
    }
}

/// Calls `$body` with `$T` bound to f32 or f64 according to `$data`'s dtype; evaluates to
/// `None` for other dtypes.
macro_rules! with_real {
    ($data:expr, $T:ident => $body:expr) => {
        match $data {
            kiln_ir::DataRef::F32(_) => {
                type $T = f32;
                $body
            }
            kiln_ir::DataRef::F64(_) => {
                type $T = f64;
                $body
            }
            _ => None,
        }
    };
}
pub(crate) use with_real;

/// The typed data of a view whose length matches its shape, or `None`.
pub(crate) fn data_of<'a, T: Real>(v: &TensorView<'a>) -> Option<&'a [T]> {
    let s = T::of(v.data)?;
    (checked_numel(v.shape.dims())? == s.len()).then_some(s)
}

/// The product of `dims`, or `None` on overflow.
pub(crate) fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Wraps a result vector as a tensor (the caller guarantees the length).
pub(crate) fn tensor_of<T: Real>(v: Vec<T>, dims: &[usize]) -> Option<Tensor> {
    Tensor::new(dims, T::into_storage(v)).ok()
}

/// The number of threads the kernels split work over: rayon's current pool (the global one,
/// sized by `RAYON_NUM_THREADS` or the core count, unless called inside another pool).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Output buffers of at least this many bytes ask the kernel for transparent huge pages.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// A zero-filled output vector of `n` elements: the allocation [`CpuBackend::execute_into`]
/// recycles when one is on offer, else a fresh one.
///
/// Large buffers come fresh from the OS (glibc `calloc` maps them), and faulting in their
/// 4 KiB pages one by one costs about as much as a memory-bound kernel's own work. Like numpy,
/// ask for transparent huge pages on them (`madvise(MADV_HUGEPAGE)`, Linux only; a no-op where
/// THP is off): measured 3.7-5.8 GB/s -> 4.7-8.8 GB/s for a fresh 16M-element f32 `a*b`.
pub(crate) fn zeros<T: Real>(n: usize) -> Vec<T> {
    if let Some(v) = take_recycled(n) {
        return v;
    }
    let v = vec![T::zero(); n];
    if n.saturating_mul(std::mem::size_of::<T>()) >= HUGE_PAGE_MIN_BYTES {
        advise_huge_pages(&v);
    }
    v
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
    const PAGE: usize = 4096;
    let start = (v.as_ptr() as usize).next_multiple_of(PAGE);
    let end = (v.as_ptr() as usize + std::mem::size_of_val(v)) & !(PAGE - 1);
    if end > start {
        // SAFETY: [start, end) is a page-aligned range inside `v`'s allocation, which stays
        // alive for the call; MADV_HUGEPAGE only changes how the kernel backs those pages (the
        // contents, all zero, are preserved), so no Rust-visible memory changes. Failure (THP
        // unavailable) is harmless and ignored.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &[T]) {}
