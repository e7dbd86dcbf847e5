//! Pooling and its gradient, over one enumeration of the pooling windows.
//!
//! The window of output `(n, c, oy, ox)` covers input rows `oy*sh - ph ..` and columns
//! `ox*sw - pw ..` for `kernel` elements each; positions in the padding are skipped (max
//! pooling never sees them; average pooling counts them in the divisor only when
//! `count_include_pad`). Global pooling is a window over the whole spatial extent. 1-D pooling
//! is lifted to 2-D with a height of 1.

use super::{hw, Result};
use crate::error::Error;
use crate::op::{Op, PoolKind};
use crate::tensor::{TensorType, TensorView};

/// One pooling's geometry, 1-D lifted to 2-D.
struct PoolGeom {
    /// Number of `(n, c)` planes.
    planes: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
    kind: PoolKind,
    count_include_pad: bool,
}

/// The attributes of a `Pooling` or `PoolingGrad` op.
struct PoolAttrs<'a> {
    kind: PoolKind,
    kernel: &'a [usize],
    stride: &'a [usize],
    pad: &'a [usize],
    global: bool,
    count_include_pad: bool,
}

fn attrs(op: &Op) -> Result<PoolAttrs<'_>> {
    match op {
        Op::Pooling {
            kind,
            kernel,
            stride,
            pad,
            global,
            count_include_pad,
        }
        | Op::PoolingGrad {
            kind,
            kernel,
            stride,
            pad,
            global,
            count_include_pad,
        } => Ok(PoolAttrs {
            kind: *kind,
            kernel,
            stride,
            pad,
            global: *global,
            count_include_pad: *count_include_pad,
        }),
        _ => Err(Error::invalid(op.name(), "not a pooling op")),
    }
}

impl PoolGeom {
    /// The geometry of pooling an NCW / NCHW input `x` into `y`.
    fn new(a: &PoolAttrs<'_>, x: &[usize], y: &[usize]) -> Self {
        let (h, w) = hw(&x[2..], 1);
        let (oh, ow) = hw(&y[2..], 1);
        let ((kh, kw), (sh, sw), (ph, pw)) = if a.global {
            ((h, w), (1, 1), (0, 0))
        } else {
            (hw(a.kernel, 1), hw(a.stride, 1), hw(a.pad, 0))
        };
        PoolGeom {
            planes: x[0] * x[1],
            h,
            w,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
            oh,
            ow,
            kind: a.kind,
            count_include_pad: a.count_include_pad,
        }
    }

    /// Calls `f(output_index, window)` for every output in row-major order, `window` holding
    /// the input indices of the window's real (non-padding) elements in row-major order.
    fn for_each_window(&self, mut f: impl FnMut(usize, &[usize])) {
        let mut window = Vec::with_capacity(self.kh * self.kw);
        for plane in 0..self.planes {
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    window.clear();
                    for ky in 0..self.kh {
                        let Some(iy) = (oy * self.sh + ky).checked_sub(self.ph) else {
                            continue;
                        };
                        if iy >= self.h {
                            continue;
                        }
                        for kx in 0..self.kw {
                            let Some(ix) = (ox * self.sw + kx).checked_sub(self.pw) else {
                                continue;
                            };
                            if ix < self.w {
                                window.push((plane * self.h + iy) * self.w + ix);
                            }
                        }
                    }
                    f((plane * self.oh + oy) * self.ow + ox, &window);
                }
            }
        }
    }

    /// What an average divides by: the full kernel area, or only the real elements.
    fn divisor(&self, window: &[usize]) -> f64 {
        if self.count_include_pad {
            (self.kh * self.kw) as f64
        } else {
            window.len() as f64
        }
    }
}

/// The index (into `x`) of the first maximal element of a non-empty window: later elements
/// replace the running maximum only when strictly greater.
fn first_argmax(x: &[f64], window: &[usize]) -> usize {
    let mut best = window[0];
    for &i in &window[1..] {
        if x[i] > x[best] {
            best = i;
        }
    }
    best
}

/// `pooling (x) -> y`.
pub(super) fn pooling(op: &Op, x: &TensorView<'_>, out: &TensorType) -> Result<Vec<f64>> {
    let geom = PoolGeom::new(&attrs(op)?, x.shape.dims(), out.shape.dims());
    let xv = x.data.to_f64_vec();
    let mut y = vec![0.0; out.shape.numel()];
    // infer guarantees pad < kernel, so every window holds at least one real element.
    geom.for_each_window(|yi, window| {
        y[yi] = match geom.kind {
            PoolKind::Max => xv[first_argmax(&xv, window)],
            PoolKind::Avg => window.iter().map(|&i| xv[i]).sum::<f64>() / geom.divisor(window),
        };
    });
    Ok(y)
}

/// `pooling_grad (x, dy) -> dx`: max routes each output's gradient to the first maximal
/// element of its window; average spreads it evenly (divided as the forward divides) over
/// the window's real elements. Overlapping windows accumulate.
pub(super) fn pooling_grad(
    op: &Op,
    x: &TensorView<'_>,
    dy: &TensorView<'_>,
    out: &TensorType,
) -> Result<Vec<f64>> {
    let geom = PoolGeom::new(&attrs(op)?, x.shape.dims(), dy.shape.dims());
    let xv = x.data.to_f64_vec();
    let dyv = dy.data.to_f64_vec();
    let mut dx = vec![0.0; out.shape.numel()];
    geom.for_each_window(|yi, window| match geom.kind {
        PoolKind::Max => dx[first_argmax(&xv, window)] += dyv[yi],
        PoolKind::Avg => {
            let share = dyv[yi] / geom.divisor(window);
            for &i in window {
                dx[i] += share;
            }
        }
    });
    Ok(dx)
}
