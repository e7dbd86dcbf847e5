//! Reference semantics of the nn ops, through `interp::eval`: hand-computed cases, the adjoint
//! identities tying convolution, deconvolution and the weight gradient together, and a table
//! of bad calls.

use kiln_ir::random::op_rng;
use kiln_ir::{interp::eval, DType, Op, PoolKind, Shape, Tensor};
use rand::{Rng, RngCore};

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

fn run(op: &Op, inputs: &[&Tensor]) -> kiln_ir::Result<Tensor> {
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    eval(op, &views)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w} (got {got:?}, want {want:?})"
        );
    }
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = op_rng(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    t(&v, shape)
}

fn inner(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| x * y)
        .sum()
}

fn arange1(n: usize) -> Vec<f64> {
    (1..=n).map(|i| i as f64).collect()
}

// ----- softmax family -----------------------------------------------------------------------

#[test]
fn softmax_matches_hand_values_and_rows_sum_to_one() {
    let x = t(&[1.0, 2.0, 3.0, 1.0, 1.0, 1.0], &[2, 3]);
    let y = run(&Op::Softmax { axis: -1 }, &[&x]).unwrap();
    let v = y.to_f64_vec();
    assert_close(
        &v,
        &[
            0.090_030_573_170_380_46,
            0.244_728_471_054_797_64,
            0.665_240_955_774_821_8,
            1.0 / 3.0,
            1.0 / 3.0,
            1.0 / 3.0,
        ],
        1e-12,
    );
    for row in v.chunks(3) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
    // Along axis 0 of two equal rows: every entry is 1/2.
    let x = t(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], &[2, 3]);
    let y = run(&Op::Softmax { axis: 0 }, &[&x]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![0.5; 6]);
}

#[test]
fn softmax_is_stable_at_large_magnitudes() {
    let x = t(&[1000.0, 1000.0, -1000.0, -1000.0, 0.0, -1000.0], &[2, 3]);
    let y = run(&Op::Softmax { axis: 1 }, &[&x]).unwrap();
    assert_close(&y.to_f64_vec(), &[0.5, 0.5, 0.0, 0.0, 1.0, 0.0], 1e-15);
    let y = run(&Op::LogSoftmax { axis: 1 }, &[&x]).unwrap();
    let v = y.to_f64_vec();
    assert!(v.iter().all(|v| v.is_finite()), "{v:?}");
    assert_close(
        &v,
        &[
            -2f64.ln(),
            -2f64.ln(),
            -2000.0 - 2f64.ln(),
            -1000.0,
            0.0,
            -1000.0,
        ],
        1e-12,
    );
    // f32 input at +-1000 also stays finite and keeps its dtype.
    let x32 = Tensor::from_vec(vec![1000.0f32, -1000.0], [2]).unwrap();
    let y = run(&Op::Softmax { axis: 0 }, &[&x32]).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    assert_eq!(y.as_slice::<f32>().unwrap(), &[1.0, 0.0]);
}

#[test]
fn log_softmax_matches_hand_values() {
    let x = t(&[1.0, 2.0, 3.0], &[3]);
    let y = run(&Op::LogSoftmax { axis: 0 }, &[&x]).unwrap();
    assert_close(
        &y.to_f64_vec(),
        &[
            -2.407_605_964_444_38,
            -1.407_605_964_444_38,
            -0.407_605_964_444_38,
        ],
        1e-12,
    );
}

#[test]
fn softmax_cross_entropy_picks_negative_log_softmax() {
    let logits = t(&[1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 0.5, -0.5, 2.0], &[3, 3]);
    let labels = Tensor::from_vec(vec![2i32, 0, 1], [3]).unwrap();
    let y = run(&Op::SoftmaxCrossEntropy, &[&logits, &labels]).unwrap();
    assert_eq!(y.shape(), &Shape::from([3]));
    let ls = run(&Op::LogSoftmax { axis: 1 }, &[&logits])
        .unwrap()
        .to_f64_vec();
    assert_close(&y.to_f64_vec(), &[-ls[2], -ls[3], -ls[7]], 1e-15);
    assert_close(
        &y.to_f64_vec()[..2],
        &[0.407_605_964_444_38, 3f64.ln()],
        1e-12,
    );
    // Float labels truncate; out-of-range labels clip to [0, C-1].
    let labels = t(&[1.7, -4.0, 9.0], &[3]);
    let y = run(&Op::SoftmaxCrossEntropy, &[&logits, &labels]).unwrap();
    assert_close(&y.to_f64_vec(), &[-ls[1], -ls[3], -ls[8]], 1e-15);
}

// ----- convolution family -------------------------------------------------------------------

fn conv(stride: &[usize], pad: &[usize], dilation: &[usize], groups: usize, no_bias: bool) -> Op {
    Op::Convolution {
        stride: stride.to_vec(),
        pad: pad.to_vec(),
        dilation: dilation.to_vec(),
        groups,
        no_bias,
    }
}

fn deconv(
    stride: &[usize],
    pad: &[usize],
    dilation: &[usize],
    output_padding: &[usize],
    groups: usize,
    no_bias: bool,
) -> Op {
    Op::Deconvolution {
        stride: stride.to_vec(),
        pad: pad.to_vec(),
        dilation: dilation.to_vec(),
        output_padding: output_padding.to_vec(),
        groups,
        no_bias,
    }
}

fn grad_weight(
    kernel: &[usize],
    stride: &[usize],
    pad: &[usize],
    dilation: &[usize],
    groups: usize,
) -> Op {
    Op::ConvGradWeight {
        kernel: kernel.to_vec(),
        stride: stride.to_vec(),
        pad: pad.to_vec(),
        dilation: dilation.to_vec(),
        groups,
    }
}

#[test]
fn conv1d_hand_cases_with_stride_pad_dilation_bias() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1, 1, 5]);
    let w = t(&[1.0, 0.0, -1.0], &[1, 1, 3]);
    let y = run(&conv(&[1], &[0], &[1], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 3]));
    assert_eq!(y.to_f64_vec(), vec![-2.0, -2.0, -2.0]);
    let y = run(&conv(&[1], &[1], &[1], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![-2.0, -2.0, -2.0, -2.0, 4.0]);
    let y = run(&conv(&[2], &[1], &[1], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![-2.0, -2.0, 4.0]);
    let y = run(&conv(&[1], &[0], &[2], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![-4.0]);
    let b = t(&[10.0], &[1]);
    let y = run(&conv(&[1], &[0], &[2], 1, false), &[&x, &w, &b]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![6.0]);
}

#[test]
fn conv1d_channels_and_groups() {
    let x = t(&[1.0, 2.0, 3.0, 10.0, 20.0, 30.0], &[1, 2, 3]);
    // groups=2: each channel has its own 1-tap filter.
    let w = t(&[2.0, 3.0], &[2, 1, 1]);
    let y = run(&conv(&[1], &[0], &[1], 2, true), &[&x, &w]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 2, 3]));
    assert_eq!(y.to_f64_vec(), vec![2.0, 4.0, 6.0, 30.0, 60.0, 90.0]);
    // groups=1: sum and difference of the channels, plus per-channel bias.
    let w = t(&[1.0, 1.0, 1.0, -1.0], &[2, 2, 1]);
    let b = t(&[0.5, -0.5], &[2]);
    let y = run(&conv(&[1], &[0], &[1], 1, false), &[&x, &w, &b]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![11.5, 22.5, 33.5, -9.5, -18.5, -27.5]);
}

#[test]
fn conv2d_hand_cases() {
    let x = t(&arange1(9), &[1, 1, 3, 3]);
    let w = t(&[1.0, 0.0, 0.0, 1.0], &[1, 1, 2, 2]);
    let y = run(&conv(&[1, 1], &[0, 0], &[1, 1], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 2, 2]));
    assert_eq!(y.to_f64_vec(), vec![6.0, 8.0, 12.0, 14.0]);
    let b = t(&[1.0], &[1]);
    let y = run(&conv(&[1, 1], &[0, 0], &[1, 1], 1, false), &[&x, &w, &b]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![7.0, 9.0, 13.0, 15.0]);
    let y = run(&conv(&[2, 2], &[1, 1], &[1, 1], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 2, 2]));
    assert_eq!(y.to_f64_vec(), vec![1.0, 3.0, 7.0, 14.0]);
    // Dilation 2 on a 2x2 kernel reaches the corners: x[0,0] + x[2,2].
    let y = run(&conv(&[1, 1], &[0, 0], &[2, 2], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 1, 1]));
    assert_eq!(y.to_f64_vec(), vec![10.0]);
    // Asymmetric attributes: stride (1, 2), pad (0, 1) on a 1x3 kernel of ones.
    let w = t(&[1.0, 1.0, 1.0], &[1, 1, 1, 3]);
    let y = run(&conv(&[1, 2], &[0, 1], &[1, 1], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 3, 2]));
    assert_eq!(y.to_f64_vec(), vec![3.0, 5.0, 9.0, 11.0, 15.0, 17.0]);
}

#[test]
fn conv_keeps_f32() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [1, 1, 3]).unwrap();
    let w = Tensor::from_vec(vec![1.0f32, 1.0], [1, 1, 2]).unwrap();
    let y = run(&conv(&[1], &[0], &[1], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    assert_eq!(y.as_slice::<f32>().unwrap(), &[3.0, 5.0]);
}

#[test]
fn conv_gives_the_same_values_in_f32_and_f64() {
    let x = random(&[1, 2, 5, 5], 5);
    let w = random(&[4, 1, 3, 3], 6);
    let b = random(&[4], 7);
    let op = conv(&[2, 1], &[1, 1], &[1, 2], 2, false);
    let y64 = run(&op, &[&x, &w, &b]).unwrap();
    let [x32, w32, b32] = [&x, &w, &b].map(|t| t.cast(DType::F32));
    let y32 = run(&op, &[&x32, &w32, &b32]).unwrap();
    assert_eq!(y32.dtype(), DType::F32);
    assert_close(&y32.to_f64_vec(), &y64.to_f64_vec(), 1e-6);
}

#[test]
fn empty_batches_give_empty_outputs() {
    let x = t(&[], &[0, 2, 5]);
    let w = random(&[3, 2, 2], 1);
    let y = run(&conv(&[1], &[0], &[1], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.shape(), &Shape::from([0, 3, 4]));
    let y = run(&pool(PoolKind::Avg, &[2], &[1], &[0], true), &[&x]).unwrap();
    assert_eq!(y.shape(), &Shape::from([0, 2, 4]));
    let g = t(&[1.0, 1.0], &[2]);
    let y = run(&batch_norm(1e-5, 1, true), &[&x, &g, &g, &g, &g]).unwrap();
    assert_eq!(y.shape(), x.shape());
}

#[test]
fn deconv_hand_cases() {
    let x = t(&[1.0, 2.0], &[1, 1, 2]);
    let w = t(&[1.0, 1.0, 1.0], &[1, 1, 3]);
    let y = run(&deconv(&[2], &[0], &[1], &[0], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 5]));
    assert_eq!(y.to_f64_vec(), vec![1.0, 1.0, 3.0, 2.0, 2.0]);
    let y = run(&deconv(&[2], &[0], &[1], &[1], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![1.0, 1.0, 3.0, 2.0, 2.0, 0.0]);
    let y = run(&deconv(&[2], &[1], &[1], &[0], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![1.0, 3.0, 2.0]);
    let b = t(&[0.5], &[1]);
    let y = run(&deconv(&[2], &[1], &[1], &[0], 1, false), &[&x, &w, &b]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![1.5, 3.5, 2.5]);
    // 2-D: a 2x2 input spread by a 2x2 kernel of ones.
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let w = t(&[1.0; 4], &[1, 1, 2, 2]);
    let y = run(
        &deconv(&[1, 1], &[0, 0], &[1, 1], &[0, 0], 1, true),
        &[&x, &w],
    )
    .unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 3, 3]));
    assert_eq!(
        y.to_f64_vec(),
        vec![1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]
    );
}

#[test]
fn deconv_channels_and_groups() {
    let x = t(&[1.0, 2.0], &[1, 2, 1]);
    // groups=2: weight [C=2, O/groups=1, 1], output channel c scaled by its own weight.
    let w = t(&[3.0, 5.0], &[2, 1, 1]);
    let y = run(&deconv(&[1], &[0], &[1], &[0], 2, true), &[&x, &w]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 2, 1]));
    assert_eq!(y.to_f64_vec(), vec![3.0, 10.0]);
    // groups=1: weight [C=2, O=2, 1]: out[o] = sum_c x[c] w[c, o].
    let w = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2, 1]);
    let y = run(&deconv(&[1], &[0], &[1], &[0], 1, true), &[&x, &w]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![7.0, 10.0]);
}

#[test]
fn conv_grad_weight_hand_case() {
    let x = t(&[1.0, 2.0, 3.0], &[1, 1, 3]);
    let dy = t(&[1.0, 1.0], &[1, 1, 2]);
    let dw = run(&grad_weight(&[2], &[1], &[0], &[1], 1), &[&x, &dy]).unwrap();
    assert_eq!(dw.shape(), &Shape::from([1, 1, 2]));
    assert_eq!(dw.to_f64_vec(), vec![3.0, 5.0]);
}

/// A convolution configuration: input shape, output channels, kernel and attributes.
struct ConvCase {
    x: &'static [usize],
    out_channels: usize,
    kernel: &'static [usize],
    stride: &'static [usize],
    pad: &'static [usize],
    dilation: &'static [usize],
    groups: usize,
}

const CASES: &[ConvCase] = &[
    ConvCase {
        x: &[2, 3, 7],
        out_channels: 4,
        kernel: &[3],
        stride: &[1],
        pad: &[0],
        dilation: &[1],
        groups: 1,
    },
    ConvCase {
        x: &[1, 4, 9],
        out_channels: 6,
        kernel: &[2],
        stride: &[3],
        pad: &[1],
        dilation: &[2],
        groups: 2,
    },
    ConvCase {
        x: &[2, 2, 5, 6],
        out_channels: 3,
        kernel: &[3, 2],
        stride: &[1, 1],
        pad: &[1, 0],
        dilation: &[1, 1],
        groups: 1,
    },
    ConvCase {
        x: &[1, 4, 7, 8],
        out_channels: 4,
        kernel: &[3, 3],
        stride: &[2, 3],
        pad: &[1, 2],
        dilation: &[2, 1],
        groups: 2,
    },
    ConvCase {
        x: &[1, 3, 6, 6],
        out_channels: 3,
        kernel: &[2, 2],
        stride: &[2, 2],
        pad: &[0, 1],
        dilation: &[1, 2],
        groups: 3,
    },
];

/// `<conv(x, w), dy> == <x, deconv(dy, w)> == <w, conv_grad_weight(x, dy)>` on random data:
/// deconvolution is the input gradient and conv_grad_weight the weight gradient of convolution.
#[test]
fn conv_deconv_and_grad_weight_are_adjoint() {
    for (ci, c) in CASES.iter().enumerate() {
        let nd = c.x.len() - 2;
        let mut w_shape = vec![c.out_channels, c.x[1] / c.groups];
        w_shape.extend_from_slice(c.kernel);
        let x = random(c.x, 100 + ci as u64);
        let w = random(&w_shape, 200 + ci as u64);
        let y = run(
            &conv(c.stride, c.pad, c.dilation, c.groups, true),
            &[&x, &w],
        )
        .unwrap();
        let dy = random(y.shape(), 300 + ci as u64);
        // The output_padding that recovers the input size exactly.
        let adj: Vec<usize> = (0..nd)
            .map(|i| {
                (c.x[2 + i] + 2 * c.pad[i] - c.dilation[i] * (c.kernel[i] - 1) - 1) % c.stride[i]
            })
            .collect();
        let dx = run(
            &deconv(c.stride, c.pad, c.dilation, &adj, c.groups, true),
            &[&dy, &w],
        )
        .unwrap();
        assert_eq!(dx.shape(), x.shape(), "case {ci}");
        let dw = run(
            &grad_weight(c.kernel, c.stride, c.pad, c.dilation, c.groups),
            &[&x, &dy],
        )
        .unwrap();
        assert_eq!(dw.shape(), w.shape(), "case {ci}");
        let lhs = inner(&y, &dy);
        assert!(
            lhs.abs() > 1e-3,
            "case {ci}: degenerate inner product {lhs}"
        );
        let via_x = inner(&x, &dx);
        let via_w = inner(&w, &dw);
        assert!((lhs - via_x).abs() < 1e-10, "case {ci}: {lhs} vs {via_x}");
        assert!((lhs - via_w).abs() < 1e-10, "case {ci}: {lhs} vs {via_w}");
    }
}

/// Bias adds per output channel, for convolution and deconvolution alike.
#[test]
fn conv_and_deconv_bias_is_per_channel() {
    let x = random(&[2, 2, 4, 4], 1);
    let w = random(&[3, 2, 2, 2], 2);
    let b = t(&[1.0, -2.0, 0.5], &[3]);
    let plain = run(&conv(&[1, 1], &[0, 0], &[1, 1], 1, true), &[&x, &w]).unwrap();
    let biased = run(&conv(&[1, 1], &[0, 0], &[1, 1], 1, false), &[&x, &w, &b]).unwrap();
    let per = 9;
    for (i, (p, q)) in plain
        .to_f64_vec()
        .iter()
        .zip(biased.to_f64_vec())
        .enumerate()
    {
        assert!((q - p - b.to_f64_vec()[(i / per) % 3]).abs() < 1e-12);
    }
    // Deconvolution weight [C=2, O=3, ..] with a bias of O=3.
    let w = random(&[2, 3, 2, 2], 3);
    let op = |nb| deconv(&[2, 2], &[0, 0], &[1, 1], &[0, 0], 1, nb);
    let plain = run(&op(true), &[&x, &w]).unwrap();
    let biased = run(&op(false), &[&x, &w, &b]).unwrap();
    assert_eq!(plain.shape(), &Shape::from([2, 3, 8, 8]));
    for (i, (p, q)) in plain
        .to_f64_vec()
        .iter()
        .zip(biased.to_f64_vec())
        .enumerate()
    {
        assert!((q - p - b.to_f64_vec()[(i / 64) % 3]).abs() < 1e-12);
    }
}

// ----- pooling ------------------------------------------------------------------------------

fn pool(kind: PoolKind, kernel: &[usize], stride: &[usize], pad: &[usize], cip: bool) -> Op {
    Op::Pooling {
        kind,
        kernel: kernel.to_vec(),
        stride: stride.to_vec(),
        pad: pad.to_vec(),
        global: false,
        count_include_pad: cip,
    }
}

fn global_pool(kind: PoolKind) -> Op {
    Op::Pooling {
        kind,
        kernel: vec![],
        stride: vec![],
        pad: vec![],
        global: true,
        count_include_pad: true,
    }
}

/// The `PoolingGrad` with the same attributes as a `Pooling`.
fn grad_of(op: &Op) -> Op {
    match op.clone() {
        Op::Pooling {
            kind,
            kernel,
            stride,
            pad,
            global,
            count_include_pad,
        } => Op::PoolingGrad {
            kind,
            kernel,
            stride,
            pad,
            global,
            count_include_pad,
        },
        other => panic!("not a pooling: {other:?}"),
    }
}

#[test]
fn pooling_2d_max_avg_and_global() {
    let x = t(&arange1(16), &[1, 1, 4, 4]);
    let y = run(&pool(PoolKind::Max, &[2, 2], &[2, 2], &[0, 0], true), &[&x]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 2, 2]));
    assert_eq!(y.to_f64_vec(), vec![6.0, 8.0, 14.0, 16.0]);
    let y = run(&pool(PoolKind::Avg, &[2, 2], &[2, 2], &[0, 0], true), &[&x]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![3.5, 5.5, 11.5, 13.5]);
    let y = run(&global_pool(PoolKind::Max), &[&x]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 1, 1]));
    assert_eq!(y.to_f64_vec(), vec![16.0]);
    let y = run(&global_pool(PoolKind::Avg), &[&x]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![8.5]);
}

#[test]
fn pooling_with_padding_both_count_include_pad_settings() {
    let x = t(&arange1(16), &[1, 1, 4, 4]);
    let avg = |cip| pool(PoolKind::Avg, &[2, 2], &[2, 2], &[1, 1], cip);
    let y = run(&avg(true), &[&x]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 3, 3]));
    assert_eq!(
        y.to_f64_vec(),
        vec![0.25, 1.25, 1.0, 3.5, 8.5, 5.0, 3.25, 7.25, 4.0]
    );
    let y = run(&avg(false), &[&x]).unwrap();
    assert_eq!(
        y.to_f64_vec(),
        vec![1.0, 2.5, 4.0, 7.0, 8.5, 10.0, 13.0, 14.5, 16.0]
    );
    // Max pooling ignores the padding, even when every real element is negative.
    let max = pool(PoolKind::Max, &[2, 2], &[2, 2], &[1, 1], true);
    let y = run(&max, &[&x]).unwrap();
    assert_eq!(
        y.to_f64_vec(),
        vec![1.0, 3.0, 4.0, 9.0, 11.0, 12.0, 13.0, 15.0, 16.0]
    );
    let neg: Vec<f64> = arange1(16).iter().map(|v| -v).collect();
    let y = run(&max, &[&t(&neg, &[1, 1, 4, 4])]).unwrap();
    assert_eq!(
        y.to_f64_vec(),
        vec![-1.0, -2.0, -4.0, -5.0, -6.0, -8.0, -13.0, -14.0, -16.0]
    );
}

#[test]
fn pooling_1d_and_floor_output_size() {
    let x = t(&[1.0, 3.0, 2.0, 5.0, 4.0], &[1, 1, 5]);
    let y = run(&pool(PoolKind::Max, &[2], &[1], &[0], true), &[&x]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![3.0, 3.0, 5.0, 5.0]);
    let y = run(&pool(PoolKind::Avg, &[3], &[2], &[0], true), &[&x]).unwrap();
    assert_close(&y.to_f64_vec(), &[2.0, 11.0 / 3.0], 1e-15);
    // Floor: 5 elements, kernel 2, stride 2 -> 2 outputs (the last element is unused).
    let y = run(&pool(PoolKind::Max, &[2], &[2], &[0], true), &[&x]).unwrap();
    assert_eq!(y.shape(), &Shape::from([1, 1, 2]));
    assert_eq!(y.to_f64_vec(), vec![3.0, 5.0]);
    // Channels and batch are pooled independently.
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[2, 2, 2]);
    let y = run(&global_pool(PoolKind::Avg), &[&x]).unwrap();
    assert_eq!(y.shape(), &Shape::from([2, 2, 1]));
    assert_eq!(y.to_f64_vec(), vec![1.5, 3.5, 5.5, 7.5]);
}

#[test]
fn pooling_grad_max_routes_to_the_first_maximum() {
    // Ties: both windows are all equal, the gradient goes to each window's first element.
    let x = t(&[1.0; 4], &[1, 1, 1, 4]);
    let dy = t(&[10.0, 20.0], &[1, 1, 1, 2]);
    let op = grad_of(&pool(PoolKind::Max, &[1, 2], &[1, 2], &[0, 0], true));
    let dx = run(&op, &[&x, &dy]).unwrap();
    assert_eq!(dx.shape(), x.shape());
    assert_eq!(dx.to_f64_vec(), vec![10.0, 0.0, 20.0, 0.0]);
    // Overlapping windows accumulate.
    let x = t(&[1.0, 3.0, 2.0, 0.0], &[1, 1, 4]);
    let dy = t(&[1.0, 2.0, 4.0], &[1, 1, 3]);
    let op = grad_of(&pool(PoolKind::Max, &[2], &[1], &[0], true));
    let dx = run(&op, &[&x, &dy]).unwrap();
    assert_eq!(dx.to_f64_vec(), vec![0.0, 3.0, 4.0, 0.0]);
}

#[test]
fn pooling_grad_avg_with_padding() {
    let x = t(&[0.0; 4], &[1, 1, 4]);
    let dy = t(&[4.0, 8.0, 12.0], &[1, 1, 3]);
    let op = |cip| grad_of(&pool(PoolKind::Avg, &[2], &[2], &[1], cip));
    let dx = run(&op(true), &[&x, &dy]).unwrap();
    assert_eq!(dx.to_f64_vec(), vec![2.0, 4.0, 4.0, 6.0]);
    let dx = run(&op(false), &[&x, &dy]).unwrap();
    assert_eq!(dx.to_f64_vec(), vec![4.0, 4.0, 4.0, 12.0]);
    // Global average: every element gets dy / (H * W).
    let x = t(&[0.0; 6], &[1, 1, 2, 3]);
    let dy = t(&[6.0], &[1, 1, 1, 1]);
    let dx = run(&grad_of(&global_pool(PoolKind::Avg)), &[&x, &dy]).unwrap();
    assert_eq!(dx.to_f64_vec(), vec![1.0; 6]);
}

/// `<pool(x), dy> == <x, pool_grad(x, dy)>`: average pooling is linear, and max pooling picks
/// exactly the element its gradient is routed to.
#[test]
fn pooling_grad_is_adjoint_to_pooling() {
    let ops = [
        pool(PoolKind::Max, &[3, 2], &[2, 1], &[1, 1], true),
        pool(PoolKind::Avg, &[3, 2], &[2, 1], &[1, 1], true),
        pool(PoolKind::Avg, &[3, 2], &[2, 1], &[1, 1], false),
        pool(PoolKind::Max, &[2, 2], &[1, 1], &[0, 0], true),
        global_pool(PoolKind::Max),
        global_pool(PoolKind::Avg),
    ];
    for (i, op) in ops.iter().enumerate() {
        let x = random(&[2, 3, 5, 4], 10 + i as u64);
        let y = run(op, &[&x]).unwrap();
        let dy = random(y.shape(), 20 + i as u64);
        let dx = run(&grad_of(op), &[&x, &dy]).unwrap();
        let (lhs, rhs) = (inner(&y, &dy), inner(&x, &dx));
        assert!((lhs - rhs).abs() < 1e-10, "{op:?}: {lhs} vs {rhs}");
    }
}

// ----- normalization ------------------------------------------------------------------------

fn batch_norm(eps: f64, axis: isize, use_batch_stats: bool) -> Op {
    Op::BatchNorm {
        eps,
        axis,
        use_batch_stats,
    }
}

#[test]
fn batch_norm_with_batch_statistics() {
    let x = t(&[1.0, 10.0, 3.0, 30.0], &[2, 2]);
    let gamma = t(&[1.0, 2.0], &[2]);
    let beta = t(&[0.0, 1.0], &[2]);
    // Running stats are ignored in this mode.
    let junk = t(&[100.0, -7.0], &[2]);
    let eps = 1e-3;
    let y = run(
        &batch_norm(eps, 1, true),
        &[&x, &gamma, &beta, &junk, &junk],
    )
    .unwrap();
    // Channel 0: mean 2, biased var 1. Channel 1: mean 20, var 100.
    let s0 = (1.0f64 + eps).sqrt();
    let s1 = (100.0f64 + eps).sqrt();
    assert_close(
        &y.to_f64_vec(),
        &[
            -1.0 / s0,
            -10.0 / s1 * 2.0 + 1.0,
            1.0 / s0,
            10.0 / s1 * 2.0 + 1.0,
        ],
        1e-12,
    );
}

#[test]
fn batch_norm_with_running_statistics() {
    let x = t(&[1.0, 10.0, 3.0, 30.0], &[2, 2]);
    let gamma = t(&[1.0, 2.0], &[2]);
    let beta = t(&[0.0, 1.0], &[2]);
    let mean = t(&[0.0, 10.0], &[2]);
    let var = t(&[4.0, 25.0], &[2]);
    let eps = 1e-5;
    let y = run(
        &batch_norm(eps, 1, false),
        &[&x, &gamma, &beta, &mean, &var],
    )
    .unwrap();
    let s0 = (4.0f64 + eps).sqrt();
    let s1 = (25.0f64 + eps).sqrt();
    assert_close(
        &y.to_f64_vec(),
        &[1.0 / s0, 1.0, 3.0 / s0, 20.0 / s1 * 2.0 + 1.0],
        1e-12,
    );
}

#[test]
fn batch_norm_statistics_span_batch_and_spatial_dims_for_any_axis() {
    // NCW [2, 2, 2], axis 1: channel 0 holds {1, 2, 5, 6}, channel 1 holds {3, 4, 7, 8}.
    let x = t(&arange1(8), &[2, 2, 2]);
    let ones = t(&[1.0, 1.0], &[2]);
    let zeros = t(&[0.0, 0.0], &[2]);
    let y = run(
        &batch_norm(0.0, 1, true),
        &[&x, &ones, &zeros, &zeros, &ones],
    )
    .unwrap();
    // Both channels: deviations {-2.5, -1.5, 1.5, 2.5}, biased var 4.25.
    let s = 4.25f64.sqrt();
    let n = |d: f64| d / s;
    assert_close(
        &y.to_f64_vec(),
        &[
            n(-2.5),
            n(-1.5),
            n(-2.5),
            n(-1.5),
            n(1.5),
            n(2.5),
            n(1.5),
            n(2.5),
        ],
        1e-12,
    );
    // Channel-last (axis -1) on [2, 2, 2]: channel 0 holds {1, 3, 5, 7}, var 5.
    let y = run(
        &batch_norm(0.0, -1, true),
        &[&x, &ones, &zeros, &zeros, &ones],
    )
    .unwrap();
    let s = 5f64.sqrt();
    let want: Vec<f64> = [-3.0, -3.0, -1.0, -1.0, 1.0, 1.0, 3.0, 3.0]
        .iter()
        .map(|d| d / s)
        .collect();
    assert_close(&y.to_f64_vec(), &want, 1e-12);
}

#[test]
fn layer_norm_normalizes_each_lane() {
    let x = t(&[1.0, 2.0, 3.0, 2.0, 4.0, 6.0], &[2, 3]);
    let gamma = t(&[1.0, 1.0, 2.0], &[3]);
    let beta = t(&[0.0, 0.0, 1.0], &[3]);
    let eps = 1e-5;
    let y = run(&Op::LayerNorm { axis: -1, eps }, &[&x, &gamma, &beta]).unwrap();
    let s0 = (2.0f64 / 3.0 + eps).sqrt();
    let s1 = (8.0f64 / 3.0 + eps).sqrt();
    assert_close(
        &y.to_f64_vec(),
        &[
            -1.0 / s0,
            0.0,
            1.0 / s0 * 2.0 + 1.0,
            -2.0 / s1,
            0.0,
            2.0 / s1 * 2.0 + 1.0,
        ],
        1e-12,
    );
    // Along axis 0: each column is its own lane of 2, normalized to -1/+1 (eps 0).
    let gamma = t(&[1.0, 3.0], &[2]);
    let beta = t(&[0.0, 10.0], &[2]);
    let y = run(&Op::LayerNorm { axis: 0, eps: 0.0 }, &[&x, &gamma, &beta]).unwrap();
    assert_close(
        &y.to_f64_vec(),
        &[-1.0, -1.0, -1.0, 13.0, 13.0, 13.0],
        1e-12,
    );
}

// ----- dropout ------------------------------------------------------------------------------

#[test]
fn dropout_is_reproducible_and_follows_the_documented_rule() {
    let x = t(&arange1(64), &[8, 8]);
    let p = 0.5;
    let a = run(&Op::Dropout { p, seed: 42 }, &[&x]).unwrap();
    let b = run(&Op::Dropout { p, seed: 42 }, &[&x]).unwrap();
    let c = run(&Op::Dropout { p, seed: 43 }, &[&x]).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Element i is dropped when the i-th draw (r >> 11) * 2^-53 of op_rng(seed) is < p.
    let mut rng = op_rng(42);
    let want: Vec<f64> = x
        .to_f64_vec()
        .iter()
        .map(|v| {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if u < p {
                0.0
            } else {
                v * 2.0
            }
        })
        .collect();
    assert_eq!(a.to_f64_vec(), want);
}

#[test]
fn dropout_keep_rate_and_scaling() {
    let n = 100_000;
    let x = Tensor::from_vec(vec![1.0f32; n], [n]).unwrap();
    let p = 0.3;
    let y = run(&Op::Dropout { p, seed: 7 }, &[&x]).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    let v = y.as_slice::<f32>().unwrap();
    let scale = (1.0 / (1.0 - p)) as f32;
    assert!(v.iter().all(|&e| e == 0.0 || e == scale));
    let kept = v.iter().filter(|&&e| e != 0.0).count() as f64 / n as f64;
    // Standard deviation of the rate is sqrt(0.21 / 1e5) ~ 0.0015.
    assert!((kept - 0.7).abs() < 0.01, "keep rate {kept}");
    // The mean is preserved in expectation.
    let mean = v.iter().map(|&e| e as f64).sum::<f64>() / n as f64;
    assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
}

#[test]
fn dropout_edge_probabilities() {
    let x = t(&[1.0, -2.0, 3.0], &[3]);
    let y = run(&Op::Dropout { p: 0.0, seed: 1 }, &[&x]).unwrap();
    assert_eq!(y.to_f64_vec(), x.to_f64_vec());
    let y = run(&Op::Dropout { p: 1.0, seed: 1 }, &[&x]).unwrap();
    assert_eq!(y.to_f64_vec(), vec![0.0; 3]);
}

// ----- bad calls ----------------------------------------------------------------------------

/// Calls that must fail, and fragments the message must contain (op name and shapes).
#[test]
fn bad_calls_name_the_op_and_shapes() {
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32);
    let zd = |s: &[usize], d: DType| Tensor::zeros(s, d);
    let pool_op = |kernel: &[usize], stride: &[usize], pad: &[usize]| {
        pool(PoolKind::Max, kernel, stride, pad, true)
    };
    let cases: Vec<(Op, Vec<Tensor>, Vec<&str>)> = vec![
        (
            Op::Softmax { axis: 2 },
            vec![z(&[2, 3])],
            vec!["softmax", "axis 2 is out of range for rank 2"],
        ),
        (
            Op::LogSoftmax { axis: 0 },
            vec![zd(&[3], DType::I64)],
            vec!["log_softmax", "i64"],
        ),
        (
            Op::SoftmaxCrossEntropy,
            vec![z(&[2, 3]), z(&[3])],
            vec![
                "softmax_cross_entropy",
                "labels must be [2]",
                "[2, 3]",
                "got [3]",
            ],
        ),
        (
            Op::SoftmaxCrossEntropy,
            vec![z(&[3]), z(&[3])],
            vec!["softmax_cross_entropy", "logits must be [N, C]", "[3]"],
        ),
        (
            conv(&[1, 1], &[0, 0], &[1, 1], 1, true),
            vec![z(&[1, 4, 28, 28]), z(&[8, 3, 5, 5])],
            vec![
                "convolution: weight [8, 3, 5, 5] expects 3 input channels per group, \
                 input [1, 4, 28, 28] has 4 with groups=1",
            ],
        ),
        (
            conv(&[1, 1], &[0, 0], &[1, 1], 1, true),
            vec![z(&[1, 1, 3, 3]), z(&[1, 1, 4, 4])],
            vec!["convolution", "[1, 1, 3, 3]", "size 3", "kernel extent 4"],
        ),
        (
            conv(&[1, 1], &[0, 0], &[2, 2], 1, true),
            vec![z(&[1, 1, 4, 4]), z(&[1, 1, 3, 3])],
            vec!["convolution", "kernel extent 5", "dilation 2"],
        ),
        (
            conv(&[1], &[0, 0], &[1], 1, true),
            vec![z(&[1, 1, 5]), z(&[1, 1, 3])],
            vec!["convolution", "pad [0, 0]", "spatial dim (1)", "[1, 1, 5]"],
        ),
        (
            conv(&[], &[], &[], 1, true),
            vec![z(&[1, 1, 5]), z(&[1, 1, 3])],
            vec!["convolution", "stride []", "spatial dim (1)"],
        ),
        (
            deconv(&[1, 1], &[0, 0], &[1, 1], &[], 1, true),
            vec![z(&[1, 1, 5, 5]), z(&[1, 1, 3, 3])],
            vec!["deconvolution", "output_padding []", "spatial dim (2)"],
        ),
        (
            conv(&[0], &[0], &[1], 1, true),
            vec![z(&[1, 1, 5]), z(&[1, 1, 3])],
            vec!["convolution", "stride [0] must be >= 1"],
        ),
        (
            conv(&[1], &[0], &[1], 0, true),
            vec![z(&[1, 1, 5]), z(&[1, 1, 3])],
            vec!["convolution", "groups must be >= 1"],
        ),
        (
            conv(&[1], &[0], &[1], 2, true),
            vec![z(&[1, 4, 5]), z(&[3, 2, 3])],
            vec![
                "convolution",
                "weight [3, 2, 3]",
                "not divisible by groups=2",
            ],
        ),
        (
            conv(&[1], &[0], &[1], 1, false),
            vec![z(&[1, 1, 5]), z(&[2, 1, 3]), z(&[3])],
            vec!["convolution", "bias must be [2]", "[2, 1, 3]", "got [3]"],
        ),
        (
            conv(&[1], &[0], &[1], 1, true),
            vec![z(&[1, 1, 5, 5, 5]), z(&[1, 1, 3, 3, 3])],
            vec!["convolution", "rank 3 or 4", "[1, 1, 5, 5, 5]"],
        ),
        (
            conv(&[1], &[0], &[1], 1, true),
            vec![z(&[1, 1, 5]), z(&[1, 1, 3, 3])],
            vec!["convolution", "[1, 1, 3, 3]", "rank of input [1, 1, 5]"],
        ),
        (
            conv(&[1], &[0], &[1], 1, true),
            vec![zd(&[1, 1, 5], DType::I32), zd(&[1, 1, 3], DType::I32)],
            vec!["convolution", "i32"],
        ),
        (
            conv(&[1], &[0], &[1], 1, true),
            vec![z(&[1, 1, 5]), zd(&[1, 1, 3], DType::F64)],
            vec!["convolution", "f32 input", "f64 weight"],
        ),
        (
            conv(&[1], &[0], &[1], 1, false),
            vec![z(&[1, 1, 5]), z(&[1, 1, 3])],
            vec!["convolution", "expects 3 input(s), got 2"],
        ),
        (
            deconv(&[2], &[0], &[1], &[2], 1, true),
            vec![z(&[1, 1, 5]), z(&[1, 1, 3])],
            vec!["deconvolution", "output_padding [2]", "stride [2]"],
        ),
        (
            deconv(&[1], &[0], &[1], &[0], 1, true),
            vec![z(&[1, 2, 5]), z(&[3, 1, 3])],
            vec![
                "deconvolution",
                "weight [3, 1, 3] expects 3 input channels",
                "[1, 2, 5] has 2",
            ],
        ),
        (
            deconv(&[1], &[3], &[1], &[0], 1, true),
            vec![z(&[1, 1, 2]), z(&[1, 1, 2])],
            vec!["deconvolution", "[1, 1, 2]", "would have size -3"],
        ),
        (
            deconv(&[1], &[0], &[1], &[0], 2, true),
            vec![z(&[1, 3, 5]), z(&[3, 1, 3])],
            vec!["deconvolution", "[1, 3, 5] has 3 channels", "groups=2"],
        ),
        (
            grad_weight(&[3], &[1], &[0], &[1], 1),
            vec![z(&[1, 1, 5]), z(&[1, 2, 4])],
            vec!["conv_grad_weight", "dy [1, 2, 4]", "[1, 1, 5]", "4 != 3"],
        ),
        (
            grad_weight(&[3, 3], &[1], &[0], &[1], 1),
            vec![z(&[1, 1, 5]), z(&[1, 2, 3])],
            vec!["conv_grad_weight", "kernel [3, 3]", "[1, 1, 5]"],
        ),
        (
            grad_weight(&[3], &[1], &[0], &[1], 1),
            vec![z(&[1, 1, 5]), z(&[2, 2, 3])],
            vec!["conv_grad_weight", "dy [2, 2, 3]", "batch size"],
        ),
        (
            pool_op(&[2, 2], &[1, 1], &[2, 0]),
            vec![z(&[1, 1, 4, 4])],
            vec!["pooling", "pad [2, 0] must be smaller than kernel [2, 2]"],
        ),
        (
            pool_op(&[5, 1], &[1, 1], &[0, 0]),
            vec![z(&[1, 1, 4, 4])],
            vec!["pooling", "[1, 1, 4, 4]", "kernel extent 5"],
        ),
        (
            pool_op(&[], &[], &[]),
            vec![z(&[1, 1, 4])],
            vec!["pooling", "needs a kernel", "[1, 1, 4]"],
        ),
        (
            pool_op(&[2], &[1], &[0]),
            vec![z(&[4, 4])],
            vec!["pooling", "rank 3 or 4", "[4, 4]"],
        ),
        (
            pool_op(&[2], &[1], &[0]),
            vec![z(&[1, 1, 4, 4])],
            vec!["pooling", "kernel [2]", "spatial dim (2)", "[1, 1, 4, 4]"],
        ),
        (
            grad_of(&pool_op(&[2], &[2], &[0])),
            vec![z(&[1, 1, 4]), z(&[1, 1, 3])],
            vec![
                "pooling_grad",
                "dy [1, 1, 3]",
                "output [1, 1, 2]",
                "[1, 1, 4]",
            ],
        ),
        (
            batch_norm(1e-5, 1, true),
            vec![z(&[2, 3]), z(&[2]), z(&[3]), z(&[3]), z(&[3])],
            vec!["batch_norm", "gamma must be [3]", "[2, 3]", "got [2]"],
        ),
        (
            batch_norm(1e-5, 3, true),
            vec![z(&[2, 3]), z(&[3]), z(&[3]), z(&[3]), z(&[3])],
            vec!["batch_norm", "axis 3 is out of range for rank 2"],
        ),
        (
            batch_norm(-1.0, 1, true),
            vec![z(&[2, 3]), z(&[3]), z(&[3]), z(&[3]), z(&[3])],
            vec!["batch_norm", "eps", "-1"],
        ),
        (
            batch_norm(1e-5, 1, true),
            vec![z(&[2, 3]), z(&[3]), z(&[3])],
            vec!["batch_norm", "expects 5 input(s), got 3"],
        ),
        (
            Op::LayerNorm {
                axis: -1,
                eps: 1e-5,
            },
            vec![z(&[2, 3]), z(&[3]), z(&[2])],
            vec!["layer_norm", "beta must be [3]", "[2, 3]", "got [2]"],
        ),
        (
            Op::Dropout { p: 1.5, seed: 0 },
            vec![z(&[3])],
            vec!["dropout", "p must be in [0, 1], got 1.5"],
        ),
        (
            Op::Dropout {
                p: f64::NAN,
                seed: 0,
            },
            vec![z(&[3])],
            vec!["dropout", "NaN"],
        ),
        (
            Op::Dropout { p: 0.5, seed: 0 },
            vec![zd(&[3], DType::U8)],
            vec!["dropout", "u8"],
        ),
    ];
    for (op, inputs, fragments) in cases {
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let msg = match run(&op, &refs) {
            Ok(y) => panic!("{op:?} should fail, gave {y:?}"),
            Err(e) => e.to_string(),
        };
        for f in fragments {
            assert!(msg.contains(f), "message {msg:?} lacks {f:?}");
        }
    }
}
