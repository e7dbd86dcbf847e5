//! gluon.data: ArrayDataset, DataLoader (last_batch modes, shuffle, prefetching), MNIST.

use kiln_frontend::gluon::data::{
    gather_rows, stack_samples, vision, ArrayDataset, DataLoader, Dataset, LastBatch, Transform,
};
use kiln_frontend::{random, DType, NDArray, Result};

/// The global generator is shared by the tests of this binary, which run in parallel: the
/// tests that seed it hold this lock.
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// 10 samples: data row i is [i, 10 + i] (f32), label i (i32).
fn ten() -> ArrayDataset {
    let data: Vec<f32> = (0..10).flat_map(|i| [i as f32, 10.0 + i as f32]).collect();
    let x = NDArray::from_vec(data, [10, 2]).unwrap();
    let y = NDArray::from_vec((0..10).collect::<Vec<i32>>(), [10]).unwrap();
    ArrayDataset::new(x, y).unwrap()
}

fn labels_of(loader: &DataLoader<ArrayDataset>) -> Result<Vec<Vec<i32>>> {
    loader.iter().map(|b| b?.1.to_vec::<i32>()).collect()
}

#[test]
fn array_dataset_get_and_errors() -> Result<()> {
    let ds = ten();
    assert_eq!(ds.len(), 10);
    let (d, l) = ds.get(3)?;
    assert_eq!(d.shape().as_ref(), &[2]);
    assert_eq!(d.to_vec::<f32>()?, vec![3.0, 13.0]);
    assert_eq!(l.as_scalar::<i32>()?, 3);
    assert!(ds.get(10).is_err());
    let (d, l) = ds.get_batch(&[4, 0])?;
    assert_eq!(d.shape().as_ref(), &[2, 2]);
    assert_eq!(d.to_vec::<f32>()?, vec![4.0, 14.0, 0.0, 10.0]);
    assert_eq!(l.to_vec::<i32>()?, vec![4, 0]);
    assert!(ds.get_batch(&[1, 11]).is_err());

    let x = NDArray::from_vec(vec![0f32; 6], [3, 2])?;
    let err = ArrayDataset::new(x.clone(), NDArray::from_slice(&[1i32, 2])).unwrap_err();
    assert!(err.to_string().contains("3 samples"), "{err}");
    assert!(ArrayDataset::new(x, NDArray::scalar(1i32)).is_err());
    Ok(())
}

#[test]
fn gather_and_stack_helpers() -> Result<()> {
    let a = NDArray::from_vec(vec![1u8, 2, 3, 4, 5, 6], [3, 2])?;
    let g = gather_rows(&a, &[2, 2, 0])?;
    assert_eq!(g.shape().as_ref(), &[3, 2]);
    assert_eq!(g.to_vec::<u8>()?, vec![5, 6, 5, 6, 1, 2]);
    let s = stack_samples(&[
        NDArray::from_slice(&[true, false]),
        NDArray::from_slice(&[false, false]),
    ])?;
    assert_eq!(s.shape().as_ref(), &[2, 2]);
    assert_eq!(s.to_vec::<bool>()?, vec![true, false, false, false]);
    assert!(stack_samples(&[NDArray::from_slice(&[1f32]), NDArray::from_slice(&[1f64])]).is_err());
    assert!(stack_samples(&[]).is_err());
    Ok(())
}

#[test]
fn last_batch_keep_discard() -> Result<()> {
    let keep = DataLoader::new(ten(), 4);
    assert_eq!(keep.len(), 3);
    assert_eq!(
        labels_of(&keep)?,
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
    );
    let first = keep.iter().next().unwrap()?;
    assert_eq!(first.0.shape().as_ref(), &[4, 2]);
    assert_eq!(first.0.to_vec::<f32>()?[..4], [0.0, 10.0, 1.0, 11.0]);

    let discard = DataLoader::new(ten(), 4).last_batch(LastBatch::Discard);
    assert_eq!(discard.len(), 2);
    assert_eq!(
        labels_of(&discard)?,
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]
    );

    // A boxed trait object works as a data set; the iterator knows its length.
    let boxed: Box<dyn Dataset> = Box::new(ten());
    let loader = DataLoader::new(boxed, 3);
    let mut it = loader.iter();
    assert_eq!(it.len(), 4);
    it.next();
    assert_eq!(it.len(), 3);
    assert_eq!(it.last().unwrap()?.1.to_vec::<i32>()?, vec![9]);

    // An exact multiple has no partial batch in any mode.
    let exact = DataLoader::new(ten(), 5).last_batch(LastBatch::Discard);
    assert_eq!(labels_of(&exact)?.len(), 2);
    Ok(())
}

#[test]
fn last_batch_rollover_carries_leftovers() -> Result<()> {
    let loader = DataLoader::new(ten(), 4).last_batch(LastBatch::Rollover);
    assert_eq!(loader.len(), 2);
    assert_eq!(
        labels_of(&loader)?,
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]
    );
    // 8, 9 roll over: 12 samples make 3 batches, none left.
    assert_eq!(loader.len(), 3);
    assert_eq!(
        labels_of(&loader)?,
        vec![vec![8, 9, 0, 1], vec![2, 3, 4, 5], vec![6, 7, 8, 9]]
    );
    assert_eq!(loader.len(), 2);
    assert_eq!(
        labels_of(&loader)?,
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]
    );
    Ok(())
}

#[test]
fn shuffle_is_a_seeded_permutation() -> Result<()> {
    let _guard = rng_lock();
    let loader = DataLoader::new(ten(), 3).shuffle(true);
    random::seed(7);
    let a = labels_of(&loader)?;
    random::seed(7);
    let b = labels_of(&loader)?;
    assert_eq!(a, b, "same seed, same order");
    assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
    let mut flat: Vec<i32> = a.concat();
    assert_ne!(flat, (0..10).collect::<Vec<_>>(), "shuffled");
    flat.sort();
    assert_eq!(flat, (0..10).collect::<Vec<_>>(), "a permutation");
    // Data rows still match their labels.
    for batch in &loader {
        let (d, l) = batch?;
        let d = d.to_vec::<f32>()?;
        for (k, &label) in l.to_vec::<i32>()?.iter().enumerate() {
            assert_eq!(d[2 * k], label as f32);
        }
    }
    // A second epoch draws a new order.
    random::seed(7);
    let _ = labels_of(&loader)?;
    let c = labels_of(&loader)?;
    assert_ne!(a, c);
    Ok(())
}

#[test]
fn prefetching_workers_match_single_thread() -> Result<()> {
    let n = 103;
    let data: Vec<f32> = (0..n * 3).map(|v| v as f32).collect();
    let x = NDArray::from_vec(data, [n, 3])?;
    let y = NDArray::from_vec((0..n as i64).collect::<Vec<_>>(), [n])?;
    let ds = std::sync::Arc::new(ArrayDataset::new(x, y)?);
    let _guard = rng_lock();
    let collect = |loader: &DataLoader<ArrayDataset>| -> Result<Vec<(Vec<f32>, Vec<i64>)>> {
        loader
            .iter()
            .map(|b| {
                let (d, l) = b?;
                Ok((d.to_vec::<f32>()?, l.to_vec::<i64>()?))
            })
            .collect()
    };
    random::seed(3);
    let single = collect(&DataLoader::from_arc(ds.clone(), 8).shuffle(true))?;
    for (workers, prefetch) in [(1, 1), (3, 2), (4, 16)] {
        random::seed(3);
        let loader = DataLoader::from_arc(ds.clone(), 8)
            .shuffle(true)
            .num_workers(workers)
            .prefetch(prefetch);
        assert_eq!(loader.len(), 13);
        assert_eq!(
            collect(&loader)?,
            single,
            "{workers} workers, prefetch {prefetch}"
        );
    }
    // Dropping an iterator early stops its workers cleanly.
    let loader = DataLoader::from_arc(ds, 8).num_workers(2);
    let mut it = loader.iter();
    assert_eq!(
        it.next().unwrap()?.1.to_vec::<i64>()?,
        (0..8).collect::<Vec<_>>()
    );
    drop(it);
    Ok(())
}

#[test]
fn transforms_per_sample_and_elementwise() -> Result<()> {
    let double = Transform::per_sample(|d, l| Ok(((&d * 2.0)?, l)));
    let ds = ten().transform(double);
    let (d, _) = ds.get(1)?;
    assert_eq!(d.to_vec::<f32>()?, vec![2.0, 22.0]);
    let loader = DataLoader::new(ds, 4);
    let (d, l) = loader.iter().next().unwrap()?;
    assert_eq!(
        d.to_vec::<f32>()?,
        vec![0.0, 20.0, 2.0, 22.0, 4.0, 24.0, 6.0, 26.0]
    );
    assert_eq!(l.to_vec::<i32>()?, vec![0, 1, 2, 3]);

    let loader = DataLoader::new(ten(), 4).transform(Transform::elementwise(|d, l| {
        Ok(((&d + 1.0)?, l.astype(DType::F32)?))
    }));
    let (d, l) = loader.iter().nth(2).unwrap()?;
    assert_eq!(d.to_vec::<f32>()?, vec![9.0, 19.0, 10.0, 20.0]);
    assert_eq!(l.to_vec::<f32>()?, vec![8.0, 9.0]);

    // Errors from a transform reach the caller.
    let failing = DataLoader::new(ten(), 4).transform(Transform::per_sample(|d, _| {
        Ok((d.clone(), d.reshape(&[7])?))
    }));
    assert!(failing.iter().next().unwrap().is_err());
    Ok(())
}

#[test]
fn mnist_through_the_loader() -> Result<()> {
    let train = vision::MNIST::new(vision::MNIST::default_dir(), true)?;
    assert_eq!(train.len(), 60_000);
    let (image, label) = train.get(0)?;
    assert_eq!(image.shape().as_ref(), &[28, 28, 1]);
    assert_eq!(image.dtype(), DType::U8);
    assert_eq!(label.as_scalar::<i32>()?, 5);

    let train = train.with_transform(vision::to_float_scaled());
    let loader = DataLoader::new(train, 10_000).num_workers(2);
    let mut sum = 0.0f64;
    let mut count = 0usize;
    for (k, batch) in loader.iter().enumerate() {
        let (data, label) = batch?;
        assert_eq!(data.shape().as_ref(), &[10_000, 28, 28, 1]);
        assert_eq!((data.dtype(), label.dtype()), (DType::F32, DType::F32));
        if k == 0 {
            let first: Vec<f32> = label.to_vec::<f32>()?[..10].to_vec();
            assert_eq!(
                first,
                vec![5.0, 0.0, 4.0, 1.0, 9.0, 2.0, 1.0, 3.0, 1.0, 4.0]
            );
        }
        let v = data.to_vec::<f32>()?;
        sum += v.iter().map(|&x| x as f64).sum::<f64>();
        count += v.len();
    }
    assert_eq!(count, 60_000 * 784);
    let mean = sum / count as f64;
    assert!((mean - 33.318421 / 255.0).abs() < 1e-6, "mean {mean}");
    Ok(())
}

#[test]
fn fashion_mnist_test_split() -> Result<()> {
    let test = vision::FashionMNIST::new(vision::FashionMNIST::default_dir(), false)?;
    assert_eq!(test.len(), 10_000);
    let train = vision::FashionMNIST::new(vision::FashionMNIST::default_dir(), true)?;
    let loader = DataLoader::new(train, 10);
    let (_, labels) = loader.iter().next().unwrap()?;
    assert_eq!(labels.to_vec::<i32>()?, vec![9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert!(vision::MNIST::new("/nonexistent-dir", true).is_err());
    Ok(())
}
