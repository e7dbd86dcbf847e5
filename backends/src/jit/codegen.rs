//! Building the Cranelift function of a kernel.
//!
//! Every compiled kernel has one signature (all arguments pointer-sized):
//!
//! ```text
//! fn(rows, inner, ins: *const *const f32, row_strides: *const isize, out: *mut f32, out_row: isize)
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

use super::emit::{self, LANES, VEC};
use super::program::{Node, Program};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData, Signature, Type, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use kiln_ir::{BinaryOp, ReduceOp, UnaryOp};

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
    /// `out[row] = reduce(program(inputs[i]))` over the row.
    Reduce(ReduceOp, Program),
    /// `out[i] = softmax(program(inputs))[i]` (log-softmax when `log`) along the row.
    Softmax { log: bool, prog: Program },
    /// `out[row] = -log_softmax(program(inputs))[row, label]`, with the label read from input
    /// `label` (one value per row: [`Mode::Splat`]) truncated toward zero and clipped to
    /// `[0, inner - 1]` (NaN reads as 0).
    SoftmaxXent { label: usize, prog: Program },
}

/// The machine-level signature shared by every kernel.
pub(crate) fn signature(call_conv: cranelift_codegen::isa::CallConv, ptr: Type) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..6 {
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

impl Emitter<'_> {
    fn eval(&self, b: &mut FunctionBuilder<'_>, ty: Type, off: Value) -> Option<Value> {
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
                Node::Clip(lo, hi, a) => emit::clip(b, vals[a], lo, hi),
            };
            if self.prog.uses[k] == 1 && k != self.prog.out {
                factors[k] = match *n {
                    Node::Binary(BinaryOp::Mul, a, c) => Some((vals[a], vals[c])),
                    Node::Scalar(BinaryOp::Mul, c, _, a) => {
                        let kc = emit::fconst(b, ty, c);
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
    let (rows, inner, ins, strides, out, out_row) = (
        params[0], params[1], params[2], params[3], params[4], params[5],
    );
    let prog = match body {
        Body::Map(p)
        | Body::Reduce(_, p)
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
    // Splatted inputs: one load per row.
    let mut splats: Vec<Option<(Value, Value)>> = vec![None; n_inputs];
    for &i in &used {
        if modes[i] == Mode::Splat {
            let p = b.use_var(ptrs[i]?);
            let s = b.ins().load(types::F32, mf(), p, 0);
            let v = b.ins().splat(VEC, s);
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
    let ctx = Loops { inner, inner_vec };

    match body {
        Body::Map(_) => {
            ctx.for_each(b, |b, ty, off| {
                let v = em.eval(b, ty, off)?;
                let o = b.use_var(out_var);
                let a = b.ins().iadd(o, off);
                b.ins().store(mf(), v, a, 0);
                Some(())
            })?;
        }
        Body::Reduce(f, _) => {
            let (init, op): (f32, ReduceOp) = match f {
                ReduceOp::Sum | ReduceOp::Mean => (0.0, ReduceOp::Sum),
                ReduceOp::Max => (f32::NEG_INFINITY, ReduceOp::Max),
                ReduceOp::Min => (f32::INFINITY, ReduceOp::Min),
                _ => return None,
            };
            let s = ctx.fold(b, init, op, |b, ty, off| em.eval(b, ty, off))?;
            let s = if *f == ReduceOp::Mean {
                let n = b.ins().fcvt_from_uint(types::F32, inner);
                b.ins().fdiv(s, n)
            } else {
                s
            };
            let o = b.use_var(out_var);
            b.ins().store(mf(), s, o, 0);
        }
        Body::SoftmaxXent { label, .. } => {
            let m = ctx.fold(b, f32::NEG_INFINITY, ReduceOp::Norm, |b, ty, off| {
                em.eval(b, ty, off)
            })?;
            let mv = b.ins().splat(VEC, m);
            let sum = ctx.fold(b, 0.0, ReduceOp::Sum, |b, ty, off| {
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
            let m = ctx.fold(b, f32::NEG_INFINITY, ReduceOp::Norm, |b, ty, off| {
                em.eval(b, ty, off)
            })?;
            let mv = b.ins().splat(VEC, m);
            let shifted = |b: &mut FunctionBuilder<'_>, ty: Type, off: Value| -> Option<Value> {
                let x = em.eval(b, ty, off)?;
                let mm = if ty.is_vector() { mv } else { m };
                Some(b.ins().fsub(x, mm))
            };
            // Pass 2: the sum of exp(x - max) (softmax also stores the exponentials).
            let log = *log;
            let sum = ctx.fold(b, 0.0, ReduceOp::Sum, |b, ty, off| {
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

    /// Folds `f`'s values over the row with `op` (Sum: `+`; Max/Min: NaN-propagating
    /// `maximum`/`minimum`; Norm here means the NaN-ignoring maximum used by softmax) from
    /// `init`. Summation order: lane `j` of a vector accumulator takes the elements
    /// `i ≡ j (mod 4)` of the vector part, the lanes combine as `(l0 ∘ l1) ∘ (l2 ∘ l3)`, then
    /// the tail elements are added in order.
    fn fold(
        &self,
        b: &mut FunctionBuilder<'_>,
        init: f32,
        op: ReduceOp,
        mut f: impl FnMut(&mut FunctionBuilder<'_>, Type, Value) -> Option<Value>,
    ) -> Option<Value> {
        let acc_v = b.declare_var(VEC);
        let acc_s = b.declare_var(types::F32);
        let iv = emit::fconst(b, VEC, init);
        b.def_var(acc_v, iv);
        let combine = move |b: &mut FunctionBuilder<'_>, a: Value, x: Value| -> Value {
            match op {
                ReduceOp::Max => emit::maximum(b, a, x),
                ReduceOp::Min => emit::minimum(b, a, x),
                ReduceOp::Norm => {
                    // x > a ? x : a (a NaN x is skipped).
                    let m = emit::cmp(b, FloatCC::GreaterThan, x, a);
                    emit::select(b, m, x, a)
                }
                _ => b.ins().fadd(a, x),
            }
        };
        self.loops(
            b,
            &mut |b, ty, off| {
                let x = f(b, ty, off)?;
                let var = if ty.is_vector() { acc_v } else { acc_s };
                let a = b.use_var(var);
                let r = combine(b, a, x);
                b.def_var(var, r);
                Some(())
            },
            Some(&mut |b: &mut FunctionBuilder<'_>| {
                // Between the loops: reduce the vector accumulator into the scalar one.
                let v = b.use_var(acc_v);
                let l: Vec<Value> = (0..LANES as u8)
                    .map(|k| b.ins().extractlane(v, k))
                    .collect();
                let x = combine(b, l[0], l[1]);
                let y = combine(b, l[2], l[3]);
                let s = combine(b, x, y);
                b.def_var(acc_s, s);
            }),
        )?;
        Some(b.use_var(acc_s))
    }

    fn loops(
        &self,
        b: &mut FunctionBuilder<'_>,
        f: &mut dyn FnMut(&mut FunctionBuilder<'_>, Type, Value) -> Option<()>,
        between: Option<&mut dyn FnMut(&mut FunctionBuilder<'_>)>,
    ) -> Option<()> {
        let ptr = types::I64;
        let i_var = b.declare_var(ptr);
        let zero = b.ins().iconst(ptr, 0);
        b.def_var(i_var, zero);
        let vhead = b.create_block();
        let vbody = b.create_block();
        let mid = b.create_block();
        let thead = b.create_block();
        let tbody = b.create_block();
        let done = b.create_block();
        b.ins().jump(vhead, &[]);

        b.switch_to_block(vhead);
        let i = b.use_var(i_var);
        let c = b.ins().icmp(IntCC::UnsignedLessThan, i, self.inner_vec);
        b.ins().brif(c, vbody, &[], mid, &[]);

        b.switch_to_block(vbody);
        let i = b.use_var(i_var);
        let off = b.ins().ishl_imm_u(i, 2);
        f(b, VEC, off)?;
        let i = b.use_var(i_var);
        let i = b.ins().iadd_imm_s(i, LANES as i64);
        b.def_var(i_var, i);
        b.ins().jump(vhead, &[]);

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
