//! Finite-difference checks of every op's VJP.
//!
//! A test-only [`VjpBuilder`] runs each op at once through the reference interpreter. For each
//! case (an op and seeded random f64 inputs kept away from kinks and ties) the VJP of a random
//! head gradient `h` is compared with central differences of `<op(x), h>`. The tables below
//! cover every op variant (and every unary, binary, scalar and reduce function);
//! `every_op_is_covered` fails when one is missing.

use kiln_ir::vjp::{vjp, vjp_wanted, VjpBuilder};
use kiln_ir::{
    infer::infer, interp::eval, ArgReduceOp, BinaryOp, DType, Op, PoolKind, ReduceOp, Result,
    Shape, Tensor, TensorType, UnaryOp,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;

// ----- the eager builder -------------------------------------------------------------------

/// Runs every op at once with the interpreter.
struct Eager;

impl VjpBuilder for Eager {
    type Value = Tensor;
    fn apply(&mut self, op: Op, inputs: &[&Tensor]) -> Result<Tensor> {
        let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
        eval(&op, &views)
    }
    fn shape(&self, v: &Tensor) -> Shape {
        v.shape().clone()
    }
    fn dtype(&self, v: &Tensor) -> DType {
        v.dtype()
    }
}

// ----- random inputs ---------------------------------------------------------------------------

/// Seeded generators of test inputs (all f64 unless said otherwise).
struct Gen(rand_pcg::Pcg64);

impl Gen {
    fn new(seed: u64) -> Self {
        Gen(rand_pcg::Pcg64::seed_from_u64(seed))
    }
    fn tensor(v: Vec<f64>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, Shape::new(shape)).expect("generator shape")
    }
    fn n(shape: &[usize]) -> usize {
        shape.iter().product()
    }
    /// Uniform on `[lo, hi)`.
    fn uni(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor {
        let v = (0..Self::n(shape))
            .map(|_| self.0.random_range(lo..hi))
            .collect();
        Self::tensor(v, shape)
    }
    /// Magnitudes in `[0.2, 1.5)` with random signs: away from 0.
    fn away(&mut self, shape: &[usize]) -> Tensor {
        let v = (0..Self::n(shape))
            .map(|_| {
                let m = self.0.random_range(0.2..1.5);
                if self.0.random_bool(0.5) {
                    m
                } else {
                    -m
                }
            })
            .collect();
        Self::tensor(v, shape)
    }
    /// In `[0.5, 2)`.
    fn pos(&mut self, shape: &[usize]) -> Tensor {
        self.uni(shape, 0.5, 2.0)
    }
    /// Pairwise distinct values at least 0.08 apart (no ties for max/min).
    fn distinct(&mut self, shape: &[usize]) -> Tensor {
        let n = Self::n(shape);
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut self.0);
        let v = perm
            .into_iter()
            .map(|p| (p as f64 - n as f64 / 2.0) * 0.1 + self.0.random_range(-0.01..0.01))
            .collect();
        Self::tensor(v, shape)
    }
    /// `k + 0.25 ± 0.1` for integers `k`: away from integers and half-integers.
    fn frac(&mut self, shape: &[usize]) -> Tensor {
        let v = (0..Self::n(shape))
            .map(|_| self.0.random_range(-3i32..3) as f64 + 0.25 + self.0.random_range(-0.1..0.1))
            .collect();
        Self::tensor(v, shape)
    }
    /// `k * step + offset` for integers `k` in `[-kmax, kmax]`.
    fn grid(&mut self, shape: &[usize], step: f64, offset: f64, kmax: i32) -> Tensor {
        let v = (0..Self::n(shape))
            .map(|_| self.0.random_range(-kmax..=kmax) as f64 * step + offset)
            .collect();
        Self::tensor(v, shape)
    }
}

/// An i64 tensor.
fn ints(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), Shape::new(shape)).expect("ints shape")
}

/// An f64 tensor.
fn floats(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), Shape::new(shape)).expect("floats shape")
}

// ----- cases -----------------------------------------------------------------------------------

/// How an input is checked.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// The VJP gives a gradient; it must match finite differences.
    Diff,
    /// The VJP gives `None`, and finite differences must be zero (piecewise-constant ops,
    /// ignored inputs).
    Zero,
    /// The VJP gives `None`; not checked numerically (indices, labels, running statistics).
    NoGrad,
}

struct Case {
    name: String,
    op: Op,
    leaves: Vec<(Tensor, Kind)>,
    /// The op's input `i` is `leaves[wiring[i]]` (so one leaf may feed several inputs).
    wiring: Vec<usize>,
    eps: f64,
    tol: f64,
}

impl Case {
    fn new(name: impl Into<String>, op: Op) -> Self {
        Case {
            name: name.into(),
            op,
            leaves: Vec::new(),
            wiring: Vec::new(),
            eps: 1e-6,
            tol: 1e-6,
        }
    }
    fn arg(mut self, t: Tensor, kind: Kind) -> Self {
        self.wiring.push(self.leaves.len());
        self.leaves.push((t, kind));
        self
    }
    fn diff(self, t: Tensor) -> Self {
        self.arg(t, Kind::Diff)
    }
    /// The same leaf feeds the op `times` times.
    fn tied(mut self, t: Tensor, times: usize) -> Self {
        let i = self.leaves.len();
        self.leaves.push((t, Kind::Diff));
        self.wiring.extend(std::iter::repeat_n(i, times));
        self
    }
    fn tol(mut self, eps: f64, tol: f64) -> Self {
        self.eps = eps;
        self.tol = tol;
        self
    }
}

fn forward(op: &Op, leaves: &[Tensor], wiring: &[usize]) -> Result<Tensor> {
    let views: Vec<_> = wiring.iter().map(|&i| leaves[i].view()).collect();
    eval(op, &views)
}

fn inner(y: &Tensor, head: &[f64]) -> f64 {
    y.to_f64_vec().iter().zip(head).map(|(a, b)| a * b).sum()
}

/// Runs one case; returns a description of every mismatch.
fn check(case: &Case, seed: u64) -> Vec<String> {
    let mut fails = Vec::new();
    let name = &case.name;
    let leaves: Vec<Tensor> = case.leaves.iter().map(|(t, _)| t.clone()).collect();
    let y = match forward(&case.op, &leaves, &case.wiring) {
        Ok(y) => y,
        Err(e) => return vec![format!("{name}: forward failed: {e}")],
    };
    let mut g = Gen::new(seed);
    let head_f64 = g.uni(y.shape(), -1.0, 1.0);
    let head = head_f64.cast(y.dtype());
    let head_vals = head.to_f64_vec();
    let inputs: Vec<Tensor> = case.wiring.iter().map(|&i| leaves[i].clone()).collect();
    let grads = match vjp(&mut Eager, &case.op, &inputs, &y, &head) {
        Ok(gr) => gr,
        Err(e) => return vec![format!("{name}: vjp failed: {e}")],
    };
    if grads.len() != inputs.len() {
        return vec![format!(
            "{name}: vjp returned {} gradients for {} inputs",
            grads.len(),
            inputs.len()
        )];
    }
    // Accumulate per leaf.
    let mut acc: Vec<Option<Vec<f64>>> = vec![None; leaves.len()];
    for (i, gr) in grads.iter().enumerate() {
        let leaf = case.wiring[i];
        let (x, kind) = &case.leaves[leaf];
        match (gr, kind) {
            (Some(gx), Kind::Diff) => {
                if gx.shape() != x.shape() || gx.dtype() != x.dtype() {
                    fails.push(format!(
                        "{name}: gradient of input {i} is {} but the input is {}",
                        gx.ty(),
                        x.ty()
                    ));
                    continue;
                }
                let v = gx.to_f64_vec();
                match &mut acc[leaf] {
                    Some(a) => a.iter_mut().zip(&v).for_each(|(a, b)| *a += b),
                    slot => *slot = Some(v),
                }
            }
            (None, Kind::Zero | Kind::NoGrad) => {}
            (Some(_), k) => fails.push(format!("{name}: input {i} ({k:?}) got a gradient")),
            (None, Kind::Diff) => fails.push(format!("{name}: input {i} got no gradient")),
        }
    }
    if !fails.is_empty() {
        return fails;
    }
    for (leaf, (x, kind)) in case.leaves.iter().enumerate() {
        if *kind == Kind::NoGrad {
            continue;
        }
        let analytic = acc[leaf]
            .clone()
            .unwrap_or_else(|| vec![0.0; x.shape().numel()]);
        let base = x.to_f64_vec();
        for (j, &an) in analytic.iter().enumerate() {
            let mut f = [0.0; 2];
            for (k, sgn) in [1.0, -1.0].iter().enumerate() {
                let mut v = base.clone();
                v[j] += sgn * case.eps;
                let mut ls = leaves.clone();
                ls[leaf] = floats(&v, x.shape()).cast(x.dtype());
                match forward(&case.op, &ls, &case.wiring) {
                    Ok(yp) => f[k] = inner(&yp, &head_vals),
                    Err(e) => {
                        fails.push(format!("{name}: perturbed forward failed: {e}"));
                        return fails;
                    }
                }
            }
            let num = (f[0] - f[1]) / (2.0 * case.eps);
            let scale = an.abs().max(num.abs()).max(1.0);
            // Written so that a NaN on either side fails.
            let close = (an - num).abs() <= case.tol * scale;
            if !close {
                fails.push(format!(
                    "{name}: leaf {leaf} element {j}: vjp {an:.9} vs finite difference {num:.9}"
                ));
            }
        }
    }
    fails
}

fn run_all(cases: &[Case]) {
    let mut fails = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        fails.extend(check(c, 1000 + i as u64));
    }
    assert!(
        fails.is_empty(),
        "{} of {} cases failed:\n{}",
        fails.len(),
        cases.len(),
        fails.join("\n")
    );
}

// ----- the tables ------------------------------------------------------------------------------

fn unary_input(g: &mut Gen, f: UnaryOp, shape: &[usize]) -> (Tensor, Kind) {
    use UnaryOp::*;
    match f {
        Log | Sqrt | Rsqrt | Reciprocal | Log1p => (g.pos(shape), Kind::Diff),
        Abs | Relu => (g.away(shape), Kind::Diff),
        Sign | LogicalNot => (g.away(shape), Kind::Zero),
        Floor | Ceil | Round => (g.frac(shape), Kind::Zero),
        _ => (g.uni(shape, -1.5, 1.5), Kind::Diff),
    }
}

/// Inputs for a binary op: (a, b, kind of both).
fn binary_inputs(g: &mut Gen, f: BinaryOp, sa: &[usize], sb: &[usize]) -> (Tensor, Tensor, Kind) {
    use BinaryOp::*;
    match f {
        Div => (g.uni(sa, -1.5, 1.5), g.away(sb), Kind::Diff),
        Pow => (g.pos(sa), g.uni(sb, -1.5, 1.5), Kind::Diff),
        // Values on two interleaved grids never tie.
        Maximum | Minimum => (g.grid(sa, 0.2, 0.0, 5), g.grid(sb, 0.2, 0.1, 5), Kind::Diff),
        // Zero gradient away from the discontinuities at a == b.
        Eq | Ne | Gt | Ge | Lt | Le => {
            (g.grid(sa, 0.2, 0.0, 2), g.grid(sb, 0.2, 0.1, 2), Kind::Zero)
        }
        Add | Sub | Mul => (g.uni(sa, -1.5, 1.5), g.uni(sb, -1.5, 1.5), Kind::Diff),
    }
}

fn elementwise_cases() -> Vec<Case> {
    let mut g = Gen::new(1);
    let mut cases = Vec::new();
    for f in UnaryOp::ALL {
        let (x, kind) = unary_input(&mut g, f, &[2, 3]);
        cases.push(Case::new(f.name(), Op::Unary { f }).arg(x, kind));
    }
    let shape_pairs: [(&[usize], &[usize]); 6] = [
        (&[2, 3], &[2, 3]),
        (&[2, 3], &[3]),
        (&[3, 1], &[2, 1, 4]),
        (&[2, 1, 4], &[3, 1]),
        (&[], &[2, 2]),
        (&[1], &[3]),
    ];
    for f in BinaryOp::ALL {
        for (sa, sb) in shape_pairs {
            let (a, b, kind) = binary_inputs(&mut g, f, sa, sb);
            cases.push(
                Case::new(format!("{} {sa:?} {sb:?}", f.name()), Op::Binary { f })
                    .arg(a, kind)
                    .arg(b, kind),
            );
        }
        // The same array as both operands: the two gradients add up.
        let (a, _, kind) = binary_inputs(&mut g, f, &[2, 3], &[2, 3]);
        let mut c = Case::new(format!("{}(x, x)", f.name()), Op::Binary { f });
        c = if kind == Kind::Diff {
            c.tied(a, 2)
        } else {
            let i = 0;
            c.leaves.push((a, kind));
            c.wiring.extend([i, i]);
            c
        };
        cases.push(c);
    }
    for f in BinaryOp::ALL {
        for reverse in [false, true] {
            let (x, s, kind) = match f {
                BinaryOp::Div if reverse => (g.away(&[2, 3]), 1.3, Kind::Diff),
                BinaryOp::Pow if reverse => (g.uni(&[2, 3], -1.5, 1.5), 1.7, Kind::Diff),
                BinaryOp::Pow => (g.pos(&[2, 3]), 1.7, Kind::Diff),
                BinaryOp::Maximum | BinaryOp::Minimum => {
                    (g.grid(&[2, 3], 0.2, 0.0, 5), 0.1, Kind::Diff)
                }
                f if f.is_comparison() => (g.grid(&[2, 3], 0.2, 0.0, 2), 0.1, Kind::Zero),
                _ => (g.uni(&[2, 3], -1.5, 1.5), -0.7, Kind::Diff),
            };
            let op = Op::Scalar {
                f,
                scalar: s,
                reverse,
            };
            cases.push(Case::new(format!("{} reverse={reverse}", op.name()), op).arg(x, kind));
        }
    }
    let pow0 = Op::Scalar {
        f: BinaryOp::Pow,
        scalar: 0.0,
        reverse: false,
    };
    cases.push(Case::new("pow_scalar x^0", pow0).diff(g.pos(&[3])));

    let cond = floats(&[1.0, 0.0, 0.0, 1.0, 1.0, 0.0], &[2, 3]);
    cases.push(
        Case::new("where broadcast", Op::Where)
            .arg(cond.clone(), Kind::NoGrad)
            .diff(g.uni(&[2, 1], -1.0, 1.0))
            .diff(g.uni(&[3], -1.0, 1.0)),
    );
    cases.push(
        Case::new("where scalar branch", Op::Where)
            .arg(cond, Kind::NoGrad)
            .diff(g.uni(&[], -1.0, 1.0))
            .diff(g.uni(&[2, 3], -1.0, 1.0)),
    );
    cases.push(
        Case::new("where(c, x, x)", Op::Where)
            .arg(floats(&[1.0, 0.0, 2.0], &[3]), Kind::NoGrad)
            .tied(g.uni(&[3], -1.0, 1.0), 2),
    );
    // Grid values k*0.3 + 0.05 stay at least 0.05 from the bounds ±0.5.
    cases.push(
        Case::new(
            "clip",
            Op::Clip {
                min: -0.5,
                max: 0.5,
            },
        )
        .diff(g.grid(&[3, 4], 0.3, 0.05, 4)),
    );
    cases.push(
        Case::new("cast f64->f64", Op::Cast { dtype: DType::F64 }).diff(g.uni(&[4], -1.0, 1.0)),
    );
    cases.push(
        Case::new("cast f64->f32", Op::Cast { dtype: DType::F32 })
            .diff(g.uni(&[2, 3], -1.0, 1.0))
            .tol(1e-3, 1e-3),
    );
    cases.push(
        Case::new("cast f64->i64", Op::Cast { dtype: DType::I64 }).arg(g.frac(&[5]), Kind::Zero),
    );
    cases
}

const REDUCE_OPS: [ReduceOp; 6] = [
    ReduceOp::Sum,
    ReduceOp::Mean,
    ReduceOp::Max,
    ReduceOp::Min,
    ReduceOp::Prod,
    ReduceOp::Norm,
];

/// Fails to compile when a reduce function is added without extending [`REDUCE_OPS`].
fn _reduce_ops_complete(f: ReduceOp) {
    match f {
        ReduceOp::Sum
        | ReduceOp::Mean
        | ReduceOp::Max
        | ReduceOp::Min
        | ReduceOp::Prod
        | ReduceOp::Norm => {}
    }
}

fn reduce_cases() -> Vec<Case> {
    let mut g = Gen::new(2);
    let mut cases = Vec::new();
    let axes_list: [Option<Vec<isize>>; 5] = [
        None,
        Some(vec![1]),
        Some(vec![0, 2]),
        Some(vec![-1]),
        Some(vec![]),
    ];
    for f in REDUCE_OPS {
        for axes in &axes_list {
            for keepdims in [false, true] {
                let x = match f {
                    ReduceOp::Max | ReduceOp::Min => g.distinct(&[2, 3, 4]),
                    ReduceOp::Prod => g.away(&[2, 3, 4]),
                    _ => g.uni(&[2, 3, 4], -1.5, 1.5),
                };
                let op = Op::Reduce {
                    f,
                    axes: axes.clone(),
                    keepdims,
                };
                cases.push(
                    Case::new(
                        format!("{} axes={axes:?} keepdims={keepdims}", f.name()),
                        op,
                    )
                    .diff(x),
                );
            }
        }
    }
    for f in [ArgReduceOp::Argmax, ArgReduceOp::Argmin] {
        for axis in [Some(1), None] {
            let op = Op::ArgReduce {
                f,
                axis,
                keepdims: false,
            };
            cases.push(
                Case::new(format!("{} axis={axis:?}", op.name()), op)
                    .arg(g.distinct(&[3, 4]), Kind::Zero),
            );
        }
    }
    cases
}

fn linalg_cases() -> Vec<Case> {
    let mut g = Gen::new(3);
    let mut cases = Vec::new();
    // (a's shape after its transpose flag, b's shape after its flag)
    let dot_shapes: [(&[usize], &[usize]); 7] = [
        (&[3, 4], &[4, 5]),
        (&[4], &[4]),
        (&[4], &[4, 5]),
        (&[3, 4], &[4]),
        (&[2, 3, 4], &[4, 5]),
        (&[2, 3, 4], &[4, 2, 2]),
        (&[3, 4], &[4, 2, 3]),
    ];
    let rev = |s: &[usize], on: bool| -> Vec<usize> {
        let mut v = s.to_vec();
        if on {
            v.reverse();
        }
        v
    };
    for ta in [false, true] {
        for tb in [false, true] {
            let op = Op::Dot {
                transpose_a: ta,
                transpose_b: tb,
            };
            for (sa, sb) in dot_shapes {
                let (sa, sb) = (rev(sa, ta), rev(sb, tb));
                cases.push(
                    Case::new(format!("dot ta={ta} tb={tb} {sa:?} {sb:?}"), op.clone())
                        .diff(g.uni(&sa, -1.0, 1.0))
                        .diff(g.uni(&sb, -1.0, 1.0)),
                );
            }
            cases.push(
                Case::new(format!("dot(x, x) ta={ta} tb={tb}"), op.clone())
                    .tied(g.uni(&[3, 3], -1.0, 1.0), 2),
            );
            let bop = Op::BatchDot {
                transpose_a: ta,
                transpose_b: tb,
            };
            let last2 = |s: &[usize], on: bool| -> Vec<usize> {
                let mut v = s.to_vec();
                let n = v.len();
                if on {
                    v.swap(n - 1, n - 2);
                }
                v
            };
            for (sa, sb) in [
                (&[2, 3, 4][..], &[2, 4, 5][..]),
                (&[2, 2, 3, 4][..], &[2, 2, 4, 2][..]),
            ] {
                let (sa, sb) = (last2(sa, ta), last2(sb, tb));
                cases.push(
                    Case::new(
                        format!("batch_dot ta={ta} tb={tb} {sa:?} {sb:?}"),
                        bop.clone(),
                    )
                    .diff(g.uni(&sa, -1.0, 1.0))
                    .diff(g.uni(&sb, -1.0, 1.0)),
                );
            }
            cases.push(
                Case::new(format!("batch_dot(x, x) ta={ta} tb={tb}"), bop)
                    .tied(g.uni(&[2, 3, 3], -1.0, 1.0), 2),
            );
        }
    }
    for (flatten, sx, sw) in [
        (true, &[2, 3, 2][..], &[4, 6][..]),
        (true, &[3, 5][..], &[4, 5][..]),
        (false, &[2, 3, 6][..], &[4, 6][..]),
        (false, &[6][..], &[4, 6][..]),
    ] {
        for no_bias in [false, true] {
            let op = Op::FullyConnected { flatten, no_bias };
            let mut c = Case::new(
                format!("fully_connected flatten={flatten} no_bias={no_bias} x={sx:?}"),
                op,
            )
            .diff(g.uni(sx, -1.0, 1.0))
            .diff(g.uni(sw, -1.0, 1.0));
            if !no_bias {
                c = c.diff(g.uni(&sw[..1], -1.0, 1.0));
            }
            cases.push(c);
        }
    }
    cases
}

fn shape_cases() -> Vec<Case> {
    let mut g = Gen::new(4);
    let mut u = |s: &[usize]| g.uni(s, -1.0, 1.0);
    let mut cases = vec![
        Case::new("reshape", Op::Reshape { shape: vec![0, -1] }).diff(u(&[2, 3, 4])),
        Case::new("transpose reversed", Op::Transpose { axes: None }).diff(u(&[2, 3, 4])),
        Case::new(
            "transpose perm",
            Op::Transpose {
                axes: Some(vec![1, 2, 0]),
            },
        )
        .diff(u(&[2, 3, 4])),
        Case::new("expand_dims", Op::ExpandDims { axis: -1 }).diff(u(&[2, 3])),
        Case::new("squeeze all", Op::Squeeze { axes: None }).diff(u(&[2, 1, 3, 1])),
        Case::new(
            "squeeze one",
            Op::Squeeze {
                axes: Some(vec![-2]),
            },
        )
        .diff(u(&[2, 1, 3])),
        Case::new("flatten", Op::Flatten).diff(u(&[2, 3, 4])),
        Case::new("flatten 1-d", Op::Flatten).diff(u(&[3])),
        Case::new(
            "broadcast_to",
            Op::BroadcastTo {
                shape: Shape::new(&[2, 3, 4]),
            },
        )
        .diff(u(&[3, 1])),
        Case::new(
            "broadcast_to scalar",
            Op::BroadcastTo {
                shape: Shape::new(&[2, 2]),
            },
        )
        .diff(u(&[])),
        Case::new(
            "slice",
            Op::Slice {
                begin: vec![Some(1), None],
                end: vec![Some(4), None],
                step: vec![None, Some(2)],
            },
        )
        .diff(u(&[5, 6])),
        Case::new(
            "slice negative step",
            Op::Slice {
                begin: vec![None, Some(-2)],
                end: vec![None, Some(0)],
                step: vec![Some(-2), Some(-1)],
            },
        )
        .diff(u(&[5, 6])),
        Case::new(
            "slice negative indices",
            Op::Slice {
                begin: vec![Some(-4)],
                end: vec![Some(-1)],
                step: vec![None],
            },
        )
        .diff(u(&[5, 2])),
        Case::new(
            "slice clamped",
            Op::Slice {
                begin: vec![Some(10)],
                end: vec![Some(-10)],
                step: vec![Some(-1)],
            },
        )
        .diff(u(&[4, 2])),
        Case::new(
            "slice empty",
            Op::Slice {
                begin: vec![Some(3)],
                end: vec![Some(1)],
                step: vec![None],
            },
        )
        .diff(u(&[4, 2])),
        Case::new(
            "slice_axis",
            Op::SliceAxis {
                axis: 1,
                begin: -4,
                end: Some(-1),
            },
        )
        .diff(u(&[2, 5])),
        Case::new(
            "slice_axis to end",
            Op::SliceAxis {
                axis: 0,
                begin: 1,
                end: None,
            },
        )
        .diff(u(&[3, 2])),
        Case::new("concat", Op::Concat { axis: 1 })
            .diff(u(&[2, 3]))
            .diff(u(&[2, 2]))
            .diff(u(&[2, 1])),
        Case::new("concat(x, x)", Op::Concat { axis: -2 }).tied(u(&[2, 3]), 2),
        Case::new("stack", Op::Stack { axis: 1 })
            .diff(u(&[2, 3]))
            .diff(u(&[2, 3]))
            .diff(u(&[2, 3])),
        Case::new("stack(x, x) last", Op::Stack { axis: -1 }).tied(u(&[2, 3]), 2),
        Case::new(
            "tile longer reps",
            Op::Tile {
                reps: vec![2, 1, 3],
            },
        )
        .diff(u(&[2, 3])),
        Case::new("tile shorter reps", Op::Tile { reps: vec![2] }).diff(u(&[2, 3])),
        Case::new(
            "repeat flat",
            Op::Repeat {
                repeats: 2,
                axis: None,
            },
        )
        .diff(u(&[2, 3])),
        Case::new(
            "repeat axis",
            Op::Repeat {
                repeats: 3,
                axis: Some(-1),
            },
        )
        .diff(u(&[2, 3])),
        Case::new("flip", Op::Flip { axes: vec![0, -1] }).diff(u(&[3, 4])),
        Case::new("shuffle", Op::Shuffle { seed: 7 }).diff(u(&[5, 3])),
        Case::new("shuffle 1-d", Op::Shuffle { seed: 9 }).diff(u(&[6])),
        Case::new(
            "slice_grad",
            Op::SliceGrad {
                shape: Shape::new(&[5, 6]),
                begin: vec![1, 5],
                step: vec![2, -2],
            },
        )
        .diff(u(&[2, 3])),
    ];
    // Slice's gradient is SliceGrad, whose gradient is Slice again.
    cases.push(
        Case::new(
            "slice_grad to the front",
            Op::SliceGrad {
                shape: Shape::new(&[4]),
                begin: vec![3],
                step: vec![-1],
            },
        )
        .diff(u(&[4])),
    );
    cases
}

fn indexing_cases() -> Vec<Case> {
    let mut g = Gen::new(5);
    let idx = Kind::NoGrad;
    vec![
        // Repeated indices accumulate; out-of-range ones are clipped.
        Case::new("take axis 0", Op::Take { axis: 0 })
            .diff(g.uni(&[5, 3], -1.0, 1.0))
            .arg(ints(&[0, 3, 3, 7, -1, 2], &[2, 3]), idx),
        Case::new("take axis 1", Op::Take { axis: -2 })
            .diff(g.uni(&[2, 4, 3], -1.0, 1.0))
            .arg(ints(&[1, 1, 3], &[3]), idx),
        Case::new("take float indices", Op::Take { axis: 0 })
            .diff(g.uni(&[4], -1.0, 1.0))
            .arg(floats(&[2.0, 0.0, 2.0], &[3]), idx),
        Case::new(
            "pick",
            Op::Pick {
                axis: 1,
                keepdims: false,
            },
        )
        .diff(g.uni(&[3, 4], -1.0, 1.0))
        .arg(ints(&[0, 3, 9], &[3]), idx),
        Case::new(
            "pick keepdims axis 0",
            Op::Pick {
                axis: 0,
                keepdims: true,
            },
        )
        .diff(g.uni(&[3, 4], -1.0, 1.0))
        .arg(ints(&[2, 0, 1, 2], &[4]), idx),
        Case::new("gather", Op::Gather { axis: 1 })
            .diff(g.uni(&[3, 4], -1.0, 1.0))
            .arg(
                ints(&[0, 1, 1, 3, 3, 2, 0, 0, 0, 1, 3, 2, 2, 1, 0], &[3, 5]),
                idx,
            ),
        Case::new(
            "one_hot",
            Op::OneHot {
                depth: 4,
                on_value: 1.0,
                off_value: 0.0,
                dtype: DType::F64,
            },
        )
        .arg(ints(&[1, 3, 0], &[3]), idx),
        Case::new(
            "take_grad",
            Op::TakeGrad {
                axis: 0,
                shape: Shape::new(&[5, 3]),
            },
        )
        .arg(ints(&[0, 3, 3, 4], &[2, 2]), idx)
        .diff(g.uni(&[2, 2, 3], -1.0, 1.0)),
        Case::new(
            "gather_grad",
            Op::GatherGrad {
                axis: 1,
                shape: Shape::new(&[3, 4]),
            },
        )
        .arg(
            ints(&[0, 1, 1, 3, 3, 2, 0, 0, 0, 1, 3, 2, 2, 1, 0], &[3, 5]),
            idx,
        )
        .diff(g.uni(&[3, 5], -1.0, 1.0)),
    ]
}

fn conv(stride: &[usize], pad: &[usize], dilation: &[usize], groups: usize, no_bias: bool) -> Op {
    Op::Convolution {
        stride: stride.to_vec(),
        pad: pad.to_vec(),
        dilation: dilation.to_vec(),
        groups,
        no_bias,
    }
}

fn pool(
    kind: PoolKind,
    kernel: &[usize],
    stride: &[usize],
    pad: &[usize],
    global: bool,
    cip: bool,
) -> Op {
    Op::Pooling {
        kind,
        kernel: kernel.to_vec(),
        stride: stride.to_vec(),
        pad: pad.to_vec(),
        global,
        count_include_pad: cip,
    }
}

fn nn_cases() -> Vec<Case> {
    let mut g = Gen::new(6);
    let mut cases = Vec::new();
    for axis in [-1, 0] {
        cases.push(
            Case::new(format!("softmax axis={axis}"), Op::Softmax { axis }).diff(g.uni(
                &[3, 4],
                -2.0,
                2.0,
            )),
        );
        cases.push(
            Case::new(format!("log_softmax axis={axis}"), Op::LogSoftmax { axis }).diff(g.uni(
                &[3, 4],
                -2.0,
                2.0,
            )),
        );
    }
    cases.push(
        Case::new("softmax_cross_entropy", Op::SoftmaxCrossEntropy)
            .diff(g.uni(&[4, 5], -2.0, 2.0))
            .arg(ints(&[1, 4, 7, -1], &[4]), Kind::NoGrad),
    );
    // (name, op, x, w, bias channels)
    let convs: Vec<(&str, Op, Vec<usize>, Vec<usize>)> = vec![
        (
            "conv2d pad",
            conv(&[1, 1], &[1, 1], &[1, 1], 1, false),
            vec![2, 3, 5, 5],
            vec![4, 3, 3, 3],
        ),
        (
            "conv2d stride dilation",
            conv(&[2, 2], &[0, 1], &[1, 2], 1, false),
            vec![1, 2, 7, 6],
            vec![2, 2, 2, 2],
        ),
        (
            "conv2d groups",
            conv(&[1, 1], &[0, 0], &[1, 1], 2, true),
            vec![1, 4, 4, 4],
            vec![6, 2, 3, 3],
        ),
        (
            "conv1d",
            conv(&[2], &[1], &[1], 1, false),
            vec![2, 2, 7],
            vec![3, 2, 3],
        ),
    ];
    for (name, op, sx, sw) in convs {
        let no_bias = matches!(op, Op::Convolution { no_bias: true, .. });
        let mut c = Case::new(name, op)
            .diff(g.uni(&sx, -1.0, 1.0))
            .diff(g.uni(&sw, -1.0, 1.0));
        if !no_bias {
            c = c.diff(g.uni(&sw[..1], -1.0, 1.0));
        }
        cases.push(c);
    }
    let deconv = |stride: &[usize], pad: &[usize], dil: &[usize], op: &[usize], groups, no_bias| {
        Op::Deconvolution {
            stride: stride.to_vec(),
            pad: pad.to_vec(),
            dilation: dil.to_vec(),
            output_padding: op.to_vec(),
            groups,
            no_bias,
        }
    };
    cases.push(
        Case::new(
            "deconv2d",
            deconv(&[2, 2], &[1, 1], &[1, 1], &[1, 1], 1, false),
        )
        .diff(g.uni(&[1, 2, 3, 3], -1.0, 1.0))
        .diff(g.uni(&[2, 3, 3, 3], -1.0, 1.0))
        .diff(g.uni(&[3], -1.0, 1.0)),
    );
    cases.push(
        Case::new(
            "deconv2d groups",
            deconv(&[1, 1], &[0, 0], &[1, 1], &[0, 0], 2, true),
        )
        .diff(g.uni(&[1, 4, 3, 3], -1.0, 1.0))
        .diff(g.uni(&[4, 1, 2, 2], -1.0, 1.0)),
    );
    cases.push(
        Case::new(
            "deconv1d dilation",
            deconv(&[2], &[0], &[2], &[0], 1, false),
        )
        .diff(g.uni(&[2, 2, 4], -1.0, 1.0))
        .diff(g.uni(&[2, 3, 2], -1.0, 1.0))
        .diff(g.uni(&[3], -1.0, 1.0)),
    );
    let cgw = |kernel: &[usize], stride: &[usize], groups| Op::ConvGradWeight {
        kernel: kernel.to_vec(),
        stride: stride.to_vec(),
        pad: vec![0; kernel.len()],
        dilation: vec![1; kernel.len()],
        groups,
    };
    cases.push(
        Case::new("conv_grad_weight", cgw(&[3, 3], &[1, 1], 1))
            .diff(g.uni(&[1, 2, 5, 5], -1.0, 1.0))
            .diff(g.uni(&[1, 3, 3, 3], -1.0, 1.0)),
    );
    cases.push(
        Case::new("conv_grad_weight stride", cgw(&[2, 2], &[2, 2], 1))
            .diff(g.uni(&[1, 2, 7, 6], -1.0, 1.0))
            .diff(g.uni(&[1, 3, 3, 3], -1.0, 1.0)),
    );
    let max = PoolKind::Max;
    let avg = PoolKind::Avg;
    let pools = vec![
        (
            "max pool 2x2",
            pool(max, &[2, 2], &[2, 2], &[0, 0], false, true),
            vec![1, 2, 5, 5],
        ),
        (
            "max pool overlapping padded",
            pool(max, &[3, 3], &[1, 1], &[1, 1], false, true),
            vec![1, 2, 4, 4],
        ),
        (
            "max pool global",
            pool(max, &[1, 1], &[1, 1], &[0, 0], true, true),
            vec![2, 2, 3, 3],
        ),
        (
            "avg pool padded",
            pool(avg, &[3, 3], &[2, 2], &[1, 1], false, true),
            vec![1, 2, 5, 5],
        ),
        (
            "avg pool exclude pad",
            pool(avg, &[3, 3], &[2, 2], &[1, 1], false, false),
            vec![1, 2, 5, 5],
        ),
        (
            "avg pool 1d",
            pool(avg, &[2], &[1], &[0], false, true),
            vec![2, 2, 5],
        ),
        (
            "avg pool global",
            pool(avg, &[1, 1], &[1, 1], &[0, 0], true, true),
            vec![2, 2, 3, 3],
        ),
    ];
    for (name, op, sx) in pools {
        cases.push(Case::new(name, op).diff(g.distinct(&sx)));
    }
    let avg_pool_grad = Op::PoolingGrad {
        kind: avg,
        kernel: vec![3, 3],
        stride: vec![2, 2],
        pad: vec![1, 1],
        global: false,
        count_include_pad: false,
    };
    cases.push(
        Case::new("avg pooling_grad", avg_pool_grad)
            .arg(g.uni(&[1, 2, 5, 5], -1.0, 1.0), Kind::Zero)
            .diff(g.uni(&[1, 2, 3, 3], -1.0, 1.0)),
    );
    for (axis, sx) in [(1, [4, 3, 2]), (-1, [2, 2, 3])] {
        let c = sx[if axis < 0 { 2 } else { axis as usize }];
        cases.push(
            Case::new(
                format!("batch_norm batch stats axis={axis}"),
                Op::BatchNorm {
                    eps: 1e-3,
                    axis,
                    use_batch_stats: true,
                },
            )
            .diff(g.uni(&sx, -1.0, 1.0))
            .diff(g.pos(&[c]))
            .diff(g.uni(&[c], -1.0, 1.0))
            .arg(g.uni(&[c], -1.0, 1.0), Kind::Zero)
            .arg(g.pos(&[c]), Kind::Zero),
        );
        cases.push(
            Case::new(
                format!("batch_norm running stats axis={axis}"),
                Op::BatchNorm {
                    eps: 1e-3,
                    axis,
                    use_batch_stats: false,
                },
            )
            .diff(g.uni(&sx, -1.0, 1.0))
            .diff(g.pos(&[c]))
            .diff(g.uni(&[c], -1.0, 1.0))
            .arg(g.uni(&[c], -1.0, 1.0), Kind::NoGrad)
            .arg(g.pos(&[c]), Kind::NoGrad),
        );
    }
    for (axis, c) in [(-1, 5), (0, 3)] {
        cases.push(
            Case::new(
                format!("layer_norm axis={axis}"),
                Op::LayerNorm { axis, eps: 1e-5 },
            )
            .diff(g.uni(&[3, 5], -1.0, 1.0))
            .diff(g.pos(&[c]))
            .diff(g.uni(&[c], -1.0, 1.0)),
        );
    }
    cases.push(
        Case::new("dropout", Op::Dropout { p: 0.3, seed: 11 }).diff(g.uni(&[4, 5], -1.0, 1.0)),
    );
    cases.push(
        Case::new("dropout p=0", Op::Dropout { p: 0.0, seed: 3 }).diff(g.uni(&[4], -1.0, 1.0)),
    );
    cases
}

fn creation_cases() -> Vec<Case> {
    let mut g = Gen::new(7);
    let s = Shape::new(&[2, 3]);
    vec![
        Case::new(
            "full",
            Op::Full {
                shape: s.clone(),
                dtype: DType::F64,
                value: 2.0,
            },
        ),
        Case::new(
            "arange",
            Op::Arange {
                start: 0.0,
                stop: 5.0,
                step: 1.0,
                dtype: DType::F64,
            },
        ),
        Case::new(
            "linspace",
            Op::Linspace {
                start: 0.0,
                stop: 1.0,
                num: 5,
                endpoint: true,
                dtype: DType::F64,
            },
        ),
        Case::new(
            "random_uniform",
            Op::RandomUniform {
                low: 0.0,
                high: 1.0,
                shape: s.clone(),
                dtype: DType::F64,
                seed: 1,
            },
        ),
        Case::new(
            "random_normal",
            Op::RandomNormal {
                loc: 0.0,
                scale: 1.0,
                shape: s.clone(),
                dtype: DType::F64,
                seed: 1,
            },
        ),
        Case::new(
            "random_bernoulli",
            Op::RandomBernoulli {
                p: 0.5,
                shape: s.clone(),
                dtype: DType::F64,
                seed: 1,
            },
        ),
        Case::new(
            "random_randint",
            Op::RandomRandint {
                low: 0,
                high: 5,
                shape: s,
                dtype: DType::I64,
                seed: 1,
            },
        ),
        Case::new(
            "multinomial",
            Op::Multinomial {
                num_samples: 3,
                seed: 1,
            },
        )
        .arg(g.pos(&[2, 4]), Kind::NoGrad),
    ]
}

// ----- coverage ----------------------------------------------------------------------------------

/// A number per `Op` variant. The match has no wildcard, so adding a variant breaks this test
/// until it is numbered here (and `N_VARIANTS` bumped), and `every_op_is_covered` then fails
/// until a gradient check exercises it.
fn variant_index(op: &Op) -> usize {
    match op {
        Op::Unary { .. } => 0,
        Op::Binary { .. } => 1,
        Op::Scalar { .. } => 2,
        Op::Where => 3,
        Op::Clip { .. } => 4,
        Op::Cast { .. } => 5,
        Op::Reduce { .. } => 6,
        Op::ArgReduce { .. } => 7,
        Op::Dot { .. } => 8,
        Op::BatchDot { .. } => 9,
        Op::FullyConnected { .. } => 10,
        Op::Reshape { .. } => 11,
        Op::Transpose { .. } => 12,
        Op::ExpandDims { .. } => 13,
        Op::Squeeze { .. } => 14,
        Op::Flatten => 15,
        Op::BroadcastTo { .. } => 16,
        Op::Slice { .. } => 17,
        Op::SliceAxis { .. } => 18,
        Op::Concat { .. } => 19,
        Op::Stack { .. } => 20,
        Op::Tile { .. } => 21,
        Op::Repeat { .. } => 22,
        Op::Flip { .. } => 23,
        Op::Take { .. } => 24,
        Op::Pick { .. } => 25,
        Op::OneHot { .. } => 26,
        Op::Gather { .. } => 27,
        Op::Softmax { .. } => 28,
        Op::LogSoftmax { .. } => 29,
        Op::SoftmaxCrossEntropy => 30,
        Op::Convolution { .. } => 31,
        Op::Deconvolution { .. } => 32,
        Op::ConvGradWeight { .. } => 33,
        Op::Pooling { .. } => 34,
        Op::PoolingGrad { .. } => 35,
        Op::BatchNorm { .. } => 36,
        Op::LayerNorm { .. } => 37,
        Op::Dropout { .. } => 38,
        Op::SliceGrad { .. } => 39,
        Op::TakeGrad { .. } => 40,
        Op::GatherGrad { .. } => 41,
        Op::Full { .. } => 42,
        Op::Arange { .. } => 43,
        Op::Linspace { .. } => 44,
        Op::RandomUniform { .. } => 45,
        Op::RandomNormal { .. } => 46,
        Op::RandomBernoulli { .. } => 47,
        Op::RandomRandint { .. } => 48,
        Op::Multinomial { .. } => 49,
        Op::Shuffle { .. } => 50,
        // Fused kernels are formed after differentiation and have no VJP (ir/tests/fused.rs
        // checks the error); they are outside the numbered range on purpose.
        Op::Fused { .. } | Op::FusedOutput { .. } => N_VARIANTS,
    }
}

const N_VARIANTS: usize = 51;

fn all_cases() -> Vec<Case> {
    let mut v = elementwise_cases();
    v.extend(reduce_cases());
    v.extend(linalg_cases());
    v.extend(shape_cases());
    v.extend(indexing_cases());
    v.extend(nn_cases());
    v.extend(creation_cases());
    v
}

#[test]
fn every_op_is_covered() {
    let cases = all_cases();
    let variants: BTreeSet<usize> = cases.iter().map(|c| variant_index(&c.op)).collect();
    let missing: Vec<usize> = (0..N_VARIANTS).filter(|i| !variants.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "Op variants without a gradient check: {missing:?}"
    );
    let names: BTreeSet<String> = cases.iter().map(|c| c.op.name().to_string()).collect();
    let mut wanted: Vec<String> = UnaryOp::ALL.iter().map(|f| f.name().to_string()).collect();
    for f in BinaryOp::ALL {
        wanted.push(Op::Binary { f }.name().to_string());
        wanted.push(
            Op::Scalar {
                f,
                scalar: 0.0,
                reverse: false,
            }
            .name()
            .to_string(),
        );
    }
    wanted.extend(REDUCE_OPS.iter().map(|f| f.name().to_string()));
    wanted.extend(["argmax".to_string(), "argmin".to_string()]);
    let missing: Vec<&String> = wanted.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "functions without a gradient check: {missing:?}"
    );
    // Every binary function is checked with broadcasting and with both operands tied.
    for f in BinaryOp::ALL {
        let op = Op::Binary { f };
        let of_f: Vec<&Case> = cases.iter().filter(|c| c.op == op).collect();
        assert!(
            of_f.iter().any(|c| c.wiring == [0, 0]),
            "{} not checked tied",
            f.name()
        );
        assert!(
            of_f.iter()
                .any(|c| c.leaves.len() == 2 && c.leaves[0].0.shape() != c.leaves[1].0.shape()),
            "{} not checked broadcasting",
            f.name()
        );
    }
}

// ----- the checks ----------------------------------------------------------------------------

#[test]
fn gradcheck_elementwise() {
    run_all(&elementwise_cases());
}

#[test]
fn gradcheck_reduce() {
    run_all(&reduce_cases());
}

#[test]
fn gradcheck_linalg() {
    run_all(&linalg_cases());
}

#[test]
fn gradcheck_shape() {
    run_all(&shape_cases());
}

#[test]
fn gradcheck_indexing() {
    run_all(&indexing_cases());
}

#[test]
fn gradcheck_nn() {
    run_all(&nn_cases());
}

#[test]
fn gradcheck_creation() {
    run_all(&creation_cases());
}

#[test]
fn max_reduction_gives_every_tie_the_gradient() {
    let x = floats(&[1.0, 3.0, 3.0, 2.0], &[4]);
    let op = Op::Reduce {
        f: ReduceOp::Max,
        axes: None,
        keepdims: false,
    };
    let y = eval(&op, &[x.view()]).unwrap();
    let g = floats(&[2.0], &[]);
    let gr = vjp(&mut Eager, &op, &[x], &y, &g).unwrap();
    assert_eq!(
        gr[0].as_ref().unwrap().to_f64_vec(),
        vec![0.0, 2.0, 2.0, 0.0]
    );
}

#[test]
fn maximum_ties_go_to_the_first_operand() {
    let a = floats(&[1.0, 2.0, 3.0], &[3]);
    let b = floats(&[1.0, 5.0, 0.0], &[3]);
    let g = floats(&[1.0, 1.0, 1.0], &[3]);
    for (f, ga, gb) in [
        (BinaryOp::Maximum, [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]),
        (BinaryOp::Minimum, [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]),
    ] {
        let op = Op::Binary { f };
        let y = eval(&op, &[a.view(), b.view()]).unwrap();
        let gr = vjp(&mut Eager, &op, &[a.clone(), b.clone()], &y, &g).unwrap();
        assert_eq!(gr[0].as_ref().unwrap().to_f64_vec(), ga, "{}", f.name());
        assert_eq!(gr[1].as_ref().unwrap().to_f64_vec(), gb, "{}", f.name());
    }
}

#[test]
fn sum_to_unbroadcasts() {
    let v = floats(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let mut b = Eager;
    assert_eq!(
        b.sum_to(&v, &Shape::new(&[3])).unwrap().to_f64_vec(),
        vec![5.0, 7.0, 9.0]
    );
    let col = b.sum_to(&v, &Shape::new(&[2, 1])).unwrap();
    assert_eq!(col.shape(), &Shape::new(&[2, 1]));
    assert_eq!(col.to_f64_vec(), vec![6.0, 15.0]);
    assert_eq!(
        b.sum_to(&v, &Shape::scalar()).unwrap().to_f64_vec(),
        vec![21.0]
    );
    let e = b.sum_to(&v, &Shape::new(&[2])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sum_to: cannot sum a gradient of shape [2, 3] back to shape [2]"
    );
}

#[test]
fn max_pooling_second_derivative_is_an_error() {
    let op = Op::PoolingGrad {
        kind: PoolKind::Max,
        kernel: vec![2],
        stride: vec![2],
        pad: vec![0],
        global: false,
        count_include_pad: true,
    };
    let x = floats(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 4]);
    let dy = floats(&[1.0, 1.0], &[1, 1, 2]);
    let e = vjp(&mut Eager, &op, &[x.clone(), dy], &x, &x).unwrap_err();
    assert!(e.to_string().starts_with("pooling_grad: "), "{e}");
}

#[test]
fn wrong_input_counts_are_errors() {
    let x = floats(&[1.0, 2.0], &[2]);
    for op in [
        Op::Unary { f: UnaryOp::Exp },
        Op::Binary { f: BinaryOp::Add },
        Op::Dot {
            transpose_a: false,
            transpose_b: false,
        },
        Op::BatchNorm {
            eps: 1e-5,
            axis: 1,
            use_batch_stats: true,
        },
        Op::Full {
            shape: Shape::new(&[2]),
            dtype: DType::F64,
            value: 0.0,
        },
    ] {
        let n = if matches!(op, Op::Unary { .. } | Op::Full { .. }) {
            3
        } else {
            1
        };
        let inputs = vec![x.clone(); n];
        let e = vjp(&mut Eager, &op, &inputs, &x, &x).unwrap_err();
        assert!(e.to_string().contains("vjp expects"), "{}: {e}", op.name());
    }
}

#[test]
fn pow_exponent_gradient_is_zero_at_a_zero_base() {
    let a = floats(&[0.0, 2.0], &[2]);
    let b = floats(&[2.0, 3.0], &[2]);
    let op = Op::Binary { f: BinaryOp::Pow };
    let y = eval(&op, &[a.view(), b.view()]).unwrap();
    let g = floats(&[1.0, 1.0], &[2]);
    let gr = vjp(&mut Eager, &op, &[a, b], &y, &g).unwrap();
    // d/da a^b = b a^(b-1): 0 at a = 0, 3 * 4 = 12 at a = 2.
    assert_eq!(gr[0].as_ref().unwrap().to_f64_vec(), vec![0.0, 12.0]);
    // d/db a^b = a^b ln(a): 0 at a = 0 (not NaN), 8 ln 2 at a = 2.
    let gb = gr[1].as_ref().unwrap().to_f64_vec();
    assert_eq!(gb[0], 0.0);
    assert!((gb[1] - 8.0 * 2f64.ln()).abs() < 1e-12);
}

/// Single-precision inputs: the gradients keep the input dtype and still match (loosely:
/// f32 finite differences need a large step).
#[test]
fn gradcheck_f32() {
    let pick = |c: &Case| {
        matches!(
            c.op,
            Op::Unary { f: UnaryOp::Tanh }
                | Op::Binary { f: BinaryOp::Mul }
                | Op::FullyConnected { .. }
                | Op::Softmax { .. }
                | Op::BatchNorm { .. }
                | Op::Convolution { .. }
                | Op::Reduce {
                    f: ReduceOp::Mean,
                    ..
                }
        )
    };
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(pick)
        .map(|mut c| {
            for (t, _) in &mut c.leaves {
                if t.dtype() == DType::F64 {
                    *t = t.cast(DType::F32);
                }
            }
            c.tol(1e-2, 2e-2)
        })
        .collect();
    assert!(cases.len() > 20, "only {} f32 cases", cases.len());
    run_all(&cases);
}

// ----- the same VJPs building a graph -----------------------------------------------------------

/// Builds a graph instead of running ops: values are node ids, types come from shape
/// inference. Replaying the graph with the interpreter must give the eager gradients exactly.
#[derive(Default)]
struct Symbolic {
    /// `None` for a graph input.
    nodes: Vec<Option<(Op, Vec<usize>)>>,
    types: Vec<TensorType>,
}

impl Symbolic {
    fn input(&mut self, ty: TensorType) -> usize {
        self.nodes.push(None);
        self.types.push(ty);
        self.nodes.len() - 1
    }

    /// Evaluates every node given the inputs' values (in node order).
    fn run(&self, inputs: &[(usize, Tensor)]) -> Result<Vec<Option<Tensor>>> {
        let mut vals: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        for (id, t) in inputs {
            vals[*id] = Some(t.clone());
        }
        for (id, node) in self.nodes.iter().enumerate() {
            if let Some((op, args)) = node {
                let views: Vec<_> = args
                    .iter()
                    .map(|&a| vals[a].as_ref().expect("argument evaluated first").view())
                    .collect();
                let out = eval(op, &views)?;
                assert_eq!(
                    out.ty(),
                    self.types[id],
                    "inferred type of node {id} ({})",
                    op.name()
                );
                vals[id] = Some(out);
            }
        }
        Ok(vals)
    }
}

impl VjpBuilder for Symbolic {
    type Value = usize;
    fn apply(&mut self, op: Op, inputs: &[&usize]) -> Result<usize> {
        let types: Vec<TensorType> = inputs.iter().map(|&&i| self.types[i].clone()).collect();
        let out = infer(&op, &types)?;
        self.nodes
            .push(Some((op, inputs.iter().map(|&&i| i).collect())));
        self.types.push(out);
        Ok(self.nodes.len() - 1)
    }
    fn shape(&self, v: &usize) -> Shape {
        self.types[*v].shape.clone()
    }
    fn dtype(&self, v: &usize) -> DType {
        self.types[*v].dtype
    }
}

#[test]
fn graph_builder_gives_the_eager_gradients() {
    let mut checked = 0;
    for (i, case) in all_cases().iter().enumerate() {
        let leaves: Vec<Tensor> = case.leaves.iter().map(|(t, _)| t.clone()).collect();
        let y = forward(&case.op, &leaves, &case.wiring).unwrap();
        let head = Gen::new(i as u64).uni(y.shape(), -1.0, 1.0).cast(y.dtype());
        let inputs: Vec<Tensor> = case.wiring.iter().map(|&l| leaves[l].clone()).collect();
        let eager = vjp(&mut Eager, &case.op, &inputs, &y, &head).unwrap();

        let mut sym = Symbolic::default();
        let leaf_ids: Vec<usize> = leaves.iter().map(|t| sym.input(t.ty())).collect();
        let (y_id, head_id) = (sym.input(y.ty()), sym.input(head.ty()));
        let input_ids: Vec<usize> = case.wiring.iter().map(|&l| leaf_ids[l]).collect();
        let grads = vjp(&mut sym, &case.op, &input_ids, &y_id, &head_id).unwrap();
        let mut bound: Vec<(usize, Tensor)> = leaf_ids.iter().copied().zip(leaves).collect();
        bound.push((y_id, y));
        bound.push((head_id, head));
        let vals = sym.run(&bound).unwrap();
        assert_eq!(grads.len(), eager.len(), "{}", case.name);
        for (k, (gs, ge)) in grads.iter().zip(&eager).enumerate() {
            match (gs, ge) {
                (Some(id), Some(t)) => {
                    assert_eq!(vals[*id].as_ref(), Some(t), "{}: input {k}", case.name);
                    checked += 1;
                }
                (None, None) => {}
                _ => panic!("{}: input {k}: graph and eager disagree on None", case.name),
            }
        }
    }
    assert!(checked > 300, "only {checked} gradients compared");
}

// ----- asking for some gradients only ----------------------------------------------------------

#[test]
fn wanted_gradients_equal_the_full_ones() {
    let mut compared = 0;
    for (i, case) in all_cases().iter().enumerate() {
        let leaves: Vec<Tensor> = case.leaves.iter().map(|(t, _)| t.clone()).collect();
        let y = forward(&case.op, &leaves, &case.wiring).unwrap();
        let head = Gen::new(i as u64).uni(y.shape(), -1.0, 1.0).cast(y.dtype());
        let inputs: Vec<Tensor> = case.wiring.iter().map(|&l| leaves[l].clone()).collect();
        let full = vjp(&mut Eager, &case.op, &inputs, &y, &head).unwrap();
        for k in 0..inputs.len() {
            let wanted: Vec<bool> = (0..inputs.len()).map(|j| j == k).collect();
            let some = vjp_wanted(&mut Eager, &case.op, &inputs, &y, &head, &wanted).unwrap();
            assert_eq!(some.len(), inputs.len(), "{}", case.name);
            for (j, g) in some.iter().enumerate() {
                if j == k {
                    assert_eq!(g, &full[j], "{}: input {j}", case.name);
                    compared += usize::from(g.is_some());
                } else {
                    assert!(g.is_none(), "{}: input {j} was not asked for", case.name);
                }
            }
        }
        let none = vec![false; inputs.len()];
        let nothing = vjp_wanted(&mut Eager, &case.op, &inputs, &y, &head, &none).unwrap();
        assert!(nothing.iter().all(Option::is_none), "{}", case.name);
    }
    assert!(compared > 300, "only {compared} gradients compared");
}

#[test]
fn unwanted_gradients_cost_no_ops() {
    // A first convolution layer: the data needs no gradient, so no deconvolution is built.
    let mut sym = Symbolic::default();
    let x = sym.input(TensorType::new([2, 3, 5, 5], DType::F32));
    let w = sym.input(TensorType::new([4, 3, 3, 3], DType::F32));
    let bias = sym.input(TensorType::new([4], DType::F32));
    let op = conv(&[1, 1], &[1, 1], &[1, 1], 1, false);
    let y = sym.input(TensorType::new([2, 4, 5, 5], DType::F32));
    let g = sym.input(TensorType::new([2, 4, 5, 5], DType::F32));
    let grads = vjp_wanted(&mut sym, &op, &[x, w, bias], &y, &g, &[false, true, true]).unwrap();
    assert!(grads[0].is_none() && grads[1].is_some() && grads[2].is_some());
    let ops: Vec<&str> = sym
        .nodes
        .iter()
        .flatten()
        .map(|(op, _)| op.name())
        .collect();
    assert_eq!(ops, vec!["conv_grad_weight", "sum"]);
    let e = vjp_wanted(&mut sym, &op, &[x, w, bias], &y, &g, &[true]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "convolution: vjp: 1 `wanted` flags for 3 inputs"
    );
}

// ----- second order ----------------------------------------------------------------------------

/// Adds `g` into `slot` (through the interpreter, so dtypes must agree).
fn accumulate(slot: &mut Option<Tensor>, g: Tensor) {
    *slot = Some(match slot.take() {
        None => g,
        Some(prev) => eval(&Op::Binary { f: BinaryOp::Add }, &[prev.view(), g.view()]).unwrap(),
    });
}

/// `F(x) = sum_k <vjp_k(x, h), v_k>` over the case's differentiable leaves, eagerly.
fn first_order_inner(case: &Case, leaves: &[Tensor], head: &Tensor, v: &[Option<Tensor>]) -> f64 {
    let y = forward(&case.op, leaves, &case.wiring).unwrap();
    let inputs: Vec<Tensor> = case.wiring.iter().map(|&l| leaves[l].clone()).collect();
    let grads = vjp(&mut Eager, &case.op, &inputs, &y, head).unwrap();
    grads
        .iter()
        .zip(v)
        .map(|(g, v)| match (g, v) {
            (Some(g), Some(v)) => inner(g, &v.to_f64_vec()),
            _ => 0.0,
        })
        .sum()
}

/// Reverse mode over `sym`'s nodes (the graph's values in `vals`): each node's adjoint in `adj`
/// is pushed to its arguments through `vjp`, last node first.
fn backprop(sym: &Symbolic, vals: &[Option<Tensor>], adj: &mut [Option<Tensor>]) -> Result<()> {
    for id in (0..sym.nodes.len()).rev() {
        let (Some((op, args)), Some(gid)) = (&sym.nodes[id], adj[id].clone()) else {
            continue;
        };
        let ins: Vec<Tensor> = args.iter().map(|&a| vals[a].clone().unwrap()).collect();
        let gi = vjp(&mut Eager, op, &ins, vals[id].as_ref().unwrap(), &gid)?;
        for (&a, ga) in args.iter().zip(gi) {
            if let Some(ga) = ga {
                accumulate(&mut adj[a], ga);
            }
        }
    }
    Ok(())
}

/// The VJPs are built from differentiable ops, so differentiating the VJP graph itself (reverse
/// mode over its nodes, each node through `vjp`) gives second derivatives: they must match
/// finite differences of the first-order VJP. This exercises the gradient helper ops
/// (SliceGrad, TakeGrad, GatherGrad, ConvGradWeight, Deconvolution, PoolingGrad) in real use.
#[test]
fn second_order_through_the_vjp_graph() {
    let (mut checked, mut skipped) = (0, Vec::new());
    let mut fails = Vec::new();
    for (ci, case) in all_cases().iter().enumerate() {
        if case.leaves.iter().all(|(_, k)| *k != Kind::Diff) {
            continue;
        }
        let mut g = Gen::new(500 + ci as u64);
        let leaves: Vec<Tensor> = case.leaves.iter().map(|(t, _)| t.clone()).collect();
        let y = forward(&case.op, &leaves, &case.wiring).unwrap();
        let head = g.uni(y.shape(), -1.0, 1.0).cast(y.dtype());
        // The first-order VJP as a graph of the leaves, the output and the head.
        let mut sym = Symbolic::default();
        let leaf_ids: Vec<usize> = leaves.iter().map(|t| sym.input(t.ty())).collect();
        let (y_id, head_id) = (sym.input(y.ty()), sym.input(head.ty()));
        let input_ids: Vec<usize> = case.wiring.iter().map(|&l| leaf_ids[l]).collect();
        let grads = vjp(&mut sym, &case.op, &input_ids, &y_id, &head_id).unwrap();
        let mut bound: Vec<(usize, Tensor)> =
            leaf_ids.iter().copied().zip(leaves.clone()).collect();
        bound.push((y_id, y.clone()));
        bound.push((head_id, head.clone()));
        let vals = sym.run(&bound).unwrap();
        // Random weights v_k on the first-order gradients seed the reverse pass.
        let v: Vec<Option<Tensor>> = grads
            .iter()
            .map(|gr| gr.map(|id| g.uni(vals[id].as_ref().unwrap().shape(), -1.0, 1.0)))
            .collect();
        let mut adj: Vec<Option<Tensor>> = vec![None; sym.nodes.len()];
        for (gr, vk) in grads.iter().zip(&v) {
            if let (Some(id), Some(vk)) = (gr, vk) {
                accumulate(&mut adj[*id], vk.clone());
            }
        }
        let unsupported = backprop(&sym, &vals, &mut adj).err().map(|e| e.to_string());
        if let Some(e) = unsupported {
            skipped.push(format!("{}: {e}", case.name));
            continue;
        }
        // The output y is itself op(x): push its adjoint through the forward op's VJP.
        let mut leaf_adj: Vec<Option<Tensor>> = leaf_ids.iter().map(|&i| adj[i].clone()).collect();
        if let Some(gy) = adj[y_id].clone() {
            let inputs: Vec<Tensor> = case.wiring.iter().map(|&l| leaves[l].clone()).collect();
            let gi = vjp(&mut Eager, &case.op, &inputs, &y, &gy).unwrap();
            for (k, ga) in gi.into_iter().enumerate() {
                if let Some(ga) = ga {
                    accumulate(&mut leaf_adj[case.wiring[k]], ga);
                }
            }
        }
        for (li, (x, kind)) in case.leaves.iter().enumerate() {
            if *kind != Kind::Diff || x.dtype() != DType::F64 {
                continue;
            }
            let analytic = leaf_adj[li]
                .as_ref()
                .map(|t| t.to_f64_vec())
                .unwrap_or_else(|| vec![0.0; x.shape().numel()]);
            let base = x.to_f64_vec();
            let eps = 1e-5;
            for (j, &an) in analytic.iter().enumerate() {
                let mut f = [0.0; 2];
                for (k, sgn) in [1.0, -1.0].iter().enumerate() {
                    let mut pv = base.clone();
                    pv[j] += sgn * eps;
                    let mut ls = leaves.clone();
                    ls[li] = floats(&pv, x.shape());
                    f[k] = first_order_inner(case, &ls, &head, &v);
                }
                let num = (f[0] - f[1]) / (2.0 * eps);
                let close = (an - num).abs() <= 1e-5 * an.abs().max(num.abs()).max(1.0);
                if !close {
                    fails.push(format!(
                        "{}: leaf {li} element {j}: second order {an:.9} vs finite difference {num:.9}",
                        case.name
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(
        fails.is_empty(),
        "{} mismatches:\n{}",
        fails.len(),
        fails.join("\n")
    );
    // Only max pooling's second derivative is outside the op set.
    assert!(
        skipped.iter().all(|s| s.starts_with("max pool")),
        "unexpectedly skipped: {skipped:#?}"
    );
    assert!(checked > 1000, "only {checked} second derivatives checked");
}

// ----- whole networks ----------------------------------------------------------------------------

/// Builds a scalar loss of the given inputs as a graph; returns the loss node.
type Net = fn(&mut Symbolic, &[usize]) -> Result<usize>;

/// A network's inputs and how each is checked.
type Params = Vec<(Tensor, Kind)>;

fn mlp(s: &mut Symbolic, p: &[usize]) -> Result<usize> {
    // x [4, 6], w1 [5, 6], b1 [5], w2 [3, 5], b2 [3], labels [4]
    let fc = Op::FullyConnected {
        flatten: true,
        no_bias: false,
    };
    let h = s.apply(fc.clone(), &[&p[0], &p[1], &p[2]])?;
    let h = s.unary(UnaryOp::Tanh, &h)?;
    let logits = s.apply(fc, &[&h, &p[3], &p[4]])?;
    let lp = s.apply(Op::LogSoftmax { axis: -1 }, &[&logits])?;
    let picked = s.apply(
        Op::Pick {
            axis: -1,
            keepdims: false,
        },
        &[&lp, &p[5]],
    )?;
    let nll = s.unary(UnaryOp::Neg, &picked)?;
    s.reduce(ReduceOp::Mean, &nll, &[0], false)
}

fn cnn(s: &mut Symbolic, p: &[usize]) -> Result<usize> {
    // x [2, 2, 6, 6], w [3, 2, 3, 3], b [3], gamma [3], beta [3], mean [3], var [3],
    // fc w [4, 12], fc b [4], labels [2]
    let c = s.apply(
        conv(&[1, 1], &[1, 1], &[1, 1], 1, false),
        &[&p[0], &p[1], &p[2]],
    )?;
    let bn = Op::BatchNorm {
        eps: 1e-3,
        axis: 1,
        use_batch_stats: true,
    };
    let c = s.apply(bn, &[&c, &p[3], &p[4], &p[5], &p[6]])?;
    let c = s.unary(UnaryOp::Softrelu, &c)?;
    let c = s.apply(
        pool(PoolKind::Avg, &[3, 3], &[3, 3], &[0, 0], false, true),
        &[&c],
    )?;
    let f = s.apply(Op::Flatten, &[&c])?;
    let fc = Op::FullyConnected {
        flatten: true,
        no_bias: false,
    };
    let logits = s.apply(fc, &[&f, &p[7], &p[8]])?;
    let l = s.apply(Op::SoftmaxCrossEntropy, &[&logits, &p[9]])?;
    s.reduce(ReduceOp::Sum, &l, &[0], false)
}

fn attention(s: &mut Symbolic, p: &[usize]) -> Result<usize> {
    // q [2, 3, 4], k [2, 5, 4], v [2, 5, 4], gamma [4], beta [4]
    let bd = |ta, tb| Op::BatchDot {
        transpose_a: ta,
        transpose_b: tb,
    };
    let scores = s.apply(bd(false, true), &[&p[0], &p[1]])?;
    let scores = s.scalar(BinaryOp::Div, &scores, 2.0)?;
    let att = s.apply(Op::Softmax { axis: -1 }, &[&scores])?;
    let out = s.apply(bd(false, false), &[&att, &p[2]])?;
    let out = s.binary(BinaryOp::Add, &out, &p[0])?;
    let out = s.apply(
        Op::LayerNorm {
            axis: -1,
            eps: 1e-5,
        },
        &[&out, &p[3], &p[4]],
    )?;
    let out = s.apply(Op::Dropout { p: 0.25, seed: 5 }, &[&out])?;
    let sq = s.unary(UnaryOp::Square, &out)?;
    let t = s.apply(
        Op::Transpose {
            axes: Some(vec![2, 0, 1]),
        },
        &[&sq],
    )?;
    let t = s.apply(
        Op::SliceAxis {
            axis: 0,
            begin: 1,
            end: None,
        },
        &[&t],
    )?;
    s.reduce(ReduceOp::Sum, &t, &[0, 1, 2], false)
}

#[test]
fn whole_networks_match_finite_differences() {
    let mut g = Gen::new(77);
    let nets: Vec<(&str, Net, Params)> = vec![
        (
            "mlp",
            mlp,
            vec![
                (g.uni(&[4, 6], -1.0, 1.0), Kind::Diff),
                (g.uni(&[5, 6], -1.0, 1.0), Kind::Diff),
                (g.uni(&[5], -1.0, 1.0), Kind::Diff),
                (g.uni(&[3, 5], -1.0, 1.0), Kind::Diff),
                (g.uni(&[3], -1.0, 1.0), Kind::Diff),
                (floats(&[0.0, 2.0, 1.0, 2.0], &[4]), Kind::NoGrad),
            ],
        ),
        (
            "cnn",
            cnn,
            vec![
                (g.uni(&[2, 2, 6, 6], -1.0, 1.0), Kind::Diff),
                (g.uni(&[3, 2, 3, 3], -1.0, 1.0), Kind::Diff),
                (g.uni(&[3], -1.0, 1.0), Kind::Diff),
                (g.pos(&[3]), Kind::Diff),
                (g.uni(&[3], -1.0, 1.0), Kind::Diff),
                (Tensor::zeros([3], DType::F64), Kind::NoGrad),
                (Tensor::full([3], DType::F64, 1.0), Kind::NoGrad),
                (g.uni(&[4, 12], -1.0, 1.0), Kind::Diff),
                (g.uni(&[4], -1.0, 1.0), Kind::Diff),
                (ints(&[3, 0], &[2]), Kind::NoGrad),
            ],
        ),
        (
            "attention",
            attention,
            vec![
                (g.uni(&[2, 3, 4], -1.0, 1.0), Kind::Diff),
                (g.uni(&[2, 5, 4], -1.0, 1.0), Kind::Diff),
                (g.uni(&[2, 5, 4], -1.0, 1.0), Kind::Diff),
                (g.pos(&[4]), Kind::Diff),
                (g.uni(&[4], -1.0, 1.0), Kind::Diff),
            ],
        ),
    ];
    for (name, net, params) in nets {
        let mut sym = Symbolic::default();
        let ids: Vec<usize> = params.iter().map(|(t, _)| sym.input(t.ty())).collect();
        let loss = net(&mut sym, &ids).unwrap();
        let bind = |ts: &[Tensor]| -> Vec<(usize, Tensor)> {
            ids.iter().copied().zip(ts.iter().cloned()).collect()
        };
        let base: Vec<Tensor> = params.iter().map(|(t, _)| t.clone()).collect();
        let vals = sym.run(&bind(&base)).unwrap();
        let mut adj: Vec<Option<Tensor>> = vec![None; sym.nodes.len()];
        adj[loss] = Some(floats(&[1.0], &[]));
        backprop(&sym, &vals, &mut adj).unwrap();
        let eps = 1e-6;
        let mut fails = Vec::new();
        for (pi, (x, kind)) in params.iter().enumerate() {
            if *kind != Kind::Diff {
                continue;
            }
            let an = adj[ids[pi]]
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: no gradient for parameter {pi}"));
            assert_eq!(an.ty(), x.ty(), "{name}: parameter {pi}");
            let xv = x.to_f64_vec();
            for (j, a) in an.to_f64_vec().into_iter().enumerate() {
                let mut f = [0.0; 2];
                for (k, sgn) in [1.0, -1.0].iter().enumerate() {
                    let mut pv = xv.clone();
                    pv[j] += sgn * eps;
                    let mut ts = base.clone();
                    ts[pi] = floats(&pv, x.shape());
                    f[k] = sym.run(&bind(&ts)).unwrap()[loss]
                        .as_ref()
                        .unwrap()
                        .to_f64_vec()[0];
                }
                let num = (f[0] - f[1]) / (2.0 * eps);
                let close = (a - num).abs() <= 1e-6 * a.abs().max(num.abs()).max(1.0);
                if !close {
                    fails.push(format!(
                        "{name}: parameter {pi} element {j}: {a:.9} vs {num:.9}"
                    ));
                }
            }
        }
        assert!(fails.is_empty(), "{}", fails.join("\n"));
    }
}
