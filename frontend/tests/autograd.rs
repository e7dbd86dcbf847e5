//! Eager autograd: gradients of recorded ops, checked against hand-computed values and
//! finite differences, grad_req semantics, recording scopes and error cases.

use kiln_frontend::autograd::{self, GradReq};
use kiln_frontend::ndarray::apply;
use kiln_frontend::{Context, Error, NDArray};
use kiln_ir::{BinaryOp, Op, ReduceOp, Result, Tensor, UnaryOp};

fn arr(values: &[f64], shape: &[usize]) -> NDArray {
    NDArray::from_tensor(
        Tensor::from_vec(values.to_vec(), shape).expect("values match the shape"),
        Context::cpu(),
    )
}

fn vals(a: &NDArray) -> Vec<f64> {
    a.to_vec_f64()
}

fn grad_of(a: &NDArray) -> Vec<f64> {
    vals(&a.grad().expect("gradient attached"))
}

fn bin(f: BinaryOp, a: &NDArray, b: &NDArray) -> Result<NDArray> {
    apply(Op::Binary { f }, &[a, b])
}

fn scal(f: BinaryOp, a: &NDArray, scalar: f64) -> Result<NDArray> {
    apply(
        Op::Scalar {
            f,
            scalar,
            reverse: false,
        },
        &[a],
    )
}

fn un(f: UnaryOp, a: &NDArray) -> Result<NDArray> {
    apply(Op::Unary { f }, &[a])
}

fn sum(a: &NDArray) -> Result<NDArray> {
    apply(
        Op::Reduce {
            f: ReduceOp::Sum,
            axes: None,
            keepdims: false,
        },
        &[a],
    )
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w} (all: {got:?} vs {want:?})"
        );
    }
}

fn autograd_msg(e: Error) -> String {
    match e {
        Error::Autograd(m) => m,
        other => panic!("expected an autograd error, got {other:?}"),
    }
}

/// Checks the recorded gradients of `sum(f(inputs))` against central differences.
fn check_finite_differences(
    f: impl Fn(&[NDArray]) -> Result<NDArray>,
    inputs: &[(&[f64], &[usize])],
) {
    let arrays: Vec<NDArray> = inputs.iter().map(|(v, s)| arr(v, s)).collect();
    for a in &arrays {
        a.attach_grad();
    }
    let y = autograd::record(|| f(&arrays)).expect("forward runs");
    y.backward().expect("backward runs");
    let total = |xs: &[NDArray]| -> f64 {
        autograd::pause(|| vals(&f(xs).expect("forward runs")).iter().sum())
    };
    let eps = 1e-6;
    for (j, (v, s)) in inputs.iter().enumerate() {
        let analytic = grad_of(&arrays[j]);
        let mut numeric = Vec::with_capacity(v.len());
        for k in 0..v.len() {
            let shifted = |delta: f64| -> f64 {
                let mut moved = v.to_vec();
                moved[k] += delta;
                let mut xs = arrays.clone();
                xs[j] = arr(&moved, s);
                total(&xs)
            };
            numeric.push((shifted(eps) - shifted(-eps)) / (2.0 * eps));
        }
        assert_close(&analytic, &numeric, 1e-6);
    }
}

#[test]
fn polynomial_gradient_is_two_x_plus_three() -> Result<()> {
    let x = arr(&[-2.0, 0.0, 1.5, 4.0], &[2, 2]);
    x.attach_grad();
    let y = autograd::record(|| -> Result<NDArray> {
        let xx = bin(BinaryOp::Mul, &x, &x)?;
        let three_x = scal(BinaryOp::Mul, &x, 3.0)?;
        bin(BinaryOp::Add, &xx, &three_x)
    })?;
    assert_eq!(vals(&y), vec![-2.0, 0.0, 6.75, 28.0]);
    y.backward()?;
    assert_eq!(grad_of(&x), vec![-1.0, 3.0, 6.0, 11.0]);
    assert_eq!(x.grad()?.shape().dims(), &[2, 2]);
    Ok(())
}

#[test]
fn broadcasting_gradients_are_summed_back_to_the_input_shapes() -> Result<()> {
    let x = arr(&[1.0, 2.0, 3.0], &[3, 1]);
    let y = arr(&[10.0, 20.0, 30.0, 40.0], &[1, 4]);
    x.attach_grad();
    y.attach_grad();
    let z = autograd::record(|| bin(BinaryOp::Add, &x, &y))?;
    assert_eq!(z.shape().dims(), &[3, 4]);
    z.backward()?;
    assert_eq!(grad_of(&x), vec![4.0, 4.0, 4.0]);
    assert_eq!(grad_of(&y), vec![3.0, 3.0, 3.0, 3.0]);

    // d(x*y)/dx sums y over the broadcast axis, and d/dy sums x.
    let p = autograd::record(|| bin(BinaryOp::Mul, &x, &y))?;
    p.backward()?;
    assert_eq!(grad_of(&x), vec![100.0, 100.0, 100.0]);
    assert_eq!(grad_of(&y), vec![6.0, 6.0, 6.0, 6.0]);
    Ok(())
}

#[test]
fn an_array_used_twice_accumulates_both_gradients() -> Result<()> {
    let x = arr(&[1.0, -3.0, 0.5], &[3]);
    x.attach_grad();
    let y = autograd::record(|| bin(BinaryOp::Mul, &x, &x))?;
    y.backward()?;
    assert_eq!(grad_of(&x), vec![2.0, -6.0, 1.0]);

    // x feeds two separate branches that meet again: (x + 1) * exp(x)... here 2x + x*x.
    let z = autograd::record(|| -> Result<NDArray> {
        let twice = bin(BinaryOp::Add, &x, &x)?;
        let sq = bin(BinaryOp::Mul, &x, &x)?;
        bin(BinaryOp::Add, &twice, &sq)
    })?;
    z.backward()?;
    assert_eq!(grad_of(&x), vec![4.0, -4.0, 3.0]);
    Ok(())
}

#[test]
fn chain_of_elementwise_ops_matches_finite_differences() {
    check_finite_differences(
        |xs| {
            let (x, w) = (&xs[0], &xs[1]);
            let a = un(UnaryOp::Tanh, &bin(BinaryOp::Mul, x, w)?)?;
            let b = un(UnaryOp::Exp, &scal(BinaryOp::Mul, x, 0.5)?)?;
            let denom = scal(BinaryOp::Add, &bin(BinaryOp::Mul, x, x)?, 1.0)?;
            let c = bin(BinaryOp::Div, &bin(BinaryOp::Mul, &a, &b)?, &denom)?;
            bin(BinaryOp::Sub, &c, &un(UnaryOp::Sigmoid, w)?)
        },
        &[
            (&[0.3, -1.2, 2.0, 0.7, -0.4, 1.1], &[2, 3]),
            (&[1.5, -0.5, 0.25], &[3]),
        ],
    );
}

#[test]
fn chain_through_a_reduction_matches_finite_differences() {
    check_finite_differences(
        |xs| {
            let (x, w) = (&xs[0], &xs[1]);
            let h = un(
                UnaryOp::Log1p,
                &un(UnaryOp::Square, &bin(BinaryOp::Sub, x, w)?)?,
            )?;
            sum(&scal(BinaryOp::Mul, &h, 2.5)?)
        },
        &[(&[0.3, -1.2, 2.0, 0.7], &[2, 2]), (&[1.0, -0.5], &[1, 2])],
    );
}

#[test]
fn grad_req_write_overwrites_add_accumulates_null_leaves_the_buffer() -> Result<()> {
    let w = arr(&[1.0, 2.0], &[2]);
    let a = arr(&[1.0, 2.0], &[2]);
    let n = arr(&[1.0, 2.0], &[2]);
    w.attach_grad();
    a.attach_grad_with(GradReq::Add);
    n.attach_grad_with(GradReq::Null);
    assert_eq!(w.grad_req(), Some(GradReq::Write));
    assert_eq!(a.grad_req(), Some(GradReq::Add));
    assert_eq!(n.grad_req(), Some(GradReq::Null));
    // y = w*a*n: dy/dw = a*n, dy/da = w*n, dy/dn = w*a.
    let step = || -> Result<()> {
        let y = autograd::record(|| bin(BinaryOp::Mul, &bin(BinaryOp::Mul, &w, &a)?, &n))?;
        y.backward()
    };
    step()?;
    assert_eq!(grad_of(&w), vec![1.0, 4.0]);
    assert_eq!(grad_of(&a), vec![1.0, 4.0]);
    assert_eq!(grad_of(&n), vec![0.0, 0.0]);
    step()?;
    assert_eq!(grad_of(&w), vec![1.0, 4.0], "write overwrites");
    assert_eq!(grad_of(&a), vec![2.0, 8.0], "add accumulates");
    assert_eq!(grad_of(&n), vec![0.0, 0.0], "null is left alone");

    // set_grad_req keeps the buffer and its contents.
    w.set_grad_req(GradReq::Add)?;
    step()?;
    assert_eq!(grad_of(&w), vec![2.0, 8.0]);
    Ok(())
}

#[test]
fn head_gradient_scales_the_result() -> Result<()> {
    let x = arr(&[1.0, 2.0, 3.0], &[3]);
    x.attach_grad();
    let y = autograd::record(|| scal(BinaryOp::Mul, &x, 2.0))?;
    y.backward_with(&arr(&[1.0, 10.0, -1.0], &[3]))?;
    assert_eq!(grad_of(&x), vec![2.0, 20.0, -2.0]);

    let y = autograd::record(|| scal(BinaryOp::Mul, &x, 2.0))?;
    let msg = autograd_msg(y.backward_with(&arr(&[1.0, 1.0], &[2])).unwrap_err());
    assert!(msg.contains("head gradient") && msg.contains("[3]") && msg.contains("[2]"));
    Ok(())
}

#[test]
fn pause_inside_record_does_not_tape() -> Result<()> {
    let x = arr(&[1.0, 2.0], &[2]);
    x.attach_grad();
    let (y, c) = autograd::record(|| -> Result<(NDArray, NDArray)> {
        // c = 3x is computed without history: a constant as far as backward is concerned.
        let c = autograd::pause(|| scal(BinaryOp::Mul, &x, 3.0))?;
        Ok((bin(BinaryOp::Mul, &x, &c)?, c))
    })?;
    y.backward()?;
    assert_eq!(grad_of(&x), vec![3.0, 6.0], "c counted as a constant");
    let msg = autograd_msg(c.backward().unwrap_err());
    assert!(msg.contains("no recorded history"), "{msg}");
    Ok(())
}

#[test]
fn recording_and_training_flags_follow_the_scopes() {
    assert!(!autograd::is_recording() && !autograd::is_training());
    autograd::record(|| {
        assert!(autograd::is_recording() && autograd::is_training());
        autograd::predict_mode(|| {
            assert!(autograd::is_recording() && !autograd::is_training());
        });
        autograd::pause(|| {
            assert!(!autograd::is_recording() && !autograd::is_training());
            autograd::train_mode(|| {
                assert!(!autograd::is_recording() && autograd::is_training());
            });
        });
        autograd::pause_with(true, || {
            assert!(!autograd::is_recording() && autograd::is_training());
        });
        autograd::record_with(false, || {
            assert!(autograd::is_recording() && !autograd::is_training());
        });
        assert!(autograd::is_recording() && autograd::is_training());
    });
    assert!(!autograd::is_recording() && !autograd::is_training());
    autograd::train_mode(|| assert!(autograd::is_training() && !autograd::is_recording()));
}

#[test]
fn flags_are_restored_after_early_return_and_panic() {
    let early = autograd::record(|| -> Result<()> {
        Err(Error::Autograd("stop".into()))?;
        Ok(())
    });
    assert!(early.is_err());
    assert!(!autograd::is_recording() && !autograd::is_training());

    let caught = std::panic::catch_unwind(|| {
        autograd::record(|| {
            assert!(autograd::is_recording());
            panic!("unwinding through record");
        })
    });
    assert!(caught.is_err());
    assert!(!autograd::is_recording() && !autograd::is_training());
}

#[test]
fn flags_are_per_thread() {
    autograd::record(|| {
        let other = std::thread::spawn(|| (autograd::is_recording(), autograd::is_training()))
            .join()
            .expect("thread runs");
        assert_eq!(other, (false, false));
        assert!(autograd::is_recording());
    });
}

#[test]
fn sgd_update_between_steps_gives_fresh_gradients() -> Result<()> {
    // Fit w in y = w*x by two SGD steps: loss = (w*x - t)^2, dloss/dw = 2x(w*x - t).
    let x = arr(&[2.0], &[1]);
    let t = arr(&[8.0], &[1]);
    let mut w = arr(&[1.0], &[1]);
    let lr = 0.05;
    let mut seen = Vec::new();
    for _ in 0..2 {
        w.attach_grad();
        let loss = autograd::record(|| -> Result<NDArray> {
            let r = bin(BinaryOp::Sub, &bin(BinaryOp::Mul, &w, &x)?, &t)?;
            bin(BinaryOp::Mul, &r, &r)
        })?;
        loss.backward()?;
        let g = w.grad()?;
        seen.push(vals(&g)[0]);
        // w = w - lr * grad, outside record: a new array, not taped.
        w = bin(BinaryOp::Sub, &w, &scal(BinaryOp::Mul, &g, lr)?)?;
    }
    // Step 1: w = 1, grad = 2*2*(2-8) = -24 -> w = 2.2; step 2: grad = 4*(4.4-8) = -14.4.
    assert_close(&seen, &[-24.0, -14.4], 1e-12);
    assert_close(&vals(&w), &[2.2 + 0.05 * 14.4], 1e-12);
    Ok(())
}

#[test]
fn errors_name_what_went_wrong() -> Result<()> {
    let x = arr(&[1.0, 2.0], &[2]);

    // grad() without attach_grad.
    let msg = autograd_msg(x.grad().unwrap_err());
    assert!(
        msg.contains("no gradient is attached") && msg.contains("[2]"),
        "{msg}"
    );
    assert!(x.grad_req().is_none());
    assert!(x.set_grad_req(GradReq::Add).is_err());

    // backward on an array computed outside record.
    x.attach_grad();
    let y = scal(BinaryOp::Mul, &x, 2.0)?;
    let msg = autograd_msg(y.backward().unwrap_err());
    assert!(
        msg.contains("no recorded history") && msg.contains("autograd::record"),
        "{msg}"
    );

    // backward on a leaf with an attached gradient: d(x)/d(x) is the head gradient.
    x.backward_with(&arr(&[5.0, 6.0], &[2]))?;
    assert_eq!(grad_of(&x), vec![5.0, 6.0]);

    // Recorded, but from arrays without attached gradients.
    let c = arr(&[1.0, 2.0], &[2]);
    let y = autograd::record(|| scal(BinaryOp::Mul, &c, 2.0))?;
    let msg = autograd_msg(y.backward().unwrap_err());
    assert!(msg.contains("no array with an attached gradient"), "{msg}");

    // Only grad_req Null arrays in the graph.
    let n = arr(&[1.0, 2.0], &[2]);
    n.attach_grad_with(GradReq::Null);
    let y = autograd::record(|| scal(BinaryOp::Mul, &n, 2.0))?;
    let msg = autograd_msg(y.backward().unwrap_err());
    assert!(msg.contains("grad_req Write or Add"), "{msg}");

    // backward twice without retain_graph, and with it.
    let y = autograd::record(|| bin(BinaryOp::Mul, &x, &x))?;
    y.backward_opts(None, true)?;
    y.backward_opts(None, true)?;
    assert_eq!(grad_of(&x), vec![2.0, 4.0]);
    y.backward()?;
    let msg = autograd_msg(y.backward().unwrap_err());
    assert!(
        msg.contains("already freed") && msg.contains("retain_graph"),
        "{msg}"
    );

    // A new computation from a value whose graph was freed reports it too.
    let z = autograd::record(|| scal(BinaryOp::Add, &y, 1.0))?;
    let msg = autograd_msg(z.backward().unwrap_err());
    assert!(
        msg.contains("already freed") && msg.contains("detach"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn detach_cuts_the_history() -> Result<()> {
    let x = arr(&[1.0, 2.0], &[2]);
    x.attach_grad();
    let y = autograd::record(|| -> Result<NDArray> {
        let h = scal(BinaryOp::Mul, &x, 3.0)?.detach();
        bin(BinaryOp::Mul, &x, &h)
    })?;
    y.backward()?;
    assert_eq!(grad_of(&x), vec![3.0, 6.0]);
    Ok(())
}

#[test]
fn two_heads_at_once_sum_their_gradients() -> Result<()> {
    let x = arr(&[1.0, 2.0], &[2]);
    x.attach_grad();
    let (a, b) = autograd::record(|| -> Result<(NDArray, NDArray)> {
        Ok((bin(BinaryOp::Mul, &x, &x)?, scal(BinaryOp::Mul, &x, 5.0)?))
    })?;
    autograd::backward(&[&a, &b], None, false)?;
    assert_eq!(grad_of(&x), vec![7.0, 9.0]);
    Ok(())
}

#[test]
fn mark_variables_uses_the_callers_buffer() -> Result<()> {
    let x = arr(&[1.0, 2.0], &[2]);
    let g = arr(&[100.0, 100.0], &[2]);
    autograd::mark_variables(&[&x], &[&g], &[GradReq::Add])?;
    let y = autograd::record(|| bin(BinaryOp::Mul, &x, &x))?;
    y.backward()?;
    assert_eq!(vals(&g), vec![102.0, 104.0]);
    let bad = arr(&[0.0; 3], &[3]);
    let msg =
        autograd_msg(autograd::mark_variables(&[&x], &[&bad], &[GradReq::Write]).unwrap_err());
    assert!(msg.contains("[3]") && msg.contains("[2]"), "{msg}");
    Ok(())
}

#[test]
fn nested_record_continues_and_backward_inside_record_is_not_taped() -> Result<()> {
    let x = arr(&[1.0, 2.0], &[2]);
    x.attach_grad();
    autograd::record(|| -> Result<()> {
        let a = scal(BinaryOp::Mul, &x, 2.0)?;
        // y = (2x) * x, the second op under an inner record: d/dx = 4x.
        let y = autograd::record(|| bin(BinaryOp::Mul, &a, &x))?;
        y.backward()?;
        assert!(
            autograd::is_recording(),
            "backward leaves the flags as they were"
        );
        Ok(())
    })?;
    assert_eq!(grad_of(&x), vec![4.0, 8.0]);
    // The gradient buffer itself carries no history: no second-order tape.
    let msg = autograd_msg(x.grad()?.backward().unwrap_err());
    assert!(msg.contains("no recorded history"), "{msg}");
    Ok(())
}
