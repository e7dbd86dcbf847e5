//! Convolution (im2col + GEMM), deconvolution (GEMM + col2im) and the convolution weight
//! gradient (im2col + GEMM), for NCW and NCHW data (1-D is lifted to 2-D with a height of 1).
//!
//! The geometry is the interpreter's: tap `(oy, ky)` reads image row `oy*sh + ky*dh - ph`,
//! skipped when it falls in the padding.
//! A column matrix `col [C·KH·KW, OH·OW]` holds, in row `(c, ky, kx)` and column `(oy, ox)`,
//! the image element that tap reads (0 in the padding), so a convolution is `W · col` per
//! image and group, its weight gradient is `dy · colᵀ`, and deconvolution is `Wᵀ · x`
//! scattered back through the same map (col2im).
//!
//! Batches are split across threads when the work is large (each thread with its own column
//! buffer, and GEMMs single-threaded inside); otherwise the GEMMs themselves are threaded.

use super::gemm::{matmul, parallelism, MatRef, BATCH_PARALLEL_MIN_WORK};
use super::{checked_numel, data_of, tensor_of, threads, with_real, zeros, Real};
use gemm::Parallelism;
use kiln_ir::{Op, Tensor, TensorView};
use rayon::prelude::*;

/// One convolution's geometry, 1-D lifted to 2-D: an image `[n, c, h, w]`, a weight
/// `[o, c/groups, kh, kw]` and an output `[n, o, oh, ow]`.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    dh: usize,
    dw: usize,
    groups: usize,
}

/// The spatial attributes of a convolution.
struct Attrs<'a> {
    stride: &'a [usize],
    pad: &'a [usize],
    dilation: &'a [usize],
}

/// `(height, width)` from a per-spatial-dim list (exactly `nd` entries, as inference
/// requires); 1-D lists get height `lift`. `None` when the list has the wrong length or a
/// value < `min`.
fn hw(v: &[usize], nd: usize, lift: usize, min: usize) -> Option<(usize, usize)> {
    let (h, w) = match (v, nd) {
        ([w], 1) => (lift, *w),
        ([h, w], 2) => (*h, *w),
        _ => return None,
    };
    (h >= min && w >= min).then_some((h, w))
}

/// The output length of a window sweep, `(len + 2*pad - dil*(k-1) - 1) / stride + 1`, or
/// `None` when the window does not fit (or on overflow).
fn window_out(len: usize, k: usize, stride: usize, pad: usize, dil: usize) -> Option<usize> {
    let padded = len.checked_add(pad.checked_mul(2)?)?;
    let span = dil.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let free = padded.checked_sub(span)?;
    Some(free / stride + 1)
}

impl Geom {
    /// Spatial attributes lifted to 2-D: `(stride, pad, dilation)` pairs.
    #[allow(clippy::type_complexity)]
    fn lift(a: &Attrs<'_>, nd: usize) -> Option<((usize, usize), (usize, usize), (usize, usize))> {
        Some((
            hw(a.stride, nd, 1, 1)?,
            hw(a.pad, nd, 0, 0)?,
            hw(a.dilation, nd, 1, 1)?,
        ))
    }

    /// The geometry of a convolution of `image` (NCW/NCHW) with a kernel of spatial size
    /// `kernel`, `o` output channels and `groups` groups; checks channel divisibility.
    fn conv(
        image: &[usize],
        kernel: &[usize],
        o: usize,
        groups: usize,
        a: &Attrs<'_>,
    ) -> Option<Geom> {
        let nd = image.len().checked_sub(2)?;
        if !(nd == 1 || nd == 2) || kernel.len() != nd || groups == 0 {
            return None;
        }
        let (c, o) = (image[1], o);
        if c % groups != 0 || o % groups != 0 {
            return None;
        }
        let (h, w) = hw(&image[2..], nd, 1, 0)?;
        let (kh, kw) = hw(kernel, nd, 1, 1)?;
        let ((sh, sw), (ph, pw), (dh, dw)) = Geom::lift(a, nd)?;
        let oh = window_out(h, kh, sh, ph, dh)?;
        let ow = window_out(w, kw, sw, pw, dw)?;
        let g = Geom {
            n: image[0],
            c,
            h,
            w,
            o,
            kh,
            kw,
            oh,
            ow,
            sh,
            sw,
            ph,
            pw,
            dh,
            dw,
            groups,
        };
        // Every buffer size below is a product of these; check them once.
        checked_numel(&[g.n, g.c, g.h, g.w])?;
        checked_numel(&[g.n, g.o, g.oh, g.ow])?;
        checked_numel(&[g.c, g.kh, g.kw, g.oh, g.ow])?;
        checked_numel(&[g.o, g.c, g.kh, g.kw])?;
        Some(g)
    }

    /// Channels per group of the image.
    fn cg(&self) -> usize {
        self.c / self.groups
    }
    /// Output channels per group.
    fn og(&self) -> usize {
        self.o / self.groups
    }
    /// Rows of one group's column matrix: `c/groups · kh · kw`.
    fn kdim(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// Output positions per image.
    fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    /// Image elements per image.
    fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Output elements per image.
    fn out_len(&self) -> usize {
        self.o * self.ohw()
    }
    /// True when the column matrix *is* the image (1×1 kernel, stride 1, no padding).
    fn col_is_image(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
    /// Multiply-adds of the whole op.
    fn work(&self) -> usize {
        [self.n, self.o, self.ohw(), self.kdim()]
            .iter()
            .fold(1usize, |a, &b| a.saturating_mul(b))
    }
    /// True when several images' column matrices are put side by side so that one GEMM
    /// covers a block of images ([`Geom::images_per_block`]): one group, a real column
    /// matrix (not a 1×1 stride-1 kernel, whose columns are the image itself) and more than
    /// one image. LeNet's second layer per image is a `[50, 500] · [500, 64]` product, too
    /// narrow for the GEMM kernels to run at speed; eight images side by side make it
    /// `[50, 500] · [500, 512]`.
    fn batches_columns(&self) -> bool {
        self.groups == 1 && !self.col_is_image() && self.n > 1
    }

    /// Images per block: as many as keep the block's column matrix within
    /// [`COL_BLOCK_ELEMS`] (at least one), and few enough that every thread gets a block
    /// when the batch is split across threads.
    fn images_per_block(&self) -> usize {
        let per_image = (self.kdim() * self.ohw()).max(1);
        let mut nb = (COL_BLOCK_ELEMS / per_image).clamp(1, self.n.max(1));
        if self.split_batch() {
            nb = nb.min(self.n.div_ceil(threads())).max(1);
        }
        nb
    }

    /// True when batches should be split across threads.
    fn split_batch(&self) -> bool {
        threads() > 1 && self.n > 1 && self.work() >= BATCH_PARALLEL_MIN_WORK
    }

    /// The range of output positions `o` along one dim for which `o*s + k*d - p` lies in
    /// `[0, len)`, as `(first, end)`.
    fn valid_range(out: usize, s: usize, kd: usize, p: usize, len: usize) -> (usize, usize) {
        // o*s + kd >= p  <=>  o >= ceil((p - kd) / s)
        let first = if kd >= p { 0 } else { (p - kd).div_ceil(s) };
        // o*s + kd - p < len  <=>  o*s < len + p - kd
        let end = if len + p <= kd {
            0
        } else {
            (len + p - kd).div_ceil(s)
        };
        (first.min(out), end.min(out).max(first.min(out)))
    }

    /// Fills `col [c·kh·kw, oh·ow]` from one image `[c, h, w]`.
    fn im2col<T: Real>(&self, image: &[T], col: &mut [T]) {
        self.im2col_strided(image, col, self.ohw());
    }

    /// [`Geom::im2col`] into the columns of a wider matrix: row `r` of this image's column
    /// matrix goes to `col[r·ld .. r·ld + oh·ow]` (`ld >= oh·ow`), so that several images'
    /// column matrices sit side by side in one `[c·kh·kw, ld]` matrix.
    fn im2col_strided<T: Real>(&self, image: &[T], col: &mut [T], ld: usize) {
        let ohw = self.ohw();
        for ch in 0..self.c {
            let plane = &image[ch * self.h * self.w..(ch + 1) * self.h * self.w];
            for ky in 0..self.kh {
                let (y0, y1) = Self::valid_range(self.oh, self.sh, ky * self.dh, self.ph, self.h);
                for kx in 0..self.kw {
                    let r = (ch * self.kh + ky) * self.kw + kx;
                    let Some(row) = col.get_mut(r * ld..r * ld + ohw) else {
                        return;
                    };
                    let (x0, x1) =
                        Self::valid_range(self.ow, self.sw, kx * self.dw, self.pw, self.w);
                    for oy in 0..self.oh {
                        let out_row = &mut row[oy * self.ow..(oy + 1) * self.ow];
                        if oy < y0 || oy >= y1 {
                            out_row.fill(T::zero());
                            continue;
                        }
                        let iy = oy * self.sh + ky * self.dh - self.ph;
                        let src = &plane[iy * self.w..(iy + 1) * self.w];
                        out_row[..x0].fill(T::zero());
                        out_row[x1..].fill(T::zero());
                        if x1 > x0 {
                            let ix0 = x0 * self.sw + kx * self.dw - self.pw;
                            if self.sw == 1 {
                                out_row[x0..x1].copy_from_slice(&src[ix0..ix0 + (x1 - x0)]);
                            } else {
                                for (d, s) in out_row[x0..x1]
                                    .iter_mut()
                                    .zip(src[ix0..].iter().step_by(self.sw))
                                {
                                    *d = *s;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds `col [c·kh·kw, oh·ow]` back into one image `[c, h, w]` (the adjoint of im2col).
    fn col2im<T: Real>(&self, col: &[T], image: &mut [T]) {
        self.col2im_strided(col, self.ohw(), image);
    }

    /// [`Geom::col2im`] from the columns of a wider matrix (row `r` at `col[r·ld..]`), the
    /// adjoint of [`Geom::im2col_strided`].
    fn col2im_strided<T: Real>(&self, col: &[T], ld: usize, image: &mut [T]) {
        let ohw = self.ohw();
        let mut next_row = 0usize;
        let mut rows = std::iter::from_fn(|| {
            let r = next_row;
            next_row += 1;
            col.get(r * ld..r * ld + ohw)
        });
        for ch in 0..self.c {
            let plane = &mut image[ch * self.h * self.w..(ch + 1) * self.h * self.w];
            for ky in 0..self.kh {
                let (y0, y1) = Self::valid_range(self.oh, self.sh, ky * self.dh, self.ph, self.h);
                for kx in 0..self.kw {
                    let Some(row) = rows.next() else { return };
                    let (x0, x1) =
                        Self::valid_range(self.ow, self.sw, kx * self.dw, self.pw, self.w);
                    if x1 <= x0 {
                        continue;
                    }
                    for oy in y0..y1 {
                        let iy = oy * self.sh + ky * self.dh - self.ph;
                        let dst = &mut plane[iy * self.w..(iy + 1) * self.w];
                        let src = &row[oy * self.ow + x0..oy * self.ow + x1];
                        let ix0 = x0 * self.sw + kx * self.dw - self.pw;
                        if self.sw == 1 {
                            for (d, s) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                                *d += *s;
                            }
                        } else {
                            for (d, s) in dst[ix0..].iter_mut().step_by(self.sw).zip(src) {
                                *d += *s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Elements of a block's column matrix (1 MiB of f32): large enough for wide GEMMs, small
/// enough to stay in a core's L2 cache next to the GEMM's packed operands.
const COL_BLOCK_ELEMS: usize = 1 << 18;

/// `out_b` (images `n0..` of the output, as many as it holds) for a one-group convolution:
/// the block's column matrices side by side, `[kdim, nb·ohw]`, one GEMM with the weight
/// `[o, kdim]` into `tmp [o, nb·ohw]` (rows pre-filled with the bias, as the per-image path
/// does), then each image's `[o, ohw]` copied out.
#[allow(clippy::too_many_arguments)]
fn conv_block<T: Real>(
    g: &Geom,
    xd: &[T],
    wm: MatRef<'_, T>,
    bias: Option<&[T]>,
    n0: usize,
    out_b: &mut [T],
    (col, tmp): &mut (Vec<T>, Vec<T>),
    par: Parallelism,
) {
    let (kdim, ohw, out_len, image_len) = (g.kdim(), g.ohw(), g.out_len(), g.image_len());
    let nb = out_b.len() / out_len;
    let ld = nb * ohw;
    col.resize(kdim * ld, T::zero());
    for j in 0..nb {
        let image = &xd[(n0 + j) * image_len..(n0 + j + 1) * image_len];
        g.im2col_strided(image, &mut col[j * ohw..], ld);
    }
    tmp.clear();
    tmp.resize(g.o * ld, T::zero());
    if let Some(b) = bias {
        for (row, &v) in tmp.chunks_mut(ld).zip(b) {
            row.fill(v);
        }
    }
    let Some(cm) = MatRef::row_major(col, kdim, ld) else {
        return;
    };
    matmul(tmp, wm, cm, bias.is_some(), par);
    for (j, out_n) in out_b.chunks_mut(out_len).enumerate() {
        for (oc, dst) in out_n.chunks_mut(ohw).enumerate() {
            dst.copy_from_slice(&tmp[oc * ld + j * ohw..oc * ld + (j + 1) * ohw]);
        }
    }
}

/// Gathers images `n0 .. n0 + nb` of `src` (`[n, rows, ohw]`) side by side into
/// `dst [rows, nb·ohw]`.
fn gather_block<T: Real>(
    src: &[T],
    rows: usize,
    ohw: usize,
    n0: usize,
    nb: usize,
    dst: &mut Vec<T>,
) {
    let ld = nb * ohw;
    dst.clear();
    dst.resize(rows * ld, T::zero());
    for j in 0..nb {
        let image = &src[(n0 + j) * rows * ohw..(n0 + j + 1) * rows * ohw];
        for (r, s) in image.chunks_exact(ohw.max(1)).enumerate() {
            dst[r * ld + j * ohw..r * ld + (j + 1) * ohw].copy_from_slice(s);
        }
    }
}

/// Adds images `n0 .. n0 + nb`'s contribution to a one-group convolution's weight gradient
/// `dw [o, kdim]`: `dy` gathered to `[o, nb·ohw]` times the block's columns transposed.
#[allow(clippy::too_many_arguments)]
fn grad_weight_block<T: Real>(
    g: &Geom,
    xd: &[T],
    dyd: &[T],
    n0: usize,
    nb: usize,
    dw: &mut [T],
    (col, dyt): &mut (Vec<T>, Vec<T>),
    par: Parallelism,
) {
    let (kdim, ohw, image_len) = (g.kdim(), g.ohw(), g.image_len());
    let ld = nb * ohw;
    col.resize(kdim * ld, T::zero());
    for j in 0..nb {
        let image = &xd[(n0 + j) * image_len..(n0 + j + 1) * image_len];
        g.im2col_strided(image, &mut col[j * ohw..], ld);
    }
    gather_block(dyd, g.o, ohw, n0, nb, dyt);
    let (Some(dym), Some(cm)) = (
        MatRef::row_major(dyt, g.o, ld),
        MatRef::row_major(col, kdim, ld),
    ) else {
        return;
    };
    matmul(dw, dym, cm.t(), true, par);
}

/// Images `n0..` of a one-group deconvolution's output (`img_b`, as many as it holds; already
/// holding the bias): `x` gathered to `[c, nb·ohw]`, one GEMM with the transposed weight
/// `[kdim, c]` into the block's columns, then col2im per image.
fn deconv_block<T: Real>(
    g: &Geom,
    xd: &[T],
    wt: MatRef<'_, T>,
    n0: usize,
    img_b: &mut [T],
    (col, xt): &mut (Vec<T>, Vec<T>),
    par: Parallelism,
) {
    let (kdim, ohw, image_len) = (g.kdim(), g.ohw(), g.image_len());
    let nb = img_b.len() / image_len;
    let ld = nb * ohw;
    gather_block(xd, g.o, ohw, n0, nb, xt);
    col.clear();
    col.resize(kdim * ld, T::zero());
    let Some(xm) = MatRef::row_major(xt, g.o, ld) else {
        return;
    };
    matmul(col, wt, xm, false, par);
    for (j, img) in img_b.chunks_mut(image_len).enumerate() {
        g.col2im_strided(&col[j * ohw..], ld, img);
    }
}

/// Fills each `[o, oh·ow]` output image with its channel's bias.
fn fill_bias<T: Real>(out: &mut [T], bias: &[T], ohw: usize) {
    if ohw == 0 {
        return;
    }
    for (i, plane) in out.chunks_mut(ohw).enumerate() {
        plane.fill(bias[i % bias.len()]);
    }
}

/// Splits a convolution op's inputs into `(x, w, bias)`.
fn conv_inputs<'a, 'b>(
    no_bias: bool,
    inputs: &'a [TensorView<'b>],
) -> Option<(
    &'a TensorView<'b>,
    &'a TensorView<'b>,
    Option<&'a TensorView<'b>>,
)> {
    match (no_bias, inputs) {
        (true, [x, w]) => Some((x, w, None)),
        (false, [x, w, b]) => Some((x, w, Some(b))),
        _ => None,
    }
}

/// `convolution (x [N, C, ..], w [O, C/groups, k..], b [O]) -> y`.
pub fn convolution(op: &Op, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let Op::Convolution {
        stride,
        pad,
        dilation,
        groups,
        no_bias,
    } = op
    else {
        return None;
    };
    let (x, w, b) = conv_inputs(*no_bias, inputs)?;
    let attrs = Attrs {
        stride,
        pad,
        dilation,
    };
    with_real!(x.data, T => conv_typed::<T>(x, w, b, &attrs, *groups))
}

fn conv_typed<T: Real>(
    x: &TensorView<'_>,
    w: &TensorView<'_>,
    b: Option<&TensorView<'_>>,
    attrs: &Attrs<'_>,
    groups: usize,
) -> Option<Tensor> {
    let (xd, wd) = (data_of::<T>(x)?, data_of::<T>(w)?);
    let (xs, ws) = (x.shape.dims(), w.shape.dims());
    if ws.len() != xs.len() || ws.len() < 3 {
        return None;
    }
    let g = Geom::conv(xs, &ws[2..], ws[0], groups, attrs)?;
    if ws[1] != g.cg() {
        return None;
    }
    let bias = match b {
        Some(b) if b.shape.dims() == [g.o] => Some(data_of::<T>(b)?),
        Some(_) => return None,
        None => None,
    };
    let mut out = zeros::<T>(g.n * g.out_len());
    if let Some(bias) = bias {
        fill_bias(&mut out, bias, g.ohw());
    }
    let accumulate = bias.is_some();
    let (kdim, og, ohw) = (g.kdim(), g.og(), g.ohw());
    // The weight of group `gi`: [og, kdim], contiguous.
    let weight = |gi: usize| MatRef::row_major(&wd[gi * og * kdim..(gi + 1) * og * kdim], og, kdim);
    for gi in 0..g.groups {
        weight(gi)?;
    }
    let image = |ni: usize| &xd[ni * g.image_len()..(ni + 1) * g.image_len()];
    // One image: out_n [o, ohw] = W_g · col_g per group.
    let one = |ni: usize, out_n: &mut [T], col: &mut Vec<T>, par: Parallelism| {
        let src: &[T] = if g.col_is_image() {
            image(ni)
        } else {
            col.resize(g.c * g.kh * g.kw * ohw, T::zero());
            g.im2col(image(ni), col);
            col
        };
        for gi in 0..g.groups {
            let (Some(wm), Some(cm)) = (
                weight(gi),
                MatRef::row_major(&src[gi * kdim * ohw..(gi + 1) * kdim * ohw], kdim, ohw),
            ) else {
                return;
            };
            let dst = &mut out_n[gi * og * ohw..(gi + 1) * og * ohw];
            matmul(dst, wm, cm, accumulate, par);
        }
    };
    let out_len = g.out_len();
    if out_len > 0 && g.batches_columns() {
        let wm = weight(0)?;
        let nb = g.images_per_block();
        if g.split_batch() && g.n.div_ceil(nb) >= threads() {
            out.par_chunks_mut(nb * out_len).enumerate().for_each_init(
                || (Vec::new(), Vec::new()),
                |bufs, (bi, out_b)| {
                    conv_block(&g, xd, wm, bias, bi * nb, out_b, bufs, Parallelism::None)
                },
            );
        } else {
            let par = parallelism(g.o, nb * ohw, kdim);
            let mut bufs = (Vec::new(), Vec::new());
            for (bi, out_b) in out.chunks_mut(nb * out_len).enumerate() {
                conv_block(&g, xd, wm, bias, bi * nb, out_b, &mut bufs, par);
            }
        }
    } else if out_len > 0 {
        if g.split_batch() {
            out.par_chunks_mut(out_len)
                .enumerate()
                .for_each_init(Vec::new, |col, (ni, out_n)| {
                    one(ni, out_n, col, Parallelism::None)
                });
        } else {
            let mut col = Vec::new();
            let par = parallelism(og, ohw, kdim);
            for (ni, out_n) in out.chunks_mut(out_len).enumerate() {
                one(ni, out_n, &mut col, par);
            }
        }
    }
    let dims = if xs.len() == 3 {
        vec![g.n, g.o, g.ow]
    } else {
        vec![g.n, g.o, g.oh, g.ow]
    };
    tensor_of(out, &dims)
}

/// `deconvolution (x [N, C, ..], w [C, O/groups, k..], b [O]) -> y`: the input gradient of
/// the convolution whose output is `x` and whose input is `y`.
pub fn deconvolution(op: &Op, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let Op::Deconvolution {
        stride,
        pad,
        dilation,
        output_padding,
        groups,
        no_bias,
    } = op
    else {
        return None;
    };
    let (x, w, b) = conv_inputs(*no_bias, inputs)?;
    let attrs = Attrs {
        stride,
        pad,
        dilation,
    };
    with_real!(x.data, T => deconv_typed::<T>(x, w, b, &attrs, output_padding, *groups))
}

fn deconv_typed<T: Real>(
    x: &TensorView<'_>,
    w: &TensorView<'_>,
    b: Option<&TensorView<'_>>,
    attrs: &Attrs<'_>,
    output_padding: &[usize],
    groups: usize,
) -> Option<Tensor> {
    let (xd, wd) = (data_of::<T>(x)?, data_of::<T>(w)?);
    let (xs, ws) = (x.shape.dims(), w.shape.dims());
    let nd = xs.len().checked_sub(2)?;
    if !(nd == 1 || nd == 2) || ws.len() != xs.len() || groups == 0 || ws[0] != xs[1] {
        return None;
    }
    let (c, o) = (xs[1], ws[1].checked_mul(groups)?);
    if c % groups != 0 {
        return None;
    }
    let ((sh, sw), (ph, pw), (dh, dw)) = Geom::lift(attrs, nd)?;
    let (ah, aw) = hw(output_padding, nd, 0, 0)?;
    let (kh, kw) = hw(&ws[2..], nd, 1, 1)?;
    let (xh, xw) = hw(&xs[2..], nd, 1, 1)?;
    if ah >= sh || aw >= sw {
        return None;
    }
    // Output size per dim: (in-1)*stride - 2*pad + dilation*(k-1) + 1 + output_padding.
    let size = |len: usize, s: usize, p: usize, d: usize, k: usize, a: usize| {
        (len - 1)
            .checked_mul(s)?
            .checked_add(d.checked_mul(k - 1)?)?
            .checked_add(1 + a)?
            .checked_sub(p.checked_mul(2)?)
            .filter(|&v| v >= 1)
    };
    let yh = size(xh, sh, ph, dh, kh, ah)?;
    let yw = size(xw, sw, pw, dw, kw, aw)?;
    let mut y_dims = vec![xs[0], o, yw];
    if nd == 2 {
        y_dims = vec![xs[0], o, yh, yw];
    }
    // The forward convolution maps y (image) to x (output) with weight w [C, O/groups, k..].
    let g = Geom::conv(&y_dims, &ws[2..], c, groups, attrs)?;
    if g.oh != xh || g.ow != xw {
        return None;
    }
    let bias = match b {
        Some(b) if b.shape.dims() == [o] => Some(data_of::<T>(b)?),
        Some(_) => return None,
        None => None,
    };
    // In the forward geometry: g.c = o (image channels), g.o = c (x's channels).
    let (kdim, og, ohw) = (g.kdim(), g.og(), g.ohw());
    let image_len = g.image_len();
    let mut out = zeros::<T>(g.n.checked_mul(image_len)?);
    if let Some(bias) = bias {
        fill_bias(&mut out, bias, g.h * g.w);
    }
    // Group gi's weight [og, kdim] (rows: x channels of the group), transposed: [kdim, og].
    let weight_t = |gi: usize| {
        Some(MatRef::row_major(&wd[gi * og * kdim..(gi + 1) * og * kdim], og, kdim)?.t())
    };
    for gi in 0..g.groups {
        weight_t(gi)?;
    }
    let xin = |ni: usize, gi: usize| {
        let base = ni * g.out_len() + gi * og * ohw;
        MatRef::row_major(&xd[base..base + og * ohw], og, ohw)
    };
    let one = |ni: usize, img: &mut [T], col: &mut Vec<T>, par: Parallelism| {
        if g.col_is_image() {
            // col2im is the identity: accumulate straight into the image.
            for gi in 0..g.groups {
                let (Some(wt), Some(xm)) = (weight_t(gi), xin(ni, gi)) else {
                    return;
                };
                let dst = &mut img[gi * kdim * ohw..(gi + 1) * kdim * ohw];
                matmul(dst, wt, xm, true, par);
            }
            return;
        }
        col.resize(g.c * g.kh * g.kw * ohw, T::zero());
        for gi in 0..g.groups {
            let (Some(wt), Some(xm)) = (weight_t(gi), xin(ni, gi)) else {
                return;
            };
            matmul(
                &mut col[gi * kdim * ohw..(gi + 1) * kdim * ohw],
                wt,
                xm,
                false,
                par,
            );
        }
        g.col2im(col, img);
    };
    if image_len > 0 && g.batches_columns() {
        let wt = weight_t(0)?;
        let nb = g.images_per_block();
        if g.split_batch() && g.n.div_ceil(nb) >= threads() {
            out.par_chunks_mut(nb * image_len)
                .enumerate()
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |bufs, (bi, img_b)| {
                        deconv_block(&g, xd, wt, bi * nb, img_b, bufs, Parallelism::None)
                    },
                );
        } else {
            let par = parallelism(kdim, nb * ohw, og);
            let mut bufs = (Vec::new(), Vec::new());
            for (bi, img_b) in out.chunks_mut(nb * image_len).enumerate() {
                deconv_block(&g, xd, wt, bi * nb, img_b, &mut bufs, par);
            }
        }
    } else if image_len > 0 {
        if g.split_batch() {
            out.par_chunks_mut(image_len)
                .enumerate()
                .for_each_init(Vec::new, |col, (ni, img)| {
                    one(ni, img, col, Parallelism::None)
                });
        } else {
            let mut col = Vec::new();
            let par = parallelism(kdim, ohw, og);
            for (ni, img) in out.chunks_mut(image_len).enumerate() {
                one(ni, img, &mut col, par);
            }
        }
    }
    tensor_of(out, &y_dims)
}

/// `conv_grad_weight (x [N, C, ..], dy [N, O, ..]) -> dw [O, C/groups, kernel..]`.
pub fn conv_grad_weight(op: &Op, inputs: &[TensorView<'_>]) -> Option<Tensor> {
    let Op::ConvGradWeight {
        kernel,
        stride,
        pad,
        dilation,
        groups,
    } = op
    else {
        return None;
    };
    let [x, dy] = inputs else { return None };
    let attrs = Attrs {
        stride,
        pad,
        dilation,
    };
    with_real!(x.data, T => grad_weight_typed::<T>(x, dy, kernel, &attrs, *groups))
}

fn grad_weight_typed<T: Real>(
    x: &TensorView<'_>,
    dy: &TensorView<'_>,
    kernel: &[usize],
    attrs: &Attrs<'_>,
    groups: usize,
) -> Option<Tensor> {
    let (xd, dyd) = (data_of::<T>(x)?, data_of::<T>(dy)?);
    let (xs, ys) = (x.shape.dims(), dy.shape.dims());
    if ys.len() != xs.len() || ys.len() < 3 || ys[0] != xs[0] {
        return None;
    }
    let g = Geom::conv(xs, kernel, ys[1], groups, attrs)?;
    let nd = xs.len() - 2;
    let spatial_ok = if nd == 1 {
        ys[2] == g.ow
    } else {
        ys[2] == g.oh && ys[3] == g.ow
    };
    if !spatial_ok {
        return None;
    }
    let (kdim, og, ohw) = (g.kdim(), g.og(), g.ohw());
    let dw_len = g.o * kdim;
    let image = |ni: usize| &xd[ni * g.image_len()..(ni + 1) * g.image_len()];
    // Adds image ni's contribution into dw [o, kdim]: dw_g += dy_g · col_gᵀ.
    let one = |ni: usize, dw: &mut [T], col: &mut Vec<T>, par: Parallelism| {
        let src: &[T] = if g.col_is_image() {
            image(ni)
        } else {
            col.resize(g.c * g.kh * g.kw * ohw, T::zero());
            g.im2col(image(ni), col);
            col
        };
        for gi in 0..g.groups {
            let base = ni * g.out_len() + gi * og * ohw;
            let (Some(dym), Some(colt)) = (
                MatRef::row_major(&dyd[base..base + og * ohw], og, ohw),
                MatRef::row_major(&src[gi * kdim * ohw..(gi + 1) * kdim * ohw], kdim, ohw),
            ) else {
                return;
            };
            matmul(
                &mut dw[gi * og * kdim..(gi + 1) * og * kdim],
                dym,
                colt.t(),
                true,
                par,
            );
        }
    };
    let dw = if g.batches_columns() && g.n > 0 {
        let nb = g.images_per_block();
        let starts: Vec<usize> = (0..g.n).step_by(nb).collect();
        let block = |dw: &mut [T], bufs: &mut (Vec<T>, Vec<T>), n0: usize, par| {
            grad_weight_block(&g, xd, dyd, n0, nb.min(g.n - n0), dw, bufs, par)
        };
        if g.split_batch() && starts.len() >= threads() {
            starts
                .into_par_iter()
                .fold(
                    || (zeros::<T>(dw_len), (Vec::new(), Vec::new())),
                    |(mut dw, mut bufs), n0| {
                        block(&mut dw, &mut bufs, n0, Parallelism::None);
                        (dw, bufs)
                    },
                )
                .map(|(dw, _)| dw)
                .reduce(
                    || zeros::<T>(dw_len),
                    |mut a, b| {
                        for (x, y) in a.iter_mut().zip(&b) {
                            *x += *y;
                        }
                        a
                    },
                )
        } else {
            let mut dw = zeros::<T>(dw_len);
            let mut bufs = (Vec::new(), Vec::new());
            let par = parallelism(g.o, kdim, nb * ohw);
            for n0 in starts {
                block(&mut dw, &mut bufs, n0, par);
            }
            dw
        }
    } else if g.split_batch() {
        (0..g.n)
            .into_par_iter()
            .fold(
                || (zeros::<T>(dw_len), Vec::new()),
                |(mut dw, mut col), ni| {
                    one(ni, &mut dw, &mut col, Parallelism::None);
                    (dw, col)
                },
            )
            .map(|(dw, _)| dw)
            .reduce(
                || zeros::<T>(dw_len),
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(&b) {
                        *x += *y;
                    }
                    a
                },
            )
    } else {
        let mut dw = zeros::<T>(dw_len);
        let mut col = Vec::new();
        let par = parallelism(og, kdim, ohw);
        for ni in 0..g.n {
            one(ni, &mut dw, &mut col, par);
        }
        dw
    };
    let mut dims = vec![g.o, g.cg()];
    dims.extend_from_slice(kernel);
    tensor_of(dw, &dims)
}
