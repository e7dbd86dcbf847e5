//! Elementwise fast paths against the interpreter: bit-for-bit equal, special values included.

mod common;

use common::{check_exact, check_same_as_interp, random};
use kiln_ir::{BinaryOp, DType, Op, Tensor, UnaryOp};

const FLOATS: [DType; 2] = [DType::F32, DType::F64];

/// Random values spread over several magnitudes plus the special values.
fn mixed(n: usize, dtype: DType, seed: u64) -> Tensor {
    let r = random(&[n], DType::F64, seed).to_f64_vec();
    let specials = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.5,
        -2.5,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-30,
        -1e-30,
        1e30,
        -700.0,
        700.0,
        89.0,
        -89.0,
    ];
    let v: Vec<f64> = r
        .iter()
        .enumerate()
        .map(|(i, &u)| match i % 4 {
            0 => specials[(i / 4) % specials.len()],
            1 => u * 10.0,
            2 => u,
            _ => u * 1e-3,
        })
        .collect();
    Tensor::from_vec(v, [n]).unwrap().cast(dtype)
}

#[test]
fn every_unary_op_is_bitwise_equal() {
    for dt in FLOATS {
        // 1000 elements (sequential) and 300_000 (split across threads).
        for n in [1000, 300_000] {
            let x = mixed(n, dt, 1).reshaped([n / 10, 10]).unwrap();
            for f in UnaryOp::ALL {
                check_exact(&Op::Unary { f }, &[&x]);
            }
        }
    }
}

#[test]
fn every_binary_op_is_bitwise_equal_on_same_shapes() {
    for dt in FLOATS {
        for n in [333, 300_001] {
            let a = mixed(n, dt, 2);
            let b = mixed(n, dt, 3);
            for f in BinaryOp::ALL {
                check_exact(&Op::Binary { f }, &[&a, &b]);
            }
        }
    }
}

#[test]
fn broadcasts_are_bitwise_equal() {
    let shapes: [(&[usize], &[usize]); 10] = [
        (&[5, 7], &[7]),          // row
        (&[5, 7], &[1, 7]),       // row, same rank
        (&[5, 7], &[5, 1]),       // column
        (&[5, 1], &[1, 7]),       // outer product
        (&[7], &[5, 7]),          // row on the left
        (&[2, 3, 4], &[3, 1]),    // middle
        (&[2, 1, 4], &[3, 1]),    // both broadcast
        (&[4, 3, 2], &[]),        // scalar
        (&[1], &[6, 1, 2]),       // one element
        (&[600, 513], &[600, 1]), // large column broadcast, split across threads
    ];
    for dt in FLOATS {
        for (i, (sa, sb)) in shapes.iter().enumerate() {
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let a = mixed(na, dt, 10 + i as u64).reshaped(*sa).unwrap();
            let b = mixed(nb, dt, 20 + i as u64).reshaped(*sb).unwrap();
            for f in BinaryOp::ALL {
                check_exact(&Op::Binary { f }, &[&a, &b]);
                check_exact(&Op::Binary { f }, &[&b, &a]);
            }
        }
    }
}

#[test]
fn scalar_ops_are_bitwise_equal_both_ways() {
    for dt in FLOATS {
        for n in [100, 300_000] {
            let x = mixed(n, dt, 4);
            // Every scalar on the small input; the large one (threaded) needs only a few.
            let scalars: &[f64] = if n > 1000 {
                &[-0.5, f64::NAN]
            } else {
                &[2.0, -0.5, 0.0, 1e-40, f64::NAN, 0.1]
            };
            for f in BinaryOp::ALL {
                for &scalar in scalars {
                    for reverse in [false, true] {
                        check_exact(&Op::Scalar { f, scalar, reverse }, &[&x]);
                    }
                }
            }
        }
    }
}

#[test]
fn empty_tensors_take_the_fast_path() {
    let e = Tensor::from_vec(Vec::<f32>::new(), [0, 3]).unwrap();
    let r = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [3]).unwrap();
    check_exact(&Op::Unary { f: UnaryOp::Exp }, &[&e]);
    check_exact(&Op::Binary { f: BinaryOp::Add }, &[&e, &r]);
}

#[test]
fn other_dtypes_and_bad_shapes_fall_back_to_the_interpreter() {
    let i = Tensor::from_vec(vec![1i32, -2, 3], [3]).unwrap();
    check_same_as_interp(&Op::Binary { f: BinaryOp::Div }, &[&i, &i]);
    check_same_as_interp(&Op::Unary { f: UnaryOp::Abs }, &[&i]);
    check_same_as_interp(&Op::Unary { f: UnaryOp::Exp }, &[&i]);
    let a = random(&[2, 3], DType::F32, 1);
    let b = random(&[4], DType::F32, 2);
    check_same_as_interp(&Op::Binary { f: BinaryOp::Add }, &[&a, &b]);
    let c = random(&[3], DType::F64, 3);
    check_same_as_interp(&Op::Binary { f: BinaryOp::Add }, &[&a, &c]);
    check_same_as_interp(&Op::Binary { f: BinaryOp::Add }, &[&a]);
    check_same_as_interp(
        &Op::Clip {
            min: -0.5,
            max: 0.5,
        },
        &[&a],
    );
}

#[test]
fn a_view_whose_data_does_not_match_its_shape_is_an_error_not_a_panic() {
    use kiln_backends::{CpuBackend, Kernels};
    let data = [1.0f32, 2.0, 3.0];
    let bad = kiln_ir::TensorView {
        shape: kiln_ir::Shape::from([2, 3]),
        data: kiln_ir::DataRef::F32(&data),
    };
    for op in [
        Op::Unary { f: UnaryOp::Neg },
        Op::Scalar {
            f: BinaryOp::Add,
            scalar: 1.0,
            reverse: false,
        },
    ] {
        assert!(CpuBackend.execute(&op, std::slice::from_ref(&bad)).is_err());
    }
    assert!(CpuBackend
        .execute(&Op::Binary { f: BinaryOp::Add }, &[bad.clone(), bad])
        .is_err());
}

#[test]
fn outputs_large_enough_for_huge_pages_are_right() {
    // 1M + 3 f32 elements: 4 MiB of output, so the buffer gets the huge-page hint.
    let n = (1 << 20) + 3;
    let a = random(&[n], DType::F32, 30);
    let b = random(&[n], DType::F32, 31);
    check_exact(&Op::Binary { f: BinaryOp::Mul }, &[&a, &b]);
    check_exact(&Op::Unary { f: UnaryOp::Relu }, &[&a]);
}
