//! MXNet's fused `RNN` op (modes `lstm`, `gru`, `rnn_tanh`, `rnn_relu`; several layers,
//! bidirectional, state outputs), unrolled into kiln ops over the static sequence length.
//!
//! Inputs: `data [T, N, I]` (the op is always time-major; gluon's `NTC` layers add a
//! `SwapAxis` around it), `parameters` (one flat vector), `state [L*D, N, H]` and, for LSTM,
//! `state_cell [L*D, N, H]`. Outputs: `out [T, N, D*H]`, then with `state_outputs` the final
//! `hy [L*D, N, H]` and (LSTM) `cy`.
//!
//! The flat parameter vector packs, as cuDNN does, every weight before every bias: for each
//! layer, for each direction, `W_x [G*H, in]` then `W_h [G*H, H]`; then for each layer and
//! direction `b_x [G*H]` then `b_h [G*H]`, with `G` gates stacked in the order
//! `i, f, g, o` (LSTM), `r, z, n` (GRU). `in` is `I` for layer 0 and `D*H` above.
//! Per step (MXNet's definitions):
//!
//! - LSTM: `i, f, o = σ(.)`, `g = tanh(.)`, `c' = f c + i g`, `h' = o tanh(c')`
//! - GRU: `r, z = σ(x_r + h_r)`, `n = tanh(x_n + r (W_hn h + b_hn))`, `h' = (1 - z) n + z h`
//! - RNN: `h' = tanh(.)` or `relu(.)`
//!
//! where each `(.)` is `W_x x + b_x + W_h h + b_h` restricted to that gate's rows.

use super::{Attrs, ConvertFn, Cx, Val};
use crate::mxnet::symbol::SymNode;
use kiln_ir::{BinaryOp, Error, NodeId, Op, Result, UnaryOp};

pub(super) fn lookup(op: &str) -> Option<ConvertFn> {
    Some(match op {
        "RNN" => rnn,
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Lstm,
    Gru,
    Tanh,
    Relu,
}

impl Mode {
    fn gates(self) -> usize {
        match self {
            Mode::Lstm => 4,
            Mode::Gru => 3,
            Mode::Tanh | Mode::Relu => 1,
        }
    }
}

/// The size of the flat parameter vector for these settings.
pub(crate) fn param_count(
    gates: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    dirs: usize,
) -> usize {
    let gh = gates * hidden;
    let mut total = 0;
    for l in 0..layers {
        let inp = if l == 0 { input } else { dirs * hidden };
        total += dirs * (gh * inp + gh * hidden + 2 * gh);
    }
    total
}

struct Unroll {
    mode: Mode,
    hidden: usize,
    batch: usize,
    clip: Option<(f64, f64)>,
}

impl Unroll {
    /// Rows `[k*H, (k+1)*H)` of a `[N, G*H]` value: gate `k`.
    fn gate(&self, cx: &mut Cx<'_>, x: NodeId, k: usize) -> Result<NodeId> {
        if self.mode.gates() == 1 {
            return Ok(x);
        }
        cx.slice_axis(x, 1, k * self.hidden, (k + 1) * self.hidden)
    }

    /// One direction of one layer over the whole sequence: returns the per-step outputs in
    /// time order and the final `h` (and `c`).
    #[allow(clippy::too_many_arguments)]
    fn direction(
        &self,
        cx: &mut Cx<'_>,
        x: NodeId,
        steps: usize,
        reverse: bool,
        w: [NodeId; 4],
        mut h: NodeId,
        mut c: Option<NodeId>,
    ) -> Result<(Vec<NodeId>, NodeId, Option<NodeId>)> {
        let [wx, wh, bx, bh] = w;
        let (n, gh) = (self.batch, self.mode.gates() * self.hidden);
        // Input projections of every step at once: [T, N, G*H].
        let xp = cx.op(
            Op::FullyConnected {
                flatten: false,
                no_bias: false,
            },
            &[x, wx, bx],
        )?;
        let mut outs = vec![h; steps];
        for s in 0..steps {
            let t = if reverse { steps - 1 - s } else { s };
            let xt = cx.slice_axis(xp, 0, t, t + 1)?;
            let xt = cx.reshape(xt, &[n, gh])?;
            let hp = cx.op(
                Op::FullyConnected {
                    flatten: false,
                    no_bias: false,
                },
                &[h, wh, bh],
            )?;
            match self.mode {
                Mode::Lstm => {
                    let sum = cx.binary(BinaryOp::Add, xt, hp)?;
                    let gi = self.gate(cx, sum, 0)?;
                    let gf = self.gate(cx, sum, 1)?;
                    let gg = self.gate(cx, sum, 2)?;
                    let go = self.gate(cx, sum, 3)?;
                    let i = cx.unary(UnaryOp::Sigmoid, gi)?;
                    let f = cx.unary(UnaryOp::Sigmoid, gf)?;
                    let g = cx.unary(UnaryOp::Tanh, gg)?;
                    let o = cx.unary(UnaryOp::Sigmoid, go)?;
                    let c_prev = c.ok_or_else(|| Error::Graph("LSTM without a cell".into()))?;
                    let fc = cx.binary(BinaryOp::Mul, f, c_prev)?;
                    let ig = cx.binary(BinaryOp::Mul, i, g)?;
                    let mut c_new = cx.binary(BinaryOp::Add, fc, ig)?;
                    if let Some((min, max)) = self.clip {
                        c_new = cx.op(Op::Clip { min, max }, &[c_new])?;
                    }
                    let tc = cx.unary(UnaryOp::Tanh, c_new)?;
                    h = cx.binary(BinaryOp::Mul, o, tc)?;
                    c = Some(c_new);
                }
                Mode::Gru => {
                    let (xr, xz, xn) = (
                        self.gate(cx, xt, 0)?,
                        self.gate(cx, xt, 1)?,
                        self.gate(cx, xt, 2)?,
                    );
                    let (hr, hz, hn) = (
                        self.gate(cx, hp, 0)?,
                        self.gate(cx, hp, 1)?,
                        self.gate(cx, hp, 2)?,
                    );
                    let sr = cx.binary(BinaryOp::Add, xr, hr)?;
                    let r = cx.unary(UnaryOp::Sigmoid, sr)?;
                    let sz = cx.binary(BinaryOp::Add, xz, hz)?;
                    let z = cx.unary(UnaryOp::Sigmoid, sz)?;
                    let rh = cx.binary(BinaryOp::Mul, r, hn)?;
                    let sn = cx.binary(BinaryOp::Add, xn, rh)?;
                    let nn = cx.unary(UnaryOp::Tanh, sn)?;
                    // (1 - z) n + z h = n + z (h - n)
                    let d = cx.binary(BinaryOp::Sub, h, nn)?;
                    let zd = cx.binary(BinaryOp::Mul, z, d)?;
                    h = cx.binary(BinaryOp::Add, nn, zd)?;
                }
                Mode::Tanh | Mode::Relu => {
                    let sum = cx.binary(BinaryOp::Add, xt, hp)?;
                    let f = if self.mode == Mode::Tanh {
                        UnaryOp::Tanh
                    } else {
                        UnaryOp::Relu
                    };
                    h = cx.unary(f, sum)?;
                }
            }
            outs[t] = h;
        }
        Ok((outs, h, c))
    }
}

fn rnn(cx: &mut Cx<'_>, n: &SymNode) -> Result<Vec<Val>> {
    let a = Attrs::new(n);
    let mode = match a.get("mode").ok_or_else(|| a.missing("mode"))? {
        "lstm" => Mode::Lstm,
        "gru" => Mode::Gru,
        "rnn_tanh" => Mode::Tanh,
        "rnn_relu" => Mode::Relu,
        other => {
            return Err(Error::invalid(
                "RNN",
                format!(
                    "node {:?}: mode {other} (lstm, gru, rnn_tanh, rnn_relu)",
                    n.name
                ),
            ))
        }
    };
    let hidden = a.req_usize("state_size")?;
    let layers = a.usize("num_layers", 1)?;
    let dirs = if a.bool("bidirectional", false)? {
        2
    } else {
        1
    };
    let state_outputs = a.bool("state_outputs", false)?;
    if a.opt_int("projection_size")?.is_some() {
        return Err(Error::invalid(
            "RNN",
            format!("node {:?}: projection_size is not supported", n.name),
        ));
    }
    if a.bool("use_sequence_length", false)? {
        return Err(Error::invalid(
            "RNN",
            format!(
                "node {:?}: use_sequence_length=True is not supported",
                n.name
            ),
        ));
    }
    let clip = match (
        a.opt_float("lstm_state_clip_min")?,
        a.opt_float("lstm_state_clip_max")?,
    ) {
        (Some(lo), Some(hi)) if mode == Mode::Lstm => Some((lo, hi)),
        _ => None,
    };
    if hidden == 0 || layers == 0 {
        return Err(Error::invalid(
            "RNN",
            format!(
                "node {:?}: state_size and num_layers must be positive",
                n.name
            ),
        ));
    }

    let x = cx.input(n, 0)?;
    let xty = cx.ty(x)?;
    let xd = xty.shape.dims().to_vec();
    if xd.len() != 3 {
        return Err(Error::shape(
            "RNN",
            format!(
                "node {:?}: data is {}, expected [T, N, I]",
                n.name, xty.shape
            ),
        ));
    }
    let (steps, batch, input) = (xd[0], xd[1], xd[2]);
    if steps == 0 {
        return Err(Error::shape(
            "RNN",
            format!("node {:?}: an empty sequence", n.name),
        ));
    }
    let params = cx.input(n, 1)?;
    let pd = cx.dims(params)?;
    let want = param_count(mode.gates(), input, hidden, layers, dirs);
    if pd != [want] {
        return Err(Error::shape(
            "RNN",
            format!(
                "node {:?}: the parameters are {pd:?}, {mode:?} with input {input}, state_size \
                 {hidden}, {layers} layer(s), {dirs} direction(s) needs [{want}]",
                n.name
            ),
        ));
    }
    let sdims = [layers * dirs, batch, hidden];
    let h0 = cx.input_shaped(n, 2, &sdims, xty.dtype)?;
    let c0 = if mode == Mode::Lstm {
        Some(cx.input_shaped(n, 3, &sdims, xty.dtype)?)
    } else {
        None
    };

    let un = Unroll {
        mode,
        hidden,
        batch,
        clip,
    };
    let gh = mode.gates() * hidden;
    // Offsets into the flat vector: weights, then biases.
    let mut w_off = 0usize;
    let mut b_off: usize = (0..layers)
        .map(|l| {
            let inp = if l == 0 { input } else { dirs * hidden };
            dirs * (gh * inp + gh * hidden)
        })
        .sum();
    let take = |cx: &mut Cx<'_>, off: &mut usize, dims: &[usize]| -> Result<NodeId> {
        let len: usize = dims.iter().product();
        let s = cx.slice_axis(params, 0, *off, *off + len)?;
        *off += len;
        cx.reshape(s, dims)
    };
    let state_of = |cx: &mut Cx<'_>, s: NodeId, k: usize| -> Result<NodeId> {
        let sl = cx.slice_axis(s, 0, k, k + 1)?;
        cx.reshape(sl, &[batch, hidden])
    };

    let mut layer_in = x;
    let mut hy = Vec::with_capacity(layers * dirs);
    let mut cy = Vec::with_capacity(layers * dirs);
    for l in 0..layers {
        let inp = if l == 0 { input } else { dirs * hidden };
        let mut dir_outs = Vec::with_capacity(dirs);
        for d in 0..dirs {
            let wx = take(cx, &mut w_off, &[gh, inp])?;
            let wh = take(cx, &mut w_off, &[gh, hidden])?;
            let bx = take(cx, &mut b_off, &[gh])?;
            let bh = take(cx, &mut b_off, &[gh])?;
            let k = l * dirs + d;
            let h = state_of(cx, h0, k)?;
            let c = match c0 {
                Some(c0) => Some(state_of(cx, c0, k)?),
                None => None,
            };
            let (outs, h_last, c_last) =
                un.direction(cx, layer_in, steps, d == 1, [wx, wh, bx, bh], h, c)?;
            dir_outs.push(cx.op(Op::Stack { axis: 0 }, &outs)?);
            hy.push(h_last);
            if let Some(c) = c_last {
                cy.push(c);
            }
        }
        layer_in = if dirs == 1 {
            dir_outs[0]
        } else {
            cx.op(Op::Concat { axis: 2 }, &dir_outs)?
        };
    }
    let mut outs = vec![Val::Node(layer_in)];
    if state_outputs {
        outs.push(Val::Node(cx.op(Op::Stack { axis: 0 }, &hy)?));
        if mode == Mode::Lstm {
            outs.push(Val::Node(cx.op(Op::Stack { axis: 0 }, &cy)?));
        }
    }
    Ok(outs)
}
