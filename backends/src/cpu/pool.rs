//! Max and average pooling and their gradients over NCW / NCHW data (1-D lifted to 2-D with a height of 1).
//!
//! Semantics are the interpreter's: the window of output `(oy, ox)` starts at input
//! `(oy*sh - ph, ox*sw - pw)`; padding positions are skipped; max takes the first element
//! and replaces it only by strictly greater ones (so a NaN counts only when it comes first);
//! average sums in f64 in row-major window order and divides by the kernel area
//! (`count_include_pad`) or by the number of real elements. Planes `(n, c)` are split across
//! threads when the input is large.

use super::{checked_numel, data_of, tensor_of, threads, with_real, zeros, Real};
use kiln_ir::{Op, PoolKind, Tensor, TensorView};
use rayon::prelude::*;

/// Input elements from which planes are split across threads.
pub const PAR_MIN: usize = 1 << 15;

#[derive(Clone, Copy, Debug)]
struct Geom {
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
}

/// `(height, width)` of a per-spatial-dim list (exactly `nd` entries, as inference
/// requires), 1-D lifted with height `lift`.
fn hw(v: &[usize], nd: usize, lift: usize) -> Option<(usize, usize)> {
    match (v, nd) {
        ([w], 1) => Some((lift, *w)),
        ([h, w], 2) => Some((*h, *w)),
        _ => None,
    }
}

impl Geom {
    /// The window sweep along one dim: `(len + 2*pad - k) / stride + 1`.
    fn out_len(len: usize, k: usize, s: usize, p: usize) -> Option<usize> {
        Some(len.checked_add(p.checked_mul(2)?)?.checked_sub(k)? / s + 1)
    }

    /// True when the windows tile the input without overlap or padding (the usual
    /// `MaxPool2D(k, k)`): each input element belongs to at most one window.
    fn tiles(&self) -> bool {
        self.kh == self.sh && self.kw == self.sw && self.ph == 0 && self.pw == 0
    }

    /// [`Geom::plane`] for max pooling over 2×2 tiles: the same comparisons in the same
    /// order (the window's first element, then strictly greater ones in row-major order),
    /// without the general loop's bookkeeping.
    fn plane_max_2x2<T: Real>(&self, x: &[T], y: &mut [T]) {
        let w = self.w;
        for (oy, out_row) in y.chunks_exact_mut(self.ow).enumerate() {
            let r0 = &x[2 * oy * w..2 * oy * w + w];
            let r1 = &x[(2 * oy + 1) * w..(2 * oy + 1) * w + w];
            for ((out, a), b) in out_row
                .iter_mut()
                .zip(r0.chunks_exact(2))
                .zip(r1.chunks_exact(2))
            {
                let mut best = a[0];
                for v in [a[1], b[0], b[1]] {
                    if v > best {
                        best = v;
                    }
                }
                *out = best;
            }
        }
    }

    /// [`Geom::plane_grad`] for max pooling over tiles ([`Geom::tiles`]): every input
    /// element receives at most one window's gradient, so the interpreter's f64 sum
    /// `0 + g`, rounded, is `0 + g` in the element type (both exact; `-0` becomes `+0` in
    /// both), and `dx` (zero-filled) needs no accumulator.
    fn plane_grad_max_tiles<T: Real>(&self, x: &[T], dy: &[T], dx: &mut [T]) {
        let w = self.w;
        for oy in 0..self.oh {
            let y0 = oy * self.kh;
            for ox in 0..self.ow {
                let x0 = ox * self.kw;
                let mut best_at = y0 * w + x0;
                let mut best = x[best_at];
                for iy in y0..y0 + self.kh {
                    let row = iy * w;
                    for (i, &v) in x[row + x0..row + x0 + self.kw].iter().enumerate() {
                        if v > best {
                            best = v;
                            best_at = row + x0 + i;
                        }
                    }
                }
                dx[best_at] = T::zero() + dy[oy * self.ow + ox];
            }
        }
    }

    /// One plane's output `(oy, ox)` from an input plane.
    fn plane<T: Real>(&self, kind: PoolKind, include_pad: bool, x: &[T], y: &mut [T]) {
        if kind == PoolKind::Max && self.tiles() && self.kh == 2 && self.kw == 2 {
            return self.plane_max_2x2(x, y);
        }
        for oy in 0..self.oh {
            let y0 = (oy * self.sh).saturating_sub(self.ph);
            let y1 = (oy * self.sh + self.kh).saturating_sub(self.ph).min(self.h);
            let out_row = &mut y[oy * self.ow..(oy + 1) * self.ow];
            for (ox, out) in out_row.iter_mut().enumerate() {
                let x0 = (ox * self.sw).saturating_sub(self.pw);
                let x1 = (ox * self.sw + self.kw).saturating_sub(self.pw).min(self.w);
                // Inference guarantees pad < kernel, so the window holds a real element.
                *out = match kind {
                    PoolKind::Max => {
                        let mut best = x[y0 * self.w + x0];
                        for iy in y0..y1 {
                            for &v in &x[iy * self.w + x0..iy * self.w + x1] {
                                if v > best {
                                    best = v;
                                }
                            }
                        }
                        best
                    }
                    PoolKind::Avg => {
                        let mut sum = 0.0f64;
                        for iy in y0..y1 {
                            for &v in &x[iy * self.w + x0..iy * self.w + x1] {
                                sum += v.to_wide();
                            }
                        }
                        let count = if include_pad {
                            self.kh * self.kw
                        } else {
                            (y1 - y0) * (x1 - x0)
                        };
                        T::from_wide(sum / count as f64)
                    }
                };
            }
        }
    }
}

/// The attributes of `Pooling` / `PoolingGrad`, checked against an input shape: the
/// geometry, `(kind, count_include_pad)`, the number of planes and the output dims.
struct Checked {
    g: Geom,
    kind: PoolKind,
    include_pad: bool,
    planes: usize,
    out_dims: Vec<usize>,
}

fn check(op: &Op, dims: &[usize]) -> Option<Checked> {
    let (Op::Pooling {
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
    }) = op
    else {
        return None;
    };
    let nd = dims.len().checked_sub(2)?;
    if !(nd == 1 || nd == 2) || dims[2..].contains(&0) {
        return None;
    }
    let (h, w) = hw(&dims[2..], nd, 1)?;
    let ((kh, kw), (sh, sw), (ph, pw)) = if *global {
        ((h, w), (1, 1), (0, 0))
    } else {
        (hw(kernel, nd, 1)?, hw(stride, nd, 1)?, hw(pad, nd, 0)?)
    };
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || ph >= kh || pw >= kw {
        return None;
    }
    let g = Geom {
        h,
        w,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        oh: Geom::out_len(h, kh, sh, ph)?,
        ow: Geom::out_len(w, kw, sw, pw)?,
    };
    let planes = dims[0].checked_mul(dims[1])?;
    checked_numel(&[planes, g.oh, g.ow])?;
    let mut out_dims = vec![dims[0], dims[1]];
    if nd == 2 {
        out_dims.push(g.oh);
    }
    out_dims.push(g.ow);
    Some(Checked {
        g,
        kind: *kind,
        include_pad: *count_include_pad,
        planes,
        out_dims,
    })
}

/// `Pooling` (max or average, global or windowed).
pub fn pooling(op: &Op, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let [x] = inputs else { return None };
    let c = check(op, x.shape.dims())?;
    let (g, kind, include_pad) = (c.g, c.kind, c.include_pad);
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    with_real!(x.data, T => {
        let s = data_of::<T>(x)?;
        let mut out = zeros::<T>(c.planes * out_plane);
        if c.planes > 0 {
            if s.len() >= PAR_MIN && c.planes > 1 && threads() > 1 {
                out.par_chunks_mut(out_plane)
                    .zip(s.par_chunks(in_plane))
                    .for_each(|(y, x)| g.plane(kind, include_pad, x, y));
            } else {
                for (y, x) in out.chunks_mut(out_plane).zip(s.chunks(in_plane)) {
                    g.plane(kind, include_pad, x, y);
                }
            }
        }
        tensor_of(out, &c.out_dims)
    })
}

impl Geom {
    /// One plane's input gradient: max routes each output's gradient to the first maximal
    /// element of its window, average spreads it (divided as the forward divides) over the
    /// window's real elements. Overlapping windows accumulate, in f64 (`acc`) as the
    /// interpreter does, and round once.
    fn plane_grad<T: Real>(
        &self,
        kind: PoolKind,
        include_pad: bool,
        x: &[T],
        dy: &[T],
        dx: &mut [T],
        acc: &mut Vec<f64>,
    ) {
        if kind == PoolKind::Max && self.tiles() {
            return self.plane_grad_max_tiles(x, dy, dx);
        }
        acc.clear();
        acc.resize(self.h * self.w, 0.0);
        for oy in 0..self.oh {
            let y0 = (oy * self.sh).saturating_sub(self.ph);
            let y1 = (oy * self.sh + self.kh).saturating_sub(self.ph).min(self.h);
            for ox in 0..self.ow {
                let x0 = (ox * self.sw).saturating_sub(self.pw);
                let x1 = (ox * self.sw + self.kw).saturating_sub(self.pw).min(self.w);
                let g = dy[oy * self.ow + ox].to_wide();
                match kind {
                    PoolKind::Max => {
                        let mut best_at = y0 * self.w + x0;
                        for iy in y0..y1 {
                            for i in iy * self.w + x0..iy * self.w + x1 {
                                if x[i] > x[best_at] {
                                    best_at = i;
                                }
                            }
                        }
                        acc[best_at] += g;
                    }
                    PoolKind::Avg => {
                        let count = if include_pad {
                            self.kh * self.kw
                        } else {
                            (y1 - y0) * (x1 - x0)
                        };
                        let share = g / count as f64;
                        for iy in y0..y1 {
                            for a in &mut acc[iy * self.w + x0..iy * self.w + x1] {
                                *a += share;
                            }
                        }
                    }
                }
            }
        }
        for (d, &a) in dx.iter_mut().zip(acc.iter()) {
            *d = T::from_wide(a);
        }
    }
}

/// `PoolingGrad (x, dy) -> dx`.
pub fn pooling_grad(op: &Op, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let [x, dy] = inputs else { return None };
    let c = check(op, x.shape.dims())?;
    if dy.shape.dims() != c.out_dims.as_slice() {
        return None;
    }
    let (g, kind, include_pad) = (c.g, c.kind, c.include_pad);
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    with_real!(x.data, T => {
        let (xs, dys) = (data_of::<T>(x)?, data_of::<T>(dy)?);
        let mut dx = zeros::<T>(xs.len());
        if c.planes > 0 {
            if xs.len() >= PAR_MIN && c.planes > 1 && threads() > 1 {
                dx.par_chunks_mut(in_plane)
                    .zip(xs.par_chunks(in_plane).zip(dys.par_chunks(out_plane)))
                    .for_each_init(Vec::new, |acc, (d, (x, y))| {
                        g.plane_grad(kind, include_pad, x, y, d, acc)
                    });
            } else {
                let mut acc = Vec::new();
                for (d, (x, y)) in dx
                    .chunks_mut(in_plane)
                    .zip(xs.chunks(in_plane).zip(dys.chunks(out_plane)))
                {
                    g.plane_grad(kind, include_pad, x, y, d, &mut acc);
                }
            }
        }
        tensor_of(dx, x.shape.dims())
    })
}
