//! Building the Cranelift function of a kernel.
//!
//! Every compiled kernel has one signature (all arguments pointer-sized):
//!
//! ```text
//! fn(rows, inner, ins: *const *const f32, row_strides: *const isize, out: *mut f32, out_row: isize,
//!    aux: *mut f32)
//! ```
//!
//! It processes `rows` rows of `inner` elements. Input `k`'s row starts at `ins[k]` and moves
//! by `row_strides[k]` bytes from row to row (0 for an input broadcast over rows); inside a
//! row an input is either contiguous or one value repeated (its [`Mode`], compiled in). The
//! output row starts at `out` and moves by `out_row` bytes. The row loop is strength-reduced
//! (pointers are bumped, never recomputed); the driver in [`super`] handles outer dimensions
//! that do not collapse into one row stride.
//!
//! Inside a row: a vector loop over `4⌊inner/4⌋` elements in f32x4, then a scalar tail.
//! `aux` is scratch memory laid out like `out`, used only by [`Body::ArgCol`] (the running
//! best values); other kernels ignore it.
//!
//! **Summation order of a row fold** ([`Body::RowFold`], softmax's sums): four f32x4
//! accumulators `a0..a3` take consecutive vectors of each 16-element block (lane `j` of `ak`
//! sees the elements `i ≡ 4k + j (mod 16)`); the remaining whole vectors go to `a0`; then
//! `v = (a0 ∘ a1) ∘ (a2 ∘ a3)`, its lanes combine as `(v0 ∘ v1) ∘ (v2 ∘ v3)`, and the scalar
//! tail is folded in, in order. A [`Body::RowFold`] then combines that row result into the
//! output element (`out = out ∘ row`), so rows reduced into one output (outer reduced axes)
//! are added row after row. A [`Body::ColFold`] adds each row into the output elementwise, row
//! after row: every output element is a plain sequential fold over its reduced positions.

use super::emit::{self, LANES, VEC};
use super::program::{Node, Program};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData, Signature, Type, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use kiln_ir::{BinaryOp, DType, UnaryOp};

/// How an input moves along the inner (contiguous) loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Mode {
    /// One element per position.
    Contig,
    /// One value for the whole row (broadcast along the inner axis).
    Splat,
}

/// What a kernel computes per row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Body {
    /// `out[i] = program(inputs[i])`.
    Map(Program),
    /// `out[row] = out[row] ∘ fold(program(inputs[i]) over the row)`: a reduction whose
    /// reduced axes end with the contiguous one. `out_row` is 0 when the rows are reduced
    /// too (they all fold into one output element).
    RowFold { comb: Comb, prog: Program },
    /// `out[row, i] = out[row, i] ∘ program(inputs)[row, i]`: a reduction over rows whose
    /// kept axis is the contiguous one (`out_row` is 0: every row folds into the same output
    /// row), with vector loads and stores of the output.
    ColFold { comb: Comb, prog: Program },
    /// `out[row] = argmax (argmin unless max) of program(inputs) over the row`, as an f32
    /// index. Ties take the first index; a NaN is the extremum (the first NaN wins).
    ArgRow { max: bool, prog: Program },
    /// Argmax/argmin over rows, the contiguous axis kept: for each row `r` and element `i`,
    /// where `program(inputs)[r, i]` beats `aux[i]`, `aux[i]` takes it and `out[i] = r`.
    /// The driver starts `aux` at `∓inf` and `out` at 0 (both with `out_row` 0).
    ArgCol { max: bool, prog: Program },
    /// `out[i] = softmax(program(inputs))[i]` (log-softmax when `log`) along the row.
    Softmax { log: bool, prog: Program },
    /// `out[row] = -log_softmax(program(inputs))[row, label]`, with the label read from input
    /// `label` (one value per row: [`Mode::Splat`]) truncated toward zero and clipped to
    /// `[0, inner - 1]` (NaN reads as 0).
    SoftmaxXent { label: usize, prog: Program },
}

/// How a fold combines two values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Comb {
    /// `a + x` (identity 0).
    Add,
    /// `a * x` (identity 1).
    Mul,
    /// The interpreter's NaN-propagating `maximum` (identity -inf).
    Max,
    /// The interpreter's NaN-propagating `minimum` (identity +inf).
    Min,
    /// `x > a ? x : a`: a maximum that skips NaN (softmax's row maximum, like `f64::max`).
    MaxSkipNan,
}

impl Comb {
    /// The value that leaves any `x` unchanged (`-0 + 0` aside).
    pub(crate) fn identity(self) -> f32 {
        match self {
            Comb::Add => 0.0,
            Comb::Mul => 1.0,
            Comb::Max | Comb::MaxSkipNan => f32::NEG_INFINITY,
            Comb::Min => f32::INFINITY,
        }
    }

    fn apply(self, b: &mut FunctionBuilder<'_>, a: Value, x: Value) -> Value {
        match self {
            Comb::Add => b.ins().fadd(a, x),
            Comb::Mul => b.ins().fmul(a, x),
            Comb::Max => emit::maximum(b, a, x),
            Comb::Min => emit::minimum(b, a, x),
            Comb::MaxSkipNan => {
                let m = emit::cmp(b, FloatCC::GreaterThan, x, a);
                emit::select(b, m, x, a)
            }
        }
    }
}

/// Number of arguments of every kernel (see the module documentation).
const N_PARAMS: usize = 7;

/// The machine-level signature shared by every kernel.
pub(crate) fn signature(call_conv: cranelift_codegen::isa::CallConv, ptr: Type) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..N_PARAMS {
        sig.params.push(AbiParam::new(ptr));
    }
    sig
}

fn mf() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Emits a program at an element's byte offset for lane type `ty`.
struct Emitter<'a> {
    prog: &'a Program,
    modes: &'a [Mode],
    fma: bool,
    /// The row pointer variable of each kernel input the program reads.
    ptrs: Vec<Option<Variable>>,
    /// The row's value (scalar, vector) of each `Splat` input.
    splats: Vec<Option<(Value, Value)>>,
}

/// The Cranelift type of a [`SUPPORTED`] dtype's scalars.
fn clif_type(t: DType) -> Option<Type> {
    match t {
        DType::F32 => Some(types::F32),
        DType::F64 => Some(types::F64),
        DType::I32 => Some(types::I32),
        _ => None,
    }
}

/// The byte offset of an element of `size` bytes, from its f32 byte offset (`4 i`).
fn scale(b: &mut FunctionBuilder<'_>, off: Value, size: usize) -> Value {
    match size {
        8 => b.ins().ishl_imm_u(off, 1),
        2 => b.ins().ushr_imm_u(off, 1),
        1 => b.ins().ushr_imm_u(off, 2),
        _ => off,
    }
}

/// `v` as a scalar constant of `t`.
fn tconst(b: &mut FunctionBuilder<'_>, t: DType, v: f64) -> Value {
    match t {
        DType::F64 => b.ins().f64const(v),
        DType::I32 => b.ins().iconst(types::I32, v as i32 as i64),
        _ => b.ins().f32const(v as f32),
    }
}

impl Emitter<'_> {
    /// One node of a program that is not all f32, on scalars (the typed, scalar-loop path).
    /// f32 nodes use the same lowering as the vector path; f64 and i32 nodes have the exact
    /// ops (arithmetic, comparisons, `where`, `clip`, `maximum`/`minimum`, casts).
    fn typed_node(
        &self,
        b: &mut FunctionBuilder<'_>,
        k: usize,
        vals: &[Value],
        off: Value,
    ) -> Option<Value> {
        let t = self.prog.types[k];
        let is_int = t == DType::I32;
        let flag = |b: &mut FunctionBuilder<'_>, m: Value| {
            let one = tconst(b, t, 1.0);
            let zero = tconst(b, t, 0.0);
            b.ins().select(m, one, zero)
        };
        let bin = |b: &mut FunctionBuilder<'_>, f: BinaryOp, x: Value, y: Value| -> Option<Value> {
            if t == DType::F32 {
                return emit::binary(b, f, x, y);
            }
            let fcc = |f: BinaryOp| match f {
                BinaryOp::Eq => Some(FloatCC::Equal),
                BinaryOp::Ne => Some(FloatCC::NotEqual),
                BinaryOp::Gt => Some(FloatCC::GreaterThan),
                BinaryOp::Ge => Some(FloatCC::GreaterThanOrEqual),
                BinaryOp::Lt => Some(FloatCC::LessThan),
                BinaryOp::Le => Some(FloatCC::LessThanOrEqual),
                _ => None,
            };
            let icc = |f: BinaryOp| match f {
                BinaryOp::Eq => Some(IntCC::Equal),
                BinaryOp::Ne => Some(IntCC::NotEqual),
                BinaryOp::Gt => Some(IntCC::SignedGreaterThan),
                BinaryOp::Ge => Some(IntCC::SignedGreaterThanOrEqual),
                BinaryOp::Lt => Some(IntCC::SignedLessThan),
                BinaryOp::Le => Some(IntCC::SignedLessThanOrEqual),
                _ => None,
            };
            Some(match (f, is_int) {
                (BinaryOp::Add, false) => b.ins().fadd(x, y),
                (BinaryOp::Sub, false) => b.ins().fsub(x, y),
                (BinaryOp::Mul, false) => b.ins().fmul(x, y),
                (BinaryOp::Div, false) => b.ins().fdiv(x, y),
                (BinaryOp::Maximum, false) => emit::maximum(b, x, y),
                (BinaryOp::Minimum, false) => emit::minimum(b, x, y),
                // Wrapping, as the interpreter's i64 arithmetic truncated to i32.
                (BinaryOp::Add, true) => b.ins().iadd(x, y),
                (BinaryOp::Sub, true) => b.ins().isub(x, y),
                (BinaryOp::Mul, true) => b.ins().imul(x, y),
                (BinaryOp::Maximum, true) => b.ins().smax(x, y),
                (BinaryOp::Minimum, true) => b.ins().smin(x, y),
                (f, false) if f.is_comparison() => {
                    let m = b.ins().fcmp(fcc(f)?, x, y);
                    flag(b, m)
                }
                (f, true) if f.is_comparison() => {
                    let m = b.ins().icmp(icc(f)?, x, y);
                    flag(b, m)
                }
                _ => return None,
            })
        };
        Some(match self.prog.nodes[k] {
            Node::Input(i) => match *self.modes.get(i)? {
                Mode::Splat => (*self.splats.get(i)?)?.0,
                Mode::Contig => {
                    let p = b.use_var((*self.ptrs.get(i)?)?);
                    let o = scale(b, off, t.size_of());
                    let a = b.ins().iadd(p, o);
                    b.ins().load(clif_type(t)?, mf(), a, 0)
                }
            },
            Node::Unary(f, a) => {
                let x = vals[a];
                match (t, f) {
                    (DType::F32, f) => emit::unary(b, f, x)?,
                    (DType::F64, UnaryOp::Neg) => b.ins().fneg(x),
                    (DType::F64, UnaryOp::Abs) => b.ins().fabs(x),
                    (DType::F64, UnaryOp::Sqrt) => b.ins().sqrt(x),
                    (DType::F64, UnaryOp::Floor) => b.ins().floor(x),
                    (DType::F64, UnaryOp::Ceil) => b.ins().ceil(x),
                    (DType::F64, UnaryOp::Square) => b.ins().fmul(x, x),
                    (DType::I32, UnaryOp::Neg) => b.ins().ineg(x),
                    (DType::I32, UnaryOp::Abs) => b.ins().iabs(x),
                    (DType::I32, UnaryOp::Square) => b.ins().imul(x, x),
                    (DType::I32, UnaryOp::Relu) => {
                        let zero = tconst(b, t, 0.0);
                        b.ins().smax(x, zero)
                    }
                    _ => return None,
                }
            }
            Node::Binary(f, a, c) => bin(b, f, vals[a], vals[c])?,
            Node::Scalar(f, c, rev, a) => {
                if t == DType::F32 {
                    emit::scalar(b, f, c as f32, rev, vals[a])?
                } else {
                    let k = tconst(b, t, c);
                    if rev {
                        bin(b, f, k, vals[a])?
                    } else {
                        bin(b, f, vals[a], k)?
                    }
                }
            }
            Node::Where(c, x, y) => {
                let tc = self.prog.types[c];
                let zero = tconst(b, tc, 0.0);
                // A NaN condition counts as non-zero (`ne` is unordered-or-not-equal).
                let m = if tc == DType::I32 {
                    b.ins().icmp(IntCC::NotEqual, vals[c], zero)
                } else {
                    b.ins().fcmp(FloatCC::NotEqual, vals[c], zero)
                };
                b.ins().select(m, vals[x], vals[y])
            }
            Node::Clip(lo, hi, a) => match t {
                DType::F32 => emit::clip(b, vals[a], lo as f32, hi as f32),
                DType::I32 => {
                    let (l, h) = (tconst(b, t, lo), tconst(b, t, hi));
                    let v = b.ins().smax(vals[a], l);
                    b.ins().smin(v, h)
                }
                _ => {
                    let (l, h) = (tconst(b, t, lo), tconst(b, t, hi));
                    let below = b.ins().fcmp(FloatCC::LessThan, vals[a], l);
                    let v = b.ins().select(below, l, vals[a]);
                    let above = b.ins().fcmp(FloatCC::GreaterThan, v, h);
                    b.ins().select(above, h, v)
                }
            },
            Node::Cast(a) => {
                let x = vals[a];
                // The interpreter casts through f64: float -> int truncates toward zero and
                // saturates (NaN gives 0), which is `fcvt_to_sint_sat`; i32 -> f64 is exact,
                // so i32 -> f32 rounds once either way.
                match (self.prog.types[a], t) {
                    (DType::F32, DType::F64) => b.ins().fpromote(types::F64, x),
                    (DType::F64, DType::F32) => b.ins().fdemote(types::F32, x),
                    (DType::F32 | DType::F64, DType::I32) => {
                        b.ins().fcvt_to_sint_sat(types::I32, x)
                    }
                    (DType::I32, DType::F32) => b.ins().fcvt_from_sint(types::F32, x),
                    (DType::I32, DType::F64) => b.ins().fcvt_from_sint(types::F64, x),
                    _ => return None,
                }
            }
        })
    }

    fn eval(&self, b: &mut FunctionBuilder<'_>, ty: Type, off: Value) -> Option<Value> {
        if !self.prog.all_f32() {
            if ty.is_vector() {
                return None;
            }
            let mut vals: Vec<Value> = Vec::with_capacity(self.prog.nodes.len());
            for k in 0..self.prog.nodes.len() {
                let v = self.typed_node(b, k, &vals, off)?;
                vals.push(v);
            }
            return Some(vals[self.prog.out]);
        }
        let mut vals: Vec<Value> = Vec::with_capacity(self.prog.nodes.len());
        // For FMA contraction: the factors of single-use products.
        let mut factors: Vec<Option<(Value, Value)>> = vec![None; self.prog.nodes.len()];
        for (k, n) in self.prog.nodes.iter().enumerate() {
            let v = match *n {
                Node::Input(i) => match *self.modes.get(i)? {
                    Mode::Splat => {
                        let (s, v) = (*self.splats.get(i)?)?;
                        if ty.is_vector() {
                            v
                        } else {
                            s
                        }
                    }
                    Mode::Contig => {
                        let p = b.use_var((*self.ptrs.get(i)?)?);
                        let a = b.ins().iadd(p, off);
                        b.ins().load(ty, mf(), a, 0)
                    }
                },
                Node::Unary(f, a) => emit::unary(b, f, vals[a])?,
                Node::Binary(f, a, c) => {
                    let fused = if self.fma {
                        contract(b, f, factors[a], factors[c], vals[a], vals[c])
                    } else {
                        None
                    };
                    match fused {
                        Some(v) => v,
                        None => emit::binary(b, f, vals[a], vals[c])?,
                    }
                }
                Node::Scalar(f, c, rev, a) => {
                    let c = c as f32;
                    if self.fma && matches!(f, BinaryOp::Add | BinaryOp::Sub) {
                        if let Some((x, y)) = factors[a] {
                            let k = emit::fconst(b, ty, c);
                            let prod_side = if rev { None } else { Some((x, y)) };
                            let v = if rev {
                                contract(b, f, None, Some((x, y)), k, vals[a])
                            } else {
                                contract(b, f, prod_side, None, vals[a], k)
                            };
                            if let Some(v) = v {
                                vals.push(v);
                                continue;
                            }
                        }
                    }
                    emit::scalar(b, f, c, rev, vals[a])?
                }
                Node::Where(c, x, y) => emit::where_(b, vals[c], vals[x], vals[y]),
                Node::Clip(lo, hi, a) => emit::clip(b, vals[a], lo as f32, hi as f32),
                // An all-f32 program has no casts (same-type casts are removed).
                Node::Cast(_) => return None,
            };
            if self.prog.uses[k] == 1 && k != self.prog.out {
                factors[k] = match *n {
                    Node::Binary(BinaryOp::Mul, a, c) => Some((vals[a], vals[c])),
                    Node::Scalar(BinaryOp::Mul, c, _, a) => {
                        let kc = emit::fconst(b, ty, c as f32);
                        Some((vals[a], kc))
                    }
                    _ => None,
                };
            }
            vals.push(v);
        }
        Some(vals[self.prog.out])
    }
}

/// `a*b + c`, `a*b - c` or `c - a*b` as one fused multiply-add when an operand is a
/// single-use product.
fn contract(
    b: &mut FunctionBuilder<'_>,
    f: BinaryOp,
    lhs: Option<(Value, Value)>,
    rhs: Option<(Value, Value)>,
    x: Value,
    y: Value,
) -> Option<Value> {
    match (f, lhs, rhs) {
        (BinaryOp::Add, Some((p, q)), _) => Some(b.ins().fma(p, q, y)),
        (BinaryOp::Add, None, Some((p, q))) => Some(b.ins().fma(p, q, x)),
        (BinaryOp::Sub, Some((p, q)), _) => {
            let ny = b.ins().fneg(y);
            Some(b.ins().fma(p, q, ny))
        }
        (BinaryOp::Sub, None, Some((p, q))) => {
            let np = b.ins().fneg(p);
            Some(b.ins().fma(np, q, x))
        }
        _ => None,
    }
}

/// Builds the whole kernel function into `b` (whose signature is [`signature`]). Returns
/// `None` when an op has no lowering.
pub(crate) fn build(
    b: &mut FunctionBuilder<'_>,
    body: &Body,
    modes: &[Mode],
    n_inputs: usize,
    fma: bool,
) -> Option<()> {
    let ptr = types::I64;
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let (rows, inner, ins, strides, out, out_row, aux) = (
        params[0], params[1], params[2], params[3], params[4], params[5], params[6],
    );
    let prog = match body {
        Body::Map(p)
        | Body::RowFold { prog: p, .. }
        | Body::ColFold { prog: p, .. }
        | Body::ArgRow { prog: p, .. }
        | Body::ArgCol { prog: p, .. }
        | Body::Softmax { prog: p, .. }
        | Body::SoftmaxXent { prog: p, .. } => p,
    };
    let mut used = prog.inputs();
    if let Body::SoftmaxXent { label, .. } = body {
        if used.contains(label) || modes.get(*label) != Some(&Mode::Splat) {
            return None;
        }
        used.push(*label);
    }
    let mut ptrs: Vec<Option<Variable>> = vec![None; n_inputs];
    let mut row_strides: Vec<(Variable, Value)> = Vec::new();
    for &i in &used {
        if i >= n_inputs || i >= modes.len() {
            return None;
        }
        let var = b.declare_var(ptr);
        let p = b.ins().load(ptr, mf(), ins, (8 * i) as i32);
        b.def_var(var, p);
        let s = b.ins().load(ptr, mf(), strides, (8 * i) as i32);
        ptrs[i] = Some(var);
        row_strides.push((var, s));
    }
    let out_var = b.declare_var(ptr);
    b.def_var(out_var, out);
    let r_var = b.declare_var(ptr);
    let zero = b.ins().iconst(ptr, 0);
    b.def_var(r_var, zero);
    let mask = b.ins().iconst(ptr, -(LANES as i64));
    let inner_vec = b.ins().band(inner, mask);

    let row_head = b.create_block();
    let row_body = b.create_block();
    let exit = b.create_block();
    b.ins().jump(row_head, &[]);

    b.switch_to_block(row_head);
    let r = b.use_var(r_var);
    let more = b.ins().icmp(IntCC::UnsignedLessThan, r, rows);
    b.ins().brif(more, row_body, &[], exit, &[]);

    b.switch_to_block(row_body);
    // Splatted inputs: one load per row (in the input's dtype; vectors only for f32).
    let mut in_types: Vec<DType> = vec![DType::F32; n_inputs];
    for (n, &t) in prog.nodes.iter().zip(&prog.types) {
        if let Node::Input(i) = *n {
            *in_types.get_mut(i)? = t;
        }
    }
    let mut splats: Vec<Option<(Value, Value)>> = vec![None; n_inputs];
    for &i in &used {
        if modes[i] == Mode::Splat {
            let p = b.use_var(ptrs[i]?);
            let s = b.ins().load(clif_type(in_types[i])?, mf(), p, 0);
            let v = if in_types[i] == DType::F32 {
                b.ins().splat(VEC, s)
            } else {
                s
            };
            splats[i] = Some((s, v));
        }
    }
    let em = Emitter {
        prog,
        modes,
        fma,
        ptrs,
        splats,
    };
    let scalar_only = !prog.all_f32();
    if scalar_only && !matches!(body, Body::Map(_)) {
        // Reductions and softmax compute in f32 only.
        return None;
    }
    let ctx = Loops {
        inner,
        inner_vec,
        scalar_only,
    };
    let out_size = prog.out_type().size_of();

    match body {
        Body::Map(_) => {
            ctx.for_each(b, |b, ty, off| {
                let v = em.eval(b, ty, off)?;
                let o = b.use_var(out_var);
                let off = scale(b, off, out_size);
                let a = b.ins().iadd(o, off);
                b.ins().store(mf(), v, a, 0);
                Some(())
            })?;
        }
        Body::RowFold { comb, .. } => {
            let s = ctx.fold(b, *comb, |b, ty, off| em.eval(b, ty, off))?;
            let o = b.use_var(out_var);
            let prev = b.ins().load(types::F32, mf(), o, 0);
            let v = comb.apply(b, prev, s);
            b.ins().store(mf(), v, o, 0);
        }
        Body::ColFold { comb, .. } => {
            ctx.for_each(b, |b, ty, off| {
                let x = em.eval(b, ty, off)?;
                let o = b.use_var(out_var);
                let a = b.ins().iadd(o, off);
                let prev = b.ins().load(ty, mf(), a, 0);
                let v = comb.apply(b, prev, x);
                b.ins().store(mf(), v, a, 0);
                Some(())
            })?;
        }
        Body::ArgRow { max, .. } => {
            let idx = ctx.arg_fold(b, *max, |b, ty, off| em.eval(b, ty, off))?;
            let o = b.use_var(out_var);
            b.ins().store(mf(), idx, o, 0);
        }
        Body::ArgCol { max, .. } => {
            let r = b.use_var(r_var);
            let rf = b.ins().fcvt_from_uint(types::F32, r);
            let rv = b.ins().splat(VEC, rf);
            let max = *max;
            ctx.for_each(b, |b, ty, off| {
                let x = em.eval(b, ty, off)?;
                let ba = b.ins().iadd(aux, off);
                let best = b.ins().load(ty, mf(), ba, 0);
                let m = better(b, max, x, best);
                let nb = emit::select(b, m, x, best);
                b.ins().store(mf(), nb, ba, 0);
                let o = b.use_var(out_var);
                let oa = b.ins().iadd(o, off);
                let cur = b.ins().load(ty, mf(), oa, 0);
                let ri = if ty.is_vector() { rv } else { rf };
                let ni = emit::select(b, m, ri, cur);
                b.ins().store(mf(), ni, oa, 0);
                Some(())
            })?;
        }
        Body::SoftmaxXent { label, .. } => {
            let m = ctx.fold(b, Comb::MaxSkipNan, |b, ty, off| em.eval(b, ty, off))?;
            let mv = b.ins().splat(VEC, m);
            let sum = ctx.fold(b, Comb::Add, |b, ty, off| {
                let x = em.eval(b, ty, off)?;
                let mm = if ty.is_vector() { mv } else { m };
                let d = b.ins().fsub(x, mm);
                emit::unary(b, UnaryOp::Exp, d)
            })?;
            let ls = emit::unary(b, UnaryOp::Log, sum)?;
            let (lab, _) = (*em.splats.get(*label)?)?;
            // The label's index: truncated (NaN -> 0 by the saturating conversion), clipped.
            let li = b.ins().fcvt_to_sint_sat(ptr, lab);
            let zero = b.ins().iconst(ptr, 0);
            let li = b.ins().smax(li, zero);
            let last = b.ins().iadd_imm_s(inner, -1);
            let li = b.ins().smin(li, last);
            let off = b.ins().ishl_imm_u(li, 2);
            let xl = em.eval(b, types::F32, off)?;
            let d = b.ins().fsub(xl, m);
            let d = b.ins().fsub(d, ls);
            let r = b.ins().fneg(d);
            let o = b.use_var(out_var);
            b.ins().store(mf(), r, o, 0);
        }
        Body::Softmax { log, .. } => {
            // Pass 1: the row maximum (NaN-ignoring like f64::max; a NaN reaches the sum).
            let m = ctx.fold(b, Comb::MaxSkipNan, |b, ty, off| em.eval(b, ty, off))?;
            let mv = b.ins().splat(VEC, m);
            let shifted = |b: &mut FunctionBuilder<'_>, ty: Type, off: Value| -> Option<Value> {
                let x = em.eval(b, ty, off)?;
                let mm = if ty.is_vector() { mv } else { m };
                Some(b.ins().fsub(x, mm))
            };
            // Pass 2: the sum of exp(x - max) (softmax also stores the exponentials).
            let log = *log;
            let sum = ctx.fold(b, Comb::Add, |b, ty, off| {
                let d = shifted(b, ty, off)?;
                let e = emit::unary(b, UnaryOp::Exp, d)?;
                if !log {
                    let o = b.use_var(out_var);
                    let a = b.ins().iadd(o, off);
                    b.ins().store(mf(), e, a, 0);
                }
                Some(e)
            })?;
            if log {
                let ls = emit::unary(b, UnaryOp::Log, sum)?;
                let lsv = b.ins().splat(VEC, ls);
                ctx.for_each(b, |b, ty, off| {
                    let d = shifted(b, ty, off)?;
                    let l = if ty.is_vector() { lsv } else { ls };
                    let v = b.ins().fsub(d, l);
                    let o = b.use_var(out_var);
                    let a = b.ins().iadd(o, off);
                    b.ins().store(mf(), v, a, 0);
                    Some(())
                })?;
            } else {
                let sv = b.ins().splat(VEC, sum);
                ctx.for_each(b, |b, ty, off| {
                    let o = b.use_var(out_var);
                    let a = b.ins().iadd(o, off);
                    let e = b.ins().load(ty, mf(), a, 0);
                    let s = if ty.is_vector() { sv } else { sum };
                    let v = b.ins().fdiv(e, s);
                    b.ins().store(mf(), v, a, 0);
                    Some(())
                })?;
            }
        }
    }

    // Next row: bump every pointer by its row stride.
    for &(var, s) in &row_strides {
        let p = b.use_var(var);
        let p = b.ins().iadd(p, s);
        b.def_var(var, p);
    }
    let o = b.use_var(out_var);
    let o = b.ins().iadd(o, out_row);
    b.def_var(out_var, o);
    let r = b.use_var(r_var);
    let r = b.ins().iadd_imm_s(r, 1);
    b.def_var(r_var, r);
    b.ins().jump(row_head, &[]);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    Some(())
}

/// The loops over one row.
struct Loops {
    inner: Value,
    inner_vec: Value,
    /// No vector loop (a program with non-f32 values).
    scalar_only: bool,
}

/// `x` beats `best` for argmax (`max`) or argmin: strictly greater (less), or `x` is the first
/// NaN (a NaN best is never beaten). Lane by lane for vectors.
fn better(b: &mut FunctionBuilder<'_>, max: bool, x: Value, best: Value) -> emit::Mask {
    let cc = if max {
        FloatCC::GreaterThan
    } else {
        FloatCC::LessThan
    };
    let strict = emit::cmp(b, cc, x, best);
    let xn = emit::cmp(b, FloatCC::Unordered, x, x);
    let bn = emit::cmp(b, FloatCC::Unordered, best, best);
    let first_nan = emit::and_not(b, xn, bn);
    emit::or(b, strict, first_nan)
}

impl Loops {
    /// Runs `f(ty, byte_offset)` for every element of the row: f32x4 blocks, then the scalar
    /// tail. Leaves the builder in a fresh block after the loops.
    fn for_each(
        &self,
        b: &mut FunctionBuilder<'_>,
        mut f: impl FnMut(&mut FunctionBuilder<'_>, Type, Value) -> Option<()>,
    ) -> Option<()> {
        self.loops(b, &mut |b, ty, off| f(b, ty, off), None)
    }

    /// Folds `f`'s values over the row with `comb`, from its identity, in the summation
    /// order of the module documentation (four vector accumulators, then one, then lanes,
    /// then the scalar tail).
    fn fold(
        &self,
        b: &mut FunctionBuilder<'_>,
        comb: Comb,
        mut f: impl FnMut(&mut FunctionBuilder<'_>, Type, Value) -> Option<Value>,
    ) -> Option<Value> {
        const UNROLL: usize = 4;
        let ptr = types::I64;
        let accs: Vec<Variable> = (0..UNROLL).map(|_| b.declare_var(VEC)).collect();
        let acc_s = b.declare_var(types::F32);
        let iv = emit::fconst(b, VEC, comb.identity());
        for &a in &accs {
            b.def_var(a, iv);
        }
        // The unrolled block loop: 16 elements per iteration into four accumulators.
        let i_var = b.declare_var(ptr);
        let zero = b.ins().iconst(ptr, 0);
        b.def_var(i_var, zero);
        let block = (LANES * UNROLL) as i64;
        let mask = b.ins().iconst(ptr, -block);
        let inner_blk = b.ins().band(self.inner, mask);
        let head = b.create_block();
        let body = b.create_block();
        let after = b.create_block();
        b.ins().jump(head, &[]);
        b.switch_to_block(head);
        let i = b.use_var(i_var);
        let c = b.ins().icmp(IntCC::UnsignedLessThan, i, inner_blk);
        b.ins().brif(c, body, &[], after, &[]);
        b.switch_to_block(body);
        let i = b.use_var(i_var);
        let base = b.ins().ishl_imm_u(i, 2);
        for (k, &a) in accs.iter().enumerate() {
            let off = b.ins().iadd_imm_s(base, (k * LANES * 4) as i64);
            let x = f(b, VEC, off)?;
            let av = b.use_var(a);
            let r = comb.apply(b, av, x);
            b.def_var(a, r);
        }
        let i = b.use_var(i_var);
        let i = b.ins().iadd_imm_s(i, block);
        b.def_var(i_var, i);
        b.ins().jump(head, &[]);
        b.switch_to_block(after);
        // Then whole vectors into a0, the accumulators and lanes together, and the tail.
        let a0 = accs[0];
        self.loops_from(
            b,
            i_var,
            &mut |b, ty, off| {
                let x = f(b, ty, off)?;
                let var = if ty.is_vector() { a0 } else { acc_s };
                let a = b.use_var(var);
                let r = comb.apply(b, a, x);
                b.def_var(var, r);
                Some(())
            },
            Some(&mut |b: &mut FunctionBuilder<'_>| {
                let v: Vec<Value> = accs.iter().map(|&a| b.use_var(a)).collect();
                let x = comb.apply(b, v[0], v[1]);
                let y = comb.apply(b, v[2], v[3]);
                let v = comb.apply(b, x, y);
                let l: Vec<Value> = (0..LANES as u8)
                    .map(|k| b.ins().extractlane(v, k))
                    .collect();
                let x = comb.apply(b, l[0], l[1]);
                let y = comb.apply(b, l[2], l[3]);
                let s = comb.apply(b, x, y);
                b.def_var(acc_s, s);
            }),
        )?;
        Some(b.use_var(acc_s))
    }

    /// The index (as f32) of the row's maximum (`max`) or minimum of `f`'s values: ties take
    /// the first index, the first NaN wins. Lane `j` tracks the elements `i ≡ j (mod 4)` of
    /// the vector part, starting as if element `j` were `∓inf` (harmless: a real element at
    /// an index ≥ 0 beats or ties it, and a tie takes the smaller index); the lanes combine
    /// with ties broken by index, then the scalar tail continues strictly.
    fn arg_fold(
        &self,
        b: &mut FunctionBuilder<'_>,
        max: bool,
        mut f: impl FnMut(&mut FunctionBuilder<'_>, Type, Value) -> Option<Value>,
    ) -> Option<Value> {
        let worst = if max {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        };
        let bv = b.declare_var(VEC);
        let bi = b.declare_var(VEC);
        let sv = b.declare_var(types::F32);
        let si = b.declare_var(types::F32);
        let w = emit::fconst(b, VEC, worst);
        b.def_var(bv, w);
        let lane_ids = {
            let l: Vec<Value> = (0..LANES).map(|k| b.ins().f32const(k as f32)).collect();
            let mut v = b.ins().splat(VEC, l[0]);
            for (k, &x) in l.iter().enumerate().skip(1) {
                v = b.ins().insertlane(v, x, k as u8);
            }
            v
        };
        b.def_var(bi, lane_ids);
        self.loops(
            b,
            &mut |b, ty, off| {
                let x = f(b, ty, off)?;
                let i = b.ins().ushr_imm_u(off, 2);
                let fi = b.ins().fcvt_from_uint(types::F32, i);
                let (vv, iv, idx) = if ty.is_vector() {
                    let s = b.ins().splat(VEC, fi);
                    (bv, bi, b.ins().fadd(s, lane_ids))
                } else {
                    (sv, si, fi)
                };
                let best = b.use_var(vv);
                let m = better(b, max, x, best);
                let nb = emit::select(b, m, x, best);
                b.def_var(vv, nb);
                let cur = b.use_var(iv);
                let ni = emit::select(b, m, idx, cur);
                b.def_var(iv, ni);
                Some(())
            },
            Some(&mut |b: &mut FunctionBuilder<'_>| {
                let v = b.use_var(bv);
                let ix = b.use_var(bi);
                let lanes: Vec<(Value, Value)> = (0..LANES as u8)
                    .map(|k| (b.ins().extractlane(v, k), b.ins().extractlane(ix, k)))
                    .collect();
                let pick = |b: &mut FunctionBuilder<'_>, p: (Value, Value), q: (Value, Value)| {
                    // q wins when better, or equal (or both NaN) with a smaller index.
                    let m = better(b, max, q.0, p.0);
                    let eq = emit::cmp(b, FloatCC::Equal, q.0, p.0);
                    let qn = emit::cmp(b, FloatCC::Unordered, q.0, q.0);
                    let pn = emit::cmp(b, FloatCC::Unordered, p.0, p.0);
                    let both = emit::and(b, qn, pn);
                    let tie = emit::or(b, eq, both);
                    let lower = emit::cmp(b, FloatCC::LessThan, q.1, p.1);
                    let tie_low = emit::and(b, tie, lower);
                    let m = emit::or(b, m, tie_low);
                    (emit::select(b, m, q.0, p.0), emit::select(b, m, q.1, p.1))
                };
                let x = pick(b, lanes[0], lanes[1]);
                let y = pick(b, lanes[2], lanes[3]);
                let (v, i) = pick(b, x, y);
                b.def_var(sv, v);
                b.def_var(si, i);
            }),
        )?;
        Some(b.use_var(si))
    }

    fn loops(
        &self,
        b: &mut FunctionBuilder<'_>,
        f: &mut dyn FnMut(&mut FunctionBuilder<'_>, Type, Value) -> Option<()>,
        between: Option<&mut dyn FnMut(&mut FunctionBuilder<'_>)>,
    ) -> Option<()> {
        let i_var = b.declare_var(types::I64);
        let zero = b.ins().iconst(types::I64, 0);
        b.def_var(i_var, zero);
        self.loops_from(b, i_var, f, between)
    }

    /// The vector loop and the scalar tail, starting at element `i_var`.
    fn loops_from(
        &self,
        b: &mut FunctionBuilder<'_>,
        i_var: Variable,
        f: &mut dyn FnMut(&mut FunctionBuilder<'_>, Type, Value) -> Option<()>,
        between: Option<&mut dyn FnMut(&mut FunctionBuilder<'_>)>,
    ) -> Option<()> {
        let vhead = b.create_block();
        let vbody = b.create_block();
        let mid = b.create_block();
        let thead = b.create_block();
        let tbody = b.create_block();
        let done = b.create_block();
        b.ins().jump(vhead, &[]);

        b.switch_to_block(vhead);
        if self.scalar_only {
            b.ins().jump(mid, &[]);
        } else {
            let i = b.use_var(i_var);
            let c = b.ins().icmp(IntCC::UnsignedLessThan, i, self.inner_vec);
            b.ins().brif(c, vbody, &[], mid, &[]);
        }

        b.switch_to_block(vbody);
        if self.scalar_only {
            // Unreachable; a block must still end in a terminator.
            b.ins().jump(vhead, &[]);
        } else {
            let i = b.use_var(i_var);
            let off = b.ins().ishl_imm_u(i, 2);
            f(b, VEC, off)?;
            let i = b.use_var(i_var);
            let i = b.ins().iadd_imm_s(i, LANES as i64);
            b.def_var(i_var, i);
            b.ins().jump(vhead, &[]);
        }

        b.switch_to_block(mid);
        if let Some(g) = between {
            g(b);
        }
        b.ins().jump(thead, &[]);

        b.switch_to_block(thead);
        let i = b.use_var(i_var);
        let c = b.ins().icmp(IntCC::UnsignedLessThan, i, self.inner);
        b.ins().brif(c, tbody, &[], done, &[]);

        b.switch_to_block(tbody);
        let i = b.use_var(i_var);
        let off = b.ins().ishl_imm_u(i, 2);
        f(b, types::F32, off)?;
        let i = b.use_var(i_var);
        let i = b.ins().iadd_imm_s(i, 1);
        b.def_var(i_var, i);
        b.ins().jump(thead, &[]);

        b.switch_to_block(done);
        Some(())
    }
}
