//! Shape/dtype inference for the nn ops: softmax family, convolution family, pooling,
//! normalization and dropout.
//!
//! Data operands must be floating point (f32 or f64) and share one dtype, which the output
//! keeps; only `softmax_cross_entropy`'s labels may be of any dtype.
//!
//! Spatial attributes (`kernel`, `stride`, `pad`, `dilation`, `output_padding`) have exactly
//! one entry per spatial dim (global pooling ignores its kernel, stride and pad).

use super::common::{expect_inputs, same_float};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::TensorType;

pub(crate) fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    match op {
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            expect_inputs(op, inputs, 1)?;
            same_float(op, &[("input", &inputs[0])])?;
            inputs[0].shape.axis(*axis, op.name())?;
            Ok(inputs[0].clone())
        }
        Op::SoftmaxCrossEntropy => softmax_cross_entropy(op, inputs),
        Op::Convolution {
            stride,
            pad,
            dilation,
            groups,
            no_bias,
        } => {
            expect_inputs(op, inputs, if *no_bias { 2 } else { 3 })?;
            convolution(op, inputs, stride, pad, dilation, *groups)
        }
        Op::Deconvolution {
            stride,
            pad,
            dilation,
            output_padding,
            groups,
            no_bias,
        } => {
            expect_inputs(op, inputs, if *no_bias { 2 } else { 3 })?;
            deconvolution(op, inputs, stride, pad, dilation, output_padding, *groups)
        }
        Op::ConvGradWeight {
            kernel,
            stride,
            pad,
            dilation,
            groups,
        } => conv_grad_weight(op, inputs, kernel, stride, pad, dilation, *groups),
        Op::Pooling {
            kernel,
            stride,
            pad,
            global,
            ..
        } => {
            expect_inputs(op, inputs, 1)?;
            same_float(op, &[("input", &inputs[0])])?;
            let shape = pooling_shape(op, &inputs[0].shape, kernel, stride, pad, *global)?;
            Ok(TensorType::new(shape, inputs[0].dtype))
        }
        Op::PoolingGrad {
            kernel,
            stride,
            pad,
            global,
            ..
        } => {
            expect_inputs(op, inputs, 2)?;
            same_float(op, &[("input", &inputs[0]), ("dy", &inputs[1])])?;
            let y = pooling_shape(op, &inputs[0].shape, kernel, stride, pad, *global)?;
            if inputs[1].shape != y {
                return Err(Error::shape(
                    op.name(),
                    format!(
                        "dy {} does not match the pooling output {y} of input {}",
                        inputs[1].shape, inputs[0].shape
                    ),
                ));
            }
            Ok(inputs[0].clone())
        }
        Op::BatchNorm { eps, axis, .. } => {
            expect_inputs(op, inputs, 5)?;
            let names = ["input", "gamma", "beta", "mean", "var"];
            normalization(op, inputs, &names, *axis, *eps)
        }
        Op::LayerNorm { axis, eps } => {
            expect_inputs(op, inputs, 3)?;
            normalization(op, inputs, &["input", "gamma", "beta"], *axis, *eps)
        }
        Op::Dropout { p, .. } => {
            expect_inputs(op, inputs, 1)?;
            same_float(op, &[("input", &inputs[0])])?;
            if !(0.0..=1.0).contains(p) {
                return Err(Error::invalid(
                    op.name(),
                    format!("p must be in [0, 1], got {p}"),
                ));
            }
            Ok(inputs[0].clone())
        }
        _ => Err(Error::invalid(op.name(), "not a neural-network op")),
    }
}

fn softmax_cross_entropy(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    expect_inputs(op, inputs, 2)?;
    same_float(op, &[("logits", &inputs[0])])?;
    let (logits, labels) = (&inputs[0].shape, &inputs[1].shape);
    if logits.rank() != 2 || logits[1] == 0 {
        return Err(Error::shape(
            op.name(),
            format!("logits must be [N, C] with C >= 1, got {logits}"),
        ));
    }
    if labels.dims() != [logits[0]] {
        return Err(Error::shape(
            op.name(),
            format!(
                "labels must be [{}] for logits {logits}, got {labels}",
                logits[0]
            ),
        ));
    }
    Ok(TensorType::new([logits[0]], inputs[0].dtype))
}

/// The number of spatial dims of an NCW / NCHW tensor, or an error.
fn spatial_rank(op: &Op, what: &str, x: &Shape) -> Result<usize> {
    match x.rank() {
        3 | 4 => Ok(x.rank() - 2),
        _ => Err(Error::shape(
            op.name(),
            format!("{what} must be NCW or NCHW (rank 3 or 4), got {x}"),
        )),
    }
}

/// Checks that a per-spatial-dim attribute has one entry per spatial dim, each >= `min`.
fn per_dim(
    op: &Op,
    name: &str,
    v: &[usize],
    nd: usize,
    min: usize,
    x: &Shape,
) -> Result<Vec<usize>> {
    if v.len() != nd {
        return Err(Error::invalid(
            op.name(),
            format!("{name} {v:?} needs one entry per spatial dim ({nd}) of input {x}"),
        ));
    }
    if let Some(bad) = v.iter().find(|&&s| s < min) {
        return Err(Error::invalid(
            op.name(),
            format!("{name} {v:?} must be >= {min}, got {bad}"),
        ));
    }
    Ok(v.to_vec())
}

/// The output length of a (dilated, strided, padded) window sweep along one dim:
/// `(len + 2*pad - dilation*(k-1) - 1) / stride + 1`, or an error when the window does not fit.
#[allow(clippy::too_many_arguments)]
fn window_out(
    op: &Op,
    x: &Shape,
    dim: usize,
    len: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Result<usize> {
    let padded = len as u128 + 2 * pad as u128;
    let span = dilation as u128 * (k as u128).saturating_sub(1) + 1;
    if k == 0 || padded < span {
        return Err(Error::shape(
            op.name(),
            format!(
                "input {x}: spatial dim {dim} of size {len} (padded to {padded}) is smaller than \
                 the kernel extent {span} (kernel {k}, dilation {dilation})"
            ),
        ));
    }
    Ok(((padded - span) / stride as u128 + 1) as usize)
}

fn convolution(
    op: &Op,
    inputs: &[TensorType],
    stride: &[usize],
    pad: &[usize],
    dilation: &[usize],
    groups: usize,
) -> Result<TensorType> {
    let (x, w, nd) = weighted_prologue(op, inputs, groups, "[O, C/groups, kernel..]")?;
    let (o, c) = (w[0], x[1]);
    if o % groups != 0 {
        return Err(Error::shape(
            op.name(),
            format!("weight {w} has {o} output channels, not divisible by groups={groups}"),
        ));
    }
    if w[1].checked_mul(groups) != Some(c) {
        return Err(Error::shape(
            op.name(),
            format!(
                "weight {w} expects {} input channels per group, input {x} has {c} with \
                 groups={groups}",
                w[1]
            ),
        ));
    }
    let [stride, pad, dilation] = window_attrs(op, x, nd, stride, pad, dilation)?;
    let mut dims = vec![x[0], o];
    for i in 0..nd {
        dims.push(window_out(
            op,
            x,
            i,
            x[2 + i],
            w[2 + i],
            stride[i],
            pad[i],
            dilation[i],
        )?);
    }
    check_bias(op, inputs.get(2), o, w)?;
    Ok(TensorType::new(dims, inputs[0].dtype))
}

/// The checks convolution and deconvolution share: float operands of one dtype, an NCW /
/// NCHW input, a weight of the input's rank (`layout` names its axes for the error) and
/// `groups >= 1`. Returns the input and weight shapes and the spatial rank.
fn weighted_prologue<'a>(
    op: &Op,
    inputs: &'a [TensorType],
    groups: usize,
    layout: &str,
) -> Result<(&'a Shape, &'a Shape, usize)> {
    let names = ["input", "weight", "bias"];
    let named: Vec<_> = names.iter().copied().zip(inputs.iter()).collect();
    same_float(op, &named)?;
    let (x, w) = (&inputs[0].shape, &inputs[1].shape);
    let nd = spatial_rank(op, "input", x)?;
    if w.rank() != x.rank() {
        return Err(Error::shape(
            op.name(),
            format!("weight {w} must have the rank of input {x} ({layout})"),
        ));
    }
    if groups == 0 {
        return Err(Error::invalid(op.name(), "groups must be >= 1, got 0"));
    }
    Ok((x, w, nd))
}

/// `stride`, `pad` and `dilation` checked to have one entry per spatial dim (stride and
/// dilation >= 1).
fn window_attrs(
    op: &Op,
    x: &Shape,
    nd: usize,
    stride: &[usize],
    pad: &[usize],
    dilation: &[usize],
) -> Result<[Vec<usize>; 3]> {
    Ok([
        per_dim(op, "stride", stride, nd, 1, x)?,
        per_dim(op, "pad", pad, nd, 0, x)?,
        per_dim(op, "dilation", dilation, nd, 1, x)?,
    ])
}

fn check_bias(op: &Op, bias: Option<&TensorType>, o: usize, w: &Shape) -> Result<()> {
    if let Some(b) = bias {
        if b.shape.dims() != [o] {
            return Err(Error::shape(
                op.name(),
                format!("bias must be [{o}] for weight {w}, got {}", b.shape),
            ));
        }
    }
    Ok(())
}

fn deconvolution(
    op: &Op,
    inputs: &[TensorType],
    stride: &[usize],
    pad: &[usize],
    dilation: &[usize],
    output_padding: &[usize],
    groups: usize,
) -> Result<TensorType> {
    let (x, w, nd) = weighted_prologue(op, inputs, groups, "[C, O/groups, kernel..]")?;
    let c = x[1];
    if w[0] != c {
        return Err(Error::shape(
            op.name(),
            format!(
                "weight {w} expects {} input channels, input {x} has {c}",
                w[0]
            ),
        ));
    }
    if c % groups != 0 {
        return Err(Error::shape(
            op.name(),
            format!("input {x} has {c} channels, not divisible by groups={groups}"),
        ));
    }
    let o = w[1].checked_mul(groups).ok_or_else(|| {
        Error::shape(
            op.name(),
            format!("weight {w} with groups={groups} has too many output channels"),
        )
    })?;
    let [stride, pad, dilation] = window_attrs(op, x, nd, stride, pad, dilation)?;
    let adj = per_dim(op, "output_padding", output_padding, nd, 0, x)?;
    let mut dims = vec![x[0], o];
    for i in 0..nd {
        let (len, k) = (x[2 + i], w[2 + i]);
        // output_padding picks one of the `stride` input sizes a convolution maps to `len`;
        // beyond that the op would no longer be the convolution's adjoint (MXNet's rule).
        if adj[i] >= stride[i] {
            return Err(Error::invalid(
                op.name(),
                format!(
                    "output_padding {adj:?} must be smaller than stride {stride:?} in every dim"
                ),
            ));
        }
        if len == 0 || k == 0 {
            return Err(Error::shape(
                op.name(),
                format!("input {x} and weight {w} need non-empty spatial dims"),
            ));
        }
        // i128 holds every intermediate unless the attributes are absurd (checked anyway).
        let size = (len as i128 - 1)
            .checked_mul(stride[i] as i128)
            .and_then(|v| v.checked_add((dilation[i] as i128).checked_mul(k as i128 - 1)?))
            .and_then(|v| v.checked_add(1 + adj[i] as i128 - 2 * pad[i] as i128))
            .unwrap_or(i128::MAX);
        if size < 1 || size > usize::MAX as i128 {
            return Err(Error::shape(
                op.name(),
                format!(
                    "input {x} with weight {w}: spatial dim {i} would have size {size} \
                     (pad {} too large)",
                    pad[i]
                ),
            ));
        }
        dims.push(size as usize);
    }
    check_bias(op, inputs.get(2), o, w)?;
    Ok(TensorType::new(dims, inputs[0].dtype))
}

fn conv_grad_weight(
    op: &Op,
    inputs: &[TensorType],
    kernel: &[usize],
    stride: &[usize],
    pad: &[usize],
    dilation: &[usize],
    groups: usize,
) -> Result<TensorType> {
    expect_inputs(op, inputs, 2)?;
    same_float(op, &[("input", &inputs[0]), ("dy", &inputs[1])])?;
    let (x, dy) = (&inputs[0].shape, &inputs[1].shape);
    let nd = spatial_rank(op, "input", x)?;
    if dy.rank() != x.rank() || dy[0] != x[0] {
        return Err(Error::shape(
            op.name(),
            format!("dy {dy} must be [N, O, ..] with the batch size and rank of input {x}"),
        ));
    }
    if groups == 0 {
        return Err(Error::invalid(op.name(), "groups must be >= 1, got 0"));
    }
    let (c, o) = (x[1], dy[1]);
    if c % groups != 0 || o % groups != 0 {
        return Err(Error::shape(
            op.name(),
            format!(
                "input {x} ({c} channels) and dy {dy} ({o} channels) must both be divisible \
                 by groups={groups}"
            ),
        ));
    }
    if kernel.len() != nd {
        return Err(Error::invalid(
            op.name(),
            format!("kernel {kernel:?} needs one entry per spatial dim ({nd}) of input {x}"),
        ));
    }
    let [stride, pad, dilation] = window_attrs(op, x, nd, stride, pad, dilation)?;
    for i in 0..nd {
        let y = window_out(
            op,
            x,
            i,
            x[2 + i],
            kernel[i],
            stride[i],
            pad[i],
            dilation[i],
        )?;
        if dy[2 + i] != y {
            return Err(Error::shape(
                op.name(),
                format!(
                    "dy {dy} does not match the convolution output of input {x} with kernel \
                     {kernel:?} (spatial dim {i}: {} != {y})",
                    dy[2 + i]
                ),
            ));
        }
    }
    let mut dims = vec![o, c / groups];
    dims.extend_from_slice(kernel);
    Ok(TensorType::new(dims, inputs[0].dtype))
}

/// The output shape of `pooling` on `x`. Padding must be smaller than the kernel so that every
/// window holds at least one real element (an all-padding window has no max and no average).
fn pooling_shape(
    op: &Op,
    x: &Shape,
    kernel: &[usize],
    stride: &[usize],
    pad: &[usize],
    global: bool,
) -> Result<Shape> {
    let nd = spatial_rank(op, "input", x)?;
    let mut dims = vec![x[0], x[1]];
    if x[2..].contains(&0) {
        return Err(Error::shape(
            op.name(),
            format!("needs non-empty spatial dims, got input {x}"),
        ));
    }
    if global {
        dims.extend(std::iter::repeat_n(1, nd));
        return Ok(Shape::from(dims));
    }
    if kernel.is_empty() {
        return Err(Error::invalid(
            op.name(),
            format!("needs a kernel (one entry per spatial dim) unless global, input {x}"),
        ));
    }
    let kernel = per_dim(op, "kernel", kernel, nd, 1, x)?;
    let stride = per_dim(op, "stride", stride, nd, 1, x)?;
    let pad = per_dim(op, "pad", pad, nd, 0, x)?;
    for i in 0..nd {
        if pad[i] >= kernel[i] {
            return Err(Error::invalid(
                op.name(),
                format!("pad {pad:?} must be smaller than kernel {kernel:?} in every dim"),
            ));
        }
        dims.push(window_out(
            op,
            x,
            i,
            x[2 + i],
            kernel[i],
            stride[i],
            pad[i],
            1,
        )?);
    }
    Ok(Shape::from(dims))
}

/// `batch_norm` and `layer_norm`: data plus per-channel vectors of `x.shape[axis]` elements.
fn normalization(
    op: &Op,
    inputs: &[TensorType],
    names: &[&str],
    axis: isize,
    eps: f64,
) -> Result<TensorType> {
    let named: Vec<_> = names.iter().copied().zip(inputs.iter()).collect();
    same_float(op, &named)?;
    let x = &inputs[0].shape;
    let ax = x.axis(axis, op.name())?;
    let c = x[ax];
    for (name, t) in &named[1..] {
        if t.shape.dims() != [c] {
            return Err(Error::shape(
                op.name(),
                format!(
                    "{name} must be [{c}] (input {x} along axis {axis}), got {}",
                    t.shape
                ),
            ));
        }
    }
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(Error::invalid(
            op.name(),
            format!("eps must be finite and >= 0, got {eps}"),
        ));
    }
    Ok(inputs[0].clone())
}
