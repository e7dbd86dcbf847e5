//! The NDArray API is what autograd sees: operators, views, indexing and nn ops are taped,
//! and dropout / batch norm follow the training flag.

use kiln_frontend::nd::{self, BatchNormOpts};
use kiln_frontend::{autograd, s, NDArray, Result};

fn f32s(a: &NDArray) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

#[test]
fn operators_views_and_indexing_are_taped() -> Result<()> {
    let x = NDArray::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2])?;
    x.attach_grad();
    let loss = autograd::record(|| -> Result<NDArray> {
        // A view (reshape), a leading-axis row view, a strided copy and operators.
        let flat = x.reshape(&[-1])?;
        let row = x.at(1)?;
        let col = x.index(&s![.., 0])?;
        let y = ((&flat * &flat)?.sum()? + (2.0 * &row)?.sum()?)?;
        y + (&col * 3.0)?.sum()?
    })?;
    loss.backward()?;
    // d/dx [sum x^2 + 2 sum x[1,:] + 3 sum x[:,0]] = 2x + [[3, 0], [5, 2]].
    assert_eq!(f32s(&x.grad()?), vec![5.0, 4.0, 11.0, 10.0]);
    Ok(())
}

#[test]
fn nd_functions_and_split_are_taped() -> Result<()> {
    let w = nd::array(&[[1.0, -1.0], [0.5, 2.0]])?;
    w.attach_grad();
    let x = nd::array(&[[1.0, 2.0]])?;
    let out = autograd::record(|| -> Result<NDArray> {
        let h = nd::relu(&nd::dot(&x, &w)?)?;
        let parts = nd::split(&h, 2, 1)?;
        (&parts[0] + &parts[1])?.sum()
    })?;
    // h = relu([2, 3]) = [2, 3]; out = 5; d out/dw = xᵀ·[1, 1].
    assert_eq!(out.as_scalar::<f32>()?, 5.0);
    out.backward()?;
    assert_eq!(f32s(&w.grad()?), vec![1.0, 1.0, 2.0, 2.0]);
    Ok(())
}

#[test]
fn dropout_and_batch_norm_follow_the_training_flag() -> Result<()> {
    let x = nd::ones([1000])?;
    assert!(nd::dropout(&x, 0.5)?.shares_storage_with(&x));
    kiln_frontend::random::seed(1);
    let d = autograd::train_mode(|| nd::dropout(&x, 0.5))?;
    let v = f32s(&d);
    assert!(
        v.iter().all(|&e| e == 0.0 || e == 2.0),
        "inverted dropout scales by 2"
    );
    let kept = v.iter().filter(|&&e| e == 2.0).count();
    assert!((400..600).contains(&kept), "kept {kept} of 1000");
    // Inside record (training), dropout is active too; in predict mode it is not.
    let r = autograd::record(|| nd::dropout(&x, 0.5))?;
    assert!(!r.shares_storage_with(&x));
    let p = autograd::record_with(false, || nd::dropout(&x, 0.5))?;
    assert!(p.shares_storage_with(&x));

    // Batch norm: running statistics in predict mode, batch statistics in training.
    let b = nd::array(&[[1.0, 2.0], [3.0, 4.0]])?;
    let (gamma, beta) = (nd::ones([2])?, nd::zeros([2])?);
    let (mean, var) = (nd::zeros([2])?, nd::ones([2])?);
    let opts = BatchNormOpts {
        eps: 0.0,
        ..BatchNormOpts::default()
    };
    let predict = nd::batch_norm(&b, &gamma, &beta, &mean, &var, &opts)?;
    assert_eq!(f32s(&predict), vec![1.0, 2.0, 3.0, 4.0]);
    let train = autograd::train_mode(|| nd::batch_norm(&b, &gamma, &beta, &mean, &var, &opts))?;
    assert_eq!(f32s(&train), vec![-1.0, -1.0, 1.0, 1.0]);
    Ok(())
}
