//! Elementwise fast paths: `Unary`, `Binary` (same shape, scalar and general broadcasts) and
//! `Scalar` on f32/f64, as plain slice loops the compiler vectorizes, split across threads
//! above a size threshold.
//!
//! The per-element functions mirror the interpreter's (`kiln_ir::interp`, elementwise family),
//! which computes in f64 and rounds once to the element type:
//! - `+ - * /`, `sqrt`, `square`, `reciprocal`, comparisons, `maximum`/`minimum`, `abs`, `neg`,
//!   `sign`, `relu`, `floor`/`ceil`/`round` and `logical_not` are computed directly in the
//!   element type: for these, an f32 operation is correctly rounded, which is what rounding
//!   the f64 result once gives (f64 has more than 2·24+2 bits, so double rounding is exact);
//! - the transcendentals (`exp`, `log`, `tanh`, `sigmoid`, ..., `rsqrt`, `pow`) widen to f64,
//!   apply the same formula as the interpreter and round once, so they agree bit for bit;
//! - NaN propagates through `maximum`, `minimum`, `relu`, `softrelu` and `sign`, as numpy does.

use super::{checked_numel, data_of, take_recycled, tensor_of, threads, with_real, zeros, Real};
use kiln_ir::{BinaryOp, Op, Tensor, TensorView, UnaryOp};
use num_traits::{One, Zero};
use rayon::prelude::*;

/// Elements from which a cheap op (add, mul, relu...) is split across threads. Measured on
/// the 2-core build machine (f32 `a*b`, sequential vs two rayon chunks): 8.6 vs 21 µs at 64K,
/// 23 vs 46 µs at 128K, 114 vs 176 µs at 256K, 491 vs 570 µs at 1M — with the other core
/// busy, splitting never paid; cheap ops are memory-bound, so the gain on a free core is
/// modest too. Splitting starts at 256K elements (1 MiB of f32 per operand).
pub const PAR_MIN_CHEAP: usize = 1 << 18;
/// Elements from which a costly op (exp, tanh, pow..., ~5 ns per element) is split across
/// threads: measured break-even at 16K elements (106 vs 99 µs), a 1.4× gain from 32K.
pub const PAR_MIN_COSTLY: usize = 1 << 14;

/// Up to this many elements a sequential result is collected straight into a new vector;
/// beyond, it is written into [`zeros`], which asks for huge pages (page faults otherwise
/// dominate a memory-bound op on a fresh buffer).
const SEQ_COLLECT_MAX: usize = 1 << 20;

/// True for the ops that call into libm (tens of cycles per element).
fn unary_is_costly(f: UnaryOp) -> bool {
    matches!(
        f,
        UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Log1p
            | UnaryOp::Expm1
            | UnaryOp::Rsqrt
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tanh
            | UnaryOp::Sigmoid
            | UnaryOp::Softrelu
    )
}

#[inline(always)]
fn flag<T: Real>(b: bool) -> T {
    if b {
        T::one()
    } else {
        T::zero()
    }
}

/// `f(x)` computed in f64 and rounded once to `T`.
#[inline(always)]
fn wide<T: Real>(x: T, f: impl Fn(f64) -> f64) -> T {
    T::from_wide(f(x.to_wide()))
}

/// Binds `$k` to the element function of unary op `$f` on `$T` and evaluates `$body`
/// (one monomorphized loop per op).
macro_rules! with_unary_fn {
    ($f:expr, $T:ty, $k:ident => $body:expr) => {
        match $f {
            UnaryOp::Neg => {
                let $k = |x: $T| -x;
                $body
            }
            UnaryOp::Abs => {
                let $k = |x: $T| x.abs();
                $body
            }
            UnaryOp::Sign => {
                let $k = |x: $T| {
                    if x > <$T>::zero() {
                        <$T>::one()
                    } else if x < <$T>::zero() {
                        -<$T>::one()
                    } else if x == <$T>::zero() {
                        <$T>::zero()
                    } else {
                        x
                    }
                };
                $body
            }
            UnaryOp::Exp => {
                let $k = |x: $T| wide(x, f64::exp);
                $body
            }
            UnaryOp::Log => {
                let $k = |x: $T| wide(x, f64::ln);
                $body
            }
            UnaryOp::Log1p => {
                let $k = |x: $T| wide(x, f64::ln_1p);
                $body
            }
            UnaryOp::Expm1 => {
                let $k = |x: $T| wide(x, f64::exp_m1);
                $body
            }
            UnaryOp::Sqrt => {
                let $k = |x: $T| x.sqrt();
                $body
            }
            UnaryOp::Rsqrt => {
                let $k = |x: $T| wide(x, |v| 1.0 / v.sqrt());
                $body
            }
            UnaryOp::Square => {
                let $k = |x: $T| x * x;
                $body
            }
            UnaryOp::Reciprocal => {
                let $k = |x: $T| <$T>::one() / x;
                $body
            }
            UnaryOp::Sin => {
                let $k = |x: $T| wide(x, f64::sin);
                $body
            }
            UnaryOp::Cos => {
                let $k = |x: $T| wide(x, f64::cos);
                $body
            }
            UnaryOp::Tanh => {
                let $k = |x: $T| wide(x, f64::tanh);
                $body
            }
            UnaryOp::Sigmoid => {
                let $k = |x: $T| {
                    wide(x, |v| {
                        if v >= 0.0 {
                            1.0 / (1.0 + (-v).exp())
                        } else {
                            let e = v.exp();
                            e / (1.0 + e)
                        }
                    })
                };
                $body
            }
            UnaryOp::Relu => {
                let $k = |x: $T| {
                    if x > <$T>::zero() || x.is_nan() {
                        x
                    } else {
                        <$T>::zero()
                    }
                };
                $body
            }
            UnaryOp::Softrelu => {
                let $k = |x: $T| {
                    wide(x, |v| {
                        if v.is_nan() {
                            v
                        } else {
                            v.max(0.0) + (-v.abs()).exp().ln_1p()
                        }
                    })
                };
                $body
            }
            UnaryOp::Floor => {
                let $k = |x: $T| x.floor();
                $body
            }
            UnaryOp::Ceil => {
                let $k = |x: $T| x.ceil();
                $body
            }
            UnaryOp::Round => {
                let $k = |x: $T| x.round();
                $body
            }
            UnaryOp::LogicalNot => {
                let $k = |x: $T| flag::<$T>(x == <$T>::zero());
                $body
            }
        }
    };
}

/// Binds `$k` to the element function of binary op `$f` on `$T` and evaluates `$body`.
macro_rules! with_binary_fn {
    ($f:expr, $T:ty, $k:ident => $body:expr) => {
        match $f {
            BinaryOp::Add => {
                let $k = |a: $T, b: $T| a + b;
                $body
            }
            BinaryOp::Sub => {
                let $k = |a: $T, b: $T| a - b;
                $body
            }
            BinaryOp::Mul => {
                let $k = |a: $T, b: $T| a * b;
                $body
            }
            BinaryOp::Div => {
                let $k = |a: $T, b: $T| a / b;
                $body
            }
            BinaryOp::Pow => {
                let $k = |a: $T, b: $T| <$T>::from_wide(a.to_wide().powf(b.to_wide()));
                $body
            }
            BinaryOp::Maximum => {
                let $k = |a: $T, b: $T| if a.is_nan() || a >= b { a } else { b };
                $body
            }
            BinaryOp::Minimum => {
                let $k = |a: $T, b: $T| if a.is_nan() || a <= b { a } else { b };
                $body
            }
            BinaryOp::Eq => {
                let $k = |a: $T, b: $T| flag::<$T>(a == b);
                $body
            }
            BinaryOp::Ne => {
                let $k = |a: $T, b: $T| flag::<$T>(a != b);
                $body
            }
            BinaryOp::Gt => {
                let $k = |a: $T, b: $T| flag::<$T>(a > b);
                $body
            }
            BinaryOp::Ge => {
                let $k = |a: $T, b: $T| flag::<$T>(a >= b);
                $body
            }
            BinaryOp::Lt => {
                let $k = |a: $T, b: $T| flag::<$T>(a < b);
                $body
            }
            BinaryOp::Le => {
                let $k = |a: $T, b: $T| flag::<$T>(a <= b);
                $body
            }
        }
    };
}

/// The chunk length for splitting `n` elements over the pool.
fn chunk_len(n: usize) -> usize {
    let per_thread = n.div_ceil(threads() * 4);
    per_thread.max(4096).next_multiple_of(64)
}

/// `out[i] = k(x[i])`, split across threads from `par_min` elements.
fn map1<T: Real, K: Fn(T) -> T + Sync>(x: &[T], k: K, par_min: usize) -> Vec<T> {
    if x.len() < par_min.min(SEQ_COLLECT_MAX) || (threads() < 2 && x.len() < SEQ_COLLECT_MAX) {
        if let Some(mut out) = take_recycled::<T>(x.len()) {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = k(v);
            }
            return out;
        }
        return x.iter().map(|&v| k(v)).collect();
    }
    let mut out = zeros::<T>(x.len());
    if x.len() < par_min || threads() < 2 {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = k(v);
        }
        return out;
    }
    let c = chunk_len(x.len());
    out.par_chunks_mut(c)
        .zip(x.par_chunks(c))
        .for_each(|(o, i)| {
            for (o, &v) in o.iter_mut().zip(i) {
                *o = k(v);
            }
        });
    out
}

/// `Unary { f }` on f32/f64.
pub fn unary(f: UnaryOp, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let [x] = inputs else { return None };
    with_real!(x.data, T => {
        let s = data_of::<T>(x)?;
        let par_min = if unary_is_costly(f) { PAR_MIN_COSTLY } else { PAR_MIN_CHEAP };
        let v = with_unary_fn!(f, T, k => map1(s, k, par_min));
        tensor_of(v, x.shape.dims())
    })
}

/// `Scalar { f, scalar, reverse }` on f32/f64: the scalar is first converted to the element
/// type, as the interpreter does.
pub fn scalar(
    f: BinaryOp,
    scalar: f64,
    reverse: bool,
    inputs: &[TensorView<'_>],
) -> Option<Tensor> {
    let [x] = inputs else { return None };
    with_real!(x.data, T => {
        let s = data_of::<T>(x)?;
        let c = T::from_wide(scalar);
        let par_min = if f == BinaryOp::Pow { PAR_MIN_COSTLY } else { PAR_MIN_CHEAP };
        let v = with_binary_fn!(f, T, k => {
            if reverse {
                map1(s, |v| k(c, v), par_min)
            } else {
                map1(s, |v| k(v, c), par_min)
            }
        });
        tensor_of(v, x.shape.dims())
    })
}

/// One dim of a broadcast after merging neighbours: its size and whether each operand
/// varies along it (false: the operand is broadcast, stride 0).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dim {
    size: usize,
    a: bool,
    b: bool,
}

/// A binary broadcast reduced to `rows` rows of `inner` output elements. Row `r`'s operands
/// start at offsets computed from `outer` (merged outer dims with the operands' strides), and
/// along a row each operand either steps by 1 or stays put.
#[derive(Debug)]
struct Plan {
    out_dims: Vec<usize>,
    outer: Vec<(usize, usize, usize)>,
    inner: usize,
    a_steps: bool,
    b_steps: bool,
}

impl Plan {
    /// The plan for `a ∘ b`; `None` when the shapes do not broadcast.
    fn new(a: &[usize], b: &[usize]) -> Option<Plan> {
        let rank = a.len().max(b.len());
        let at = |s: &[usize], i: usize| {
            let off = rank - s.len();
            if i < off {
                1
            } else {
                s[i - off]
            }
        };
        let mut out_dims = Vec::with_capacity(rank);
        let mut dims: Vec<Dim> = Vec::with_capacity(rank);
        for i in 0..rank {
            let (da, db) = (at(a, i), at(b, i));
            let size = match (da, db) {
                _ if da == db => da,
                (1, _) => db,
                (_, 1) => da,
                _ => return None,
            };
            out_dims.push(size);
            if size == 1 {
                continue;
            }
            let d = Dim {
                size,
                a: da == size,
                b: db == size,
            };
            match dims.last_mut() {
                Some(last) if last.a == d.a && last.b == d.b => {
                    last.size = last.size.checked_mul(size)?
                }
                _ => dims.push(d),
            }
        }
        checked_numel(&out_dims)?;
        let last = dims.pop().unwrap_or(Dim {
            size: 1,
            a: true,
            b: true,
        });
        // Strides of the merged outer dims (innermost last), counting the inner dim.
        let (mut sa, mut sb) = (
            if last.a { last.size } else { 1 },
            if last.b { last.size } else { 1 },
        );
        let mut outer = Vec::with_capacity(dims.len());
        for d in dims.iter().rev() {
            outer.push((d.size, if d.a { sa } else { 0 }, if d.b { sb } else { 0 }));
            if d.a {
                sa *= d.size;
            }
            if d.b {
                sb *= d.size;
            }
        }
        outer.reverse();
        Some(Plan {
            out_dims,
            outer,
            inner: last.size,
            a_steps: last.a,
            b_steps: last.b,
        })
    }

    /// The operands' offsets at the start of row `r`.
    fn row_offsets(&self, mut r: usize) -> (usize, usize) {
        let (mut oa, mut ob) = (0, 0);
        for &(size, sa, sb) in self.outer.iter().rev() {
            let i = r % size;
            r /= size;
            oa += i * sa;
            ob += i * sb;
        }
        (oa, ob)
    }

    /// Computes output elements `start .. start + out.len()` (flat, row-major).
    fn run<T: Real, K: Fn(T, T) -> T>(&self, a: &[T], b: &[T], k: &K, start: usize, out: &mut [T]) {
        let mut pos = start;
        let mut done = 0;
        while done < out.len() {
            let (row, col) = (pos / self.inner, pos % self.inner);
            let len = (self.inner - col).min(out.len() - done);
            let (oa, ob) = self.row_offsets(row);
            let o = &mut out[done..done + len];
            match (self.a_steps, self.b_steps) {
                (true, true) => {
                    let (x, y) = (&a[oa + col..oa + col + len], &b[ob + col..ob + col + len]);
                    for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                        *o = k(x, y);
                    }
                }
                (true, false) => {
                    let (x, y) = (&a[oa + col..oa + col + len], b[ob]);
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o = k(x, y);
                    }
                }
                (false, true) => {
                    let (x, y) = (a[oa], &b[ob + col..ob + col + len]);
                    for (o, &y) in o.iter_mut().zip(y) {
                        *o = k(x, y);
                    }
                }
                (false, false) => {
                    let v = k(a[oa], b[ob]);
                    o.fill(v);
                }
            }
            pos += len;
            done += len;
        }
    }
}

/// `Binary { f }` on f32/f64 with numpy broadcasting.
pub fn binary(f: BinaryOp, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let [a, b] = inputs else { return None };
    with_real!(a.data, T => binary_typed::<T>(f, a, b))
}

fn binary_typed<T: Real>(f: BinaryOp, a: &TensorView<'_>, b: &TensorView<'_>) -> Option<Tensor> {
    let (ad, bd) = (data_of::<T>(a)?, data_of::<T>(b)?);
    let par_min = if f == BinaryOp::Pow {
        PAR_MIN_COSTLY
    } else {
        PAR_MIN_CHEAP
    };
    let (ash, bsh) = (a.shape.dims(), b.shape.dims());
    if ash == bsh {
        // Same shape: one zipped loop.
        let v = with_binary_fn!(f, T, k => zip_map(ad, bd, k, par_min));
        return tensor_of(v, ash);
    }
    let plan = Plan::new(ash, bsh)?;
    let n = checked_numel(&plan.out_dims)?;
    if n == 0 {
        return tensor_of(Vec::<T>::new(), &plan.out_dims);
    }
    // `Plan::new` only keeps dims where an operand is not broadcast, so every offset it
    // produces is below the operand's length; check the last row's reach once anyway.
    let rows = n / plan.inner;
    let (la, lb) = plan.row_offsets(rows - 1);
    let reach = |o: usize, steps: bool| o + if steps { plan.inner } else { 1 };
    if reach(la, plan.a_steps) > ad.len() || reach(lb, plan.b_steps) > bd.len() {
        return None;
    }
    let mut out = zeros::<T>(n);
    with_binary_fn!(f, T, k => {
        if n < par_min || threads() < 2 {
            plan.run(ad, bd, &k, 0, &mut out);
        } else {
            let c = chunk_len(n);
            out.par_chunks_mut(c)
                .enumerate()
                .for_each(|(i, o)| plan.run(ad, bd, &k, i * c, o));
        }
    });
    tensor_of(out, &plan.out_dims)
}

/// `out[i] = k(a[i], b[i])`, split across threads from `par_min` elements.
fn zip_map<T: Real, K: Fn(T, T) -> T + Sync>(a: &[T], b: &[T], k: K, par_min: usize) -> Vec<T> {
    if a.len() < par_min.min(SEQ_COLLECT_MAX) || (threads() < 2 && a.len() < SEQ_COLLECT_MAX) {
        if let Some(mut out) = take_recycled::<T>(a.len()) {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = k(x, y);
            }
            return out;
        }
        return a.iter().zip(b).map(|(&x, &y)| k(x, y)).collect();
    }
    let mut out = zeros::<T>(a.len());
    if a.len() < par_min || threads() < 2 {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = k(x, y);
        }
        return out;
    }
    let c = chunk_len(a.len());
    out.par_chunks_mut(c)
        .zip(a.par_chunks(c).zip(b.par_chunks(c)))
        .for_each(|(o, (x, y))| {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                *o = k(x, y);
            }
        });
    out
}

/// `x[i] = k(x[i])` in place, split across threads from `par_min` elements.
fn map1_over<T: Real, K: Fn(T) -> T + Sync>(x: &mut [T], k: K, par_min: usize) {
    if x.len() < par_min || threads() < 2 {
        for v in x.iter_mut() {
            *v = k(*v);
        }
        return;
    }
    let c = chunk_len(x.len());
    x.par_chunks_mut(c).for_each(|o| {
        for v in o.iter_mut() {
            *v = k(*v);
        }
    });
}

/// True in-place forms of the elementwise fast paths (see [`crate::Kernels::execute_overwriting`]):
/// `op` runs with `buf` as its input `target` and `others` as the remaining inputs, and the
/// result is written over `buf`'s allocation. Each element gets exactly the function the
/// out-of-place path applies, so results are bitwise equal.
///
/// Returns `false`, leaving `buf` untouched, when no in-place form applies (another op or
/// dtype, or an output that is not `buf`'s shape, e.g. `buf` is the broadcast operand).
pub fn overwrite(op: &Op, others: &[TensorView<'_>], target: usize, buf: &mut Tensor) -> bool {
    let dims: Vec<usize> = buf.shape().dims().to_vec();
    let Some(n) = checked_numel(&dims) else {
        return false;
    };
    let storage = buf.storage_mut();
    if storage.len() != n {
        return false;
    }
    match storage {
        kiln_ir::Storage::F32(v) => overwrite_typed::<f32>(op, others, target, &dims, v),
        kiln_ir::Storage::F64(v) => overwrite_typed::<f64>(op, others, target, &dims, v),
        _ => false,
    }
}

fn overwrite_typed<T: Real>(
    op: &Op,
    others: &[TensorView<'_>],
    target: usize,
    dims: &[usize],
    t: &mut [T],
) -> bool {
    match (op, others) {
        (Op::Unary { f }, []) if target == 0 => {
            let par_min = if unary_is_costly(*f) {
                PAR_MIN_COSTLY
            } else {
                PAR_MIN_CHEAP
            };
            with_unary_fn!(*f, T, k => map1_over(t, k, par_min));
            true
        }
        (
            Op::Scalar {
                f,
                scalar,
                reverse,
            },
            [],
        ) if target == 0 => {
            let c = T::from_wide(*scalar);
            let par_min = if *f == BinaryOp::Pow {
                PAR_MIN_COSTLY
            } else {
                PAR_MIN_CHEAP
            };
            with_binary_fn!(*f, T, k => {
                if *reverse {
                    map1_over(t, |v| k(c, v), par_min)
                } else {
                    map1_over(t, |v| k(v, c), par_min)
                }
            });
            true
        }
        (Op::Binary { f }, [other]) if target < 2 => {
            let Some(o) = data_of::<T>(other) else {
                return false;
            };
            let t_is_a = target == 0;
            let plan = if t_is_a {
                Plan::new(dims, other.shape.dims())
            } else {
                Plan::new(other.shape.dims(), dims)
            };
            // The output must be exactly the target's shape (the other operand broadcasts
            // into it, never the reverse).
            let Some(plan) = plan.filter(|p| p.out_dims == dims) else {
                return false;
            };
            if t.is_empty() {
                return true;
            }
            let rows = t.len() / plan.inner;
            let (la, lb) = plan.row_offsets(rows - 1);
            let (lo, o_steps) = if t_is_a {
                (lb, plan.b_steps)
            } else {
                (la, plan.a_steps)
            };
            if lo + if o_steps { plan.inner } else { 1 } > o.len() {
                return false;
            }
            let par_min = if *f == BinaryOp::Pow {
                PAR_MIN_COSTLY
            } else {
                PAR_MIN_CHEAP
            };
            with_binary_fn!(*f, T, k => {
                if t.len() < par_min || threads() < 2 {
                    plan.run_over(t, o, t_is_a, &k, 0);
                } else {
                    let c = chunk_len(t.len());
                    t.par_chunks_mut(c)
                        .enumerate()
                        .for_each(|(i, s)| plan.run_over(s, o, t_is_a, &k, i * c));
                }
            });
            true
        }
        _ => false,
    }
}

impl Plan {
    /// [`Plan::run`] with the output over the full-shape operand `t` (operand `a` when
    /// `t_is_a`, else `b`), which holds output elements `start .. start + t.len()`; `o` is
    /// the other operand.
    fn run_over<T: Real, K: Fn(T, T) -> T>(
        &self,
        t: &mut [T],
        o: &[T],
        t_is_a: bool,
        k: &K,
        start: usize,
    ) {
        let o_steps = if t_is_a { self.b_steps } else { self.a_steps };
        let mut pos = start;
        let mut done = 0;
        while done < t.len() {
            let (row, col) = (pos / self.inner, pos % self.inner);
            let len = (self.inner - col).min(t.len() - done);
            let (oa, ob) = self.row_offsets(row);
            let oo = if t_is_a { ob } else { oa };
            let seg = &mut t[done..done + len];
            match (o_steps, t_is_a) {
                (true, true) => {
                    for (x, &y) in seg.iter_mut().zip(&o[oo + col..oo + col + len]) {
                        *x = k(*x, y);
                    }
                }
                (true, false) => {
                    for (x, &y) in seg.iter_mut().zip(&o[oo + col..oo + col + len]) {
                        *x = k(y, *x);
                    }
                }
                (false, true) => {
                    let y = o[oo];
                    for x in seg.iter_mut() {
                        *x = k(*x, y);
                    }
                }
                (false, false) => {
                    let y = o[oo];
                    for x in seg.iter_mut() {
                        *x = k(y, *x);
                    }
                }
            }
            pos += len;
            done += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_merges_dims_and_finds_strides() {
        // [2, 3, 4] ∘ [3, 1]: dims 2 (b broadcast), 3 (both), 4 (b broadcast).
        let p = Plan::new(&[2, 3, 4], &[3, 1]).unwrap();
        assert_eq!(p.out_dims, vec![2, 3, 4]);
        assert_eq!(p.inner, 4);
        assert!(p.a_steps && !p.b_steps);
        assert_eq!(p.outer, vec![(2, 12, 0), (3, 4, 1)]);
        assert_eq!(p.row_offsets(4), (16, 1));
        // Same-pattern neighbours merge: [5, 6] ∘ [] is one row of 30.
        let p = Plan::new(&[5, 6], &[]).unwrap();
        assert_eq!((p.inner, p.outer.len()), (30, 0));
        assert!(Plan::new(&[2, 3], &[4]).is_none());
    }
}
