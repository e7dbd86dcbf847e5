//! Convolution, deconvolution and the convolution weight gradient (im2col/col2im + GEMM),
//! against the interpreter.

mod common;

use common::{check_fast, check_same_as_interp, random, tol};
use kiln_ir::{DType, Op};

const FLOATS: [DType; 2] = [DType::F32, DType::F64];

/// One convolution configuration: input `[n, c, spatial..]`, `o` output channels, kernel,
/// stride, pad, dilation, groups.
struct Case {
    n: usize,
    c: usize,
    spatial: Vec<usize>,
    o: usize,
    kernel: Vec<usize>,
    stride: Vec<usize>,
    pad: Vec<usize>,
    dilation: Vec<usize>,
    groups: usize,
}

fn cases() -> Vec<Case> {
    let c2 =
        |n, c, hw: [usize; 2], o, k: [usize; 2], s: [usize; 2], p: [usize; 2], d: [usize; 2], g| {
            Case {
                n,
                c,
                spatial: hw.to_vec(),
                o,
                kernel: k.to_vec(),
                stride: s.to_vec(),
                pad: p.to_vec(),
                dilation: d.to_vec(),
                groups: g,
            }
        };
    let c1 = |n, c, w, o, k, s, p, d, g| Case {
        n,
        c,
        spatial: vec![w],
        o,
        kernel: vec![k],
        stride: vec![s],
        pad: vec![p],
        dilation: vec![d],
        groups: g,
    };
    vec![
        c2(2, 3, [7, 9], 4, [3, 3], [1, 1], [0, 0], [1, 1], 1),
        c2(1, 2, [8, 7], 3, [3, 2], [2, 3], [1, 2], [1, 1], 1),
        c2(2, 4, [9, 9], 6, [3, 3], [1, 2], [2, 1], [2, 3], 2),
        c2(3, 6, [5, 6], 6, [1, 1], [1, 1], [0, 0], [1, 1], 3),
        c2(2, 3, [6, 5], 5, [1, 1], [2, 1], [0, 1], [1, 1], 1),
        c2(1, 4, [4, 4], 4, [4, 4], [1, 1], [3, 3], [1, 1], 4),
        // LeNet's second layer at a small batch: the batch is split across threads.
        c2(3, 20, [12, 12], 50, [5, 5], [1, 1], [0, 0], [1, 1], 1),
        // Batches whose images are processed in blocks (column matrices side by side), with
        // a last, partial block (11 images of LeNet's second layer, 19 of its first), and a
        // padded, strided, dilated case.
        c2(11, 20, [12, 12], 50, [5, 5], [1, 1], [0, 0], [1, 1], 1),
        c2(19, 1, [28, 28], 20, [5, 5], [1, 1], [0, 0], [1, 1], 1),
        c2(9, 3, [10, 9], 4, [3, 3], [2, 1], [1, 2], [2, 1], 1),
        c1(2, 3, 11, 4, 3, 1, 1, 1, 1),
        c1(3, 4, 13, 2, 2, 3, 2, 2, 2),
        c1(1, 2, 5, 3, 1, 1, 0, 1, 1),
    ]
}

#[test]
fn convolution_matches_the_interpreter() {
    for dt in FLOATS {
        for (i, c) in cases().iter().enumerate() {
            let mut xs = vec![c.n, c.c];
            xs.extend(&c.spatial);
            let mut ws = vec![c.o, c.c / c.groups];
            ws.extend(&c.kernel);
            let x = random(&xs, dt, 100 + i as u64);
            let w = random(&ws, dt, 200 + i as u64);
            let b = random(&[c.o], dt, 300 + i as u64);
            for no_bias in [false, true] {
                let op = Op::Convolution {
                    stride: c.stride.clone(),
                    pad: c.pad.clone(),
                    dilation: c.dilation.clone(),
                    groups: c.groups,
                    no_bias,
                };
                if no_bias {
                    check_fast(&op, &[&x, &w], tol(dt));
                } else {
                    check_fast(&op, &[&x, &w, &b], tol(dt));
                }
            }
        }
    }
}

#[test]
fn conv_grad_weight_matches_the_interpreter() {
    for dt in FLOATS {
        for (i, c) in cases().iter().enumerate() {
            let mut xs = vec![c.n, c.c];
            xs.extend(&c.spatial);
            let mut ws = vec![c.o, c.c / c.groups];
            ws.extend(&c.kernel);
            let x = random(&xs, dt, 400 + i as u64);
            let w = random(&ws, dt, 500 + i as u64);
            let conv = Op::Convolution {
                stride: c.stride.clone(),
                pad: c.pad.clone(),
                dilation: c.dilation.clone(),
                groups: c.groups,
                no_bias: true,
            };
            // dy has the convolution's output shape.
            let y = kiln_ir::interp::eval(&conv, &[x.view(), w.view()]).unwrap();
            let dy = random(y.shape().dims(), dt, 600 + i as u64);
            let op = Op::ConvGradWeight {
                kernel: c.kernel.clone(),
                stride: c.stride.clone(),
                pad: c.pad.clone(),
                dilation: c.dilation.clone(),
                groups: c.groups,
            };
            let dw = check_fast(&op, &[&x, &dy], tol(dt));
            assert_eq!(dw.shape().dims(), ws.as_slice());
        }
    }
}

#[test]
fn deconvolution_matches_the_interpreter() {
    for dt in FLOATS {
        for (i, c) in cases().iter().enumerate() {
            // Deconvolution's input is the convolution's output: x [n, c_in, ..] with weight
            // [c_in, o/groups, k..]; reuse the case with channels read that way.
            let mut xs = vec![c.n, c.c];
            xs.extend(&c.spatial);
            let mut ws = vec![c.c, c.o / c.groups];
            ws.extend(&c.kernel);
            let x = random(&xs, dt, 700 + i as u64);
            let w = random(&ws, dt, 800 + i as u64);
            let b = random(&[c.o], dt, 900 + i as u64);
            for adj in [0usize, 1] {
                let output_padding: Vec<usize> = c
                    .stride
                    .iter()
                    .map(|&s| if s > adj { adj } else { 0 })
                    .collect();
                for no_bias in [false, true] {
                    let op = Op::Deconvolution {
                        stride: c.stride.clone(),
                        pad: c.pad.clone(),
                        dilation: c.dilation.clone(),
                        output_padding: output_padding.clone(),
                        groups: c.groups,
                        no_bias,
                    };
                    let views: Vec<_> = if no_bias {
                        vec![x.clone(), w.clone()]
                    } else {
                        vec![x.clone(), w.clone(), b.clone()]
                    };
                    let refs: Vec<&kiln_ir::Tensor> = views.iter().collect();
                    // Some pads are too large for a small deconvolution output: then both
                    // must give the interpreter's error.
                    let ok = kiln_ir::interp::eval(
                        &op,
                        &refs.iter().map(|t| t.view()).collect::<Vec<_>>(),
                    )
                    .is_ok();
                    if ok {
                        check_fast(&op, &refs, tol(dt));
                    } else {
                        check_same_as_interp(&op, &refs);
                    }
                }
            }
        }
    }
}

#[test]
fn bad_convolutions_give_the_interpreters_errors() {
    let x = random(&[1, 4, 5, 5], DType::F32, 1);
    let w = random(&[6, 2, 3, 3], DType::F32, 2);
    let conv = |stride: Vec<usize>, pad: Vec<usize>, groups| Op::Convolution {
        stride,
        pad,
        dilation: vec![1, 1],
        groups,
        no_bias: true,
    };
    // Wrong channel count for groups=1, zero groups, empty attribute lists, zero stride,
    // kernel larger than the padded input.
    check_same_as_interp(&conv(vec![1, 1], vec![0, 0], 1), &[&x, &w]);
    check_same_as_interp(&conv(vec![1, 1], vec![0, 0], 0), &[&x, &w]);
    check_same_as_interp(&conv(vec![], vec![], 2), &[&x, &w]);
    check_same_as_interp(&conv(vec![0, 1], vec![0, 0], 2), &[&x, &w]);
    let big = random(&[6, 2, 9, 9], DType::F32, 3);
    check_same_as_interp(&conv(vec![1, 1], vec![1, 1], 2), &[&x, &big]);
    let x64 = random(&[1, 4, 5, 5], DType::F64, 4);
    check_same_as_interp(&conv(vec![1, 1], vec![0, 0], 2), &[&x64, &w]);
    let gw = Op::ConvGradWeight {
        kernel: vec![3, 3],
        stride: vec![1, 1],
        pad: vec![0, 0],
        dilation: vec![1, 1],
        groups: 1,
    };
    let dy = random(&[1, 6, 2, 2], DType::F32, 5);
    check_same_as_interp(&gw, &[&x, &dy]);
}
