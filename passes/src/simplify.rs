//! Algebraic simplification: identities and strength reductions as named rewrite rules.
//!
//! The rules are [`RULES`] (pattern => template, one a line) plus a few whose replacement is
//! computed in code ([`code_rules`]: composing transposes, collapsing reshapes, folding
//! transposes into `dot`'s flags, dividing by a constant). Every rule keeps the value's
//! shape and dtype (the engine drops a replacement of another type) and its result, with two
//! documented exceptions of float rounding:
//!
//! - `div-const`: `x / c` becomes `x * (1/c)` for float `x` and a finite constant `c` whose
//!   reciprocal is a normal number. The reference interpreter computes in f64 and rounds
//!   once, so `x * fl64(1/c)` and `x / c` round to the same f32 except when the product sits
//!   within f64 rounding error of an f32 rounding boundary: results differ by at most one
//!   unit in the last place of the output dtype, and not at all when `c` is a power of two;
//! - `add-zero*`: `-0.0 + 0.0` is `+0.0`, so `x + 0` keeps `-0.0` where the original gave
//!   `+0.0` (equal as numbers).
//!
//! `pow-two` (`x^2 -> x*x`) is exact: the interpreter squares in f64, where the square of
//! an f32 is exact, then rounds once either way.
//!
//! # Example
//!
//! ```
//! use kiln_ir::{BinaryOp, DType, Graph, Op, TensorType};
//! use kiln_passes::{Pass, Simplify};
//!
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([2, 3], DType::F32))?;
//! let t1 = g.add_op(Op::Transpose { axes: None }, &[x])?;
//! let t2 = g.add_op(Op::Transpose { axes: None }, &[t1])?;
//! let one = g.add_op(Op::Scalar { f: BinaryOp::Mul, scalar: 1.0, reverse: false }, &[t2])?;
//! let sq = g.add_op(Op::Scalar { f: BinaryOp::Pow, scalar: 2.0, reverse: false }, &[one])?;
//! let y = g.add_op(Op::Scalar { f: BinaryOp::Div, scalar: 4.0, reverse: false }, &[sq])?;
//! g.set_outputs(vec![y])?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[2,3]
//! %1 = transpose(%0) {axes=null} : f32[3,2]
//! %2 = transpose(%1) {axes=null} : f32[2,3]
//! %3 = mul_scalar(%2) {scalar=1.0, reverse=false} : f32[2,3]
//! %4 = pow_scalar(%3) {scalar=2.0, reverse=false} : f32[2,3]
//! %5 = div_scalar(%4) {scalar=4.0, reverse=false} : f32[2,3]
//! return %5
//! ");
//! let report = Simplify::default().run(&mut g)?;
//! assert_eq!(g.to_text(), "\
//! %0 = input \"x\" : f32[2,3]
//! %1 = mul(%0, %0) : f32[2,3]
//! %2 = mul_scalar(%1) {scalar=0.25, reverse=false} : f32[2,3]
//! return %2
//! ");
//! assert_eq!(report.total_firings(), 4);
//! # Ok::<(), kiln_ir::Error>(())
//! ```

use crate::rewrite::{Match, Rule, RuleSet};
use crate::{Pass, PassReport};
use kiln_ir::{BinaryOp, Graph, NodeId, Op, Result, Tensor};

/// The template rules, one a line (`name: pattern => replacement`). A rule whose replacement
/// would change the value's type (a `1` that broadcasts `x` larger) does not fire.
pub const RULES: &str = "
# identities of arithmetic
mul-one:          (mul_scalar{scalar=1} ?x)                   => ?x
mul-one-right:    (mul ?x 1)                                  => ?x
mul-one-left:     (mul 1 ?x)                                  => ?x
add-zero:         (add_scalar{scalar=0} ?x)                   => ?x
add-zero-right:   (add ?x 0)                                  => ?x
add-zero-left:    (add 0 ?x)                                  => ?x
sub-zero:         (sub_scalar{scalar=0, reverse=false} ?x)    => ?x
sub-zero-right:   (sub ?x 0)                                  => ?x
div-one:          (div_scalar{scalar=1, reverse=false} ?x)    => ?x
div-one-right:    (div ?x 1)                                  => ?x
pow-one:          (pow_scalar{scalar=1, reverse=false} ?x)    => ?x
neg-neg:          (neg (neg ?x))                              => ?x
max-self:         (maximum ?x ?x)                             => ?x
min-self:         (minimum ?x ?x)                             => ?x
# strength reduction
pow-two:          (pow_scalar{scalar=2, reverse=false} ?x)    => (mul ?x ?x)
# shape ops that do nothing (the type check keeps only same-shape ones)
reshape-noop:     (reshape ?x)                                => ?x
flatten-noop:     (flatten ?x)                                => ?x
squeeze-noop:     (squeeze ?x)                                => ?x
broadcast-noop:   (broadcast_to ?x)                           => ?x
# a binary op broadcasts by itself
add-broadcast-r:  (add ?x (broadcast_to ?y))                  => (add ?x ?y)
add-broadcast-l:  (add (broadcast_to ?y) ?x)                  => (add ?y ?x)
sub-broadcast-r:  (sub ?x (broadcast_to ?y))                  => (sub ?x ?y)
sub-broadcast-l:  (sub (broadcast_to ?y) ?x)                  => (sub ?y ?x)
mul-broadcast-r:  (mul ?x (broadcast_to ?y))                  => (mul ?x ?y)
mul-broadcast-l:  (mul (broadcast_to ?y) ?x)                  => (mul ?y ?x)
div-broadcast-r:  (div ?x (broadcast_to ?y))                  => (div ?x ?y)
div-broadcast-l:  (div (broadcast_to ?y) ?x)                  => (div ?y ?x)
";

/// The rules whose replacement is computed: `(name, pattern, rewrite)`.
pub fn code_rules() -> Vec<(&'static str, &'static str, crate::rewrite::RewriteFn)> {
    vec![
        ("transpose-identity", "(transpose ?x)@t", transpose_identity),
        (
            "transpose-transpose",
            "(transpose (transpose ?x)@t1)@t2",
            transpose_transpose,
        ),
        (
            "reshape-reshape",
            "(reshape (reshape ?x))@r",
            collapse_reshape,
        ),
        (
            "reshape-flatten",
            "(reshape (flatten ?x))@r",
            collapse_reshape,
        ),
        (
            "reshape-expand",
            "(reshape (expand_dims ?x))@r",
            collapse_reshape,
        ),
        (
            "reshape-squeeze",
            "(reshape (squeeze ?x))@r",
            collapse_reshape,
        ),
        (
            "broadcast-scalar",
            "(broadcast_to ?c:scalar)@b",
            broadcast_scalar,
        ),
        ("div-const", "(div_scalar{reverse=false} ?x)@d", div_const),
        ("div-const-tensor", "(div ?x ?c:scalar)@d", div_const),
        (
            "dot-transpose-a",
            "(dot (transpose ?a)@t ?b)@d",
            dot_transpose_a,
        ),
        (
            "dot-transpose-b",
            "(dot ?a (transpose ?b)@t)@d",
            dot_transpose_b,
        ),
        (
            "batch_dot-transpose-a",
            "(batch_dot (transpose ?a)@t ?b)@d",
            dot_transpose_a,
        ),
        (
            "batch_dot-transpose-b",
            "(batch_dot ?a (transpose ?b)@t)@d",
            dot_transpose_b,
        ),
    ]
}

/// Algebraic simplification (pass name `simplify`).
#[derive(Clone, Debug)]
pub struct Simplify {
    rules: RuleSet,
    /// Sweeps over the graph at most (each sweep tries every rule at every node).
    pub max_sweeps: usize,
}

impl Simplify {
    /// The pass with [`RULES`] and [`code_rules`].
    pub fn new() -> Result<Self> {
        let mut rules = RuleSet::parse(RULES)?;
        for (name, pattern, f) in code_rules() {
            rules.push(Rule::code(name, pattern, f)?);
        }
        Ok(Simplify {
            rules,
            max_sweeps: 16,
        })
    }

    /// The pass with another rule set.
    pub fn with_rules(rules: RuleSet) -> Self {
        Simplify {
            rules,
            max_sweeps: 16,
        }
    }

    /// The rules it applies.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }
}

impl Default for Simplify {
    /// The built-in rules; they are constants of this crate and parse (a test checks it),
    /// so the fallback to no rules is never taken in practice.
    fn default() -> Self {
        Simplify::new().unwrap_or_else(|_| Simplify::with_rules(RuleSet::default()))
    }
}

impl Pass for Simplify {
    fn name(&self) -> &'static str {
        "simplify"
    }
    fn description(&self) -> &'static str {
        "algebraic identities and strength reduction, as named rewrite rules"
    }
    fn run(&self, graph: &mut Graph) -> Result<PassReport> {
        let before = graph.len();
        let firings = self.rules.apply(graph, self.max_sweeps)?;
        Ok(PassReport::new(before, graph.len(), firings))
    }
}

/// A transpose's permutation (`None` reverses the axes).
fn perm(op: Option<&Op>, rank: usize) -> Option<Vec<usize>> {
    match op? {
        Op::Transpose { axes: Some(a) } => Some(a.clone()),
        Op::Transpose { axes: None } => Some((0..rank).rev().collect()),
        _ => None,
    }
}

fn rank(g: &Graph, id: NodeId) -> Result<usize> {
    Ok(g.ty(id)?.shape.rank())
}

fn transpose_identity(m: &Match, g: &mut Graph) -> Result<Option<NodeId>> {
    let (x, t) = (m.get("x")?, m.get("t")?);
    let p = perm(g.op(t)?, rank(g, x)?);
    Ok(p.filter(|p| p.iter().enumerate().all(|(i, &a)| i == a))
        .map(|_| x))
}

fn transpose_transpose(m: &Match, g: &mut Graph) -> Result<Option<NodeId>> {
    let (x, t1, t2) = (m.get("x")?, m.get("t1")?, m.get("t2")?);
    let r = rank(g, x)?;
    let (Some(p1), Some(p2)) = (perm(g.op(t1)?, r), perm(g.op(t2)?, r)) else {
        return Ok(None);
    };
    // out[j] = inner[p2[j]] = x[p1[p2[j]]]
    let composed: Vec<usize> = p2.iter().map(|&j| p1[j]).collect();
    if composed.iter().enumerate().all(|(i, &a)| i == a) {
        return Ok(Some(x));
    }
    Ok(Some(g.add_op(
        Op::Transpose {
            axes: Some(composed),
        },
        &[x],
    )?))
}

fn collapse_reshape(m: &Match, g: &mut Graph) -> Result<Option<NodeId>> {
    let (x, r) = (m.get("x")?, m.get("r")?);
    let shape = g.ty(r)?.shape.iter().map(|&d| d as i64).collect();
    Ok(Some(g.add_op(Op::Reshape { shape }, &[x])?))
}

fn broadcast_scalar(m: &Match, g: &mut Graph) -> Result<Option<NodeId>> {
    let (c, b) = (m.get("c")?, m.get("b")?);
    let kiln_ir::graph::NodeKind::Const(t) = &g.node(c)?.kind else {
        return Ok(None);
    };
    let Some(&value) = t.to_f64_vec().first() else {
        return Ok(None);
    };
    // `full` stores an f64: only values that survive the round trip are rewritten.
    let back = Tensor::full([1], t.dtype(), value);
    if back.storage().as_ref().to_f64_vec() != t.to_f64_vec() {
        return Ok(None);
    }
    let ty = g.ty(b)?.clone();
    Ok(Some(g.add_op(
        Op::Full {
            shape: ty.shape,
            dtype: ty.dtype,
            value,
        },
        &[],
    )?))
}

fn div_const(m: &Match, g: &mut Graph) -> Result<Option<NodeId>> {
    let (x, d) = (m.get("x")?, m.get("d")?);
    if !g.ty(x)?.dtype.is_float() {
        return Ok(None); // integer division truncates: no reciprocal
    }
    let c = match g.op(d)? {
        Some(Op::Scalar { scalar, .. }) => *scalar,
        _ => match crate::util::uniform_value(g, m.get("c")?) {
            Some(c) => c,
            None => return Ok(None),
        },
    };
    let r = 1.0 / c;
    if !c.is_finite() || !r.is_normal() {
        return Ok(None);
    }
    Ok(Some(g.add_op(
        Op::Scalar {
            f: BinaryOp::Mul,
            scalar: r,
            reverse: false,
        },
        &[x],
    )?))
}

/// True when transpose node `t` reverses all axes (for `dot`) or swaps the last two (for
/// `batch_dot`) of a value of rank `r` ≥ 2: exactly what the op's transpose flag does.
fn is_flag_transpose(g: &Graph, t: NodeId, d: NodeId, r: usize) -> Result<bool> {
    let Some(p) = perm(g.op(t)?, r) else {
        return Ok(false);
    };
    if r < 2 {
        return Ok(false);
    }
    Ok(match g.op(d)? {
        Some(Op::Dot { .. }) => p.iter().enumerate().all(|(i, &a)| a == r - 1 - i),
        Some(Op::BatchDot { .. }) => {
            let mut want: Vec<usize> = (0..r).collect();
            want.swap(r - 2, r - 1);
            p == want
        }
        _ => false,
    })
}

fn with_flags(op: &Op, flip_a: bool, flip_b: bool) -> Option<Op> {
    match *op {
        Op::Dot {
            transpose_a,
            transpose_b,
        } => Some(Op::Dot {
            transpose_a: transpose_a ^ flip_a,
            transpose_b: transpose_b ^ flip_b,
        }),
        Op::BatchDot {
            transpose_a,
            transpose_b,
        } => Some(Op::BatchDot {
            transpose_a: transpose_a ^ flip_a,
            transpose_b: transpose_b ^ flip_b,
        }),
        _ => None,
    }
}

fn dot_transpose_a(m: &Match, g: &mut Graph) -> Result<Option<NodeId>> {
    let (a, b, t, d) = (m.get("a")?, m.get("b")?, m.get("t")?, m.get("d")?);
    if !is_flag_transpose(g, t, d, rank(g, a)?)? {
        return Ok(None);
    }
    let Some(op) = g.op(d)?.and_then(|op| with_flags(op, true, false)) else {
        return Ok(None);
    };
    Ok(Some(g.add_op(op, &[a, b])?))
}

fn dot_transpose_b(m: &Match, g: &mut Graph) -> Result<Option<NodeId>> {
    let (a, b, t, d) = (m.get("a")?, m.get("b")?, m.get("t")?, m.get("d")?);
    if !is_flag_transpose(g, t, d, rank(g, b)?)? {
        return Ok(None);
    }
    let Some(op) = g.op(d)?.and_then(|op| with_flags(op, false, true)) else {
        return Ok(None);
    };
    Ok(Some(g.add_op(op, &[a, b])?))
}
