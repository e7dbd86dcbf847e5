//! The indexing ops and their gradient helpers through the public API, on hand-computed
//! cases (MXNet `mode='clip'` semantics) and a table of bad calls.

use kiln_ir::infer::infer;
use kiln_ir::interp::eval;
use kiln_ir::{DType, Element, Op, Shape, Tensor, TensorType};

fn t<T: Element>(v: Vec<T>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, Shape::new(shape)).unwrap()
}

fn run(op: &Op, xs: &[&Tensor]) -> Tensor {
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    eval(op, &views).unwrap_or_else(|e| panic!("{op:?} failed: {e}"))
}

fn assert_tensor<T: Element + PartialEq>(got: &Tensor, shape: &[usize], want: &[T]) {
    assert_eq!(got.shape().dims(), shape, "shape");
    assert_eq!(got.as_slice::<T>().unwrap(), want, "values");
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| x * y)
        .sum()
}

#[test]
fn take_selects_clipped_slices() {
    // Rows [1, 2], [3, 4], [5, 6].
    let data = t(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    // Float indices truncate: 0.7 -> 0.
    let idx = t(vec![2.0f32, 0.7], &[2]);
    let got = run(&Op::Take { axis: 0 }, &[&data, &idx]);
    assert_tensor(&got, &[2, 2], &[5.0f32, 6.0, 1.0, 2.0]);
    // Out-of-range indices clip to the first and last row.
    let idx = t(vec![-1i64, 5], &[2]);
    let got = run(&Op::Take { axis: 0 }, &[&data, &idx]);
    assert_tensor(&got, &[2, 2], &[1.0f32, 2.0, 5.0, 6.0]);
    // Along the last axis with 2-D indices: out[r, i, j] = data[r, idx[i, j]].
    let idx = t(vec![1i32, 0, 0, 0], &[2, 2]);
    let want = [
        2.0f32, 1.0, 1.0, 1.0, 4.0, 3.0, 3.0, 3.0, 6.0, 5.0, 5.0, 5.0,
    ];
    assert_tensor(
        &run(&Op::Take { axis: 1 }, &[&data, &idx]),
        &[3, 2, 2],
        &want,
    );
    assert_tensor(
        &run(&Op::Take { axis: -1 }, &[&data, &idx]),
        &[3, 2, 2],
        &want,
    );
    // A scalar index drops the axis.
    let one = Tensor::scalar(1u8);
    assert_tensor(
        &run(&Op::Take { axis: 0 }, &[&data, &one]),
        &[2],
        &[3.0f32, 4.0],
    );
    // Any data dtype.
    let flags = t(vec![true, false, false], &[3]);
    let idx = t(vec![2.0f64, 0.0, 0.0], &[3]);
    let got = run(&Op::Take { axis: 0 }, &[&flags, &idx]);
    assert_tensor(&got, &[3], &[false, true, true]);
    // Empty indices give an empty result, even from an empty axis.
    let none = t(Vec::<i32>::new(), &[0]);
    let empty = t(Vec::<f32>::new(), &[0, 2]);
    assert_tensor::<f32>(&run(&Op::Take { axis: 0 }, &[&empty, &none]), &[0, 2], &[]);
}

#[test]
fn pick_selects_one_element_per_position() {
    let data = t(vec![1i64, 2, 3, 4, 5, 6], &[2, 3]);
    let idx = t(vec![2.0f32, 0.0], &[2]);
    let pick = |axis, keepdims| Op::Pick { axis, keepdims };
    assert_tensor(&run(&pick(1, false), &[&data, &idx]), &[2], &[3i64, 4]);
    assert_tensor(&run(&pick(-1, true), &[&data, &idx]), &[2, 1], &[3i64, 4]);
    // The index may keep the axis as size 1; out-of-range picks clip.
    let idx = t(vec![5i32, -3], &[2, 1]);
    assert_tensor(&run(&pick(1, false), &[&data, &idx]), &[2], &[3i64, 4]);
    let idx = t(vec![1u8, 0, 1], &[3]);
    assert_tensor(&run(&pick(0, false), &[&data, &idx]), &[3], &[4i64, 2, 6]);
    assert_tensor(&run(&pick(0, true), &[&data, &idx]), &[1, 3], &[4i64, 2, 6]);
    // Rank 1 data with a scalar index gives a scalar.
    let v = t(vec![7.0f64, 8.0, 9.0], &[3]);
    let i = Tensor::scalar(1i64);
    assert_tensor(&run(&pick(0, false), &[&v, &i]), &[], &[8.0f64]);
}

#[test]
fn one_hot_marks_indices_and_skips_out_of_range() {
    let idx = t(vec![0i32, 2, 5, -1], &[4]);
    let op = |depth, on_value, off_value, dtype| Op::OneHot {
        depth,
        on_value,
        off_value,
        dtype,
    };
    #[rustfmt::skip]
    let want = [
        1.0f32, 0.0, 0.0,
        0.0, 0.0, 1.0,
        0.0, 0.0, 0.0,
        0.0, 0.0, 0.0,
    ];
    assert_tensor(&run(&op(3, 1.0, 0.0, DType::F32), &[&idx]), &[4, 3], &want);
    let got = run(&op(2, 5.0, -1.0, DType::I64), &[&idx]);
    assert_tensor(&got, &[4, 2], &[5i64, -1, -1, -1, -1, -1, -1, -1]);
    // Float indices truncate; the output may be any dtype; indices keep their shape.
    let idx = t(vec![1.9f64, 0.0], &[2, 1]);
    let got = run(&op(2, 1.0, 0.0, DType::Bool), &[&idx]);
    assert_tensor(&got, &[2, 1, 2], &[false, true, true, false]);
    let s = Tensor::scalar(1u8);
    assert_tensor(&run(&op(3, 1.0, 0.0, DType::U8), &[&s]), &[3], &[0u8, 1, 0]);
    assert_tensor::<f64>(&run(&op(0, 1.0, 0.0, DType::F64), &[&s]), &[0], &[]);
}

#[test]
fn gather_is_take_along_axis() {
    let data = t(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let idx = t(vec![2i64, 0, 1, 1], &[2, 2]);
    let got = run(&Op::Gather { axis: 1 }, &[&data, &idx]);
    assert_tensor(&got, &[2, 2], &[3.0f32, 1.0, 5.0, 5.0]);
    let idx = t(vec![1i32, 0, 1], &[1, 3]);
    let got = run(&Op::Gather { axis: 0 }, &[&data, &idx]);
    assert_tensor(&got, &[1, 3], &[4.0f32, 2.0, 6.0]);
    // Clipped, and along a negative axis.
    let idx = t(vec![9.0f32, -1.0, 0.0, 0.0, 2.5, 1.0], &[2, 3]);
    let got = run(&Op::Gather { axis: -1 }, &[&data, &idx]);
    assert_tensor(&got, &[2, 3], &[3.0f32, 1.0, 1.0, 4.0, 6.0, 5.0]);
    let v = t(vec![10u8, 20, 30], &[3]);
    let idx = t(vec![2i32, 2, 0, 1], &[4]);
    assert_tensor(
        &run(&Op::Gather { axis: 0 }, &[&v, &idx]),
        &[4],
        &[30u8, 30, 10, 20],
    );
}

#[test]
fn take_grad_accumulates_repeated_indices() {
    let op = Op::TakeGrad {
        axis: 0,
        shape: Shape::from([3, 2]),
    };
    // Index 0 twice, and 7 clipped to row 2.
    let idx = t(vec![0i32, 7, 0], &[3]);
    let dy = t(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    assert_tensor(
        &run(&op, &[&idx, &dy]),
        &[3, 2],
        &[6.0f32, 8.0, 0.0, 0.0, 3.0, 4.0],
    );
    let op = Op::TakeGrad {
        axis: -1,
        shape: Shape::from([2, 3]),
    };
    let idx = t(vec![2.0f64, 2.0], &[2]);
    let dy = t(vec![1i64, 2, 3, 4], &[2, 2]);
    assert_tensor(&run(&op, &[&idx, &dy]), &[2, 3], &[0i64, 0, 3, 0, 0, 7]);
}

#[test]
fn take_grad_is_the_vjp_of_take() {
    // <take(x), dy> == <x, take_grad(dy)> for every x and dy.
    let x = t((0..24).map(|v| (v * 7 % 11) as f64).collect(), &[2, 3, 4]);
    let idx = t(vec![2i32, 0, 2, 1, 2, 9], &[2, 3]);
    let take = Op::Take { axis: 1 };
    let y = run(&take, &[&x, &idx]);
    assert_eq!(y.shape(), &Shape::from([2, 2, 3, 4]));
    let dy = t(
        (0..48).map(|v| (v % 5) as f64 - 2.0).collect(),
        &[2, 2, 3, 4],
    );
    let grad = Op::TakeGrad {
        axis: 1,
        shape: x.shape().clone(),
    };
    let dx = run(&grad, &[&idx, &dy]);
    assert_eq!(dot(&y, &dy), dot(&x, &dx));
}

#[test]
fn gather_grad_accumulates_and_serves_pick() {
    let op = Op::GatherGrad {
        axis: 1,
        shape: Shape::from([2, 3]),
    };
    let idx = t(vec![2i32, 0, 2, 1, 1, 1], &[2, 3]);
    let dy = t(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_tensor(
        &run(&op, &[&idx, &dy]),
        &[2, 3],
        &[2.0f32, 0.0, 4.0, 0.0, 15.0, 0.0],
    );
    // The VJP of pick with keepdims: one gradient per row, at the picked column.
    let idx = t(vec![2.0f32, 0.0], &[2, 1]);
    let dy = t(vec![10.0f32, 20.0], &[2, 1]);
    assert_tensor(
        &run(&op, &[&idx, &dy]),
        &[2, 3],
        &[0.0f32, 0.0, 10.0, 20.0, 0.0, 0.0],
    );
    // <gather(x), dy> == <x, gather_grad(dy)>, with repeats and clipping along axis 0.
    let x = t((0..12).map(|v| (v * 5 % 7) as f64).collect(), &[3, 4]);
    let idx = t(vec![0i64, 2, 2, -4, 1, 2, 2, 30], &[2, 4]);
    let y = run(&Op::Gather { axis: 0 }, &[&x, &idx]);
    let dy = t(vec![1.0f64, -2.0, 3.0, 0.5, 4.0, 1.0, -1.0, 2.0], &[2, 4]);
    let grad = Op::GatherGrad {
        axis: 0,
        shape: Shape::from([3, 4]),
    };
    let dx = run(&grad, &[&idx, &dy]);
    assert_eq!(dot(&y, &dy), dot(&x, &dx));
}

#[test]
fn bad_calls_name_the_op_and_the_shapes() {
    let f = |dims: &[usize]| TensorType::new(Shape::new(dims), DType::F32);
    let i = |dims: &[usize]| TensorType::new(Shape::new(dims), DType::I32);
    let b = |dims: &[usize]| TensorType::new(Shape::new(dims), DType::Bool);
    let table: Vec<(Op, Vec<TensorType>, &str)> = vec![
        (
            Op::Take { axis: 0 },
            vec![f(&[3])],
            "take: expects 2 input(s), got 1",
        ),
        (
            Op::Take { axis: 2 },
            vec![f(&[3, 2]), i(&[4])],
            "take: axis 2 is out of range for [3, 2] of rank 2",
        ),
        (
            Op::Take { axis: 0 },
            vec![f(&[3]), b(&[2])],
            "take: indices must be numeric, got bool [2]",
        ),
        (
            Op::Take { axis: 1 },
            vec![f(&[2, 0]), i(&[1])],
            "take: cannot index axis 1 of size 0 in [2, 0] with indices [1]",
        ),
        (
            Op::Pick {
                axis: 1,
                keepdims: false,
            },
            vec![f(&[2, 3]), i(&[3])],
            "pick: index shape [3] must be data shape [2, 3] without axis 1 ([2]) or with it as \
             size 1 ([2, 1])",
        ),
        (
            Op::Pick {
                axis: 0,
                keepdims: false,
            },
            vec![f(&[]), i(&[])],
            "pick: axis 0 is out of range for [] of rank 0",
        ),
        (
            Op::OneHot {
                depth: 3,
                on_value: 1.0,
                off_value: 0.0,
                dtype: DType::F32,
            },
            vec![b(&[2])],
            "one_hot: indices must be numeric, got bool [2]",
        ),
        (
            Op::Gather { axis: 1 },
            vec![f(&[2, 3]), i(&[2])],
            "gather: indices [2] must have the rank and dims of data [2, 3] except along axis 1",
        ),
        (
            Op::Gather { axis: 1 },
            vec![f(&[2, 3]), i(&[3, 3])],
            "gather: indices [3, 3] must have the rank and dims of data [2, 3] except along axis 1",
        ),
        (
            Op::TakeGrad {
                axis: 0,
                shape: Shape::from([3, 2]),
            },
            vec![i(&[4]), f(&[3, 2])],
            "take_grad: dy has shape [3, 2] but take from [3, 2] with indices [4] along axis 0 \
             gives [4, 2]",
        ),
        (
            Op::TakeGrad {
                axis: 0,
                shape: Shape::from([3]),
            },
            vec![i(&[2]), b(&[2])],
            "take_grad: dy must be numeric, got bool [2]",
        ),
        (
            Op::GatherGrad {
                axis: 0,
                shape: Shape::from([3, 2]),
            },
            vec![i(&[2, 2]), f(&[2, 1])],
            "gather_grad: indices [2, 2] and dy [2, 1] must have one shape",
        ),
        (
            Op::GatherGrad {
                axis: 0,
                shape: Shape::from([3, 2]),
            },
            vec![i(&[2, 3]), f(&[2, 3])],
            "gather_grad: indices [2, 3] must have the rank and dims of shape [3, 2] except \
             along axis 0",
        ),
        (
            Op::GatherGrad {
                axis: -3,
                shape: Shape::from([3, 2]),
            },
            vec![i(&[2, 2]), f(&[2, 2])],
            "gather_grad: axis -3 is out of range for [3, 2] of rank 2",
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
fn inference_gives_dtypes() {
    let take = infer(
        &Op::Take { axis: 1 },
        &[
            TensorType::new([2, 5, 3], DType::U8),
            TensorType::new([4, 1], DType::F64),
        ],
    )
    .unwrap();
    assert_eq!(take, TensorType::new([2, 4, 1, 3], DType::U8));
    let grad = infer(
        &Op::GatherGrad {
            axis: 0,
            shape: Shape::from([5]),
        },
        &[
            TensorType::new([2], DType::I64),
            TensorType::new([2], DType::F64),
        ],
    )
    .unwrap();
    assert_eq!(grad, TensorType::new([5], DType::F64));
}
