//! Chapter 1, "Probability and statistics": rolling a die with multinomial sampling and
//! watching the estimates converge, Bayes' rule on a medical test, a naive Bayes classifier
//! for MNIST, then sampling: uniform integers, a biased coin, the normal density and the
//! central limit theorem.
//!
//! `cargo run --release --example ch01_probability [-- --data DIR] [--quick]`
//!
//! The notebook plots its convergence curves; this program prints them as tables.

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::{Fallible, Options};
use kiln::frontend::data::mnist::{load_mnist, MnistSplit};
use kiln::prelude::*;
use std::io::Write;

#[allow(dead_code)] // read by the tests
/// Values the notebook computed, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// Number of die rolls.
    pub rolls: usize,
    /// How often each face came up, over all rolls.
    pub totals: Vec<f32>,
    /// Naive Bayes class priors `py` (Laplace-smoothed label frequencies).
    pub priors: Vec<f32>,
    /// Training and test images used by the classifier.
    pub mnist_sizes: (usize, usize),
    /// Naive Bayes test accuracy.
    pub accuracy: f64,
    /// Fraction of heads of the biased coin (p = 0.35) over all its flips.
    pub heads: f64,
    /// The CLT experiment's sample mean over all draws.
    pub clt_mean: f64,
}

/// Runs the notebook's cells in order, printing what they print.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let (rolls, totals) = dice(out)?;
    bayes_rule(out)?;
    let nb = naive_bayes(opts, out)?;
    sampling(opts, out)?;
    let heads = biased_coin(opts, out)?;
    normal_density(out)?;
    let clt_mean = central_limit(out)?;
    Ok(Summary {
        rolls,
        totals,
        priors: nb.priors,
        mnist_sizes: nb.sizes,
        accuracy: nb.accuracy,
        heads,
        clt_mean,
    })
}

/// Casting a fair die: single draws, batches, and the running estimates of each face's
/// probability over 1000 rolls.
fn dice(out: &mut dyn Write) -> Fallible<(usize, Vec<f32>)> {
    const ROLLS: usize = 1000;
    writeln!(out, "## Basic probability theory")?;
    let probabilities = (nd::ones([6])? / 6.0)?;
    let one_roll = nd::random::multinomial(&probabilities, 1)?;
    writeln!(out, "nd.random.multinomial(probabilities)\n{one_roll}")?;
    writeln!(out, "{}", nd::random::multinomial(&probabilities, 10)?)?;
    writeln!(
        out,
        "{}",
        nd::random::multinomial(&probabilities, 50)?.reshape(&[5, 10])?
    )?;

    let rolls = nd::random::multinomial(&probabilities, ROLLS)?;
    // counts[:, i] is the tally after roll i: the notebook adds one roll at a time; here the
    // running sum is one product, one_hot(rolls)ᵀ · U with U[k, i] = (k <= i).
    let steps = nd::arange(ROLLS as f64)?;
    let upper = nd::lesser_equal(
        &steps.reshape(&[ROLLS as i64, 1])?,
        &steps.reshape(&[1, ROLLS as i64])?,
    )?;
    let counts = nd::dot_t(&rolls.one_hot(6)?, &upper, true, false)?;
    let totals = counts.index(&s![.., -1])?;
    writeln!(out, "totals / 1000\n{}", (&totals / ROLLS as f64)?)?;
    writeln!(out, "counts\n{counts}")?;

    let x = (nd::arange(ROLLS as f64)?.reshape(&[1, ROLLS as i64])? + 1.0)?;
    let estimates = (&counts / &x)?;
    for i in [0, 1, 100] {
        writeln!(out, "estimates[:,{i}]\n{}", estimates.index(&s![.., i])?)?;
    }

    writeln!(
        out,
        "\nConvergence of the estimates toward 1/6 = 0.16667 (the notebook's plot):"
    )?;
    write!(out, "{:>6}", "rolls")?;
    for face in 0..6 {
        write!(out, "  {:>10}", format!("P(die={face})"))?;
    }
    writeln!(out)?;
    for n in [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] {
        let column = estimates.index(&s![.., n - 1])?.to_vec::<f32>()?;
        write!(out, "{n:>6}")?;
        for p in column {
            write!(out, "  {p:>10.5}")?;
        }
        writeln!(out)?;
    }
    Ok((ROLLS, totals.to_vec::<f32>()?))
}

/// The notebook's worked example of Bayes' rule: an HIV test with 1% false positives, then a
/// second, independent test.
fn bayes_rule(out: &mut dyn Write) -> Fallible<()> {
    writeln!(out, "\n## Bayes' theorem: a medical test")?;
    // Columns: HIV positive, HIV negative. Rows of each table: P(test positive | H).
    let prior = nd::array(&[0.0015, 0.9985])?;
    let test1 = nd::array(&[1.0, 0.01])?;
    let test2 = nd::array(&[0.98, 0.03])?;
    let p_pos = nd::dot(&test1, &prior)?;
    writeln!(out, "P(test positive) = {:.6}", p_pos.as_scalar::<f32>()?)?;
    let posterior = (&(&test1 * &prior)? / &p_pos)?;
    writeln!(
        out,
        "P(HIV | one positive test) = {:.3}",
        posterior.index(&s![0])?.as_scalar::<f32>()?
    )?;
    let both = (&test1 * &test2)?;
    let p_both = nd::dot(&both, &prior)?;
    let posterior2 = (&(&both * &prior)? / &p_both)?;
    writeln!(
        out,
        "P(HIV | two positive tests) = {:.3}",
        posterior2.index(&s![0])?.as_scalar::<f32>()?
    )?;
    Ok(())
}

struct NaiveBayes {
    priors: Vec<f32>,
    sizes: (usize, usize),
    accuracy: f64,
}

/// The first `limit` images of a split, binarized as the notebook's transform does
/// (`floor(x / 128)`, so a pixel is on from 128), flattened to `[N, 784]`, with the labels.
fn binarized(split: MnistSplit, limit: usize) -> Fallible<(NDArray, NDArray)> {
    let images = NDArray::from_tensor(split.images, Context::cpu());
    let labels = NDArray::from_tensor(split.labels, Context::cpu());
    let n = limit.min(images.shape()[0]);
    let x = images.slice_axis0(..n)?.reshape(&[n as i64, -1])?;
    let x = nd::floor(&(x.astype(DType::F32)? / 128.0)?)?;
    let y = labels.slice_axis0(..n)?.astype(DType::F32)?;
    Ok((x, y))
}

/// The naive Bayes classifier: per-class pixel frequencies from the training set, then
/// log-likelihoods of the test images as two matrix products.
fn naive_bayes(opts: &Options, out: &mut dyn Write) -> Fallible<NaiveBayes> {
    writeln!(out, "\n## Naive Bayes classification")?;
    let dir = opts.mnist_dir();
    let (train_limit, test_limit) = if opts.quick {
        (10_000, 1_000)
    } else {
        (usize::MAX, usize::MAX)
    };
    let (x, y) = binarized(load_mnist(&dir, true)?, train_limit)?;
    let (x_test, y_test) = binarized(load_mnist(&dir, false)?, test_limit)?;
    let sizes = (x.shape()[0], x_test.shape()[0]);
    writeln!(
        out,
        "{} training and {} test images from {}",
        sizes.0,
        sizes.1,
        dir.display()
    )?;

    // Counts start at 1 (Laplace smoothing). The notebook adds one image at a time; summed
    // over the training set that is `ycount += Σ onehot(y)` and `xcount += xᵀ · onehot(y)`.
    let onehot = y.one_hot(10)?;
    let ycount = label_counts(&y)?;
    let xcount = (nd::ones([784, 10])? + nd::dot_t(&x, &onehot, true, false)?)?;
    // p(x_i = 1 | y): each class's column divided by that class's count.
    let xcount = (&xcount / &ycount)?;
    let py = class_priors(&ycount)?;
    writeln!(out, "py\n{py}")?;

    let logxcount = nd::log(&xcount)?;
    let logxcountneg = nd::log(&(1.0 - &xcount)?)?;
    let logpy = nd::log(&py)?;
    // log p(y) + Σ_i x_i log p(x_i=1|y) + (1 - x_i) log(1 - p(x_i=1|y)), all test images at once.
    let logpx =
        ((nd::dot(&x_test, &logxcount)? + nd::dot(&(1.0 - &x_test)?, &logxcountneg)?)? + &logpy)?;
    let predicted = nd::argmax(&logpx, 1)?;
    let accuracy = nd::mean(&nd::equal(&predicted, &y_test)?)?.as_scalar::<f32>()? as f64;

    // The notebook's bar charts: p(y | x) for the first ten test images, normalized after
    // subtracting the largest log-probability to avoid overflow.
    let first = logpx.slice_axis0(..10.min(sizes.1))?;
    let shifted = (&first - &first.max_axes(&[1], true)?)?;
    let px = nd::exp(&shifted)?;
    let px = (&px / &px.sum_axes(&[1], true)?)?;
    writeln!(
        out,
        "p(y | x) for the first test images (the notebook's bar charts):"
    )?;
    write!(out, "label  predicted ")?;
    for digit in 0..10 {
        write!(out, " {digit:>5}")?;
    }
    writeln!(out)?;
    let labels = to_ints(&y_test);
    let guesses = to_ints(&predicted);
    for (i, row) in px.iter().enumerate() {
        write!(out, "{:>5}  {:>9} ", labels[i], guesses[i])?;
        for p in row.to_vec::<f32>()? {
            write!(out, " {p:>5.3}")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "test accuracy: {accuracy:.4} ({} test images)",
        sizes.1
    )?;
    Ok(NaiveBayes {
        priors: py.to_vec::<f32>()?,
        sizes,
        accuracy,
    })
}

/// Laplace-smoothed label counts: 1 + how often each digit occurs in `labels`.
pub fn label_counts(labels: &NDArray) -> Result<NDArray> {
    nd::ones([10])? + labels.one_hot(10)?.sum_axis(0)?
}

/// The class priors `p(y)`: the counts normalized to sum to 1.
pub fn class_priors(ycount: &NDArray) -> Result<NDArray> {
    ycount / &nd::sum(ycount)?
}

fn to_ints(a: &NDArray) -> Vec<i64> {
    a.to_vec_f64().into_iter().map(|v| v as i64).collect()
}

/// Uniform random numbers, and how the counts of a uniform integer even out as draws grow.
fn sampling(opts: &Options, out: &mut dyn Write) -> Fallible<()> {
    writeln!(out, "\n## Sampling")?;
    writeln!(
        out,
        "10 uniform numbers on [0, 1)\n{}",
        nd::random::uniform(0.0, 1.0, [10])?
    )?;
    writeln!(
        out,
        "10 random integers from 1 to 100\n{}",
        nd::random::randint(1, 101, [10])?
    )?;

    let max_draws = if opts.quick { 10_000 } else { 1_000_000 };
    writeln!(
        out,
        "\nCounts of randint(0, 100) after n draws (the notebook's bar charts): min and max over the 100 values"
    )?;
    writeln!(
        out,
        "{:>9}  {:>9}  {:>9}  {:>9}",
        "n", "expected", "min", "max"
    )?;
    let draws = nd::random::randint(0, 100, [max_draws])?;
    let mut counts = nd::zeros([100])?;
    let mut done = 0;
    let mut n = 10;
    while n <= max_draws {
        // One-hot rows for at most 100k draws at a time keep the temporary small.
        while done < n {
            let end = (done + 100_000).min(n);
            counts += draws.slice_axis0(done..end)?.one_hot(100)?.sum_axis(0)?;
            done = end;
        }
        writeln!(
            out,
            "{n:>9}  {:>9}  {:>9}  {:>9}",
            n as f64 / 100.0,
            counts.min()?.as_scalar::<f32>()?,
            counts.max()?.as_scalar::<f32>()?
        )?;
        n *= 10;
    }
    Ok(())
}

/// A coin that comes up heads with probability 0.35: the running fractions of heads and tails.
fn biased_coin(opts: &Options, out: &mut dyn Write) -> Fallible<f64> {
    writeln!(out, "\n### The categorical distribution")?;
    let flips = if opts.quick { 10_000 } else { 1_000_000 };
    let y = nd::random::uniform(0.0, 1.0, [flips])?;
    let heads = y.lt_scalar(0.35)?;
    writeln!(out, "{:>9}  {:>8}  {:>8}", "n", "p0", "p1")?;
    let mut n = 1;
    let mut p0 = 0.0;
    while n <= flips {
        p0 = heads.slice_axis0(..n)?.mean()?.as_scalar::<f32>()? as f64;
        writeln!(out, "{n:>9}  {p0:>8.5}  {:>8.5}", 1.0 - p0)?;
        n *= 10;
    }
    Ok(p0)
}

/// The standard normal density on [-10, 10) in steps of 0.01.
fn normal_density(out: &mut dyn Write) -> Fallible<()> {
    writeln!(out, "\n### The Normal distribution")?;
    let x = nd::arange_step(-10.0, 10.0, 0.01)?;
    let p = (nd::exp(&(nd::square(&x)? * -0.5)?)? * (1.0 / (2.0 * std::f64::consts::PI).sqrt()))?;
    writeln!(out, "{:>6}  {:>10}", "x", "p(x)")?;
    for v in [-3.0f64, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0] {
        let i = ((v + 10.0) / 0.01).round() as i64;
        let pv = p.index(&s![i])?.as_scalar::<f32>()?;
        writeln!(out, "{v:>6.1}  {pv:>10.6}")?;
    }
    let area = (nd::sum(&p)? * 0.01)?.as_scalar::<f32>()?;
    writeln!(
        out,
        "sum(p) * 0.01 = {area:.6} (the density integrates to 1)"
    )?;
    Ok(())
}

/// The central limit theorem: running averages of ten sequences of {0, 1, 2}-valued draws
/// approach the mean 0.9 within about ±sqrt(variance / n).
fn central_limit(out: &mut dyn Write) -> Fallible<f64> {
    const DRAWS: usize = 10_000;
    writeln!(out, "\n### Central limit theorem")?;
    let tmp = nd::random::uniform(0.0, 1.0, [DRAWS, 10])?;
    let x = (tmp.gt_scalar(0.3)? + tmp.gt_scalar(0.8)?)?;
    let mean: f64 = 1.0 * 0.5 + 2.0 * 0.2;
    let variance: f64 = 1.0 * 0.5 + 4.0 * 0.2 - mean.powi(2);
    writeln!(out, "mean {mean}, variance {variance:.2}")?;
    writeln!(
        out,
        "running averages of the 10 sequences after n draws, and mean ± sqrt(variance / n):"
    )?;
    for n in [1usize, 10, 100, 1000, 10_000] {
        let averages = x.slice_axis0(..n)?.mean_axis(0)?.to_vec::<f32>()?;
        let band = (variance / n as f64).sqrt();
        let shown: Vec<String> = averages.iter().map(|a| format!("{a:.3}")).collect();
        writeln!(
            out,
            "{n:>6}  [{}]  {:.3} .. {:.3}",
            shown.join(" "),
            mean - band,
            mean + band
        )?;
    }
    Ok(x.mean()?.as_scalar::<f32>()? as f64)
}

#[allow(dead_code)] // the tests include this file as a module and call `run`
fn main() {
    common::main_with(run);
}
