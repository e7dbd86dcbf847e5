//! Max and average pooling over NCW / NCHW data (1-D lifted to 2-D with a height of 1).
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

    /// One plane's output `(oy, ox)` from an input plane.
    fn plane<T: Real>(&self, kind: PoolKind, include_pad: bool, x: &[T], y: &mut [T]) {
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

/// `Pooling` (max or average, global or windowed).
pub fn pooling(op: &Op, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let Op::Pooling {
        kind,
        kernel,
        stride,
        pad,
        global,
        count_include_pad,
    } = op
    else {
        return None;
    };
    let [x] = inputs else { return None };
    let dims = x.shape.dims();
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
    let (in_plane, out_plane) = (h * w, g.oh.checked_mul(g.ow)?);
    let mut out_dims = vec![dims[0], dims[1]];
    if nd == 2 {
        out_dims.push(g.oh);
    }
    out_dims.push(g.ow);
    let (kind, include_pad) = (*kind, *count_include_pad);
    with_real!(x.data, T => {
        let s = data_of::<T>(x)?;
        let mut out = zeros::<T>(checked_numel(&[planes, out_plane])?);
        if planes > 0 {
            if s.len() >= PAR_MIN && planes > 1 && threads() > 1 {
                out.par_chunks_mut(out_plane)
                    .zip(s.par_chunks(in_plane))
                    .for_each(|(y, x)| g.plane(kind, include_pad, x, y));
            } else {
                for (y, x) in out.chunks_mut(out_plane).zip(s.chunks(in_plane)) {
                    g.plane(kind, include_pad, x, y);
                }
            }
        }
        tensor_of(out, &out_dims)
    })
}
