//! Every op family through the NDArray API (methods and `nd::` functions), with values
//! computed by hand.

use kiln_frontend::nd::{self, BatchNormOpts, ConvOpts, PoolOpts};
use kiln_frontend::{DType, NDArray, Result};

fn f32s(a: &NDArray) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

fn m(rows: &[&[f32]]) -> NDArray {
    let cols = rows.first().map_or(0, |r| r.len());
    let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    NDArray::from_vec(data, [rows.len(), cols]).unwrap()
}

fn v(data: &[f32]) -> NDArray {
    NDArray::from_slice(data)
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{got:?} != {want:?}"
        );
    }
}

fn dims(a: &NDArray) -> Vec<usize> {
    a.shape().dims().to_vec()
}

#[test]
fn unary_ops() -> Result<()> {
    let x = v(&[-1.0, 0.0, 2.0]);
    assert_eq!(f32s(&x.relu()?), vec![0.0, 0.0, 2.0]);
    assert_eq!(f32s(&x.abs()?), vec![1.0, 0.0, 2.0]);
    assert_eq!(f32s(&x.neg()?), vec![1.0, -0.0, -2.0]);
    assert_eq!(f32s(&nd::negative(&x)?), vec![1.0, 0.0, -2.0]);
    assert_eq!(f32s(&x.sign()?), vec![-1.0, 0.0, 1.0]);
    assert_eq!(f32s(&x.square()?), vec![1.0, 0.0, 4.0]);
    assert_eq!(f32s(&x.logical_not()?), vec![0.0, 1.0, 0.0]);
    assert_close(&f32s(&x.exp()?), &[(-1.0f32).exp(), 1.0, 2.0f32.exp()]);
    assert_close(&f32s(&nd::sigmoid(&x)?), &[0.268_941_43, 0.5, 0.880_797_1]);
    assert_close(&f32s(&x.tanh()?), &[-0.761_594_2, 0.0, 0.964_027_6]);
    assert_close(
        &f32s(&x.softrelu()?),
        &[0.313_261_7, std::f32::consts::LN_2, 2.126_928],
    );
    let p = v(&[1.0, 4.0, 0.25]);
    assert_close(&f32s(&p.sqrt()?), &[1.0, 2.0, 0.5]);
    assert_close(&f32s(&p.rsqrt()?), &[1.0, 0.5, 2.0]);
    assert_close(&f32s(&p.reciprocal()?), &[1.0, 0.25, 4.0]);
    assert_close(&f32s(&p.log()?), &[0.0, 4.0f32.ln(), 0.25f32.ln()]);
    assert_close(
        &f32s(&nd::log1p(&p)?),
        &[2.0f32.ln(), 5.0f32.ln(), 1.25f32.ln()],
    );
    assert_close(&f32s(&v(&[0.0]).expm1()?), &[0.0]);
    assert_close(&f32s(&v(&[0.0]).cos()?), &[1.0]);
    assert_close(&f32s(&v(&[0.0]).sin()?), &[0.0]);
    let r = v(&[-1.5, 0.5, 1.5, 2.4]);
    assert_eq!(f32s(&r.round()?), vec![-2.0, 1.0, 2.0, 2.0]);
    assert_eq!(f32s(&r.floor()?), vec![-2.0, 0.0, 1.0, 2.0]);
    assert_eq!(f32s(&r.ceil()?), vec![-1.0, 1.0, 2.0, 3.0]);
    Ok(())
}

#[test]
fn binary_ops_broadcast() -> Result<()> {
    let a = m(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]]);
    let row = v(&[10.0, 20.0, 30.0]);
    let col = m(&[&[1.0], &[2.0]]);
    assert_eq!(
        f32s(&a.add(&row)?),
        vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
    );
    assert_eq!(
        f32s(&nd::subtract(&a, &col)?),
        vec![0.0, 1.0, 2.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(
        f32s(&nd::multiply(&a, &col)?),
        vec![1.0, 2.0, 3.0, 8.0, 10.0, 12.0]
    );
    assert_eq!(f32s(&a.div(&col)?), vec![1.0, 2.0, 3.0, 2.0, 2.5, 3.0]);
    assert_eq!(f32s(&a.pow(&col)?), vec![1.0, 2.0, 3.0, 16.0, 25.0, 36.0]);
    let b = v(&[3.0, 3.0, 3.0]);
    assert_eq!(
        f32s(&nd::maximum(&a, &b)?),
        vec![3.0, 3.0, 3.0, 4.0, 5.0, 6.0]
    );
    assert_eq!(
        f32s(&nd::minimum(&a, &b)?),
        vec![1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    );
    assert_eq!(f32s(&a.eq(&b)?), vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(f32s(&a.ne(&b)?), vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(f32s(&a.gt(&b)?), vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(
        f32s(&nd::greater_equal(&a, &b)?),
        vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    );
    assert_eq!(
        f32s(&nd::lesser(&a, &b)?),
        vec![1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(f32s(&a.le(&b)?), vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    // Comparisons count with sum, as in MXNet: (a == b).sum().
    assert_eq!(a.gt(&b)?.sum()?.as_scalar::<f32>()?, 3.0);
    Ok(())
}

#[test]
fn scalar_ops() -> Result<()> {
    let x = v(&[1.0, 2.0, 4.0]);
    assert_eq!(f32s(&x.add_scalar(1.0)?), vec![2.0, 3.0, 5.0]);
    assert_eq!(f32s(&x.sub_scalar(1.0)?), vec![0.0, 1.0, 3.0]);
    assert_eq!(f32s(&x.rsub_scalar(1.0)?), vec![0.0, -1.0, -3.0]);
    assert_eq!(f32s(&x.mul_scalar(3.0)?), vec![3.0, 6.0, 12.0]);
    assert_eq!(f32s(&x.div_scalar(2.0)?), vec![0.5, 1.0, 2.0]);
    assert_eq!(f32s(&x.rdiv_scalar(4.0)?), vec![4.0, 2.0, 1.0]);
    assert_eq!(f32s(&x.pow_scalar(2.0)?), vec![1.0, 4.0, 16.0]);
    assert_eq!(f32s(&x.rpow_scalar(2.0)?), vec![2.0, 4.0, 16.0]);
    assert_eq!(f32s(&x.maximum_scalar(2.0)?), vec![2.0, 2.0, 4.0]);
    assert_eq!(f32s(&x.minimum_scalar(2.0)?), vec![1.0, 2.0, 2.0]);
    assert_eq!(f32s(&x.gt_scalar(1.5)?), vec![0.0, 1.0, 1.0]);
    assert_eq!(f32s(&x.eq_scalar(2.0)?), vec![0.0, 1.0, 0.0]);
    assert_eq!(f32s(&x.le_scalar(2.0)?), vec![1.0, 1.0, 0.0]);
    let i = NDArray::from_slice(&[7i64, -7]);
    assert_eq!(i.div_scalar(2.0)?.to_vec::<i64>()?, vec![3, -3]);
    Ok(())
}

#[test]
fn where_clip_cast() -> Result<()> {
    let c = v(&[1.0, 0.0, 2.0]);
    let x = v(&[1.0, 2.0, 3.0]);
    let y = v(&[-1.0, -2.0, -3.0]);
    assert_eq!(f32s(&c.where_cond(&x, &y)?), vec![1.0, -2.0, 3.0]);
    assert_eq!(f32s(&nd::where_cond(&c, &x, &y)?), vec![1.0, -2.0, 3.0]);
    assert_eq!(f32s(&nd::clip(&x, 1.5, 2.5)?), vec![1.5, 2.0, 2.5]);
    let i = v(&[1.7, -1.7]).cast(DType::I32)?;
    assert_eq!(i.dtype(), DType::I32);
    assert_eq!(i.to_vec::<i32>()?, vec![1, -1]);
    assert_eq!(i.astype(DType::F64)?.to_vec::<f64>()?, vec![1.0, -1.0]);
    Ok(())
}

#[test]
fn reductions() -> Result<()> {
    let a = m(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]]);
    assert_eq!(a.sum()?.as_scalar::<f32>()?, 21.0);
    assert_eq!(a.sum()?.ndim(), 0);
    assert_eq!(f32s(&a.sum_axis(0)?), vec![5.0, 7.0, 9.0]);
    assert_eq!(f32s(&nd::sum_axis(&a, -1)?), vec![6.0, 15.0]);
    let k = a.sum_axes(&[1], true)?;
    assert_eq!(dims(&k), vec![2, 1]);
    assert_eq!(f32s(&k), vec![6.0, 15.0]);
    assert_eq!(f32s(&a.sum_axes(&[0, 1], false)?), vec![21.0]);
    assert_eq!(a.mean()?.as_scalar::<f32>()?, 3.5);
    assert_eq!(f32s(&a.mean_axis(1)?), vec![2.0, 5.0]);
    assert_eq!(a.max()?.as_scalar::<f32>()?, 6.0);
    assert_eq!(f32s(&a.max_axis(0)?), vec![4.0, 5.0, 6.0]);
    assert_eq!(nd::min(&a)?.as_scalar::<f32>()?, 1.0);
    assert_eq!(f32s(&a.min_axis(1)?), vec![1.0, 4.0]);
    assert_eq!(a.prod()?.as_scalar::<f32>()?, 720.0);
    assert_eq!(f32s(&a.prod_axis(1)?), vec![6.0, 120.0]);
    assert_eq!(v(&[3.0, 4.0]).norm()?.as_scalar::<f32>()?, 5.0);
    assert_close(&f32s(&a.norm_axis(1)?), &[14.0f32.sqrt(), 77.0f32.sqrt()]);
    let b = m(&[&[1.0, 9.0, 9.0], &[7.0, 0.0, 7.0]]);
    assert_eq!(f32s(&b.argmax(1)?), vec![1.0, 0.0]);
    assert_eq!(f32s(&nd::argmin(&b, 1)?), vec![0.0, 1.0]);
    assert_eq!(f32s(&b.argmax(0)?), vec![1.0, 0.0, 0.0]);
    assert_eq!(b.argmax_flat()?.as_scalar::<f32>()?, 1.0);
    assert_eq!(b.argmin_flat()?.as_scalar::<f32>()?, 4.0);
    Ok(())
}

#[test]
fn linear_algebra() -> Result<()> {
    let a = m(&[&[1.0, 2.0], &[3.0, 4.0]]);
    let b = m(&[&[5.0, 6.0], &[7.0, 8.0]]);
    assert_eq!(f32s(&nd::dot(&a, &b)?), vec![19.0, 22.0, 43.0, 50.0]);
    assert_eq!(
        f32s(&a.dot_t(&b, true, false)?),
        vec![26.0, 30.0, 38.0, 44.0]
    );
    assert_eq!(
        f32s(&nd::dot_t(&a, &b, false, true)?),
        vec![17.0, 23.0, 39.0, 53.0]
    );
    let u = v(&[1.0, 2.0, 3.0]);
    let inner = u.dot(&u)?;
    assert_eq!(inner.ndim(), 0);
    assert_eq!(inner.as_scalar::<f32>()?, 14.0);
    let x = nd::stack(&[&a, &b], 0)?;
    let y = nd::batch_dot(&x, &x)?;
    assert_eq!(dims(&y), vec![2, 2, 2]);
    assert_eq!(
        f32s(&y),
        vec![7.0, 10.0, 15.0, 22.0, 67.0, 78.0, 91.0, 106.0]
    );
    let yt = x.batch_dot_t(&x, false, true)?;
    assert_eq!(f32s(&yt)[..4], [5.0, 11.0, 11.0, 25.0]);
    // FullyConnected: x [2, 3] · w [1, 3]ᵀ + b.
    let xs = m(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]]);
    let w = m(&[&[1.0, 0.0, -1.0]]);
    let bias = v(&[0.5]);
    let out = nd::fully_connected(&xs, &w, Some(&bias), true)?;
    assert_eq!(dims(&out), vec![2, 1]);
    assert_eq!(f32s(&out), vec![-1.5, -1.5]);
    let out = xs.fully_connected(&w, None, false)?;
    assert_eq!(f32s(&out), vec![-2.0, -2.0]);
    Ok(())
}

#[test]
fn shape_ops() -> Result<()> {
    let a = nd::arange(6)?;
    let r = a.reshape(&[2, -1])?;
    assert_eq!(dims(&r), vec![2, 3]);
    assert_eq!(dims(&r.reshape(&[0, 3, 1])?), vec![2, 3, 1]);
    assert_eq!(dims(&nd::reshape(&a, &[3, 2])?), vec![3, 2]);
    assert_eq!(f32s(&r.transpose()?), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let t = nd::arange(24)?.reshape(&[2, 3, 4])?;
    let p = t.transpose_axes(&[1, 0, 2])?;
    assert_eq!(dims(&p), vec![3, 2, 4]);
    assert_eq!(f32s(&p)[..8], [0.0, 1.0, 2.0, 3.0, 12.0, 13.0, 14.0, 15.0]);
    assert_eq!(dims(&r.expand_dims(1)?), vec![2, 1, 3]);
    assert_eq!(dims(&nd::expand_dims(&r, -1)?), vec![2, 3, 1]);
    let s = nd::zeros([1, 3, 1])?;
    assert_eq!(dims(&s.squeeze()?), vec![3]);
    assert_eq!(dims(&s.squeeze_axes(&[0])?), vec![3, 1]);
    assert_eq!(dims(&t.flatten()?), vec![2, 12]);
    let bc = v(&[1.0, 2.0]).broadcast_to([3, 2])?;
    assert_eq!(f32s(&bc), vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
    let bl = v(&[7.0]).broadcast_like(&r)?;
    assert_eq!(dims(&bl), vec![2, 3]);
    let sl = r.slice(&[None, Some(1)], &[None, None], &[None, Some(1)])?;
    assert_eq!(f32s(&sl), vec![1.0, 2.0, 4.0, 5.0]);
    let sa = r.slice_axis(1, 0, Some(2))?;
    assert_eq!(f32s(&sa), vec![0.0, 1.0, 3.0, 4.0]);
    assert_eq!(f32s(&nd::slice_axis(&r, 1, -1, None)?), vec![2.0, 5.0]);
    Ok(())
}

#[test]
fn join_split_tile_repeat_flip() -> Result<()> {
    let a = m(&[&[1.0, 2.0], &[3.0, 4.0]]);
    let b = m(&[&[5.0, 6.0]]);
    let c = nd::concat(&[&a, &b], 0)?;
    assert_eq!(dims(&c), vec![3, 2]);
    assert_eq!(f32s(&c), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let c1 = nd::concat(&[&a, &a], 1)?;
    assert_eq!(f32s(&c1), vec![1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]);
    let s = nd::stack(&[&a, &a], 1)?;
    assert_eq!(dims(&s), vec![2, 2, 2]);
    assert_eq!(f32s(&s), vec![1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]);
    let parts = nd::split(&nd::arange(6)?.reshape(&[2, 3])?, 3, 1)?;
    assert_eq!(parts.len(), 3);
    assert_eq!(f32s(&parts[1]), vec![1.0, 4.0]);
    assert_eq!(dims(&parts[2]), vec![2, 1]);
    let rows = a.split(2, 0)?;
    assert_eq!(f32s(&rows[1]), vec![3.0, 4.0]);
    assert_eq!(f32s(&v(&[1.0, 2.0]).tile(&[2])?), vec![1.0, 2.0, 1.0, 2.0]);
    assert_eq!(dims(&nd::tile(&a, &[2, 1])?), vec![4, 2]);
    assert_eq!(
        f32s(&a.repeat(2, 1)?),
        vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    );
    assert_eq!(f32s(&a.repeat_flat(2)?).len(), 8);
    assert_eq!(f32s(&a.flip(0)?), vec![3.0, 4.0, 1.0, 2.0]);
    assert_eq!(f32s(&nd::flip(&a, 1)?), vec![2.0, 1.0, 4.0, 3.0]);
    assert_eq!(f32s(&a.flip_axes(&[0, 1])?), vec![4.0, 3.0, 2.0, 1.0]);
    Ok(())
}

#[test]
fn indexing_ops() -> Result<()> {
    let a = m(&[&[1.0, 2.0], &[3.0, 4.0], &[5.0, 6.0]]);
    let idx = v(&[2.0, 0.0]);
    assert_eq!(f32s(&a.take(&idx)?), vec![5.0, 6.0, 1.0, 2.0]);
    assert_eq!(f32s(&nd::take(&a, &idx, 0)?), vec![5.0, 6.0, 1.0, 2.0]);
    assert_eq!(f32s(&a.take_axis(&v(&[1.0]), 1)?), vec![2.0, 4.0, 6.0]);
    let picked = nd::pick(&a, &v(&[1.0, 0.0, 1.0]))?;
    assert_eq!(f32s(&picked), vec![2.0, 3.0, 6.0]);
    let kept = a.pick_axis(&v(&[1.0, 0.0, 1.0]), 1, true)?;
    assert_eq!(dims(&kept), vec![3, 1]);
    let oh = nd::one_hot(&NDArray::from_slice(&[1i64, 0, 2]), 3)?;
    assert_eq!(oh.dtype(), DType::F32);
    assert_eq!(f32s(&oh), vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    let oh = v(&[1.0]).one_hot_with(2, 5.0, -1.0, DType::F64)?;
    assert_eq!(oh.to_vec::<f64>()?, vec![-1.0, 5.0]);
    let g = m(&[&[1.0, 2.0], &[3.0, 4.0]]).gather(&m(&[&[1.0, 0.0], &[0.0, 0.0]]), 1)?;
    assert_eq!(f32s(&g), vec![2.0, 1.0, 3.0, 3.0]);
    Ok(())
}

#[test]
fn softmax_family() -> Result<()> {
    let x = m(&[&[0.0, 3.0f32.ln()]]);
    assert_close(&f32s(&x.softmax()?), &[0.25, 0.75]);
    assert_close(&f32s(&nd::softmax(&x)?), &[0.25, 0.75]);
    assert_close(&f32s(&x.softmax_axis(0)?), &[1.0, 1.0]);
    assert_close(&f32s(&nd::log_softmax(&x)?), &[0.25f32.ln(), 0.75f32.ln()]);
    let ce = nd::softmax_cross_entropy(&x, &v(&[1.0]))?;
    assert_eq!(dims(&ce), vec![1]);
    assert_close(&f32s(&ce), &[-(0.75f32.ln())]);
    Ok(())
}

#[test]
fn convolution_and_pooling() -> Result<()> {
    let x = nd::arange(9)?.reshape(&[1, 1, 3, 3])?;
    let w = nd::ones([1, 1, 2, 2])?;
    let b = v(&[1.0]);
    let y = nd::convolution(&x, &w, Some(&b), &ConvOpts::new())?;
    assert_eq!(dims(&y), vec![1, 1, 2, 2]);
    assert_eq!(f32s(&y), vec![9.0, 13.0, 21.0, 25.0]);
    let y = x.convolution(&w, None, &ConvOpts::new().stride(2).pad(1))?;
    assert_eq!(dims(&y), vec![1, 1, 2, 2]);
    assert_eq!(f32s(&y), vec![0.0, 3.0, 9.0, 24.0]);

    let d = nd::arange_step(1.0, 5.0, 1.0)?.reshape(&[1, 1, 2, 2])?;
    let y = nd::deconvolution(&d, &w, None, &ConvOpts::new())?;
    assert_eq!(dims(&y), vec![1, 1, 3, 3]);
    assert_eq!(f32s(&y), vec![1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);

    let p = nd::arange(16)?.reshape(&[1, 1, 4, 4])?;
    assert_eq!(
        f32s(&nd::pooling(&p, &PoolOpts::max(2))?),
        vec![5.0, 7.0, 13.0, 15.0]
    );
    assert_eq!(
        f32s(&p.pooling(&PoolOpts::avg([2, 2]))?),
        vec![2.5, 4.5, 10.5, 12.5]
    );
    let s1 = p.pooling(&PoolOpts::max(3).stride(1))?;
    assert_eq!(f32s(&s1), vec![10.0, 11.0, 14.0, 15.0]);
    let g = p.pooling(&PoolOpts::global_avg())?;
    assert_eq!(dims(&g), vec![1, 1, 1, 1]);
    assert_eq!(f32s(&g), vec![7.5]);
    assert_eq!(f32s(&p.pooling(&PoolOpts::global_max())?), vec![15.0]);
    Ok(())
}

#[test]
fn normalization_and_dropout() -> Result<()> {
    let x = m(&[&[1.0, 2.0], &[3.0, 4.0]]);
    let gamma = v(&[1.0, 2.0]);
    let beta = v(&[0.0, 1.0]);
    let mean = v(&[1.0, 2.0]);
    let var = v(&[4.0, 1.0]);
    let opts = BatchNormOpts {
        eps: 0.0,
        use_batch_stats: Some(false),
        ..BatchNormOpts::default()
    };
    let y = nd::batch_norm(&x, &gamma, &beta, &mean, &var, &opts)?;
    assert_close(&f32s(&y), &[0.0, 1.0, 1.0, 5.0]);
    // Batch statistics: per channel mean (2, 3), biased variance (1, 1).
    let opts = BatchNormOpts {
        eps: 0.0,
        use_batch_stats: Some(true),
        ..BatchNormOpts::default()
    };
    let y = x.batch_norm(&gamma, &beta, &mean, &var, &opts)?;
    assert_close(&f32s(&y), &[-1.0, -1.0, 1.0, 3.0]);

    let l = m(&[&[1.0, 2.0, 3.0]]);
    let y = nd::layer_norm(&l, &nd::ones([3])?, &nd::zeros([3])?, -1, 0.0)?;
    let s = (1.5f32).sqrt();
    assert_close(&f32s(&y), &[-s, 0.0, s]);

    // Outside training, dropout is the identity (the very same array).
    let d = nd::dropout(&x, 0.5)?;
    assert!(d.shares_storage_with(&x));
    assert_eq!(f32s(&d), f32s(&x));
    assert!(x.dropout(1.5).is_err());
    Ok(())
}
