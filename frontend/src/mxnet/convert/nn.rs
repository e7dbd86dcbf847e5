//! Layer ops: FullyConnected, Convolution, Deconvolution, Pooling, Activation, LeakyReLU,
//! BatchNorm, LayerNorm, Dropout, Embedding, softmax and the loss heads (in inference).

use super::elementwise::{erf_of, log_sigmoid_of, mish_of, softsign_of};
use super::{one, Attrs, ConvertFn, Cx, Val};
use crate::mxnet::symbol::SymNode;
use kiln_ir::{BinaryOp, Error, NodeId, Op, PoolKind, Result, Tensor, UnaryOp};

pub(super) fn lookup(op: &str) -> Option<ConvertFn> {
    Some(match op {
        "FullyConnected" => fully_connected,
        "Convolution" | "Convolution_v1" => convolution,
        "Deconvolution" => deconvolution,
        "Pooling" | "Pooling_v1" => pooling,
        "Activation" => activation,
        "LeakyReLU" => leaky_relu,
        "BatchNorm" | "BatchNorm_v1" => batch_norm,
        "LayerNorm" => layer_norm,
        "Dropout" => dropout,
        "Embedding" => embedding,
        "softmax" | "log_softmax" => softmax,
        "SoftmaxOutput" | "Softmax" => softmax_output,
        "SoftmaxActivation" => softmax_activation,
        "LinearRegressionOutput" | "MAERegressionOutput" => regression_identity,
        "LogisticRegressionOutput" => logistic_regression,
        _ => return None,
    })
}

fn fully_connected(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let units = a.req_usize("num_hidden")?;
    let no_bias = a.bool("no_bias", false)?;
    let flatten = a.bool("flatten", true)?;
    let x = cx.input(n, 0)?;
    let w = cx.input(n, 1)?;
    let wd = cx.dims(w)?;
    if wd.first() != Some(&units) {
        return Err(Error::shape(
            "FullyConnected",
            format!("num_hidden is {units}, but the weight has shape {wd:?}"),
        ));
    }
    let mut args = vec![x, w];
    if !no_bias {
        args.push(cx.input(n, 2)?);
    }
    one(cx.op(Op::FullyConnected { flatten, no_bias }, &args)?)
}

/// Kernel, stride, dilation and padding of a convolution, defaults filled in.
struct ConvGeom {
    kernel: Vec<usize>,
    stride: Vec<usize>,
    dilate: Vec<usize>,
    pad: Vec<usize>,
    groups: usize,
    no_bias: bool,
}

fn conv_geom(n: &SymNode, no_bias_default: bool) -> Result<ConvGeom> {
    let a = Attrs::new(n);
    let kernel = a.utuple("kernel")?.ok_or_else(|| a.missing("kernel"))?;
    let k = kernel.len();
    if !(1..=2).contains(&k) {
        return Err(Error::invalid(
            n.op.clone(),
            format!(
                "node {:?}: a {k}-D kernel {kernel:?}; kiln supports 1-D and 2-D",
                n.name
            ),
        ));
    }
    if let Some(layout) = a.get("layout") {
        if layout != "NCW" && layout != "NCHW" {
            return Err(Error::invalid(
                n.op.clone(),
                format!(
                    "node {:?}: layout {layout}; kiln supports NCW and NCHW",
                    n.name
                ),
            ));
        }
    }
    let per_dim = |key: &str, default: usize| -> Result<Vec<usize>> {
        match a.utuple(key)? {
            None => Ok(vec![default; k]),
            Some(v) if v.is_empty() => Ok(vec![default; k]),
            Some(v) if v.len() == k => Ok(v),
            Some(v) => Err(Error::invalid(
                n.op.clone(),
                format!(
                    "node {:?}: {key} {v:?} does not have one entry per kernel dim ({k})",
                    n.name
                ),
            )),
        }
    };
    Ok(ConvGeom {
        stride: per_dim("stride", 1)?,
        dilate: per_dim("dilate", 1)?,
        pad: per_dim("pad", 0)?,
        kernel,
        groups: a.usize("num_group", 1)?,
        no_bias: a.bool("no_bias", no_bias_default)?,
    })
}

fn convolution(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let geo = conv_geom(n, false)?;
    let x = cx.input(n, 0)?;
    let w = cx.input(n, 1)?;
    let mut args = vec![x, w];
    if !geo.no_bias {
        args.push(cx.input(n, 2)?);
    }
    one(cx.op(
        Op::Convolution {
            stride: geo.stride,
            pad: geo.pad,
            dilation: geo.dilate,
            groups: geo.groups,
            no_bias: geo.no_bias,
        },
        &args,
    )?)
}

fn deconvolution(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    // MXNet's Deconvolution has no bias unless asked.
    let geo = conv_geom(n, true)?;
    let a = Attrs::new(n);
    if a.utuple("target_shape")?.is_some_and(|t| !t.is_empty()) {
        return Err(Error::invalid(
            "Deconvolution",
            format!(
                "node {:?}: target_shape is not supported (give pad and adj instead)",
                n.name
            ),
        ));
    }
    let k = geo.kernel.len();
    let adj = match a.utuple("adj")? {
        Some(v) if v.len() == k => v,
        _ => vec![0; k],
    };
    let x = cx.input(n, 0)?;
    let w = cx.input(n, 1)?;
    let mut args = vec![x, w];
    if !geo.no_bias {
        args.push(cx.input(n, 2)?);
    }
    one(cx.op(
        Op::Deconvolution {
            stride: geo.stride,
            pad: geo.pad,
            dilation: geo.dilate,
            output_padding: adj,
            groups: geo.groups,
            no_bias: geo.no_bias,
        },
        &args,
    )?)
}

/// Pads `x` along `axis` with `before` and `after` copies of `value` (a concat of constants).
fn pad_axis(
    cx: &mut Cx<'_>,
    x: NodeId,
    axis: usize,
    before: usize,
    after: usize,
    value: f64,
) -> Result<NodeId> {
    if before == 0 && after == 0 {
        return Ok(x);
    }
    let ty = cx.ty(x)?;
    let mut parts = Vec::new();
    let block = |cx: &mut Cx<'_>, len: usize| -> Result<NodeId> {
        let mut dims = ty.shape.dims().to_vec();
        dims[axis] = len;
        cx.full(&dims, ty.dtype, value)
    };
    if before > 0 {
        parts.push(block(cx, before)?);
    }
    parts.push(x);
    if after > 0 {
        parts.push(block(cx, after)?);
    }
    cx.op(
        Op::Concat {
            axis: axis as isize,
        },
        &parts,
    )
}

fn pooling(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let pool_type = a.str_or("pool_type", "max");
    let (kind, sum) = match pool_type {
        "max" => (PoolKind::Max, false),
        "avg" => (PoolKind::Avg, false),
        "sum" => (PoolKind::Avg, true),
        other => {
            return Err(Error::invalid(
                "Pooling",
                format!(
                    "node {:?}: pool_type {other} is not supported (max, avg, sum are)",
                    n.name
                ),
            ))
        }
    };
    if let Some(layout) = a.get("layout") {
        if layout != "NCW" && layout != "NCHW" {
            return Err(Error::invalid(
                "Pooling",
                format!(
                    "node {:?}: layout {layout}; kiln supports NCW and NCHW",
                    n.name
                ),
            ));
        }
    }
    let x = cx.input(n, 0)?;
    let dims = cx.dims(x)?;
    let sp = dims.len().saturating_sub(2);
    if !(1..=2).contains(&sp) {
        return Err(Error::shape(
            "Pooling",
            format!(
                "node {:?}: input {dims:?}; kiln pools 1-D (NCW) and 2-D (NCHW) inputs",
                n.name
            ),
        ));
    }
    let spatial = &dims[2..];
    if a.bool("global_pool", false)? {
        let y = cx.op(
            Op::Pooling {
                kind,
                kernel: vec![1; sp],
                stride: vec![1; sp],
                pad: vec![0; sp],
                global: true,
                count_include_pad: true,
            },
            &[x],
        )?;
        if sum {
            let area: usize = spatial.iter().product();
            return one(cx.scalar(BinaryOp::Mul, y, area as f64, false)?);
        }
        return one(y);
    }
    let kernel = a.utuple("kernel")?.ok_or_else(|| a.missing("kernel"))?;
    let per_dim = |key: &str, default: usize| -> Result<Vec<usize>> {
        match a.utuple(key)? {
            None => Ok(vec![default; sp]),
            Some(v) if v.is_empty() => Ok(vec![default; sp]),
            Some(v) if v.len() == sp => Ok(v),
            Some(v) => Err(Error::invalid(
                "Pooling",
                format!(
                    "node {:?}: {key} {v:?} does not have one entry per spatial dim ({sp})",
                    n.name
                ),
            )),
        }
    };
    if kernel.len() != sp {
        return Err(Error::invalid(
            "Pooling",
            format!(
                "node {:?}: kernel {kernel:?} for an input with {sp} spatial dim(s)",
                n.name
            ),
        ));
    }
    let stride = per_dim("stride", 1)?;
    let pad = per_dim("pad", 0)?;
    let full = match a.str_or("pooling_convention", "valid") {
        "valid" => false,
        "full" => true,
        other => {
            return Err(Error::invalid(
                "Pooling",
                format!(
                    "node {:?}: pooling_convention {other} is not supported (valid, full are)",
                    n.name
                ),
            ))
        }
    };
    let cip = a.bool("count_include_pad", true)?;
    // Output sizes, and the extra right padding the `full` (ceil) convention needs.
    let mut out = Vec::with_capacity(sp);
    let mut extra = Vec::with_capacity(sp);
    for d in 0..sp {
        let (len, k, s, p) = (spatial[d], kernel[d], stride[d], pad[d]);
        if k == 0 || s == 0 || len + 2 * p < k {
            return Err(Error::shape(
                "Pooling",
                format!(
                    "node {:?}: kernel {kernel:?}, stride {stride:?}, pad {pad:?} do not fit input {dims:?}",
                    n.name
                ),
            ));
        }
        let span = len + 2 * p - k;
        let o = if full {
            span.div_ceil(s) + 1
        } else {
            span / s + 1
        };
        out.push(o);
        extra.push(((o - 1) * s + k).saturating_sub(len + 2 * p));
    }
    let no_extra = extra.iter().all(|&e| e == 0);
    if kind == PoolKind::Max {
        let mut xp = x;
        for (d, &e) in extra.iter().enumerate() {
            xp = pad_axis(cx, xp, 2 + d, 0, e, f64::NEG_INFINITY)?;
        }
        return one(cx.op(
            Op::Pooling {
                kind,
                kernel,
                stride,
                pad,
                global: false,
                count_include_pad: true,
            },
            &[xp],
        )?);
    }
    if no_extra && !sum {
        return one(cx.op(
            Op::Pooling {
                kind,
                kernel,
                stride,
                pad,
                global: false,
                count_include_pad: cip,
            },
            &[x],
        )?);
    }
    // Window sums over explicitly zero-padded input, then MXNet's divisor per window.
    let mut xp = x;
    for d in 0..sp {
        xp = pad_axis(cx, xp, 2 + d, pad[d], pad[d] + extra[d], 0.0)?;
    }
    let window: usize = kernel.iter().product();
    let avg = cx.op(
        Op::Pooling {
            kind: PoolKind::Avg,
            kernel: kernel.clone(),
            stride: stride.clone(),
            pad: vec![0; sp],
            global: false,
            count_include_pad: true,
        },
        &[xp],
    )?;
    let total = cx.scalar(BinaryOp::Mul, avg, window as f64, false)?;
    if sum {
        return one(total);
    }
    // MXNet: hstart = o*s - p, hend = min(hstart + k, len + p); with count_include_pad the
    // divisor is hend - hstart, otherwise the part of it inside [0, len).
    let counts: Vec<Vec<f64>> = (0..sp)
        .map(|d| {
            let (len, k, s, p) = (
                spatial[d] as i64,
                kernel[d] as i64,
                stride[d] as i64,
                pad[d] as i64,
            );
            (0..out[d] as i64)
                .map(|o| {
                    let start = o * s - p;
                    let end = (start + k).min(len + p);
                    if cip {
                        (end - start) as f64
                    } else {
                        (end.min(len) - start.max(0)).max(0) as f64
                    }
                })
                .collect()
        })
        .collect();
    let mut cdims = vec![1, 1];
    cdims.extend(&out);
    let values: Vec<f64> = if sp == 1 {
        counts[0].clone()
    } else {
        counts[0]
            .iter()
            .flat_map(|h| counts[1].iter().map(move |w| h * w))
            .collect()
    };
    let dtype = cx.ty(x)?.dtype;
    let c = Tensor::from_vec(values, cdims)?.cast(dtype);
    let c = cx.g.add_const(c)?;
    one(cx.binary(BinaryOp::Div, total, c)?)
}

pub(super) fn activation_of(cx: &mut Cx<'_>, n: &SymNode, act: &str, x: NodeId) -> Result<NodeId> {
    match act {
        "relu" => cx.unary(UnaryOp::Relu, x),
        "sigmoid" => cx.unary(UnaryOp::Sigmoid, x),
        "tanh" => cx.unary(UnaryOp::Tanh, x),
        "softrelu" => cx.unary(UnaryOp::Softrelu, x),
        "softsign" => softsign_of(cx, x),
        "log_sigmoid" => log_sigmoid_of(cx, x),
        "mish" => mish_of(cx, x),
        other => Err(Error::invalid(
            n.op.clone(),
            format!(
                "node {:?}: act_type {other} is not supported (relu, sigmoid, tanh, softrelu, \
                 softsign, log_sigmoid, mish are)",
                n.name
            ),
        )),
    }
}

fn activation(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let act = a.get("act_type").ok_or_else(|| a.missing("act_type"))?;
    let x = cx.input(n, 0)?;
    one(activation_of(cx, n, act, x)?)
}

/// `x > 0 ? x : neg`.
fn where_positive(cx: &mut Cx<'_>, x: NodeId, neg: NodeId) -> Result<NodeId> {
    let pos = cx.scalar(BinaryOp::Gt, x, 0.0, false)?;
    cx.op(Op::Where, &[pos, x, neg])
}

fn leaky_relu(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let act = a.str_or("act_type", "leaky");
    let slope = a.float("slope", 0.25)?;
    let x = cx.input(n, 0)?;
    let y = match act {
        "leaky" | "rrelu" => {
            // rrelu in inference uses the mean of its slope range.
            let s = if act == "rrelu" {
                (a.float("lower_bound", 0.125)? + a.float("upper_bound", 0.334)?) / 2.0
            } else {
                slope
            };
            let neg = cx.scalar(BinaryOp::Mul, x, s, false)?;
            where_positive(cx, x, neg)?
        }
        "prelu" => {
            let gamma = cx.input(n, 1)?;
            let (xd, gd) = (cx.dims(x)?, cx.dims(gamma)?);
            let numel: usize = gd.iter().product();
            let gamma = if numel > 1 && xd.len() >= 2 && gd.len() == 1 {
                let mut dims = vec![1; xd.len()];
                dims[1] = numel;
                cx.reshape(gamma, &dims)?
            } else {
                gamma
            };
            let neg = cx.binary(BinaryOp::Mul, x, gamma)?;
            where_positive(cx, x, neg)?
        }
        "elu" => {
            let e = cx.unary(UnaryOp::Expm1, x)?;
            let neg = cx.scalar(BinaryOp::Mul, e, slope, false)?;
            where_positive(cx, x, neg)?
        }
        "selu" => {
            const LAMBDA: f64 = 1.050_700_987_355_480_5;
            const ALPHA: f64 = 1.673_263_242_354_377_3;
            let e = cx.unary(UnaryOp::Expm1, x)?;
            let neg = cx.scalar(BinaryOp::Mul, e, ALPHA, false)?;
            let y = where_positive(cx, x, neg)?;
            cx.scalar(BinaryOp::Mul, y, LAMBDA, false)?
        }
        "gelu" => {
            // MXNet: 0.5 * x * (1 + erf(x / sqrt(2))).
            let s = cx.scalar(BinaryOp::Mul, x, std::f64::consts::FRAC_1_SQRT_2, false)?;
            let e = erf_of(cx, s)?;
            let e1 = cx.scalar(BinaryOp::Add, e, 1.0, false)?;
            let h = cx.scalar(BinaryOp::Mul, x, 0.5, false)?;
            cx.binary(BinaryOp::Mul, h, e1)?
        }
        other => {
            return Err(Error::invalid(
                "LeakyReLU",
                format!(
                    "node {:?}: act_type {other} is not supported (leaky, prelu, elu, selu, gelu, \
                     rrelu are)",
                    n.name
                ),
            ))
        }
    };
    one(y)
}

fn batch_norm(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let eps = a.float("eps", 1e-3)?;
    let axis = a.int("axis", 1)? as isize;
    let fix_gamma = a.bool("fix_gamma", true)?;
    let x = cx.input(n, 0)?;
    let ty = cx.ty(x)?;
    let c = *ty
        .shape
        .dims()
        .get(ty.shape.axis(axis, "BatchNorm")?)
        .ok_or_else(|| Error::shape("BatchNorm", "bad axis"))?;
    let gamma = if fix_gamma {
        cx.full(&[c], ty.dtype, 1.0)?
    } else {
        cx.input(n, 1)?
    };
    let beta = cx.input(n, 2)?;
    let mean = cx.input(n, 3)?;
    let var = cx.input(n, 4)?;
    cx.mark_aux(n, 3);
    cx.mark_aux(n, 4);
    one(cx.op(
        Op::BatchNorm {
            eps,
            axis,
            use_batch_stats: false,
        },
        &[x, gamma, beta, mean, var],
    )?)
}

fn layer_norm(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let eps = a.float("eps", 1e-5)?;
    let axis = a.int("axis", -1)? as isize;
    let x = cx.input(n, 0)?;
    let g = cx.input(n, 1)?;
    let b = cx.input(n, 2)?;
    one(cx.op(Op::LayerNorm { axis, eps }, &[x, g, b])?)
}

/// Inference: the identity (its second output, the mask, is not available).
fn dropout(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    Ok(vec![cx.val(n, 0)?])
}

fn embedding(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let idx = cx.input(n, 0)?;
    let w = cx.input(n, 1)?;
    one(cx.op(Op::Take { axis: 0 }, &[w, idx])?)
}

fn softmax(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    if a.bool("use_length", false)? {
        return Err(Error::invalid(
            n.op.clone(),
            format!("node {:?}: use_length=True is not supported", n.name),
        ));
    }
    let axis = a.int("axis", -1)? as isize;
    let mut x = cx.input(n, 0)?;
    if let Some(t) = a.opt_float("temperature")? {
        if t != 1.0 {
            x = cx.scalar(BinaryOp::Div, x, t, false)?;
        }
    }
    let op = if n.op == "log_softmax" {
        Op::LogSoftmax { axis }
    } else {
        Op::Softmax { axis }
    };
    let mut y = cx.op(op, &[x])?;
    if a.get("dtype").is_some() {
        let dtype = a.dtype("dtype", cx.ty(y)?.dtype)?;
        if dtype != cx.ty(y)?.dtype {
            y = cx.op(Op::Cast { dtype }, &[y])?;
        }
    }
    one(y)
}

/// Softmax over every axis but the first (`[N, ...]` seen as `[N, rest]`).
fn softmax_instance(cx: &mut Cx<'_>, x: NodeId) -> Result<NodeId> {
    let dims = cx.dims(x)?;
    if dims.len() <= 2 {
        return cx.op(Op::Softmax { axis: -1 }, &[x]);
    }
    let rest: usize = dims[1..].iter().product();
    let flat = cx.reshape(x, &[dims[0], rest])?;
    let s = cx.op(Op::Softmax { axis: -1 }, &[flat])?;
    cx.reshape(s, &dims)
}

/// `SoftmaxOutput` in inference: the softmax of its data (the label is not used).
fn softmax_output(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let x = cx.input(n, 0)?;
    let y = if a.bool("multi_output", false)? {
        cx.op(Op::Softmax { axis: 1 }, &[x])?
    } else if a.bool("preserve_shape", false)? {
        cx.op(Op::Softmax { axis: -1 }, &[x])?
    } else {
        softmax_instance(cx, x)?
    };
    one(y)
}

fn softmax_activation(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let x = cx.input(n, 0)?;
    match a.str_or("mode", "instance") {
        "instance" => one(softmax_instance(cx, x)?),
        "channel" => one(cx.op(Op::Softmax { axis: 1 }, &[x])?),
        other => Err(Error::invalid(
            "SoftmaxActivation",
            format!("node {:?}: mode {other} (instance or channel)", n.name),
        )),
    }
}

fn regression_identity(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    Ok(vec![cx.val(n, 0)?])
}

fn logistic_regression(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let x = cx.input(n, 0)?;
    one(cx.unary(UnaryOp::Sigmoid, x)?)
}
