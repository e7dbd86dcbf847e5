//! The tape machinery through `record_function` (gradients supplied by closures): multiple
//! outputs, pruning, grad_req Write without a gradient, deep graphs, error handling.

use kiln_frontend::autograd::{self, GradReq};
use kiln_frontend::{Context, Error, NDArray};
use kiln_ir::{Result, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn arr(values: &[f64]) -> NDArray {
    NDArray::from_tensor(
        Tensor::from_vec(values.to_vec(), [values.len()]).expect("1-D"),
        Context::cpu(),
    )
}

fn vals(a: &NDArray) -> Vec<f64> {
    a.to_vec_f64()
}

fn zip_map(a: &NDArray, b: &NDArray, f: impl Fn(f64, f64) -> f64) -> NDArray {
    let out: Vec<f64> = vals(a).iter().zip(vals(b)).map(|(x, y)| f(*x, y)).collect();
    arr(&out)
}

fn autograd_msg(e: Error) -> String {
    match e {
        Error::Autograd(m) => m,
        other => panic!("expected an autograd error, got {other:?}"),
    }
}

/// `(p, q) = (a*b, a+b)`, recorded with its hand-written gradient.
fn mul_and_add(a: &NDArray, b: &NDArray) -> (NDArray, NDArray) {
    let p = zip_map(a, b, |x, y| x * y);
    let q = zip_map(a, b, |x, y| x + y);
    let (a2, b2) = (a.clone(), b.clone());
    autograd::record_function("mul_and_add", &[a, b], &[&p, &q], move |g| {
        let da = zip_map(&zip_map(&g[0], &b2, |gp, y| gp * y), &g[1], |u, gq| u + gq);
        let db = zip_map(&zip_map(&g[0], &a2, |gp, x| gp * x), &g[1], |u, gq| u + gq);
        Ok(vec![Some(da), Some(db)])
    });
    (p, q)
}

/// `y = scale * x`, counting how often its backward runs.
fn scaled(x: &NDArray, scale: f64, calls: &Arc<AtomicUsize>) -> NDArray {
    let y = arr(&vals(x).iter().map(|v| v * scale).collect::<Vec<_>>());
    let calls = Arc::clone(calls);
    autograd::record_function("scaled", &[x], &[&y], move |g| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(vec![Some(arr(&vals(&g[0])
            .iter()
            .map(|v| v * scale)
            .collect::<Vec<_>>()))])
    });
    y
}

#[test]
fn multi_output_function_gets_zeros_for_unused_outputs() -> Result<()> {
    let a = arr(&[1.0, 2.0]);
    let b = arr(&[3.0, 5.0]);
    a.attach_grad();
    b.attach_grad();
    let (p, q) = autograd::record(|| mul_and_add(&a, &b));
    assert_eq!(vals(&p), vec![3.0, 10.0]);
    // Only p is a head: q's gradient is zeros, so da = b and db = a.
    p.backward_opts(None, true)?;
    assert_eq!(vals(&a.grad()?), vec![3.0, 5.0]);
    assert_eq!(vals(&b.grad()?), vec![1.0, 2.0]);
    // Both heads: da = b + 1, db = a + 1.
    autograd::backward(&[&p, &q], None, false)?;
    assert_eq!(vals(&a.grad()?), vec![4.0, 6.0]);
    assert_eq!(vals(&b.grad()?), vec![2.0, 3.0]);
    // Head gradients per head.
    let (p, q) = autograd::record(|| mul_and_add(&a, &b));
    autograd::backward(
        &[&p, &q],
        Some(&[&arr(&[2.0, 0.0]), &arr(&[0.0, 1.0])]),
        false,
    )?;
    assert_eq!(vals(&a.grad()?), vec![6.0, 1.0]);
    assert_eq!(vals(&b.grad()?), vec![2.0, 1.0]);
    Ok(())
}

#[test]
fn branches_that_reach_no_gradient_are_pruned() -> Result<()> {
    let x = arr(&[1.0, 2.0]);
    let frozen = arr(&[4.0, 4.0]);
    x.attach_grad();
    frozen.attach_grad_with(GradReq::Null);
    let used = Arc::new(AtomicUsize::new(0));
    let pruned = Arc::new(AtomicUsize::new(0));
    let y = autograd::record(|| {
        let m = scaled(&frozen, 7.0, &pruned); // recorded (frozen is tracked), not needed
        let x3 = scaled(&x, 3.0, &used);
        let (p, _) = mul_and_add(&x3, &m);
        p
    });
    y.backward()?;
    assert_eq!(used.load(Ordering::SeqCst), 1);
    assert_eq!(
        pruned.load(Ordering::SeqCst),
        0,
        "the frozen branch ran its backward"
    );
    // y = 3x * 28: dy/dx = 84.
    assert_eq!(vals(&x.grad()?), vec![84.0, 84.0]);
    assert_eq!(vals(&frozen.grad()?), vec![0.0, 0.0]);
    Ok(())
}

#[test]
fn write_stores_zeros_when_no_gradient_reaches_a_leaf() -> Result<()> {
    let x = arr(&[1.0, 2.0]);
    let w = arr(&[5.0, 6.0]);
    x.attach_grad();
    w.attach_grad();
    let calls = Arc::new(AtomicUsize::new(0));
    let y = autograd::record(|| scaled(&x, 2.0, &calls));
    y.backward()?;
    assert_eq!(vals(&x.grad()?), vec![2.0, 2.0]);
    // The same leaves through a function that declares x non-differentiable.
    let z = autograd::record(|| {
        let z = arr(&[0.0, 0.0]);
        autograd::record_function("blocks_x", &[&x, &w], &[&z], |g| {
            Ok(vec![None, Some(g[0].clone())])
        });
        z
    });
    z.backward()?;
    assert_eq!(
        vals(&x.grad()?),
        vec![0.0, 0.0],
        "write means this backward's gradient"
    );
    assert_eq!(vals(&w.grad()?), vec![1.0, 1.0]);
    Ok(())
}

#[test]
fn deep_graphs_backprop_and_drop_without_recursion() -> Result<()> {
    let x = arr(&[1.0]);
    x.attach_grad();
    let depth = 20_000;
    let identity = |a: &NDArray| {
        let b = arr(&vals(a));
        autograd::record_function("identity", &[a], &[&b], |g| Ok(vec![Some(g[0].clone())]));
        b
    };
    let y = autograd::record(|| {
        let mut h = x.clone();
        for _ in 0..depth {
            h = identity(&h);
        }
        h
    });
    y.backward_with(&arr(&[3.0]))?;
    assert_eq!(vals(&x.grad()?), vec![3.0]);

    // A graph never differentiated is freed when its head is dropped.
    let long = autograd::record(|| {
        let mut h = x.clone();
        for _ in 0..100_000 {
            h = identity(&h);
        }
        h
    });
    drop(long);
    Ok(())
}

#[test]
fn a_failing_backward_writes_nothing_and_keeps_the_graph() -> Result<()> {
    let x = arr(&[1.0, 2.0]);
    x.attach_grad_with(GradReq::Add);
    let fail = Arc::new(AtomicUsize::new(1));
    let y = autograd::record(|| {
        let y = arr(&[0.0, 0.0]);
        let fail = Arc::clone(&fail);
        autograd::record_function("flaky", &[&x], &[&y], move |g| {
            if fail.fetch_sub(1, Ordering::SeqCst) > 0 {
                return Err(Error::invalid("flaky", "asked to fail"));
            }
            Ok(vec![Some(g[0].clone())])
        });
        y
    });
    let err = y.backward().unwrap_err();
    assert!(err.to_string().contains("asked to fail"), "{err}");
    assert_eq!(vals(&x.grad()?), vec![0.0, 0.0]);
    y.backward()?;
    assert_eq!(vals(&x.grad()?), vec![1.0, 1.0]);
    Ok(())
}

#[test]
fn malformed_function_gradients_are_reported() {
    let x = arr(&[1.0, 2.0]);
    x.attach_grad();
    let y = autograd::record(|| {
        let y = arr(&[0.0, 0.0]);
        autograd::record_function("too_many", &[&x], &[&y], |g| {
            Ok(vec![Some(g[0].clone()), None])
        });
        y
    });
    let msg = autograd_msg(y.backward().unwrap_err());
    assert!(
        msg.contains("`too_many` returned 2 gradients for 1 inputs"),
        "{msg}"
    );

    let y = autograd::record(|| {
        let y = arr(&[0.0, 0.0]);
        autograd::record_function("wrong_shape", &[&x], &[&y], |_| {
            Ok(vec![Some(arr(&[1.0, 2.0, 3.0]))])
        });
        y
    });
    let msg = autograd_msg(y.backward().unwrap_err());
    assert!(
        msg.contains("`wrong_shape`") && msg.contains("[2]") && msg.contains("[3]"),
        "{msg}"
    );
}

#[test]
fn record_function_outside_record_leaves_no_history() {
    let x = arr(&[1.0]);
    x.attach_grad();
    let calls = Arc::new(AtomicUsize::new(0));
    let y = scaled(&x, 2.0, &calls);
    let msg = autograd_msg(y.backward().unwrap_err());
    assert!(msg.contains("no recorded history"), "{msg}");
}

#[test]
fn backward_may_run_on_another_thread() -> Result<()> {
    let x = arr(&[1.0, 2.0]);
    x.attach_grad();
    let calls = Arc::new(AtomicUsize::new(0));
    let y = autograd::record(|| scaled(&x, 4.0, &calls));
    std::thread::spawn(move || y.backward())
        .join()
        .expect("thread runs")?;
    assert_eq!(vals(&x.grad()?), vec![4.0, 4.0]);
    Ok(())
}
