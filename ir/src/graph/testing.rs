//! Random graphs for tests: passes and backends check themselves against the reference
//! interpreter on graphs nobody wrote by hand.
//!
//! ```
//! use kiln_ir::graph::testing::{random_feed, random_graph};
//! let g = random_graph(7, 12);
//! let feed = random_feed(&g, 7);
//! let views: Vec<(&str, kiln_ir::TensorView<'_>)> =
//!     feed.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
//! let out = g.run(&views).unwrap();
//! assert_eq!(out.len(), g.outputs().len());
//! ```

use super::{Graph, NodeId};
use crate::dtype::DType;
use crate::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use crate::random::op_rng;
use crate::shape::Shape;
use crate::tensor::{Storage, Tensor, TensorType};
use rand::Rng;

/// Input shapes: all broadcast to `[4, 5]`, so any two values combine.
const SHAPES: [&[usize]; 5] = [&[4, 5], &[5], &[4, 1], &[1, 5], &[]];

/// Unary functions that stay finite on any finite input of moderate size.
const UNARY: [UnaryOp; 8] = [
    UnaryOp::Neg,
    UnaryOp::Abs,
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Relu,
    UnaryOp::Sin,
    UnaryOp::Cos,
    UnaryOp::Softrelu,
];

/// Binary functions without division or powers (no infinities from finite inputs).
const BINARY: [BinaryOp; 6] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Maximum,
    BinaryOp::Minimum,
    BinaryOp::Gt,
];

/// A random f32 graph of `n_ops` ops, reproducible from `seed`: inputs `x0, x1, ...`, one
/// parameter `p0`, sometimes a scalar constant, then elementwise ops (unary, binary with
/// broadcasting, scalar, clip) and keepdims sums, each on earlier values. Outputs are the last
/// op and one other value. Values stay finite (tanh and sigmoid squash; `exp`, `log`,
/// division are left out).
pub fn random_graph(seed: u64, n_ops: usize) -> Graph {
    let mut rng = op_rng(seed);
    let mut g = Graph::new();
    let mut values: Vec<NodeId> = Vec::new();
    let n_inputs = rng.random_range(1..=3);
    for i in 0..n_inputs {
        let shape = SHAPES[rng.random_range(0..SHAPES.len())];
        values.extend(g.add_input(format!("x{i}"), TensorType::new(shape, DType::F32)));
    }
    let shape = SHAPES[rng.random_range(0..SHAPES.len())];
    values.extend(g.add_param("p0", TensorType::new(shape, DType::F32)));
    if rng.random_bool(0.5) {
        values.extend(g.add_const(Tensor::scalar(rng.random_range(-2.0f32..2.0))));
    }
    let mut made = 0;
    // Every candidate op is valid on these shapes, so each attempt adds a node; the bound
    // only guards against an inference rule stricter than expected.
    for _ in 0..n_ops * 4 {
        if made == n_ops {
            break;
        }
        let a = values[rng.random_range(0..values.len())];
        let b = values[rng.random_range(0..values.len())];
        let (op, inputs) = match rng.random_range(0..6) {
            0 | 1 => (
                Op::Unary {
                    f: UNARY[rng.random_range(0..UNARY.len())],
                },
                vec![a],
            ),
            2 | 3 => (
                Op::Binary {
                    f: BINARY[rng.random_range(0..BINARY.len())],
                },
                vec![a, b],
            ),
            4 => match rng.random_range(0..3) {
                0 => (
                    Op::Scalar {
                        f: BinaryOp::Mul,
                        scalar: f64::from(rng.random_range(-3i32..=3)) * 0.5,
                        reverse: false,
                    },
                    vec![a],
                ),
                1 => (
                    Op::Scalar {
                        f: BinaryOp::Sub,
                        scalar: 1.0,
                        reverse: rng.random_bool(0.5),
                    },
                    vec![a],
                ),
                _ => (
                    Op::Clip {
                        min: -1.0,
                        max: 1.5,
                    },
                    vec![a],
                ),
            },
            _ => {
                let rank = g.ty(a).map_or(0, |t| t.shape.rank());
                if rank == 0 {
                    continue;
                }
                let axis = rng.random_range(0..rank) as isize;
                (
                    Op::Reduce {
                        f: ReduceOp::Sum,
                        axes: Some(vec![axis]),
                        keepdims: true,
                    },
                    vec![a],
                )
            }
        };
        if let Ok(id) = g.add_op(op, &inputs) {
            values.push(id);
            made += 1;
        }
    }
    let last = values[values.len() - 1];
    let other = values[rng.random_range(0..values.len())];
    // Both ids come from `g`, so this cannot fail.
    let _ = g.set_outputs(vec![last, other]);
    g
}

/// Values for every input and parameter of `g` (uniform on `[-2, 2)`, reproducible from
/// `seed`), as `(name, tensor)` in binding order.
pub fn random_feed(g: &Graph, seed: u64) -> Vec<(String, Tensor)> {
    let mut rng = op_rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    g.bindings()
        .into_iter()
        .filter_map(|(name, id)| {
            let ty = g.ty(id).ok()?;
            Some((
                name.to_string(),
                random_tensor(&mut rng, &ty.shape, ty.dtype),
            ))
        })
        .collect()
}

fn random_tensor(rng: &mut impl Rng, shape: &Shape, dtype: DType) -> Tensor {
    let mut t = Tensor::zeros(shape.clone(), DType::F64);
    if let Storage::F64(v) = t.storage_mut() {
        v.iter_mut().for_each(|x| *x = rng.random_range(-2.0..2.0));
    }
    t.cast(dtype)
}
