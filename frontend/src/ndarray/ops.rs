//! The IR's elementwise, reduction, linear-algebra, shape and indexing ops as methods.
//!
//! Each method builds one [`Op`] and runs it through [`apply`], so autograd sees it. The
//! semantics (broadcasting, negative axes, clipping of indices) are the op's, documented in
//! `kiln_ir::op`.

use super::{apply, NDArray};
use kiln_ir::{ArgReduceOp, BinaryOp, DType, Error, Op, ReduceOp, Result, Shape, UnaryOp};

macro_rules! unary_methods {
    ($($name:ident => $f:ident: $doc:literal;)*) => {
        impl NDArray {$(
            #[doc = $doc]
            pub fn $name(&self) -> Result<NDArray> {
                apply(Op::Unary { f: UnaryOp::$f }, &[self])
            }
        )*}
    };
}

unary_methods! {
    neg => Neg: "Elementwise `-x`.";
    abs => Abs: "Elementwise `|x|`.";
    sign => Sign: "Elementwise sign: -1, 0 or 1.";
    exp => Exp: "Elementwise `e^x`.";
    log => Log: "Elementwise natural logarithm.";
    log1p => Log1p: "Elementwise `ln(1 + x)`, accurate near 0.";
    expm1 => Expm1: "Elementwise `e^x - 1`, accurate near 0.";
    sqrt => Sqrt: "Elementwise square root.";
    rsqrt => Rsqrt: "Elementwise `1 / sqrt(x)`.";
    square => Square: "Elementwise `x * x`.";
    reciprocal => Reciprocal: "Elementwise `1 / x`.";
    sin => Sin: "Elementwise sine.";
    cos => Cos: "Elementwise cosine.";
    tanh => Tanh: "Elementwise hyperbolic tangent.";
    sigmoid => Sigmoid: "Elementwise logistic function `1 / (1 + e^-x)`.";
    relu => Relu: "Elementwise `max(x, 0)`.";
    softrelu => Softrelu: "Elementwise softplus `ln(1 + e^x)` (MXNet's `softrelu`).";
    floor => Floor: "Elementwise floor.";
    ceil => Ceil: "Elementwise ceiling.";
    round => Round: "Elementwise rounding, half away from zero.";
    logical_not => LogicalNot: "Elementwise `1` where `x == 0`, else `0` (input dtype).";
}

macro_rules! binary_methods {
    ($($name:ident, $scalar:ident => $f:ident: $doc:literal;)*) => {
        impl NDArray {$(
            #[doc = concat!($doc, " with numpy broadcasting; both arrays must share a dtype.")]
            pub fn $name(&self, rhs: &NDArray) -> Result<NDArray> {
                apply(Op::Binary { f: BinaryOp::$f }, &[self, rhs])
            }
            #[doc = concat!($doc, " with a scalar on the right (converted to the array's dtype).")]
            pub fn $scalar(&self, scalar: f64) -> Result<NDArray> {
                apply(Op::Scalar { f: BinaryOp::$f, scalar, reverse: false }, &[self])
            }
        )*}
    };
}

binary_methods! {
    add, add_scalar => Add: "Elementwise `self + rhs`";
    sub, sub_scalar => Sub: "Elementwise `self - rhs`";
    mul, mul_scalar => Mul: "Elementwise `self * rhs`";
    div, div_scalar => Div: "Elementwise `self / rhs`";
    pow, pow_scalar => Pow: "Elementwise `self ^ rhs`";
    maximum, maximum_scalar => Maximum: "Elementwise `max(self, rhs)`";
    minimum, minimum_scalar => Minimum: "Elementwise `min(self, rhs)`";
    eq, eq_scalar => Eq: "Elementwise `self == rhs` as 0/1 in the input dtype,";
    ne, ne_scalar => Ne: "Elementwise `self != rhs` as 0/1 in the input dtype,";
    gt, gt_scalar => Gt: "Elementwise `self > rhs` as 0/1 in the input dtype,";
    ge, ge_scalar => Ge: "Elementwise `self >= rhs` as 0/1 in the input dtype,";
    lt, lt_scalar => Lt: "Elementwise `self < rhs` as 0/1 in the input dtype,";
    le, le_scalar => Le: "Elementwise `self <= rhs` as 0/1 in the input dtype,";
}

macro_rules! reversed_scalar_methods {
    ($($name:ident => $f:ident: $doc:literal;)*) => {
        impl NDArray {$(
            #[doc = $doc]
            pub fn $name(&self, scalar: f64) -> Result<NDArray> {
                apply(Op::Scalar { f: BinaryOp::$f, scalar, reverse: true }, &[self])
            }
        )*}
    };
}

reversed_scalar_methods! {
    rsub_scalar => Sub: "Elementwise `scalar - self`.";
    rdiv_scalar => Div: "Elementwise `scalar / self`.";
    rpow_scalar => Pow: "Elementwise `scalar ^ self`.";
}

macro_rules! reduce_methods {
    ($($all:ident, $axis:ident, $axes:ident => $f:ident: $what:literal;)*) => {
        impl NDArray {$(
            #[doc = concat!("The ", $what, " of all elements (a rank-0 array).")]
            pub fn $all(&self) -> Result<NDArray> {
                apply(Op::Reduce { f: ReduceOp::$f, axes: None, keepdims: false }, &[self])
            }
            #[doc = concat!("The ", $what, " along `axis` (negative counts from the end), which is removed.")]
            pub fn $axis(&self, axis: isize) -> Result<NDArray> {
                apply(
                    Op::Reduce { f: ReduceOp::$f, axes: Some(vec![axis]), keepdims: false },
                    &[self],
                )
            }
            #[doc = concat!("The ", $what, " over `axes`; `keepdims` keeps them as size 1.")]
            pub fn $axes(&self, axes: &[isize], keepdims: bool) -> Result<NDArray> {
                apply(
                    Op::Reduce { f: ReduceOp::$f, axes: Some(axes.to_vec()), keepdims },
                    &[self],
                )
            }
        )*}
    };
}

reduce_methods! {
    sum, sum_axis, sum_axes => Sum: "sum";
    mean, mean_axis, mean_axes => Mean: "mean";
    max, max_axis, max_axes => Max: "maximum";
    min, min_axis, min_axes => Min: "minimum";
    prod, prod_axis, prod_axes => Prod: "product";
    norm, norm_axis, norm_axes => Norm: "L2 norm";
}

impl NDArray {
    // ----- elementwise with more inputs or attributes -----------------------------------

    /// `x` where `self != 0`, else `y` (all three broadcast; MXNet `where`).
    pub fn where_cond(&self, x: &NDArray, y: &NDArray) -> Result<NDArray> {
        apply(Op::Where, &[self, x, y])
    }

    /// Elementwise `min(max(x, min), max)`.
    pub fn clip(&self, min: f64, max: f64) -> Result<NDArray> {
        apply(Op::Clip { min, max }, &[self])
    }

    // ----- index of extremum ------------------------------------------------------------

    /// Index of the maximum along `axis` (in the input's dtype, as MXNet); ties take the first.
    pub fn argmax(&self, axis: isize) -> Result<NDArray> {
        self.arg_reduce(ArgReduceOp::Argmax, Some(axis))
    }

    /// Index of the minimum along `axis` (in the input's dtype); ties take the first.
    pub fn argmin(&self, axis: isize) -> Result<NDArray> {
        self.arg_reduce(ArgReduceOp::Argmin, Some(axis))
    }

    /// Index of the maximum of the flattened array (a rank-0 array).
    pub fn argmax_flat(&self) -> Result<NDArray> {
        self.arg_reduce(ArgReduceOp::Argmax, None)
    }

    /// Index of the minimum of the flattened array (a rank-0 array).
    pub fn argmin_flat(&self) -> Result<NDArray> {
        self.arg_reduce(ArgReduceOp::Argmin, None)
    }

    fn arg_reduce(&self, f: ArgReduceOp, axis: Option<isize>) -> Result<NDArray> {
        apply(
            Op::ArgReduce {
                f,
                axis,
                keepdims: false,
            },
            &[self],
        )
    }

    // ----- linear algebra ---------------------------------------------------------------

    /// MXNet `dot`: matrix product of 2-D arrays, inner product of 1-D ones; in general
    /// contracts the last axis of `self` with the first of `rhs`.
    pub fn dot(&self, rhs: &NDArray) -> Result<NDArray> {
        self.dot_t(rhs, false, false)
    }

    /// `dot` with either operand transposed.
    pub fn dot_t(&self, rhs: &NDArray, transpose_a: bool, transpose_b: bool) -> Result<NDArray> {
        apply(
            Op::Dot {
                transpose_a,
                transpose_b,
            },
            &[self, rhs],
        )
    }

    /// Batched matrix product: `[B, n, k] x [B, k, m] -> [B, n, m]`.
    pub fn batch_dot(&self, rhs: &NDArray) -> Result<NDArray> {
        self.batch_dot_t(rhs, false, false)
    }

    /// `batch_dot` with either operand's last two axes transposed.
    pub fn batch_dot_t(
        &self,
        rhs: &NDArray,
        transpose_a: bool,
        transpose_b: bool,
    ) -> Result<NDArray> {
        apply(
            Op::BatchDot {
                transpose_a,
                transpose_b,
            },
            &[self, rhs],
        )
    }

    /// MXNet `FullyConnected`: `self · weightᵀ + bias` with `weight` of shape `[units, in]`.
    /// With `flatten`, `self` of shape `[N, ...]` is first seen as `[N, prod(...)]`.
    pub fn fully_connected(
        &self,
        weight: &NDArray,
        bias: Option<&NDArray>,
        flatten: bool,
    ) -> Result<NDArray> {
        let op = Op::FullyConnected {
            flatten,
            no_bias: bias.is_none(),
        };
        match bias {
            Some(b) => apply(op, &[self, weight, b]),
            None => apply(op, &[self, weight]),
        }
    }

    // ----- shape ------------------------------------------------------------------------

    /// Reshapes with MXNet codes: `0` keeps the input dim at that position, `-1` is inferred.
    /// A view sharing this array's storage.
    pub fn reshape(&self, shape: &[i64]) -> Result<NDArray> {
        apply(
            Op::Reshape {
                shape: shape.to_vec(),
            },
            &[self],
        )
    }

    /// Reshapes to `other`'s shape (a view).
    pub fn reshape_like(&self, other: &NDArray) -> Result<NDArray> {
        let shape = other.shape().iter().map(|&d| d as i64).collect();
        apply(Op::Reshape { shape }, &[self])
    }

    /// Reverses the axes (the matrix transpose for 2-D arrays).
    pub fn transpose(&self) -> Result<NDArray> {
        apply(Op::Transpose { axes: None }, &[self])
    }

    /// Permutes the axes: output axis `i` is input axis `axes[i]`.
    pub fn transpose_axes(&self, axes: &[usize]) -> Result<NDArray> {
        apply(
            Op::Transpose {
                axes: Some(axes.to_vec()),
            },
            &[self],
        )
    }

    /// Inserts a size-1 axis at `axis` (a view).
    pub fn expand_dims(&self, axis: isize) -> Result<NDArray> {
        apply(Op::ExpandDims { axis }, &[self])
    }

    /// Drops every size-1 axis (a view).
    pub fn squeeze(&self) -> Result<NDArray> {
        apply(Op::Squeeze { axes: None }, &[self])
    }

    /// Drops the given size-1 axes (a view); naming an axis that is not 1 is an error.
    pub fn squeeze_axes(&self, axes: &[isize]) -> Result<NDArray> {
        apply(
            Op::Squeeze {
                axes: Some(axes.to_vec()),
            },
            &[self],
        )
    }

    /// `[N, ...] -> [N, prod(...)]` (a view).
    pub fn flatten(&self) -> Result<NDArray> {
        apply(Op::Flatten, &[self])
    }

    /// Broadcasts to `shape` by numpy rules.
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<NDArray> {
        apply(
            Op::BroadcastTo {
                shape: shape.into(),
            },
            &[self],
        )
    }

    /// Broadcasts to `other`'s shape.
    pub fn broadcast_like(&self, other: &NDArray) -> Result<NDArray> {
        self.broadcast_to(other.shape().clone())
    }

    /// numpy basic slicing of the leading `begin.len()` axes (MXNet `slice`); `None` takes
    /// the default. [`NDArray::index`] with [`s!`](crate::s) is the shorter form.
    pub fn slice(
        &self,
        begin: &[Option<i64>],
        end: &[Option<i64>],
        step: &[Option<i64>],
    ) -> Result<NDArray> {
        apply(
            Op::Slice {
                begin: begin.to_vec(),
                end: end.to_vec(),
                step: step.to_vec(),
            },
            &[self],
        )
    }

    /// `self[.., begin:end, ..]` along `axis` (`end: None` is the end; negatives count from
    /// the end). A view when it selects a contiguous block (always for axis 0).
    pub fn slice_axis(&self, axis: isize, begin: i64, end: Option<i64>) -> Result<NDArray> {
        apply(Op::SliceAxis { axis, begin, end }, &[self])
    }

    /// Splits into `num` equal parts along `axis` (MXNet `split`); the axis length must be
    /// divisible by `num`. Each part is a `slice_axis`.
    pub fn split(&self, num: usize, axis: isize) -> Result<Vec<NDArray>> {
        let ax = self.shape().axis(axis, "split")?;
        let len = self.shape()[ax];
        if num == 0 || !len.is_multiple_of(num) {
            return Err(Error::shape(
                "split",
                format!(
                    "cannot split axis {axis} of length {len} (shape {}) into {num} equal parts",
                    self.shape()
                ),
            ));
        }
        let part = (len / num) as i64;
        (0..num as i64)
            .map(|i| self.slice_axis(axis, i * part, Some((i + 1) * part)))
            .collect()
    }

    /// Repeats the whole array `reps[i]` times along each axis (numpy `tile`).
    pub fn tile(&self, reps: &[usize]) -> Result<NDArray> {
        apply(
            Op::Tile {
                reps: reps.to_vec(),
            },
            &[self],
        )
    }

    /// Repeats each element `repeats` times along `axis` (numpy `repeat`).
    pub fn repeat(&self, repeats: usize, axis: isize) -> Result<NDArray> {
        apply(
            Op::Repeat {
                repeats,
                axis: Some(axis),
            },
            &[self],
        )
    }

    /// Repeats each element of the flattened array `repeats` times (a 1-D result).
    pub fn repeat_flat(&self, repeats: usize) -> Result<NDArray> {
        apply(
            Op::Repeat {
                repeats,
                axis: None,
            },
            &[self],
        )
    }

    /// Reverses the elements along `axis`.
    pub fn flip(&self, axis: isize) -> Result<NDArray> {
        self.flip_axes(&[axis])
    }

    /// Reverses the elements along each of `axes`.
    pub fn flip_axes(&self, axes: &[isize]) -> Result<NDArray> {
        apply(
            Op::Flip {
                axes: axes.to_vec(),
            },
            &[self],
        )
    }

    // ----- indexing ---------------------------------------------------------------------

    /// MXNet `take` along axis 0: the rows named by `indices` (any numeric dtype, clipped).
    pub fn take(&self, indices: &NDArray) -> Result<NDArray> {
        self.take_axis(indices, 0)
    }

    /// MXNet `take` along `axis`: `[d0.., A, ..dn]` with indices `[i..]` gives
    /// `[d0.., i.., ..dn]`.
    pub fn take_axis(&self, indices: &NDArray, axis: isize) -> Result<NDArray> {
        apply(Op::Take { axis }, &[self, indices])
    }

    /// MXNet `pick` along the last axis: one element per row, chosen by `index`.
    pub fn pick(&self, index: &NDArray) -> Result<NDArray> {
        self.pick_axis(index, -1, false)
    }

    /// MXNet `pick` along `axis`; `keepdims` keeps the axis as size 1.
    pub fn pick_axis(&self, index: &NDArray, axis: isize, keepdims: bool) -> Result<NDArray> {
        apply(Op::Pick { axis, keepdims }, &[self, index])
    }

    /// One-hot encoding of this array of indices: `[..] -> [.., depth]` f32 with 1 at the
    /// index and 0 elsewhere.
    pub fn one_hot(&self, depth: usize) -> Result<NDArray> {
        self.one_hot_with(depth, 1.0, 0.0, DType::F32)
    }

    /// One-hot encoding with the on/off values and the output dtype given.
    pub fn one_hot_with(
        &self,
        depth: usize,
        on_value: f64,
        off_value: f64,
        dtype: DType,
    ) -> Result<NDArray> {
        apply(
            Op::OneHot {
                depth,
                on_value,
                off_value,
                dtype,
            },
            &[self],
        )
    }

    /// numpy `take_along_axis`: the output has `indices`' shape.
    pub fn gather(&self, indices: &NDArray, axis: isize) -> Result<NDArray> {
        apply(Op::Gather { axis }, &[self, indices])
    }
}
