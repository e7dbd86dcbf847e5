//! The shipped MNIST files read back as the data set's published checks say.

use kiln::frontend::data::mnist::{default_data_dir, load_mnist};

#[test]
fn shipped_mnist_matches_its_published_checks() {
    let train = load_mnist(default_data_dir().join("mnist"), true).unwrap();
    assert_eq!(train.images.shape().dims(), &[60000, 28, 28]);
    let labels = train.labels.as_slice::<u8>().unwrap();
    assert_eq!(&labels[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let mut counts = [0usize; 10];
    for &l in labels {
        counts[l as usize] += 1;
    }
    assert_eq!(
        counts,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    let px = train.images.as_slice::<u8>().unwrap();
    let mean = px.iter().map(|&p| p as f64).sum::<f64>() / px.len() as f64;
    assert!((mean - 33.318).abs() < 1e-3, "mean pixel {mean}");
    let test = load_mnist(default_data_dir().join("mnist"), false).unwrap();
    assert_eq!(test.images.shape().dims(), &[10000, 28, 28]);
    assert!(load_mnist(default_data_dir(), true).is_err());
}
