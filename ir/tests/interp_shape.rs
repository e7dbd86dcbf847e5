//! The shape ops through the public API: inference and the reference interpreter, on
//! hand-computed cases (numpy semantics) and a table of bad calls.

use kiln_ir::infer::infer;
use kiln_ir::interp::eval;
use kiln_ir::{DType, Element, Op, Shape, Tensor, TensorType};

fn t<T: Element>(v: Vec<T>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, Shape::new(shape)).unwrap()
}

fn range(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

fn run(op: &Op, xs: &[&Tensor]) -> Tensor {
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    eval(op, &views).unwrap_or_else(|e| panic!("{op:?} failed: {e}"))
}

fn assert_tensor<T: Element + PartialEq>(got: &Tensor, shape: &[usize], want: &[T]) {
    assert_eq!(got.shape().dims(), shape, "shape");
    assert_eq!(got.as_slice::<T>().unwrap(), want, "values");
}

fn reshape(shape: &[i64]) -> Op {
    Op::Reshape {
        shape: shape.to_vec(),
    }
}

fn slice(begin: &[Option<i64>], end: &[Option<i64>], step: &[Option<i64>]) -> Op {
    Op::Slice {
        begin: begin.to_vec(),
        end: end.to_vec(),
        step: step.to_vec(),
    }
}

#[test]
fn reshape_copies_and_infers_dims() {
    let x = t(range(6), &[2, 3]);
    assert_tensor(&run(&reshape(&[3, -1]), &[&x]), &[3, 2], &range(6));
    assert_tensor(&run(&reshape(&[-1]), &[&x]), &[6], &range(6));
    let y = t(range(24), &[2, 3, 4]);
    assert_tensor(&run(&reshape(&[0, -1]), &[&y]), &[2, 12], &range(24));
    // 0 copies the input dim at its own position: [-1, 3, 2] -> [4, 3, 2].
    assert_tensor(&run(&reshape(&[-1, 0, 2]), &[&y]), &[4, 3, 2], &range(24));
    // Rank 0 <-> rank 1 and other dtypes.
    let s = Tensor::scalar(7i64);
    assert_tensor(&run(&reshape(&[1, 1]), &[&s]), &[1, 1], &[7i64]);
    let one = t(vec![true], &[1]);
    assert_tensor(&run(&reshape(&[]), &[&one]), &[], &[true]);
    // Empty tensors reshape when the -1 is determined: [3, (dim 1 =) 3, -1] -> [3, 3, 0].
    let e = t(Vec::<i32>::new(), &[0, 3]);
    assert_tensor::<i32>(&run(&reshape(&[3, 0, -1]), &[&e]), &[3, 3, 0], &[]);
}

#[test]
fn transpose_permutes_axes() {
    let x = t(range(6), &[2, 3]);
    let tr = Op::Transpose { axes: None };
    assert_tensor(
        &run(&tr, &[&x]),
        &[3, 2],
        &[0.0f32, 3.0, 1.0, 4.0, 2.0, 5.0],
    );
    let y = t((0..24).collect::<Vec<i32>>(), &[2, 3, 4]);
    let got = run(
        &Op::Transpose {
            axes: Some(vec![1, 0, 2]),
        },
        &[&y],
    );
    #[rustfmt::skip]
    let want = [0, 1, 2, 3, 12, 13, 14, 15, 4, 5, 6, 7, 16, 17, 18, 19, 8, 9, 10, 11, 20, 21, 22, 23];
    assert_tensor(&got, &[3, 2, 4], &want);
    // Reversed axes: out[k, j, i] = x[i, j, k] = 12i + 4j + k.
    let got = run(&tr, &[&y]);
    let mut want = Vec::new();
    for k in 0..4 {
        for j in 0..3 {
            for i in 0..2 {
                want.push(12 * i + 4 * j + k);
            }
        }
    }
    assert_tensor(&got, &[4, 3, 2], &want);
    let s = Tensor::scalar(true);
    assert_tensor(&run(&tr, &[&s]), &[], &[true]);
    let b = t(vec![true, false, false, true, true, false], &[3, 2]);
    assert_tensor(
        &run(&tr, &[&b]),
        &[2, 3],
        &[true, false, true, false, true, false],
    );
}

#[test]
fn expand_squeeze_flatten() {
    let x = t(range(6), &[2, 3]);
    let ex = |axis| run(&Op::ExpandDims { axis }, &[&x]).shape().clone();
    assert_eq!(ex(0), Shape::from([1, 2, 3]));
    assert_eq!(ex(-1), Shape::from([2, 3, 1]));
    assert_eq!(ex(-3), Shape::from([1, 2, 3]));
    assert_eq!(ex(2), Shape::from([2, 3, 1]));
    let s = Tensor::scalar(5u8);
    assert_tensor(&run(&Op::ExpandDims { axis: 0 }, &[&s]), &[1], &[5u8]);

    let y = t(vec![1i64, 2, 3, 4, 5, 6], &[1, 2, 1, 3]);
    assert_tensor(
        &run(&Op::Squeeze { axes: None }, &[&y]),
        &[2, 3],
        &[1i64, 2, 3, 4, 5, 6],
    );
    let sq = run(
        &Op::Squeeze {
            axes: Some(vec![-2]),
        },
        &[&y],
    );
    assert_eq!(sq.shape(), &Shape::from([1, 2, 3]));
    let one = t(vec![9.0f64], &[1, 1]);
    assert_tensor(&run(&Op::Squeeze { axes: None }, &[&one]), &[], &[9.0f64]);

    let z = t(range(24), &[2, 3, 4]);
    assert_tensor(&run(&Op::Flatten, &[&z]), &[2, 12], &range(24));
    let v = t(vec![1i32, 2, 3], &[3]);
    assert_tensor(&run(&Op::Flatten, &[&v]), &[3, 1], &[1i32, 2, 3]);
    let e = t(Vec::<f32>::new(), &[2, 0, 3]);
    assert_tensor::<f32>(&run(&Op::Flatten, &[&e]), &[2, 0], &[]);
}

#[test]
fn broadcast_to_repeats_size_one_axes() {
    let bt = |dims: &[usize]| Op::BroadcastTo {
        shape: Shape::new(dims),
    };
    let row = t(vec![1.0f32, 2.0, 3.0], &[3]);
    assert_tensor(
        &run(&bt(&[2, 3]), &[&row]),
        &[2, 3],
        &[1.0f32, 2.0, 3.0, 1.0, 2.0, 3.0],
    );
    let col = t(vec![1i32, 2], &[2, 1]);
    assert_tensor(&run(&bt(&[2, 3]), &[&col]), &[2, 3], &[1i32, 1, 1, 2, 2, 2]);
    let s = Tensor::scalar(true);
    assert_tensor(&run(&bt(&[2, 2]), &[&s]), &[2, 2], &[true; 4]);
    // [2, 1] -> [2, 2, 3]: new leading axis and a stretched last one.
    let got = run(&bt(&[2, 2, 3]), &[&col]);
    assert_tensor(&got, &[2, 2, 3], &[1i32, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2]);
    assert_tensor(&run(&bt(&[3]), &[&row]), &[3], &[1.0f32, 2.0, 3.0]);
}

#[test]
fn slice_follows_numpy_basic_slicing() {
    // x = arange(12).reshape(3, 4)
    let x = t((0..12).collect::<Vec<i64>>(), &[3, 4]);
    // x[1:]
    let got = run(&slice(&[Some(1)], &[None], &[None]), &[&x]);
    assert_tensor(&got, &[2, 4], &[4i64, 5, 6, 7, 8, 9, 10, 11]);
    // x[::-1, ::2]
    let got = run(
        &slice(&[None, None], &[None, None], &[Some(-1), Some(2)]),
        &[&x],
    );
    assert_tensor(&got, &[3, 2], &[8i64, 10, 4, 6, 0, 2]);
    // x[1:-1, -1:0:-2]
    let got = run(
        &slice(
            &[Some(1), Some(-1)],
            &[Some(-1), Some(0)],
            &[None, Some(-2)],
        ),
        &[&x],
    );
    assert_tensor(&got, &[1, 2], &[7i64, 5]);
    // Out-of-range bounds clamp: x[-10:10] is all of x, x[5:] is empty.
    let got = run(&slice(&[Some(-10)], &[Some(10)], &[None]), &[&x]);
    assert_tensor(&got, &[3, 4], &(0..12).collect::<Vec<i64>>());
    let got = run(&slice(&[Some(5)], &[None], &[None]), &[&x]);
    assert_tensor::<i64>(&got, &[0, 4], &[]);
    // x[10:-10:-1] walks all rows backwards.
    let got = run(&slice(&[Some(10)], &[Some(-10)], &[Some(-1)]), &[&x]);
    assert_tensor(&got, &[3, 4], &[8i64, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3]);
    // x[:, 2:2] and x[:, 1:3:-1] are empty.
    let got = run(
        &slice(&[None, Some(2)], &[None, Some(2)], &[None, None]),
        &[&x],
    );
    assert_tensor::<i64>(&got, &[3, 0], &[]);
    let got = run(
        &slice(&[None, Some(1)], &[None, Some(3)], &[None, Some(-1)]),
        &[&x],
    );
    assert_tensor::<i64>(&got, &[3, 0], &[]);

    let v = t(vec![0u8, 1, 2, 3, 4], &[5]);
    let got = run(&slice(&[Some(3)], &[Some(0)], &[Some(-1)]), &[&v]);
    assert_tensor(&got, &[3], &[3u8, 2, 1]);
    let got = run(&slice(&[Some(-1)], &[None], &[Some(-2)]), &[&v]);
    assert_tensor(&got, &[3], &[4u8, 2, 0]);
    let got = run(&slice(&[None], &[None], &[Some(-3)]), &[&v]);
    assert_tensor(&got, &[2], &[4u8, 1]);
    let got = run(&slice(&[Some(1)], &[Some(4)], &[Some(2)]), &[&v]);
    assert_tensor(&got, &[2], &[1u8, 3]);
    // Huge attribute values clamp rather than overflow.
    let got = run(
        &slice(&[Some(i64::MAX)], &[Some(i64::MIN)], &[Some(i64::MIN)]),
        &[&v],
    );
    assert_tensor(&got, &[1], &[4u8]);

    let b = t(vec![true, false, false], &[3]);
    let got = run(&slice(&[None], &[None], &[Some(-1)]), &[&b]);
    assert_tensor(&got, &[3], &[false, false, true]);
    let s = Tensor::scalar(1.5f64);
    assert_tensor(&run(&slice(&[], &[], &[]), &[&s]), &[], &[1.5f64]);
}

#[test]
fn slice_axis_clamps_and_normalizes() {
    let x = t((0..12).collect::<Vec<i32>>(), &[3, 4]);
    let sa = |axis, begin, end| Op::SliceAxis { axis, begin, end };
    let got = run(&sa(1, 1, Some(3)), &[&x]);
    assert_tensor(&got, &[3, 2], &[1i32, 2, 5, 6, 9, 10]);
    let got = run(&sa(-1, -2, None), &[&x]);
    assert_tensor(&got, &[3, 2], &[2i32, 3, 6, 7, 10, 11]);
    let got = run(&sa(0, -1, None), &[&x]);
    assert_tensor(&got, &[1, 4], &[8i32, 9, 10, 11]);
    let got = run(&sa(0, 1, Some(-1)), &[&x]);
    assert_tensor(&got, &[1, 4], &[4i32, 5, 6, 7]);
    let got = run(&sa(1, 1, Some(1)), &[&x]);
    assert_tensor::<i32>(&got, &[3, 0], &[]);
    let got = run(&sa(0, -10, Some(10)), &[&x]);
    assert_tensor(&got, &[3, 4], &(0..12).collect::<Vec<i32>>());
    let got = run(&sa(1, 7, None), &[&x]);
    assert_tensor::<i32>(&got, &[3, 0], &[]);
}

#[test]
fn concat_and_stack_join_inputs() {
    let a = t(vec![0.0f32, 1.0, 2.0, 3.0], &[2, 2]);
    let b = t(vec![9.0f32, 8.0], &[2, 1]);
    let want = [0.0f32, 1.0, 9.0, 2.0, 3.0, 8.0];
    assert_tensor(&run(&Op::Concat { axis: 1 }, &[&a, &b]), &[2, 3], &want);
    assert_tensor(&run(&Op::Concat { axis: -1 }, &[&a, &b]), &[2, 3], &want);
    let c = t(vec![1i64, 2], &[1, 2]);
    let d = t(vec![3i64, 4, 5, 6], &[2, 2]);
    let e = t(Vec::<i64>::new(), &[0, 2]);
    let got = run(&Op::Concat { axis: 0 }, &[&c, &e, &d]);
    assert_tensor(&got, &[3, 2], &[1i64, 2, 3, 4, 5, 6]);
    assert_tensor(&run(&Op::Concat { axis: 0 }, &[&c]), &[1, 2], &[1i64, 2]);

    let p = t(vec![1u8, 2], &[2]);
    let q = t(vec![3u8, 4], &[2]);
    assert_tensor(
        &run(&Op::Stack { axis: 0 }, &[&p, &q]),
        &[2, 2],
        &[1u8, 2, 3, 4],
    );
    assert_tensor(
        &run(&Op::Stack { axis: 1 }, &[&p, &q]),
        &[2, 2],
        &[1u8, 3, 2, 4],
    );
    assert_tensor(
        &run(&Op::Stack { axis: -1 }, &[&p, &q]),
        &[2, 2],
        &[1u8, 3, 2, 4],
    );
    let (s0, s1) = (Tensor::scalar(true), Tensor::scalar(false));
    assert_tensor(
        &run(&Op::Stack { axis: 0 }, &[&s0, &s1, &s0]),
        &[3],
        &[true, false, true],
    );
    // [2, 2] stacked on the middle axis: out[i, k, j] = input k [i, j].
    let m0 = t(vec![1i32, 2, 3, 4], &[2, 2]);
    let m1 = t(vec![5i32, 6, 7, 8], &[2, 2]);
    let got = run(&Op::Stack { axis: 1 }, &[&m0, &m1]);
    assert_tensor(&got, &[2, 2, 2], &[1i32, 2, 5, 6, 3, 4, 7, 8]);
}

#[test]
fn tile_repeat_flip_follow_numpy() {
    let v = t(vec![1i32, 2], &[2]);
    let tile = |reps: &[usize]| Op::Tile {
        reps: reps.to_vec(),
    };
    assert_tensor(&run(&tile(&[3]), &[&v]), &[6], &[1i32, 2, 1, 2, 1, 2]);
    assert_tensor(
        &run(&tile(&[2, 2]), &[&v]),
        &[2, 4],
        &[1i32, 2, 1, 2, 1, 2, 1, 2],
    );
    let m = t(vec![1i32, 2, 3, 4], &[2, 2]);
    assert_tensor(
        &run(&tile(&[2]), &[&m]),
        &[2, 4],
        &[1i32, 2, 1, 2, 3, 4, 3, 4],
    );
    assert_tensor(
        &run(&tile(&[2, 1]), &[&m]),
        &[4, 2],
        &[1i32, 2, 3, 4, 1, 2, 3, 4],
    );
    assert_tensor(&run(&tile(&[]), &[&m]), &[2, 2], &[1i32, 2, 3, 4]);
    assert_tensor::<i32>(&run(&tile(&[0]), &[&m]), &[2, 0], &[]);
    let s = Tensor::scalar(true);
    assert_tensor(&run(&tile(&[3]), &[&s]), &[3], &[true; 3]);

    let rep = |repeats, axis| Op::Repeat { repeats, axis };
    let got = run(&rep(2, None), &[&m]);
    assert_tensor(&got, &[8], &[1i32, 1, 2, 2, 3, 3, 4, 4]);
    let got = run(&rep(2, Some(0)), &[&m]);
    assert_tensor(&got, &[4, 2], &[1i32, 2, 1, 2, 3, 4, 3, 4]);
    let got = run(&rep(2, Some(-1)), &[&m]);
    assert_tensor(&got, &[2, 4], &[1i32, 1, 2, 2, 3, 3, 4, 4]);
    assert_tensor::<i32>(&run(&rep(0, Some(1)), &[&m]), &[2, 0], &[]);
    let f = Tensor::scalar(2.5f32);
    assert_tensor(&run(&rep(3, None), &[&f]), &[3], &[2.5f32; 3]);

    let x = t(range(6), &[2, 3]);
    let flip = |axes: &[isize]| Op::Flip {
        axes: axes.to_vec(),
    };
    assert_tensor(
        &run(&flip(&[0]), &[&x]),
        &[2, 3],
        &[3.0f32, 4.0, 5.0, 0.0, 1.0, 2.0],
    );
    assert_tensor(
        &run(&flip(&[-1]), &[&x]),
        &[2, 3],
        &[2.0f32, 1.0, 0.0, 5.0, 4.0, 3.0],
    );
    assert_tensor(
        &run(&flip(&[0, 1]), &[&x]),
        &[2, 3],
        &[5.0f32, 4.0, 3.0, 2.0, 1.0, 0.0],
    );
    assert_tensor(&run(&flip(&[]), &[&x]), &[2, 3], &range(6));
    let b = t(vec![true, true, false], &[3]);
    assert_tensor(&run(&flip(&[0]), &[&b]), &[3], &[false, true, true]);
}

#[test]
fn slice_grad_scatters_into_zeros() {
    // dy lands at rows 1..3, columns 3 and 1 of a [3, 4] zero tensor.
    let dy = t(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    let op = Op::SliceGrad {
        shape: Shape::from([3, 4]),
        begin: vec![1, 3],
        step: vec![1, -2],
    };
    #[rustfmt::skip]
    let want = [
        0.0f32, 0.0, 0.0, 0.0,
        0.0, 2.0, 0.0, 1.0,
        0.0, 4.0, 0.0, 3.0,
    ];
    assert_tensor(&run(&op, &[&dy]), &[3, 4], &want);
    // An empty region may start anywhere.
    let empty = t(Vec::<i32>::new(), &[0]);
    let op = Op::SliceGrad {
        shape: Shape::from([3]),
        begin: vec![3],
        step: vec![1],
    };
    assert_tensor(&run(&op, &[&empty]), &[3], &[0i32; 3]);
}

#[test]
fn slice_of_slice_grad_is_the_identity() {
    // (slice, the slice resolved by hand as (begin, step) per axis of a [4, 5] input)
    type Case = (
        Vec<Option<i64>>,
        Vec<Option<i64>>,
        Vec<Option<i64>>,
        [i64; 2],
        [i64; 2],
    );
    let cases: Vec<Case> = vec![
        (vec![Some(1)], vec![None], vec![None], [1, 0], [1, 1]),
        (
            vec![None, None],
            vec![None, None],
            vec![Some(-1), Some(2)],
            [3, 0],
            [-1, 2],
        ),
        (
            vec![Some(-1), Some(4)],
            vec![Some(0), Some(0)],
            vec![Some(-2), Some(-3)],
            [3, 4],
            [-2, -3],
        ),
        (
            vec![Some(10), Some(-4)],
            vec![Some(-10), Some(-1)],
            vec![Some(-1), Some(1)],
            [3, 1],
            [-1, 1],
        ),
    ];
    let shape = Shape::from([4, 5]);
    let x = t(range(20).iter().map(|v| v + 1.0).collect(), &[4, 5]);
    for (begin, end, step, rb, rs) in cases {
        let sl = slice(&begin, &end, &step);
        let dy = run(&sl, &[&x]);
        let grad = Op::SliceGrad {
            shape: shape.clone(),
            begin: rb.to_vec(),
            step: rs.to_vec(),
        };
        let dx = run(&grad, &[&dy]);
        assert_eq!(dx.shape(), &shape);
        assert_eq!(run(&sl, &[&dx]), dy, "{sl:?}");
        // Nothing outside the region: the sums agree.
        let total = |v: &Tensor| v.to_f64_vec().iter().sum::<f64>();
        assert_eq!(total(&dx), total(&dy), "{sl:?}");
    }
}

#[test]
fn inference_keeps_dtype_and_checks_counts() {
    let x = TensorType::new([2, 3], DType::U8);
    let out = infer(&Op::Transpose { axes: None }, std::slice::from_ref(&x)).unwrap();
    assert_eq!(out, TensorType::new([3, 2], DType::U8));
    let e = infer(&Op::Flatten, &[x.clone(), x])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "flatten: expects 1 input(s), got 2");
}

#[test]
fn bad_calls_name_the_op_and_the_shapes() {
    let f = |dims: &[usize]| TensorType::new(Shape::new(dims), DType::F32);
    let i = |dims: &[usize]| TensorType::new(Shape::new(dims), DType::I32);
    let table: Vec<(Op, Vec<TensorType>, &str)> = vec![
        (
            reshape(&[4, -1]),
            vec![f(&[2, 3])],
            "reshape: cannot reshape [2, 3] (6 elements) to [4, -1]",
        ),
        (
            reshape(&[4, 2]),
            vec![f(&[2, 3])],
            "reshape: cannot reshape [2, 3] (6 elements) to [4, 2] (8 elements)",
        ),
        (
            reshape(&[2, 3, 0, 0]),
            vec![f(&[2, 3])],
            "reshape: code 0 at position 2 but input has rank 2",
        ),
        (
            reshape(&[-1, -1]),
            vec![f(&[2, 3])],
            "reshape: more than one -1 in target [-1, -1]",
        ),
        (reshape(&[-2, 3]), vec![f(&[2, 3])], "reshape: invalid code -2"),
        (
            reshape(&[0, -1]),
            vec![f(&[0, 3])],
            "reshape: cannot reshape [0, 3] (0 elements) to [0, -1]",
        ),
        (
            Op::Transpose {
                axes: Some(vec![0, 0]),
            },
            vec![f(&[2, 3])],
            "transpose: axes [0, 0] are not a permutation of 0..2 for input [2, 3]",
        ),
        (
            Op::Transpose {
                axes: Some(vec![1, 0, 2]),
            },
            vec![f(&[2, 3])],
            "transpose: axes [1, 0, 2] are not a permutation of 0..2 for input [2, 3]",
        ),
        (
            Op::ExpandDims { axis: 3 },
            vec![f(&[2, 3])],
            "expand_dims: axis 3 is out of range -3..=2 for a new axis of input [2, 3]",
        ),
        (
            Op::Squeeze {
                axes: Some(vec![1]),
            },
            vec![f(&[1, 2])],
            "squeeze: cannot squeeze axis 1 of size 2 in input [1, 2]",
        ),
        (
            Op::Squeeze {
                axes: Some(vec![0, -2]),
            },
            vec![f(&[1, 1])],
            "squeeze: axis -2 is repeated in [0, -2] (input [1, 1])",
        ),
        (
            Op::Squeeze {
                axes: Some(vec![2]),
            },
            vec![f(&[1, 1])],
            "squeeze: axis 2 is out of range for [1, 1] of rank 2",
        ),
        (Op::Flatten, vec![f(&[])], "flatten: needs an input of rank >= 1, got a scalar []"),
        (
            Op::BroadcastTo {
                shape: Shape::from([3, 3]),
            },
            vec![f(&[2, 3])],
            "broadcast_to: cannot broadcast [2, 3] to [3, 3]",
        ),
        (
            Op::BroadcastTo {
                shape: Shape::from([]),
            },
            vec![f(&[1])],
            "broadcast_to: cannot broadcast [1] to []",
        ),
        (
            slice(&[None], &[None], &[Some(0)]),
            vec![f(&[3, 4])],
            "slice: step is 0 on axis 0 (input [3, 4])",
        ),
        (
            slice(&[None, None], &[None], &[None, None]),
            vec![f(&[3, 4])],
            "slice: begin, end and step must have one length, got 2, 1 and 2 (input [3, 4])",
        ),
        (
            slice(&[None; 3], &[None; 3], &[None; 3]),
            vec![f(&[3, 4])],
            "slice: slices 3 axes but input [3, 4] has rank 2",
        ),
        (
            Op::SliceAxis {
                axis: 1,
                begin: 3,
                end: Some(1),
            },
            vec![f(&[3, 4])],
            "slice_axis: begin 3 (index 3) is after end 1 (index 1) on axis 1 of input [3, 4]",
        ),
        (
            Op::SliceAxis {
                axis: -3,
                begin: 0,
                end: None,
            },
            vec![f(&[3, 4])],
            "slice_axis: axis -3 is out of range for [3, 4] of rank 2",
        ),
        (
            Op::Concat { axis: 1 },
            vec![f(&[2, 2]), f(&[3, 1])],
            "concat: input 1 has shape [3, 1] but input 0 has [2, 2]; all dims except axis 1 must match",
        ),
        (
            Op::Concat { axis: 0 },
            vec![f(&[2]), f(&[2]), f(&[2, 1])],
            "concat: input 2 has shape [2, 1] but input 0 has [2]",
        ),
        (
            Op::Concat { axis: 0 },
            vec![f(&[2]), i(&[2])],
            "concat: input 1 ([2]) has dtype i32 but input 0 ([2]) has f32",
        ),
        (Op::Concat { axis: 0 }, vec![], "concat: needs at least 1 input, got 0"),
        (
            Op::Concat { axis: 0 },
            vec![f(&[]), f(&[])],
            "concat: axis 0 is out of range for [] of rank 0",
        ),
        (
            Op::Stack { axis: 0 },
            vec![f(&[2]), f(&[3])],
            "stack: input 1 has shape [3] but input 0 has [2]",
        ),
        (
            Op::Stack { axis: 2 },
            vec![f(&[2]), f(&[2])],
            "stack: axis 2 is out of range -2..=1 for a new axis of input [2]",
        ),
        (
            Op::Repeat {
                repeats: 2,
                axis: Some(0),
            },
            vec![f(&[])],
            "repeat: axis 0 is out of range for [] of rank 0",
        ),
        (
            Op::Tile {
                reps: vec![usize::MAX, 2],
            },
            vec![f(&[2, 2])],
            "tile: ",
        ),
        (
            Op::Flip { axes: vec![1, -1] },
            vec![f(&[2, 3])],
            "flip: axis -1 is repeated in [1, -1] (input [2, 3])",
        ),
        (
            Op::SliceGrad {
                shape: Shape::from([3]),
                begin: vec![2],
                step: vec![1],
            },
            vec![f(&[2])],
            "slice_grad: 2 elements from 2 with step 1 on axis 0 do not fit in shape [3] (dy [2])",
        ),
        (
            Op::SliceGrad {
                shape: Shape::from([3]),
                begin: vec![1],
                step: vec![-2],
            },
            vec![f(&[2])],
            "slice_grad: 2 elements from 1 with step -2 on axis 0 do not fit in shape [3] (dy [2])",
        ),
        (
            Op::SliceGrad {
                shape: Shape::from([3, 3]),
                begin: vec![0],
                step: vec![1],
            },
            vec![f(&[2, 2])],
            "slice_grad: begin (1), step (1) and dy [2, 2] must all have the rank of shape [3, 3]",
        ),
        (
            Op::SliceGrad {
                shape: Shape::from([3]),
                begin: vec![0],
                step: vec![0],
            },
            vec![f(&[1])],
            "slice_grad: step is 0 on axis 0 (shape [3], dy [1])",
        ),
    ];
    for (op, inputs, want) in table {
        let err = infer(&op, &inputs)
            .expect_err(&format!("{op:?} on {inputs:?} should fail"))
            .to_string();
        assert!(err.starts_with(&format!("{}: ", op.name())), "{err}");
        assert!(err.contains(want), "got `{err}`, want `{want}`");
    }
}

#[test]
fn eval_rejects_inconsistent_views() {
    let x = t(range(6), &[2, 3]);
    let mut view = x.view();
    view.shape = Shape::from([4, 3]);
    let err = eval(&reshape(&[-1]), &[view]).unwrap_err().to_string();
    assert_eq!(
        err,
        "reshape: input 0 has shape [4, 3] but holds 6 elements"
    );
    let wrong = TensorType::new([6], DType::I32);
    let err = kiln_ir::interp::eval_typed(&reshape(&[-1]), &[x.view()], &wrong)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "reshape: output type i32[6] given, but the inputs give f32[6]"
    );
}

/// Every permutation of a [2, 3, 4] tensor, against `out[i] = x[sum(i_k * stride[perm[k]])]`.
#[test]
fn transpose_matches_index_arithmetic_for_every_permutation() {
    let dims = [2usize, 3, 4];
    let strides = [12usize, 4, 1];
    let x = t((0..24).collect::<Vec<i32>>(), &dims);
    let perms = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for perm in perms {
        let got = run(
            &Op::Transpose {
                axes: Some(perm.to_vec()),
            },
            &[&x],
        );
        let out_dims = perm.map(|a| dims[a]);
        let mut want = Vec::new();
        for i in 0..out_dims[0] {
            for j in 0..out_dims[1] {
                for k in 0..out_dims[2] {
                    let off = i * strides[perm[0]] + j * strides[perm[1]] + k * strides[perm[2]];
                    want.push(off as i32);
                }
            }
        }
        assert_tensor(&got, &out_dims, &want);
    }
}

/// Slices with mixed steps on a [3, 4, 5] tensor, against explicit index lists.
#[test]
fn slice_matches_index_lists_in_three_dims() {
    let x = t((0..60).collect::<Vec<i64>>(), &[3, 4, 5]);
    // x[::2, 3:0:-1, 1::3] -> rows [0, 2], [3, 2, 1], [1, 4]
    let got = run(
        &slice(
            &[None, Some(3), Some(1)],
            &[None, Some(0), None],
            &[Some(2), Some(-1), Some(3)],
        ),
        &[&x],
    );
    let mut want = Vec::new();
    for i in [0i64, 2] {
        for j in [3i64, 2, 1] {
            for k in [1i64, 4] {
                want.push(i * 20 + j * 5 + k);
            }
        }
    }
    assert_tensor(&got, &[2, 3, 2], &want);
    // x[1:, :, ::-1] flips the contiguous axis and keeps the leading ones.
    let got = run(
        &slice(
            &[Some(1), None, None],
            &[None, None, None],
            &[None, None, Some(-1)],
        ),
        &[&x],
    );
    let mut want = Vec::new();
    for i in 1..3i64 {
        for j in 0..4i64 {
            for k in (0..5i64).rev() {
                want.push(i * 20 + j * 5 + k);
            }
        }
    }
    assert_tensor(&got, &[2, 4, 5], &want);
    // Flip of the middle axis equals the slice ::-1 on it.
    let flipped = run(&Op::Flip { axes: vec![1] }, &[&x]);
    let sliced = run(
        &slice(&[None, None], &[None, None], &[None, Some(-1)]),
        &[&x],
    );
    assert_eq!(flipped, sliced);
}
