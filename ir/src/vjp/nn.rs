//! VJPs of the neural-network ops: softmax family, convolutions, pooling, normalizations,
//! dropout.

use super::{expect_inputs, other_axes, Pair, VjpBuilder, Wanted};
use crate::error::{Error, Result};
use crate::op::{BinaryOp, Op, PoolKind, ReduceOp, UnaryOp};
use crate::shape::Shape;

use BinaryOp::{Add, Mul, Sub};

pub(super) fn vjp<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    inputs: &[B::Value],
    y: &B::Value,
    g: &B::Value,
    want: Wanted<'_>,
) -> Result<Vec<Option<B::Value>>> {
    match op {
        Op::Softmax { axis } => {
            expect_inputs(op, inputs, 1)?;
            // dx = y * (g - sum(g * y))
            let ax = b.shape(y).axis(*axis, op.name())?;
            let gy = b.binary(Mul, g, y)?;
            let s = b.sum(&gy, &[ax], true)?;
            let d = b.binary(Sub, g, &s)?;
            Ok(vec![Some(b.binary(Mul, y, &d)?)])
        }
        Op::LogSoftmax { axis } => {
            expect_inputs(op, inputs, 1)?;
            // dx = g - softmax(x) * sum(g)
            let ax = b.shape(y).axis(*axis, op.name())?;
            let p = b.unary(UnaryOp::Exp, y)?;
            let s = b.sum(g, &[ax], true)?;
            let t = b.binary(Mul, &p, &s)?;
            Ok(vec![Some(b.binary(Sub, g, &t)?)])
        }
        Op::SoftmaxCrossEntropy => {
            expect_inputs(op, inputs, 2)?;
            softmax_cross_entropy(b, op, &inputs[0], &inputs[1], g)
        }
        Op::Convolution {
            stride,
            pad,
            dilation,
            groups,
            no_bias,
        } => {
            expect_inputs(op, inputs, if *no_bias { 2 } else { 3 })?;
            let (x, w) = (&inputs[0], &inputs[1]);
            let (xs, ws, gs) = (b.shape(x), b.shape(w), b.shape(g));
            let output_padding = deconv_output_padding(op, &xs, &gs, &ws, stride, pad, dilation)?;
            let gx = if want.at(0) {
                Some(b.apply(
                    Op::Deconvolution {
                        stride: stride.clone(),
                        pad: pad.clone(),
                        dilation: dilation.clone(),
                        output_padding,
                        groups: *groups,
                        no_bias: true,
                    },
                    &[g, w],
                )?)
            } else {
                None
            };
            let gw = if want.at(1) {
                Some(b.apply(
                    Op::ConvGradWeight {
                        kernel: ws[2..].to_vec(),
                        stride: stride.clone(),
                        pad: pad.clone(),
                        dilation: dilation.clone(),
                        groups: *groups,
                    },
                    &[x, g],
                )?)
            } else {
                None
            };
            let mut out = vec![gx, gw];
            if !no_bias {
                out.push(if want.at(2) {
                    Some(b.sum(g, &other_axes(gs.rank(), 1), false)?)
                } else {
                    None
                });
            }
            Ok(out)
        }
        Op::Deconvolution {
            stride,
            pad,
            dilation,
            groups,
            no_bias,
            ..
        } => {
            // Deconvolution is the adjoint of Convolution in its input, so the roles swap:
            // <deconv(x, w), g> = <x, conv(g, w)>.
            expect_inputs(op, inputs, if *no_bias { 2 } else { 3 })?;
            let (x, w) = (&inputs[0], &inputs[1]);
            let (ws, gs) = (b.shape(w), b.shape(g));
            if ws.rank() < 3 {
                return Err(Error::shape(
                    op.name(),
                    format!("vjp needs a weight of rank >= 3, got {ws}"),
                ));
            }
            let gx = if want.at(0) {
                Some(b.apply(
                    Op::Convolution {
                        stride: stride.clone(),
                        pad: pad.clone(),
                        dilation: dilation.clone(),
                        groups: *groups,
                        no_bias: true,
                    },
                    &[g, w],
                )?)
            } else {
                None
            };
            let gw = if want.at(1) {
                Some(b.apply(
                    Op::ConvGradWeight {
                        kernel: ws[2..].to_vec(),
                        stride: stride.clone(),
                        pad: pad.clone(),
                        dilation: dilation.clone(),
                        groups: *groups,
                    },
                    &[g, x],
                )?)
            } else {
                None
            };
            let mut out = vec![gx, gw];
            if !no_bias {
                out.push(if want.at(2) {
                    Some(b.sum(g, &other_axes(gs.rank(), 1), false)?)
                } else {
                    None
                });
            }
            Ok(out)
        }
        Op::ConvGradWeight {
            stride,
            pad,
            dilation,
            groups,
            ..
        } => {
            // dw = ConvGradWeight(x, dy) is bilinear: <dw, G> = <dy, conv(x, G)>.
            expect_inputs(op, inputs, 2)?;
            let (x, dy) = (&inputs[0], &inputs[1]);
            let (xs, dys) = (b.shape(x), b.shape(dy));
            let gs = b.shape(g);
            let output_padding = deconv_output_padding(op, &xs, &dys, &gs, stride, pad, dilation)?;
            let gx = if want.at(0) {
                Some(b.apply(
                    Op::Deconvolution {
                        stride: stride.clone(),
                        pad: pad.clone(),
                        dilation: dilation.clone(),
                        output_padding,
                        groups: *groups,
                        no_bias: true,
                    },
                    &[dy, g],
                )?)
            } else {
                None
            };
            let gdy = if want.at(1) {
                Some(b.apply(
                    Op::Convolution {
                        stride: stride.clone(),
                        pad: pad.clone(),
                        dilation: dilation.clone(),
                        groups: *groups,
                        no_bias: true,
                    },
                    &[x, g],
                )?)
            } else {
                None
            };
            Ok(vec![gx, gdy])
        }
        Op::Pooling {
            kind,
            kernel,
            stride,
            pad,
            global,
            count_include_pad,
        } => {
            expect_inputs(op, inputs, 1)?;
            let gx = b.apply(
                Op::PoolingGrad {
                    kind: *kind,
                    kernel: kernel.clone(),
                    stride: stride.clone(),
                    pad: pad.clone(),
                    global: *global,
                    count_include_pad: *count_include_pad,
                },
                &[&inputs[0], g],
            )?;
            Ok(vec![Some(gx)])
        }
        Op::PoolingGrad {
            kind,
            kernel,
            stride,
            pad,
            global,
            count_include_pad,
        } => {
            expect_inputs(op, inputs, 2)?;
            match kind {
                // Average pooling's gradient is its adjoint: average pooling again (same
                // divisors). It does not depend on x.
                PoolKind::Avg => {
                    let gdy = b.apply(
                        Op::Pooling {
                            kind: PoolKind::Avg,
                            kernel: kernel.clone(),
                            stride: stride.clone(),
                            pad: pad.clone(),
                            global: *global,
                            count_include_pad: *count_include_pad,
                        },
                        &[g],
                    )?;
                    Ok(vec![None, Some(gdy)])
                }
                PoolKind::Max => Err(Error::invalid(
                    op.name(),
                    "the gradient of max pooling's gradient (a second derivative of max \
                     pooling) is not supported",
                )),
            }
        }
        Op::BatchNorm {
            eps,
            axis,
            use_batch_stats,
        } => {
            expect_inputs(op, inputs, 5)?;
            batch_norm(b, op, *eps, *axis, *use_batch_stats, inputs, g, want)
        }
        Op::LayerNorm { axis, eps } => {
            expect_inputs(op, inputs, 3)?;
            let (x, gamma) = (&inputs[0], &inputs[1]);
            let xs = b.shape(x);
            let ax = xs.axis(*axis, op.name())?;
            let (xhat, rstd) = normalize(b, x, &[ax], *eps)?;
            let gx = if want.at(0) {
                Some(normalized_input_grad(b, g, gamma, &xhat, &rstd, ax, &[ax])?)
            } else {
                None
            };
            let others = other_axes(xs.rank(), ax);
            let (ggamma, gbeta) = scale_shift_grads(b, g, &xhat, &others, want)?;
            Ok(vec![gx, ggamma, gbeta])
        }
        Op::Dropout { p, seed } => {
            expect_inputs(op, inputs, 1)?;
            // The same op on ones reproduces the mask, already scaled by 1/(1-p).
            let ones = b.ones_like(&inputs[0])?;
            let mask = b.apply(Op::Dropout { p: *p, seed: *seed }, &[&ones])?;
            Ok(vec![Some(b.binary(Mul, g, &mask)?)])
        }
        _ => Err(Error::invalid(op.name(), "not a neural-network op")),
    }
}

/// `(softmax(logits) - one_hot(labels)) * g`, labels clipped as the forward op clips them.
fn softmax_cross_entropy<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    logits: &B::Value,
    labels: &B::Value,
    g: &B::Value,
) -> Result<Vec<Option<B::Value>>> {
    let ls = b.shape(logits);
    if ls.rank() != 2 || ls[1] == 0 {
        return Err(Error::shape(
            op.name(),
            format!("vjp needs logits [N, C] with C >= 1, got {ls}"),
        ));
    }
    let classes = ls[1];
    let p = b.apply(Op::Softmax { axis: -1 }, &[logits])?;
    let labels = b.apply(
        Op::Clip {
            min: 0.0,
            max: (classes - 1) as f64,
        },
        &[labels],
    )?;
    let onehot = b.apply(
        Op::OneHot {
            depth: classes,
            on_value: 1.0,
            off_value: 0.0,
            dtype: b.dtype(logits),
        },
        &[&labels],
    )?;
    let d = b.binary(Sub, &p, &onehot)?;
    let gcol = b.reshape(g, &Shape::new(&[ls[0], 1]))?;
    Ok(vec![Some(b.binary(Mul, &d, &gcol)?), None])
}

/// The `output_padding` that makes a deconvolution of `dy` (spatial dims of `dys`) with
/// kernel dims from `ws` come out at `xs`'s spatial size: the part of the input that the
/// convolution's floor division dropped.
fn deconv_output_padding(
    op: &Op,
    xs: &Shape,
    dys: &Shape,
    ws: &Shape,
    stride: &[usize],
    pad: &[usize],
    dilation: &[usize],
) -> Result<Vec<usize>> {
    let bad = || {
        Error::shape(
            op.name(),
            format!(
                "vjp: input {xs}, output {dys}, weight {ws} with stride {stride:?}, pad {pad:?}, \
                 dilation {dilation:?} do not describe a convolution"
            ),
        )
    };
    if xs.rank() < 3 || dys.rank() != xs.rank() || ws.rank() != xs.rank() {
        return Err(bad());
    }
    let spatial = xs.rank() - 2;
    if stride.len() != spatial || pad.len() != spatial || dilation.len() != spatial {
        return Err(bad());
    }
    (0..spatial)
        .map(|i| {
            let (inp, out, k) = (xs[2 + i] as i64, dys[2 + i] as i64, ws[2 + i] as i64);
            let (s, p, d) = (stride[i] as i64, pad[i] as i64, dilation[i] as i64);
            let covered = (out - 1) * s - 2 * p + d * (k - 1) + 1;
            let extra = inp - covered;
            if extra < 0 {
                Err(bad())
            } else {
                Ok(extra as usize)
            }
        })
        .collect()
}

/// The shape `[1, .., C, .., 1]` that puts a per-channel vector on axis `ax` of `xs`.
fn channel_shape(xs: &Shape, ax: usize) -> Shape {
    let mut s = vec![1usize; xs.rank()];
    s[ax] = xs[ax];
    Shape::from(s)
}

/// `x` normalized over `axes`: `xhat = (x - mean) * rstd` with `rstd = 1/sqrt(var + eps)`
/// (biased variance, kept dims). Returns `(xhat, rstd)`.
fn normalize<B: VjpBuilder>(
    b: &mut B,
    x: &B::Value,
    axes: &[usize],
    eps: f64,
) -> Result<(B::Value, B::Value)> {
    let mu = b.reduce(ReduceOp::Mean, x, axes, true)?;
    let xc = b.binary(Sub, x, &mu)?;
    let sq = b.unary(UnaryOp::Square, &xc)?;
    let var = b.reduce(ReduceOp::Mean, &sq, axes, true)?;
    let ve = b.scalar(Add, &var, eps)?;
    let rstd = b.unary(UnaryOp::Rsqrt, &ve)?;
    let xhat = b.binary(Mul, &xc, &rstd)?;
    Ok((xhat, rstd))
}

/// The input gradient of `y = xhat * gamma + beta` when the statistics are `x`'s own over
/// `axes`: `rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))`, `gxhat = g * gamma`
/// (gamma lies along axis `ax`).
fn normalized_input_grad<B: VjpBuilder>(
    b: &mut B,
    g: &B::Value,
    gamma: &B::Value,
    xhat: &B::Value,
    rstd: &B::Value,
    ax: usize,
    axes: &[usize],
) -> Result<B::Value> {
    let xs = b.shape(xhat);
    let gam = b.reshape(gamma, &channel_shape(&xs, ax))?;
    let gxhat = b.binary(Mul, g, &gam)?;
    let m1 = b.reduce(ReduceOp::Mean, &gxhat, axes, true)?;
    let gxx = b.binary(Mul, &gxhat, xhat)?;
    let m2 = b.reduce(ReduceOp::Mean, &gxx, axes, true)?;
    let t = b.binary(Mul, xhat, &m2)?;
    let d = b.binary(Sub, &gxhat, &m1)?;
    let d = b.binary(Sub, &d, &t)?;
    b.binary(Mul, rstd, &d)
}

/// The gradients of gamma and beta (inputs 1 and 2) in `y = xhat * gamma + beta`: sums of
/// `g * xhat` and `g` over every axis but the channel's (`others`).
fn scale_shift_grads<B: VjpBuilder>(
    b: &mut B,
    g: &B::Value,
    xhat: &B::Value,
    others: &[usize],
    want: Wanted<'_>,
) -> Result<Pair<B::Value>> {
    let ggamma = if want.at(1) {
        let gxh = b.binary(Mul, g, xhat)?;
        Some(b.sum(&gxh, others, false)?)
    } else {
        None
    };
    let gbeta = if want.at(2) {
        Some(b.sum(g, others, false)?)
    } else {
        None
    };
    Ok((ggamma, gbeta))
}

#[allow(clippy::too_many_arguments)]
fn batch_norm<B: VjpBuilder>(
    b: &mut B,
    op: &Op,
    eps: f64,
    axis: isize,
    use_batch_stats: bool,
    inputs: &[B::Value],
    g: &B::Value,
    want: Wanted<'_>,
) -> Result<Vec<Option<B::Value>>> {
    let (x, gamma) = (&inputs[0], &inputs[1]);
    let xs = b.shape(x);
    let ax = xs.axis(axis, op.name())?;
    let others = other_axes(xs.rank(), ax);
    let (xhat, gx) = if use_batch_stats {
        let (xhat, rstd) = normalize(b, x, &others, eps)?;
        let gx = if want.at(0) {
            Some(normalized_input_grad(
                b, g, gamma, &xhat, &rstd, ax, &others,
            )?)
        } else {
            None
        };
        (xhat, gx)
    } else {
        // With fixed statistics the op is affine in x.
        let cs = channel_shape(&xs, ax);
        let mean = b.reshape(&inputs[3], &cs)?;
        let var = b.reshape(&inputs[4], &cs)?;
        let ve = b.scalar(Add, &var, eps)?;
        let rstd = b.unary(UnaryOp::Rsqrt, &ve)?;
        let xc = b.binary(Sub, x, &mean)?;
        let xhat = b.binary(Mul, &xc, &rstd)?;
        let gx = if want.at(0) {
            let gam = b.reshape(gamma, &cs)?;
            let scale = b.binary(Mul, &gam, &rstd)?;
            Some(b.binary(Mul, g, &scale)?)
        } else {
            None
        };
        (xhat, gx)
    };
    let (ggamma, gbeta) = scale_shift_grads(b, g, &xhat, &others, want)?;
    Ok(vec![gx, ggamma, gbeta, None, None])
}
