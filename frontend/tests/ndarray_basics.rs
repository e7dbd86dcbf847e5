//! Construction, reading out, operators, in-place writes through views, indexing, iteration,
//! random sampling and printing.

use kiln_frontend::{nd, s, Context, DType, NDArray, Result, Shape};

fn f32s(a: &NDArray) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

fn grid(rows: usize, cols: usize) -> NDArray {
    let data = (0..rows * cols).map(|v| v as f32).collect();
    NDArray::from_vec(data, [rows, cols]).unwrap()
}

// ----- construction -------------------------------------------------------------------------

#[test]
fn construction_from_rust_data() -> Result<()> {
    let a = NDArray::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?;
    assert_eq!(a.shape(), &Shape::from([2, 3]));
    assert_eq!((a.ndim(), a.size(), a.dtype()), (2, 6, DType::F32));
    assert_eq!(a.context(), Context::cpu());

    let b = NDArray::from_slice(&[1i64, 2, 3]);
    assert_eq!((b.dtype(), b.shape().dims()), (DType::I64, &[3][..]));

    let s = NDArray::scalar(2.5f64);
    assert_eq!((s.ndim(), s.size()), (0, 1));
    assert_eq!(s.as_scalar::<f64>()?, 2.5);

    let n = NDArray::from_nested(&[[1.0f32, 2.0], [3.0, 4.0]])?;
    assert_eq!(n.shape().dims(), &[2, 2]);
    assert_eq!(f32s(&n), vec![1.0, 2.0, 3.0, 4.0]);
    let n3 = NDArray::from_nested(&vec![[[1u8], [2]], [[3], [4]]])?;
    assert_eq!((n3.shape().dims(), n3.dtype()), (&[2, 2, 1][..], DType::U8));
    let n4 = NDArray::from_nested(&[[[[true]]]])?;
    assert_eq!(n4.ndim(), 4);
    let empty = NDArray::from_nested(&Vec::<f32>::new())?;
    assert_eq!(empty.shape().dims(), &[0]);

    // nd::array converts to f32, as MXNet's nd.array does.
    let m = nd::array(&[[1.0, 2.0], [3.0, 4.0]])?;
    assert_eq!(m.dtype(), DType::F32);
    let mi = nd::array_with(&[1, 2, 3], DType::I32)?;
    assert_eq!(mi.to_vec::<i32>()?, vec![1, 2, 3]);
    Ok(())
}

#[test]
fn creation_functions() -> Result<()> {
    assert_eq!(f32s(&nd::zeros([2, 2])?), vec![0.0; 4]);
    assert_eq!(f32s(&nd::ones([3])?), vec![1.0; 3]);
    assert_eq!(f32s(&nd::full([2], 7.0)?), vec![7.0, 7.0]);
    let i = nd::ones_with([2], DType::I64)?;
    assert_eq!(i.to_vec::<i64>()?, vec![1, 1]);
    let d = nd::full_with(
        [1],
        0.5,
        nd::Opts::new().dtype(DType::F64).ctx(Context::cpu()),
    )?;
    assert_eq!(d.to_vec::<f64>()?, vec![0.5]);
    assert_eq!(f32s(&nd::arange(4)?), vec![0.0, 1.0, 2.0, 3.0]);
    assert_eq!(
        f32s(&nd::arange_step(1.0, 2.0, 0.25)?),
        vec![1.0, 1.25, 1.5, 1.75]
    );
    assert_eq!(f32s(&nd::arange_step(3.0, 0.0, -1.0)?), vec![3.0, 2.0, 1.0]);
    let ai = nd::arange_with(0.0, 3.0, 1.0, DType::I32)?;
    assert_eq!(ai.to_vec::<i32>()?, vec![0, 1, 2]);
    assert_eq!(
        f32s(&nd::linspace(0.0, 1.0, 5)?),
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    );
    let l = nd::linspace_with(0.0, 1.0, 4, false, DType::F64)?;
    assert_eq!(l.to_vec::<f64>()?, vec![0.0, 0.25, 0.5, 0.75]);
    let x = nd::array_with(&[1, 2], DType::I64)?;
    assert_eq!(nd::zeros_like(&x)?.to_vec::<i64>()?, vec![0, 0]);
    assert_eq!(nd::ones_like(&x)?.to_vec::<i64>()?, vec![1, 1]);
    assert_eq!(nd::full_like(&x, 9.0)?.to_vec::<i64>()?, vec![9, 9]);
    Ok(())
}

#[test]
fn random_sampling_repeats_under_a_seed() -> Result<()> {
    kiln_frontend::random::seed(42);
    let u = nd::random::uniform(-1.0, 1.0, [1000])?;
    assert!(u.to_vec::<f32>()?.iter().all(|&x| (-1.0..1.0).contains(&x)));
    let mean = u.mean()?.as_scalar::<f32>()?;
    assert!(mean.abs() < 0.1, "uniform mean {mean}");
    let n = nd::random::normal(2.0, 0.5, [2000])?;
    let m = n.mean()?.as_scalar::<f32>()?;
    assert!((m - 2.0).abs() < 0.05, "normal mean {m}");
    let bern = nd::random::bernoulli(0.3, [100])?;
    assert!(bern.to_vec::<f32>()?.iter().all(|&x| x == 0.0 || x == 1.0));
    let r = nd::random::randint(3, 6, [50])?;
    assert_eq!(r.dtype(), DType::I32);
    assert!(r.to_vec::<i32>()?.iter().all(|&x| (3..6).contains(&x)));
    let r64 = nd::random::randint_with(0, 2, [4], DType::I64)?;
    assert_eq!(r64.dtype(), DType::I64);
    let probs = nd::array(&[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])?;
    let draws = nd::random::multinomial(&probs, 4)?;
    assert_eq!(draws.shape().dims(), &[2, 4]);
    assert_eq!(
        draws.to_vec_f64(),
        vec![1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    );
    let x = nd::arange(10)?;
    let mut sh = f32s(&nd::random::shuffle(&x)?);
    sh.sort_by(f32::total_cmp);
    assert_eq!(sh, f32s(&x));

    kiln_frontend::random::seed(7);
    let a = nd::random::normal_with(0.0, 1.0, [5], DType::F64)?;
    kiln_frontend::random::seed(7);
    let b = nd::random::normal_with(0.0, 1.0, [5], DType::F64)?;
    assert_eq!(a.to_vec::<f64>()?, b.to_vec::<f64>()?);
    let c = nd::random::normal_with(0.0, 1.0, [5], DType::F64)?;
    assert_ne!(a.to_vec::<f64>()?, c.to_vec::<f64>()?);
    let uf = nd::random::uniform_with(0.0, 1.0, [2], DType::F64)?;
    assert_eq!(uf.dtype(), DType::F64);
    let bf = nd::random::bernoulli_with(1.0, [2], DType::F64)?;
    assert_eq!(bf.to_vec::<f64>()?, vec![1.0, 1.0]);
    Ok(())
}

#[test]
fn reading_out() -> Result<()> {
    let a = NDArray::from_vec(vec![1i32, 2, 3, 4], [2, 2])?;
    assert_eq!(a.to_vec::<i32>()?, vec![1, 2, 3, 4]);
    assert_eq!(a.to_vec_f64(), vec![1.0, 2.0, 3.0, 4.0]);
    let t = a.to_tensor();
    assert_eq!(t.shape(), &Shape::from([2, 2]));
    assert_eq!(t.as_slice::<i32>()?, &[1, 2, 3, 4]);
    let one = NDArray::from_vec(vec![5.0f32], [1, 1])?;
    assert_eq!(one.as_scalar::<f32>()?, 5.0);
    assert_eq!(one.as_scalar_f64()?, 5.0);
    let back = NDArray::from_tensor(t, Context::cpu());
    assert_eq!(back.to_vec::<i32>()?, vec![1, 2, 3, 4]);
    assert_eq!(
        a.as_in_context(Context::cpu()).to_vec::<i32>()?,
        vec![1, 2, 3, 4]
    );
    Ok(())
}

// ----- operators ----------------------------------------------------------------------------

#[test]
fn operators_on_values_refs_scalars_and_results() -> Result<()> {
    let a = NDArray::from_slice(&[1.0f32, 2.0, 3.0]);
    let b = NDArray::from_slice(&[10.0f32, 20.0, 30.0]);
    assert_eq!(f32s(&(&a + &b)?), vec![11.0, 22.0, 33.0]);
    assert_eq!(f32s(&(&b - &a)?), vec![9.0, 18.0, 27.0]);
    assert_eq!(f32s(&(&a * &b)?), vec![10.0, 40.0, 90.0]);
    assert_eq!(f32s(&(&b / &a)?), vec![10.0, 10.0, 10.0]);
    assert_eq!(f32s(&(a.clone() + b.clone())?), vec![11.0, 22.0, 33.0]);
    assert_eq!(f32s(&(a.clone() * &b)?), vec![10.0, 40.0, 90.0]);
    assert_eq!(f32s(&(&a - b.clone())?), vec![-9.0, -18.0, -27.0]);
    // f64 scalars on either side.
    assert_eq!(f32s(&(&a + 1.0)?), vec![2.0, 3.0, 4.0]);
    assert_eq!(f32s(&(&a * 2.0)?), vec![2.0, 4.0, 6.0]);
    assert_eq!(f32s(&(2.0 * &a)?), vec![2.0, 4.0, 6.0]);
    assert_eq!(f32s(&(1.0 - &a)?), vec![0.0, -1.0, -2.0]);
    assert_eq!(f32s(&(6.0 / a.clone())?), vec![6.0, 3.0, 2.0]);
    assert_eq!(f32s(&(a.clone() / 2.0)?), vec![0.5, 1.0, 1.5]);
    assert_eq!(f32s(&(-&a)?), vec![-1.0, -2.0, -3.0]);
    assert_eq!(f32s(&(-a.clone())?), vec![-1.0, -2.0, -3.0]);
    // Results chain with one `?`.
    let c = ((&a * &b)? + &a)?;
    assert_eq!(f32s(&c), vec![11.0, 42.0, 93.0]);
    let d = (&a + (&b * 2.0))?;
    assert_eq!(f32s(&d), vec![21.0, 42.0, 63.0]);
    let e = ((&a - &b) / a.clone())?;
    assert_eq!(f32s(&e), vec![-9.0, -9.0, -9.0]);
    let f = (b.clone() - (&a + &a))?;
    assert_eq!(f32s(&f), vec![8.0, 16.0, 24.0]);
    // Broadcasting, and a shape error naming both shapes.
    let m = nd::ones([2, 3])?;
    assert_eq!((&m + &a)?.shape().dims(), &[2, 3]);
    let err = (&m + &NDArray::from_slice(&[1.0f32, 2.0])).unwrap_err();
    assert!(err.to_string().contains("[2, 3]") && err.to_string().contains("[2]"));
    // An error passes through the chain.
    let bad = (&m + &nd::ones([2])?) * &m;
    assert!(bad.is_err());
    Ok(())
}

// ----- in-place writes and views ------------------------------------------------------------

#[test]
fn compound_assignment_writes_into_shared_storage() -> Result<()> {
    let mut a = NDArray::from_slice(&[1.0f32, 2.0, 3.0]);
    let alias = a.clone();
    let b = NDArray::from_slice(&[1.0f32, 1.0, 1.0]);
    a += &b;
    assert_eq!(f32s(&alias), vec![2.0, 3.0, 4.0]);
    a -= b.clone();
    assert_eq!(f32s(&alias), vec![1.0, 2.0, 3.0]);
    a *= 2.0;
    assert_eq!(f32s(&alias), vec![2.0, 4.0, 6.0]);
    a /= 2.0;
    assert_eq!(f32s(&alias), vec![1.0, 2.0, 3.0]);
    a += 1.0;
    a -= 1.0;
    a *= &NDArray::from_slice(&[3.0f32]);
    assert_eq!(f32s(&alias), vec![3.0, 6.0, 9.0]);
    a /= &alias.clone();
    assert_eq!(f32s(&alias), vec![1.0, 1.0, 1.0]);
    // The fallible forms, including the operand being the target itself.
    a.add_assign_(&a)?;
    assert_eq!(f32s(&alias), vec![2.0, 2.0, 2.0]);
    a.mul_scalar_assign_(5.0)?;
    a.sub_scalar_assign_(1.0)?;
    a.div_scalar_assign_(3.0)?;
    a.add_scalar_assign_(0.0)?;
    assert_eq!(f32s(&alias), vec![3.0, 3.0, 3.0]);
    a.sub_assign_(&NDArray::from_slice(&[1.0f32, 2.0, 3.0]))?;
    a.mul_assign_(&NDArray::from_slice(&[2.0f32]))?;
    a.div_assign_(&NDArray::from_slice(&[2.0f32]))?;
    assert_eq!(f32s(&alias), vec![2.0, 1.0, 0.0]);
    let err = a.add_assign_(&nd::ones([2, 3])?).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[3]"), "{err}");
    Ok(())
}

#[test]
#[should_panic(expected = "`+=` on NDArray failed")]
fn compound_assignment_panics_on_a_shape_mismatch() {
    let mut a = NDArray::from_slice(&[1.0f32, 2.0]);
    a += &NDArray::from_slice(&[1.0f32, 2.0, 3.0]);
}

#[test]
fn in_place_writes_are_seen_through_views() -> Result<()> {
    let a = grid(3, 4);
    let row = a.at(1)?;
    let flat = a.reshape(&[-1])?;
    let rows = a.slice_axis0(1..3)?;
    assert!(row.shares_storage_with(&a) && flat.shares_storage_with(&a));
    assert!(rows.shares_storage_with(&a));
    let mut r = row.clone();
    r += 100.0;
    assert_eq!(f32s(&a.at(1)?), vec![104.0, 105.0, 106.0, 107.0]);
    assert_eq!(f32s(&flat)[4..8], [104.0, 105.0, 106.0, 107.0]);
    assert_eq!(f32s(&rows)[..4], [104.0, 105.0, 106.0, 107.0]);
    // Writes through the parent show in the views, too.
    a.fill(1.0);
    assert_eq!(f32s(&row), vec![1.0; 4]);
    // The book's parameter update: param[:] = param - lr * grad.
    let param = NDArray::from_slice(&[1.0f32, 2.0]);
    let grad = NDArray::from_slice(&[10.0f32, 20.0]);
    let view = param.reshape(&[2, 1])?;
    param.assign(&(&param - (0.1 * &grad)?)?)?;
    assert_eq!(f32s(&view), vec![0.0, 0.0]);
    // assign broadcasts and converts.
    param.assign(&NDArray::scalar(3i64))?;
    assert_eq!(f32s(&param), vec![3.0, 3.0]);
    // copy() is independent; copyto writes into another array.
    let c = a.copy()?;
    assert!(!c.shares_storage_with(&a));
    a.fill(0.0);
    assert_eq!(f32s(&c), vec![1.0; 12]);
    let dst = nd::zeros([3, 4])?;
    c.copyto(&dst)?;
    assert_eq!(f32s(&dst), vec![1.0; 12]);
    assert!(c.copyto(&nd::zeros([4])?).is_err());
    // A transposed result is a copy, not a view.
    assert!(!a.transpose()?.shares_storage_with(&a));
    Ok(())
}

// ----- indexing ------------------------------------------------------------------------------

#[test]
fn indexed_reads_with_ranges_steps_and_positions() -> Result<()> {
    let a = grid(3, 4);
    assert_eq!(f32s(&a.index(&s![1])?), vec![4.0, 5.0, 6.0, 7.0]);
    assert_eq!(a.index(&s![1])?.shape().dims(), &[4]);
    assert_eq!(f32s(&a.index(&s![1..2, 1..3])?), vec![5.0, 6.0]);
    assert_eq!(a.index(&s![1..2, 1..3])?.shape().dims(), &[1, 2]);
    assert_eq!(f32s(&a.index(&s![.., 0])?), vec![0.0, 4.0, 8.0]);
    assert_eq!(
        f32s(&a.index(&s![.., 2..;1])?),
        vec![2.0, 3.0, 6.0, 7.0, 10.0, 11.0]
    );
    assert_eq!(f32s(&a.index(&s![..;2, ..;3])?), vec![0.0, 3.0, 8.0, 11.0]);
    assert_eq!(f32s(&a.index(&s![-1, ..;-1])?), vec![11.0, 10.0, 9.0, 8.0]);
    assert_eq!(f32s(&a.index(&s![..=1, -1])?), vec![3.0, 7.0]);
    assert_eq!(a.index(&s![2, 3])?.as_scalar::<f32>()?, 11.0);
    assert_eq!(f32s(&a.index(&s![5..])?), Vec::<f32>::new());
    assert_eq!(a.index(&s![])?.shape().dims(), &[3, 4]);
    // Leading-axis ranges are views; strided selections are copies.
    assert!(a.index(&s![1..3])?.shares_storage_with(&a));
    assert!(a.index(&s![1, 1..3])?.shares_storage_with(&a));
    assert!(!a.index(&s![.., 1..3])?.shares_storage_with(&a));
    assert_eq!(f32s(&a.slice_axis0(..1)?), vec![0.0, 1.0, 2.0, 3.0]);
    assert_eq!(a.slice_axis0(1..=2)?.shape().dims(), &[2, 4]);
    Ok(())
}

#[test]
fn indexed_writes_with_ranges_and_steps() -> Result<()> {
    let a = grid(3, 4);
    let view = a.at(0)?;
    a.set(&s![0, 1..3], -1.0)?;
    assert_eq!(f32s(&view), vec![0.0, -1.0, -1.0, 3.0]);
    a.set(&s![.., ..;2], 0.5)?;
    assert_eq!(
        f32s(&a),
        vec![0.5, -1.0, 0.5, 3.0, 0.5, 5.0, 0.5, 7.0, 0.5, 9.0, 0.5, 11.0]
    );
    a.set_array(&s![1..3, 3], &NDArray::from_slice(&[70.0f32, 110.0]))?;
    assert_eq!(f32s(&a.index(&s![.., 3])?), vec![3.0, 70.0, 110.0]);
    // Broadcasting the value over the selection, and writing backwards.
    a.set_array(
        &s![2, ..;-1],
        &NDArray::from_slice(&[1.0f32, 2.0, 3.0, 4.0]),
    )?;
    assert_eq!(f32s(&a.at(2)?), vec![4.0, 3.0, 2.0, 1.0]);
    a.set_array(&s![..2], &NDArray::from_slice(&[9.0f32, 8.0, 7.0, 6.0]))?;
    assert_eq!(f32s(&a.at(1)?), vec![9.0, 8.0, 7.0, 6.0]);
    // The value may be a view of the target itself.
    a.set_array(&s![0], &a.at(2)?)?;
    assert_eq!(f32s(&a.at(0)?), vec![4.0, 3.0, 2.0, 1.0]);
    a.set_array(&s![..], &NDArray::scalar(0i32))?;
    assert_eq!(f32s(&a), vec![0.0; 12]);
    Ok(())
}

#[test]
fn iteration_over_the_first_axis() -> Result<()> {
    let a = grid(3, 2);
    let rows: Vec<Vec<f32>> = a.iter().map(|r| f32s(&r)).collect();
    assert_eq!(rows, vec![vec![0.0, 1.0], vec![2.0, 3.0], vec![4.0, 5.0]]);
    assert_eq!(a.iter().len(), 3);
    let mut total = 0.0;
    for row in &a {
        assert_eq!(row.shape().dims(), &[2]);
        assert!(row.shares_storage_with(&a));
        total += row.sum()?.as_scalar::<f32>()?;
    }
    assert_eq!(total, 15.0);
    let elems: Vec<f32> = NDArray::from_slice(&[1.0f32, 2.0])
        .iter()
        .map(|x| x.as_scalar::<f32>().unwrap())
        .collect();
    assert_eq!(elems, vec![1.0, 2.0]);
    assert_eq!(NDArray::scalar(1.0f32).iter().count(), 0);
    Ok(())
}

// ----- printing ------------------------------------------------------------------------------

#[test]
fn display_matches_mxnet() -> Result<()> {
    let a = NDArray::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?;
    assert_eq!(
        a.to_string(),
        "[[1. 2. 3.]\n [4. 5. 6.]]\n<NDArray 2x3 @cpu(0)>"
    );
    let b = NDArray::from_slice(&[0.5f32, -1.25, 100.0]);
    assert_eq!(b.to_string(), "[  0.5   -1.25 100.  ]\n<NDArray 3 @cpu(0)>");
    let i = NDArray::from_vec(vec![1i64, -20, 3, 4], [2, 1, 2])?;
    assert_eq!(
        i.to_string(),
        "[[[  1 -20]]\n\n [[  3   4]]]\n<NDArray 2x1x2 @cpu(0)>"
    );
    assert_eq!(
        NDArray::scalar(3.5f32).to_string(),
        "3.5\n<NDArray scalar @cpu(0)>"
    );
    assert_eq!(nd::zeros([0, 2])?.to_string(), "[]\n<NDArray 0x2 @cpu(0)>");
    let small = NDArray::from_slice(&[1e-5f32, 1.0]);
    assert_eq!(small.to_string(), "[1.e-05 1.e+00]\n<NDArray 2 @cpu(0)>");
    assert_eq!(format!("{a:?}"), a.to_string());
    Ok(())
}

#[test]
fn display_summarizes_large_arrays() -> Result<()> {
    let a = nd::arange(2000)?;
    assert_eq!(
        a.to_string(),
        "[0.000e+00 1.000e+00 2.000e+00 ... 1.997e+03 1.998e+03 1.999e+03]\n\
         <NDArray 2000 @cpu(0)>"
    );
    let m = (nd::arange(1200)? + 1000.0)?.reshape(&[30, 40])?;
    let expected = "\
[[1000. 1001. 1002. ... 1037. 1038. 1039.]
 [1040. 1041. 1042. ... 1077. 1078. 1079.]
 [1080. 1081. 1082. ... 1117. 1118. 1119.]
 ...
 [2080. 2081. 2082. ... 2117. 2118. 2119.]
 [2120. 2121. 2122. ... 2157. 2158. 2159.]
 [2160. 2161. 2162. ... 2197. 2198. 2199.]]
<NDArray 30x40 @cpu(0)>";
    assert_eq!(m.to_string(), expected);
    Ok(())
}
