//! Reference semantics of the reductions, through the public `interp::eval` and
//! `infer::infer`, on hand-computed cases.

use kiln_ir::{
    infer::infer, interp::eval, ArgReduceOp, DType, Element, Op, ReduceOp, Result, Shape, Tensor,
    TensorType,
};

fn t<T: Element>(v: Vec<T>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape).unwrap()
}

fn reduce(f: ReduceOp, axes: Option<&[isize]>, keepdims: bool, x: &Tensor) -> Result<Tensor> {
    let op = Op::Reduce {
        f,
        axes: axes.map(|a| a.to_vec()),
        keepdims,
    };
    eval(&op, &[x.view()])
}

fn arg(f: ArgReduceOp, axis: Option<isize>, keepdims: bool, x: &Tensor) -> Result<Tensor> {
    eval(&Op::ArgReduce { f, axis, keepdims }, &[x.view()])
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(ok, "element {i}: got {g}, want {w} (all: {got:?})");
    }
}

/// [[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]], [[12, ..]..]] of shape [2, 3, 4].
fn iota234<T: Element>() -> Tensor {
    t((0..24).map(|i| T::from_f64(i as f64)).collect(), &[2, 3, 4])
}

#[test]
fn every_reduction_over_every_axis_set_in_f32_and_f64() {
    // (f, axes, expected shape, expected values) for iota [2, 3, 4].
    type Case = (
        ReduceOp,
        Option<&'static [isize]>,
        &'static [usize],
        Vec<f64>,
    );
    let cases: Vec<Case> = vec![
        (ReduceOp::Sum, None, &[], vec![276.0]),
        (
            ReduceOp::Sum,
            Some(&[0]),
            &[3, 4],
            (0..12).map(|i| (2 * i + 12) as f64).collect(),
        ),
        (
            ReduceOp::Sum,
            Some(&[1]),
            &[2, 4],
            vec![12.0, 15.0, 18.0, 21.0, 48.0, 51.0, 54.0, 57.0],
        ),
        (
            ReduceOp::Sum,
            Some(&[-1]),
            &[2, 3],
            vec![6.0, 22.0, 38.0, 54.0, 70.0, 86.0],
        ),
        (ReduceOp::Sum, Some(&[0, 2]), &[3], vec![60.0, 92.0, 124.0]),
        (ReduceOp::Mean, Some(&[2, 0]), &[3], vec![7.5, 11.5, 15.5]),
        (ReduceOp::Mean, None, &[], vec![11.5]),
        (
            ReduceOp::Max,
            Some(&[1]),
            &[2, 4],
            vec![8.0, 9.0, 10.0, 11.0, 20.0, 21.0, 22.0, 23.0],
        ),
        (ReduceOp::Min, Some(&[-3, -1]), &[3], vec![0.0, 4.0, 8.0]),
        (
            ReduceOp::Prod,
            Some(&[2]),
            &[2, 3],
            vec![0.0, 840.0, 7920.0, 32760.0, 93024.0, 212520.0],
        ),
        (
            ReduceOp::Norm,
            Some(&[2]),
            &[2, 3],
            vec![
                14f64.sqrt(),
                126f64.sqrt(),
                366f64.sqrt(),
                734f64.sqrt(),
                1230f64.sqrt(),
                1854f64.sqrt(),
            ],
        ),
        (ReduceOp::Norm, None, &[], vec![4324f64.sqrt()]),
        // The empty axis list is the identity.
        (
            ReduceOp::Sum,
            Some(&[]),
            &[2, 3, 4],
            (0..24).map(|i| i as f64).collect(),
        ),
    ];
    for (f, axes, shape, want) in cases {
        for x in [iota234::<f32>(), iota234::<f64>()] {
            let got = reduce(f, axes, false, &x).unwrap();
            assert_eq!(
                got.ty(),
                TensorType::new(shape, x.dtype()),
                "{f:?} {axes:?}"
            );
            assert_close(&got.to_f64_vec(), &want, 1e-7);
        }
    }
}

#[test]
fn keepdims_keeps_reduced_axes_as_one() {
    let x = iota234::<f64>();
    let s = reduce(ReduceOp::Sum, Some(&[1]), true, &x).unwrap();
    assert_eq!(s.shape(), &Shape::from([2, 1, 4]));
    assert_eq!(
        s.to_f64_vec(),
        vec![12.0, 15.0, 18.0, 21.0, 48.0, 51.0, 54.0, 57.0]
    );
    let s = reduce(ReduceOp::Max, None, true, &x).unwrap();
    assert_eq!(s.shape(), &Shape::from([1, 1, 1]));
    assert_eq!(s.to_f64_vec(), vec![23.0]);
    let s = reduce(ReduceOp::Min, Some(&[0, -1]), true, &x).unwrap();
    assert_eq!(s.shape(), &Shape::from([1, 3, 1]));
    assert_eq!(s.to_f64_vec(), vec![0.0, 4.0, 8.0]);
}

#[test]
fn integer_reductions_wrap_and_mean_truncates() {
    let x = t(vec![1i32, 2, 4, -7, -2, 0], &[2, 3]);
    let r = |f, axes: Option<&[isize]>| reduce(f, axes, false, &x).unwrap();
    assert_eq!(
        r(ReduceOp::Sum, Some(&[1])).as_slice::<i32>().unwrap(),
        &[7, -9]
    );
    // 7/3 = 2.33 -> 2; -9/3 = -3.
    assert_eq!(
        r(ReduceOp::Mean, Some(&[1])).as_slice::<i32>().unwrap(),
        &[2, -3]
    );
    // (1 - 7) / 2 = -3, (2 - 2)/2 = 0, (4 + 0)/2 = 2.
    assert_eq!(
        r(ReduceOp::Mean, Some(&[0])).as_slice::<i32>().unwrap(),
        &[-3, 0, 2]
    );
    // -2 / 6 = -0.33 truncates toward zero.
    assert_eq!(r(ReduceOp::Mean, None).as_slice::<i32>().unwrap(), &[0]);
    assert_eq!(
        r(ReduceOp::Prod, Some(&[0])).as_slice::<i32>().unwrap(),
        &[-7, -4, 0]
    );
    assert_eq!(r(ReduceOp::Max, None).as_slice::<i32>().unwrap(), &[4]);
    assert_eq!(
        r(ReduceOp::Min, Some(&[1])).as_slice::<i32>().unwrap(),
        &[1, -7]
    );
    // Overflow wraps like numpy's fixed-width integers.
    let big = t(vec![i32::MAX, 1], &[2]);
    assert_eq!(
        reduce(ReduceOp::Sum, None, false, &big)
            .unwrap()
            .as_slice::<i32>()
            .unwrap(),
        &[i32::MIN]
    );
    // ...but the mean divides the exact sum.
    assert_eq!(
        reduce(ReduceOp::Mean, None, false, &big)
            .unwrap()
            .as_slice::<i32>()
            .unwrap(),
        &[1 << 30]
    );
    let big = t(vec![i64::MAX, i64::MAX], &[2]);
    assert_eq!(
        reduce(ReduceOp::Mean, None, false, &big)
            .unwrap()
            .as_slice::<i64>()
            .unwrap(),
        &[i64::MAX]
    );
    let u = t(vec![200u8, 100, 3], &[3]);
    assert_eq!(
        reduce(ReduceOp::Sum, None, false, &u)
            .unwrap()
            .as_slice::<u8>()
            .unwrap(),
        &[47]
    );
    assert_eq!(
        reduce(ReduceOp::Mean, None, false, &u)
            .unwrap()
            .as_slice::<u8>()
            .unwrap(),
        &[101]
    );
    let l = t(vec![3i64, 4, 5], &[3]);
    assert_eq!(
        reduce(ReduceOp::Prod, None, false, &l)
            .unwrap()
            .as_slice::<i64>()
            .unwrap(),
        &[60]
    );
}

#[test]
fn bool_max_and_min_are_any_and_all() {
    let b = t(vec![true, false, false, false], &[2, 2]);
    let any = reduce(ReduceOp::Max, Some(&[1]), false, &b).unwrap();
    assert_eq!(any.as_slice::<bool>().unwrap(), &[true, false]);
    let all = reduce(ReduceOp::Min, Some(&[0]), false, &b).unwrap();
    assert_eq!(all.as_slice::<bool>().unwrap(), &[false, false]);
}

#[test]
fn empty_reductions_give_the_identity() {
    let e = t(Vec::<f32>::new(), &[2, 0]);
    let r = |f| reduce(f, Some(&[1]), false, &e).unwrap().to_f64_vec();
    assert_eq!(r(ReduceOp::Sum), vec![0.0, 0.0]);
    assert_eq!(r(ReduceOp::Prod), vec![1.0, 1.0]);
    assert_eq!(r(ReduceOp::Norm), vec![0.0, 0.0]);
    assert!(r(ReduceOp::Mean).iter().all(|v| v.is_nan()));
    // Reducing the non-empty axis of an empty tensor gives an empty result.
    let s = reduce(ReduceOp::Max, Some(&[0]), false, &e).unwrap();
    assert_eq!(s.shape(), &Shape::from([0]));
    let ei = t(Vec::<i64>::new(), &[0]);
    assert_eq!(
        reduce(ReduceOp::Mean, None, false, &ei)
            .unwrap()
            .as_slice::<i64>()
            .unwrap(),
        &[0]
    );
}

#[test]
fn f32_sums_accumulate_in_f64() {
    // 1 + 1e-8 * 1e6: an f32 accumulator would stay at 1.0 (1e-8 is below half an ulp).
    let mut v = vec![1.0f32];
    v.extend(std::iter::repeat_n(1e-8f32, 1_000_000));
    let x = t(v, &[1_000_001]);
    let s = reduce(ReduceOp::Sum, None, false, &x).unwrap();
    assert_close(&s.to_f64_vec(), &[1.01], 1e-6);
}

#[test]
fn nan_propagates_through_max_min_and_sums() {
    let x = t(vec![1.0f64, f64::NAN, 3.0, 2.0, 5.0, 4.0], &[2, 3]);
    for f in [ReduceOp::Max, ReduceOp::Min, ReduceOp::Sum] {
        let r = reduce(f, Some(&[1]), false, &x).unwrap().to_f64_vec();
        assert!(r[0].is_nan(), "{f:?}: {r:?}");
        assert!(!r[1].is_nan(), "{f:?}: {r:?}");
    }
}

#[test]
fn argmax_and_argmin_along_axes_and_flattened() {
    let x = t(
        vec![
            3.0f32, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 9.0,
        ],
        &[3, 4],
    );
    let a = arg(ArgReduceOp::Argmax, Some(1), false, &x).unwrap();
    assert_eq!(a.ty(), TensorType::new([3], DType::F32));
    assert_eq!(a.to_f64_vec(), vec![2.0, 1.0, 3.0]);
    let a = arg(ArgReduceOp::Argmin, Some(-1), true, &x).unwrap();
    assert_eq!(a.shape(), &Shape::from([3, 1]));
    // Ties take the first index (row 0 has 1.0 at 1 and 3).
    assert_eq!(a.to_f64_vec(), vec![1.0, 2.0, 1.0]);
    // Column 0 is [3, 5, 5]: the tie goes to row 1.
    let a = arg(ArgReduceOp::Argmax, Some(0), false, &x).unwrap();
    assert_eq!(a.to_f64_vec(), vec![1.0, 1.0, 2.0, 2.0]);
    let a = arg(ArgReduceOp::Argmax, None, false, &x).unwrap();
    assert_eq!(a.shape(), &Shape::scalar());
    assert_eq!(a.to_f64_vec(), vec![5.0]);
    let a = arg(ArgReduceOp::Argmin, None, true, &x).unwrap();
    assert_eq!(a.shape(), &Shape::from([1, 1]));
    assert_eq!(a.to_f64_vec(), vec![1.0]);
    // Integer inputs give integer indices; a middle axis of a rank-3 tensor.
    let i = iota234::<i64>();
    let a = arg(ArgReduceOp::Argmax, Some(1), false, &i).unwrap();
    assert_eq!(a.as_slice::<i64>().unwrap(), &[2, 2, 2, 2, 2, 2, 2, 2]);
    let u = t(vec![7u8, 7, 9, 9], &[4]);
    assert_eq!(
        arg(ArgReduceOp::Argmax, Some(0), false, &u)
            .unwrap()
            .as_slice::<u8>()
            .unwrap(),
        &[2]
    );
    let i32s = t(vec![-1i32, -5, -5], &[3]);
    assert_eq!(
        arg(ArgReduceOp::Argmin, None, false, &i32s)
            .unwrap()
            .as_slice::<i32>()
            .unwrap(),
        &[1]
    );
}

#[test]
fn arg_reductions_return_the_first_nan() {
    let x = t(vec![1.0f64, f64::NAN, 3.0, f64::NAN, 0.0, -1.0], &[2, 3]);
    for f in [ArgReduceOp::Argmax, ArgReduceOp::Argmin] {
        let a = arg(f, Some(1), false, &x).unwrap();
        assert_eq!(a.to_f64_vec()[0], 1.0, "{f:?}");
        assert_eq!(a.to_f64_vec()[1], 0.0, "{f:?}");
    }
}

#[test]
fn infer_gives_reduced_types() {
    let x = TensorType::new([2, 3, 4], DType::F32);
    let op = Op::Reduce {
        f: ReduceOp::Mean,
        axes: Some(vec![0, -1]),
        keepdims: false,
    };
    assert_eq!(
        infer(&op, std::slice::from_ref(&x)).unwrap(),
        TensorType::new([3], DType::F32)
    );
    let op = Op::ArgReduce {
        f: ArgReduceOp::Argmin,
        axis: Some(-2),
        keepdims: true,
    };
    assert_eq!(
        infer(&op, &[x]).unwrap(),
        TensorType::new([2, 1, 4], DType::F32)
    );
}

#[test]
fn bad_reductions_are_errors_with_clear_messages() {
    let x = iota234::<f32>();
    let xi = iota234::<i32>();
    let b = t(vec![true, false], &[2]);
    let empty = t(Vec::<f64>::new(), &[3, 0]);
    let big_u8 = t(vec![0u8; 300], &[300]);
    let red = |f, axes: Option<Vec<isize>>| Op::Reduce {
        f,
        axes,
        keepdims: false,
    };
    let am = |axis| Op::ArgReduce {
        f: ArgReduceOp::Argmax,
        axis,
        keepdims: false,
    };
    let cases: Vec<(Op, &Tensor, &[&str])> = vec![
        (
            red(ReduceOp::Sum, Some(vec![3])),
            &x,
            &["sum", "axis 3", "[2, 3, 4]"],
        ),
        (
            red(ReduceOp::Sum, Some(vec![-4])),
            &x,
            &["sum", "axis -4", "[2, 3, 4]"],
        ),
        (
            red(ReduceOp::Mean, Some(vec![1, -2])),
            &x,
            &["mean", "repeated", "[2, 3, 4]"],
        ),
        (
            red(ReduceOp::Norm, None),
            &xi,
            &["norm", "floating-point", "i32"],
        ),
        (red(ReduceOp::Sum, None), &b, &["sum", "bool"]),
        (
            red(ReduceOp::Max, Some(vec![1])),
            &empty,
            &["max", "size 0", "[3, 0]"],
        ),
        (red(ReduceOp::Min, None), &empty, &["min", "size 0"]),
        (am(Some(2)), &b, &["argmax", "bool"]),
        (am(Some(5)), &x, &["argmax", "axis 5", "[2, 3, 4]"]),
        (am(None), &empty, &["argmax", "empty", "[3, 0]"]),
        (am(Some(0)), &big_u8, &["argmax", "u8", "299"]),
    ];
    for (op, input, needles) in cases {
        let msg = match eval(&op, &[input.view()]) {
            Ok(r) => panic!("{op:?}: expected an error, got {r:?}"),
            Err(e) => e.to_string(),
        };
        for n in needles {
            assert!(msg.contains(n), "{op:?}: message {msg:?} lacks {n:?}");
        }
    }
    assert!(eval(&red(ReduceOp::Sum, None), &[x.view(), x.view()]).is_err());
}

#[test]
fn sums_over_every_axis_subset_match_a_naive_loop() {
    let dims = [2usize, 3, 1, 4];
    let n: usize = dims.iter().product();
    let x = t((0..n).map(|i| (i * i % 17) as i64).collect(), &dims);
    let xs = x.as_slice::<i64>().unwrap();
    for mask in 0u32..16 {
        let axes: Vec<isize> = (0..4).filter(|a| mask & (1 << a) != 0).collect();
        let got = reduce(ReduceOp::Sum, Some(&axes), true, &x).unwrap();
        let out_dims: Vec<usize> = (0..4)
            .map(|a| if mask & (1 << a) != 0 { 1 } else { dims[a] })
            .collect();
        assert_eq!(got.shape(), &Shape::new(&out_dims));
        let mut want = vec![0i64; out_dims.iter().product()];
        for (i, &v) in xs.iter().enumerate() {
            // Unravel i in dims, then ravel with reduced axes pinned to 0.
            let mut rest = i;
            let mut idx = [0usize; 4];
            for d in (0..4).rev() {
                idx[d] = rest % dims[d];
                rest /= dims[d];
            }
            let o = (0..4).fold(0, |flat, d| {
                flat * out_dims[d] + if out_dims[d] == 1 { 0 } else { idx[d] }
            });
            want[o] += v;
        }
        assert_eq!(got.as_slice::<i64>().unwrap(), &want[..], "axes {axes:?}");
    }
}
