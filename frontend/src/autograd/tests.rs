//! Unit tests that need crate-private access: in-place storage writes and hand-made views.

use super::*;
use crate::context::Context;
use crate::ndarray::{apply, write_storage, Inner};
use kiln_ir::{BinaryOp, Op, Storage};
use std::sync::{Arc, Mutex};

fn arr(values: &[f64], shape: &[usize]) -> NDArray {
    NDArray::from_tensor(
        Tensor::from_vec(values.to_vec(), shape).expect("values match the shape"),
        Context::cpu(),
    )
}

fn vals(a: &NDArray) -> Vec<f64> {
    a.to_vec_f64()
}

fn mul(a: &NDArray, b: &NDArray) -> Result<NDArray> {
    apply(Op::Binary { f: BinaryOp::Mul }, &[a, b])
}

/// A view sharing `base`'s storage under another shape, as the view functions make it.
fn view_of(base: &NDArray, shape: &[usize]) -> NDArray {
    NDArray {
        inner: Arc::new(Inner {
            data: base.inner.data.clone(),
            offset: base.inner.offset,
            shape: kiln_ir::Shape::new(shape),
            ctx: base.context(),
            autograd: Mutex::new(AutogradMeta::default()),
        }),
    }
}

#[test]
fn in_place_update_after_backward_feeds_the_next_step() -> Result<()> {
    let w = arr(&[1.0, -2.0], &[2]);
    w.attach_grad();
    let g = w.grad()?;
    let y = record(|| mul(&w, &w))?;
    y.backward()?;
    assert_eq!(vals(&g), vec![2.0, -4.0]);
    // SGD in place: w -= 0.25 * grad, through the storage the array shares.
    {
        let mut s = write_storage(w.inner.data.storage("test", w.shape())?);
        if let Storage::F64(v) = &mut *s {
            for (wi, gi) in v.iter_mut().zip(vals(&g)) {
                *wi -= 0.25 * gi;
            }
        }
    }
    assert_eq!(vals(&w), vec![0.5, -1.0]);
    let y = record(|| mul(&w, &w))?;
    y.backward()?;
    // The handle taken before both backwards sees the second gradient.
    assert_eq!(vals(&g), vec![1.0, -2.0]);
    Ok(())
}

#[test]
fn store_writes_through_an_offset_view() -> Result<()> {
    let base = arr(&[0.0; 6], &[3, 2]);
    let row = NDArray {
        inner: Arc::new(Inner {
            data: base.inner.data.clone(),
            offset: 2,
            shape: kiln_ir::Shape::new(&[2]),
            ctx: base.context(),
            autograd: Mutex::new(AutogradMeta::default()),
        }),
    };
    backward::store(&row, &Storage::F64(vec![7.0, 8.0]))?;
    assert_eq!(vals(&base), vec![0.0, 0.0, 7.0, 8.0, 0.0, 0.0]);
    let err = backward::store(&row, &Storage::F32(vec![1.0, 2.0])).unwrap_err();
    assert!(err.to_string().contains("f32"), "{err}");
    assert!(backward::store(&row, &Storage::F64(vec![1.0])).is_err());
    Ok(())
}

#[test]
fn untaped_views_carry_no_gradient_and_taped_ones_do() -> Result<()> {
    let x = arr(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    x.attach_grad();
    // A view made without taping is a fresh array with no history.
    let y = record(|| {
        let v = view_of(&x, &[4]);
        mul(&v, &v)
    })?;
    let err = y.backward().unwrap_err();
    assert!(
        err.to_string()
            .contains("no array with an attached gradient"),
        "{err}"
    );

    // Taped with the op it stands for, gradient flows back to the base.
    let y = record(|| {
        let v = view_of(&x, &[4]);
        record_op(&Op::Reshape { shape: vec![4] }, &[&x], &v);
        mul(&v, &v)
    })?;
    y.backward()?;
    assert_eq!(vals(&x.grad()?), vec![2.0, 4.0, 6.0, 8.0]);
    Ok(())
}

#[test]
fn in_place_writes_into_tracked_arrays_are_refused_while_recording() -> Result<()> {
    let x = arr(&[1.0, 2.0], &[2]);
    let c = arr(&[1.0, 2.0], &[2]);
    x.attach_grad();
    assert!(check_inplace("add_assign", &x).is_ok(), "outside record");
    record(|| -> Result<()> {
        let err = check_inplace("add_assign", &x).unwrap_err();
        assert!(
            err.to_string().contains("add_assign") && err.to_string().contains("[2]"),
            "{err}"
        );
        let y = mul(&x, &c)?;
        assert!(check_inplace("assign", &y).is_err(), "y has history");
        assert!(check_inplace("assign", &c).is_ok(), "c is a constant");
        Ok(())
    })
}
