//! Convolution, deconvolution and the convolution weight gradient.
//!
//! All three are sums over the same set of *taps* of one convolution: an image `[N, C, H, W]`,
//! a weight `[O, C/groups, KH, KW]` and an output `y [N, O, OH, OW]`, where tap
//! `(n, o, oy, ox, cl, ky, kx)` links
//! `image[n, g*C/groups + cl, oy*sh + ky*dh - ph, ox*sw + kx*dw - pw]` (skipped when it falls
//! in the padding), `weight[o, cl, ky, kx]` and `y[n, o, oy, ox]`, with `g = o / (O/groups)`.
//! Convolution sums image·weight into y; deconvolution (its input gradient) sums y·weight
//! into the image; the weight gradient sums image·y into the weight. Sharing the enumeration
//! makes them exact adjoints of each other. 1-D ops are lifted to 2-D with a height of 1.

use super::{hw, Result};
use crate::error::Error;
use crate::op::Op;
use crate::tensor::{TensorType, TensorView};

/// One convolution's geometry, 1-D lifted to 2-D.
struct ConvGeom {
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

impl ConvGeom {
    /// The geometry from the image and y shapes (both NCW or both NCHW), the kernel's spatial
    /// size and the attributes.
    fn new(
        image: &[usize],
        y: &[usize],
        kernel: &[usize],
        stride: &[usize],
        pad: &[usize],
        dilation: &[usize],
        groups: usize,
    ) -> Self {
        let (h, w) = hw(&image[2..], 1);
        let (oh, ow) = hw(&y[2..], 1);
        let (kh, kw) = hw(kernel, 1);
        let (sh, sw) = hw(stride, 1);
        let (ph, pw) = hw(pad, 0);
        let (dh, dw) = hw(dilation, 1);
        ConvGeom {
            n: image[0],
            c: image[1],
            h,
            w,
            o: y[1],
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
        }
    }

    /// Calls `f(image_index, y_index, weight_index)` for every tap that lands inside the
    /// image, in row-major order of `(n, o, oy, ox, cl, ky, kx)`.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let cg = self.c / self.groups;
        let og = self.o / self.groups;
        for n in 0..self.n {
            for o in 0..self.o {
                let g = o / og;
                for oy in 0..self.oh {
                    for ox in 0..self.ow {
                        let yi = ((n * self.o + o) * self.oh + oy) * self.ow + ox;
                        for cl in 0..cg {
                            let ch = g * cg + cl;
                            for ky in 0..self.kh {
                                let Some(iy) = tap(oy, self.sh, ky, self.dh, self.ph, self.h)
                                else {
                                    continue;
                                };
                                for kx in 0..self.kw {
                                    let Some(ix) = tap(ox, self.sw, kx, self.dw, self.pw, self.w)
                                    else {
                                        continue;
                                    };
                                    let ii = ((n * self.c + ch) * self.h + iy) * self.w + ix;
                                    let wi = ((o * cg + cl) * self.kh + ky) * self.kw + kx;
                                    f(ii, yi, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The image coordinate `out*stride + k*dilation - pad`, if it lies in `[0, len)`.
fn tap(
    out: usize,
    stride: usize,
    k: usize,
    dilation: usize,
    pad: usize,
    len: usize,
) -> Option<usize> {
    (out * stride + k * dilation)
        .checked_sub(pad)
        .filter(|&i| i < len)
}

/// Adds `bias[channel]` to every element of an `[N, C, ..]` tensor.
fn add_bias(values: &mut [f64], bias: &[f64], n: usize) {
    let c = bias.len();
    if n == 0 || c == 0 {
        return;
    }
    let per_channel = values.len() / (n * c);
    for (i, v) in values.iter_mut().enumerate() {
        *v += bias[(i / per_channel) % c];
    }
}

/// The three tap sums, by op:
/// - `convolution (x [N, C, ..], w [O, C/groups, k..], b [O]) -> y`;
/// - `deconvolution (x [N, C, ..], w [C, O/groups, k..], b [O]) -> y`: the input gradient of
///   the convolution whose output is `x`, whose input is `y`, and whose weight is `w`;
/// - `conv_grad_weight (x [N, C, ..], dy [N, O, ..]) -> dw [O, C/groups, kernel..]`.
pub(super) fn eval(op: &Op, inputs: &[TensorView<'_>], out: &TensorType) -> Result<Vec<f64>> {
    let (a, b) = (&inputs[0], &inputs[1]);
    let (av, bv) = (a.data.to_f64_vec(), b.data.to_f64_vec());
    let (a_dims, out_dims) = (a.shape.dims(), out.shape.dims());
    let mut res = vec![0.0; out.shape.numel()];
    let with_bias = match op {
        Op::Convolution {
            stride,
            pad,
            dilation,
            groups,
            no_bias,
        } => {
            let geom = ConvGeom::new(
                a_dims,
                out_dims,
                &b.shape[2..],
                stride,
                pad,
                dilation,
                *groups,
            );
            geom.for_each_tap(|ii, yi, wi| res[yi] += av[ii] * bv[wi]);
            !*no_bias
        }
        Op::Deconvolution {
            stride,
            pad,
            dilation,
            groups,
            no_bias,
            ..
        } => {
            let geom = ConvGeom::new(
                out_dims,
                a_dims,
                &b.shape[2..],
                stride,
                pad,
                dilation,
                *groups,
            );
            geom.for_each_tap(|ii, yi, wi| res[ii] += av[yi] * bv[wi]);
            !*no_bias
        }
        Op::ConvGradWeight {
            kernel,
            stride,
            pad,
            dilation,
            groups,
        } => {
            let geom = ConvGeom::new(
                a_dims,
                b.shape.dims(),
                kernel,
                stride,
                pad,
                dilation,
                *groups,
            );
            geom.for_each_tap(|ii, yi, wi| res[wi] += av[ii] * bv[yi]);
            false
        }
        _ => return Err(Error::invalid(op.name(), "not a convolution op")),
    };
    if with_bias {
        add_bias(&mut res, &inputs[2].data.to_f64_vec(), out_dims[0]);
    }
    Ok(res)
}
