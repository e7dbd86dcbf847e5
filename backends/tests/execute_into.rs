//! `Kernels::execute_into`: the CPU fast paths build their result in the offered allocation
//! when it fits (same dtype, enough capacity) and give bitwise the results of `execute`;
//! anything else is ignored. The default (the interpreter) ignores the offer.

use kiln_backends::{CpuBackend, Interpreter, Kernels};
use kiln_ir::{BinaryOp, Op, Storage, Tensor, UnaryOp};

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.37 - 3.0) * scale).collect()
}

/// A recycled allocation of `capacity` f32 elements holding garbage.
fn garbage(capacity: usize) -> (Tensor, *const f32) {
    let v = vec![f32::NAN; capacity];
    let ptr = v.as_ptr();
    (Tensor::from_vec(v, [capacity]).unwrap(), ptr)
}

fn check_reuses(op: &Op, inputs: &[Tensor], out_len: usize) {
    let views: Vec<_> = inputs.iter().map(Tensor::view).collect();
    let fresh = CpuBackend.execute(op, &views).unwrap();
    for capacity in [out_len, out_len + 17] {
        let (buf, ptr) = garbage(capacity);
        let got = CpuBackend.execute_into(op, &views, buf).unwrap();
        assert_eq!(
            got,
            fresh,
            "{} with {capacity} recycled elements",
            op.name()
        );
        assert_eq!(
            got.as_slice::<f32>().unwrap().as_ptr(),
            ptr,
            "{} built its result in the offered allocation",
            op.name()
        );
    }
    // Too small or of another dtype: a fresh allocation, the same result.
    let (small, ptr) = garbage(out_len - 1);
    let got = CpuBackend.execute_into(op, &views, small).unwrap();
    assert_eq!(got, fresh);
    assert_ne!(got.as_slice::<f32>().unwrap().as_ptr(), ptr);
    let other = Tensor::new([out_len], Storage::F64(vec![1.0; out_len])).unwrap();
    assert_eq!(CpuBackend.execute_into(op, &views, other).unwrap(), fresh);
}

#[test]
fn elementwise_fast_paths_write_into_the_offered_allocation() {
    let a = Tensor::from_vec(ramp(24, 1.0), [4, 6]).unwrap();
    let b = Tensor::from_vec(ramp(6, 0.5), [6]).unwrap();
    check_reuses(
        &Op::Unary { f: UnaryOp::Tanh },
        std::slice::from_ref(&a),
        24,
    );
    check_reuses(
        &Op::Unary { f: UnaryOp::Relu },
        std::slice::from_ref(&a),
        24,
    );
    check_reuses(&Op::Binary { f: BinaryOp::Mul }, &[a.clone(), b], 24);
    check_reuses(
        &Op::Binary { f: BinaryOp::Sub },
        &[a.clone(), a.clone()],
        24,
    );
    check_reuses(
        &Op::Scalar {
            f: BinaryOp::Add,
            scalar: 0.25,
            reverse: false,
        },
        &[a],
        24,
    );
}

#[test]
fn gemm_and_fully_connected_write_into_the_offered_allocation() {
    let x = Tensor::from_vec(ramp(5 * 8, 0.1), [5, 8]).unwrap();
    let w = Tensor::from_vec(ramp(3 * 8, 0.2), [3, 8]).unwrap();
    let bias = Tensor::from_vec(ramp(3, 1.0), [3]).unwrap();
    check_reuses(
        &Op::FullyConnected {
            flatten: true,
            no_bias: false,
        },
        &[x.clone(), w.clone(), bias],
        15,
    );
    check_reuses(
        &Op::Dot {
            transpose_a: false,
            transpose_b: true,
        },
        &[x, w],
        15,
    );
}

#[test]
fn ops_without_a_fast_path_and_the_interpreter_ignore_the_offer() {
    let a = Tensor::from_vec(ramp(6, 1.0), [2, 3]).unwrap();
    let op = Op::Transpose { axes: None };
    let (buf, _) = garbage(6);
    let got = CpuBackend.execute_into(&op, &[a.view()], buf).unwrap();
    assert_eq!(got, CpuBackend.execute(&op, &[a.view()]).unwrap());
    let tanh = Op::Unary { f: UnaryOp::Tanh };
    let (buf, _) = garbage(6);
    let got = Interpreter.execute_into(&tanh, &[a.view()], buf).unwrap();
    assert_eq!(got, Interpreter.execute(&tanh, &[a.view()]).unwrap());
    // Errors are the interpreter's, whatever is offered.
    let (buf, _) = garbage(6);
    let bad = CpuBackend.execute_into(&Op::Binary { f: BinaryOp::Add }, &[a.view()], buf);
    assert!(bad.is_err());
}
