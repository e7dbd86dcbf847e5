//! Chapter 2, "The environment" (covariate and concept shift). The notebook is prose; this
//! example demonstrates its main point in numbers. A linear classifier (logistic regression)
//! is trained on inputs from a *source* distribution and evaluated on a *target*
//! distribution whose inputs lie elsewhere, while the labelling rule `p(y | x)` stays the
//! same (covariate shift). Because the true decision boundary is curved, the best line for
//! the source region is a poor line for the target region. Reweighting each source sample by
//! the density ratio `q(x) / p(x)` — estimated, without any target labels, by a second
//! logistic regression that tells source inputs from target inputs — makes the training
//! loss an estimate of the target loss and recovers most of the lost accuracy. A short
//! concept-shift coda changes the labelling rule instead: reweighting inputs cannot help
//! there, only new labels can. Prints accuracies before and after the correction and plots the data with the
//! decision boundaries.
//!
//! `cargo run --release --example ch02_environment`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::plot::{scatter_plot, LinePlot, Series};
use common::progress::Progress;
use common::{Fallible, Options};
use kiln::gluon::init::Zero;
use kiln::gluon::loss::SigmoidBinaryCrossEntropyLoss;
use kiln::gluon::nn::Dense;
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;

/// Samples drawn from each distribution (for training, for the ratio estimate, and for
/// testing).
pub const SAMPLES: usize = 2000;
/// Samples under `--quick`.
pub const QUICK_SAMPLES: usize = 1000;
/// Full-batch gradient steps for each logistic regression.
pub const STEPS: usize = 500;
/// Steps under `--quick`.
pub const QUICK_STEPS: usize = 300;
/// The learning rate of the full-batch gradient steps (on the mean loss).
pub const LEARNING_RATE: f64 = 1.0;
/// The mean of the source inputs (the covariance is the identity).
pub const SOURCE_MEAN: [f32; 2] = [-0.75, 0.0];
/// The mean of the target inputs.
pub const TARGET_MEAN: [f32; 2] = [0.75, 0.0];

/// The labelling rule `p(y | x)` both distributions share: `y = 1` above the parabola
/// `x1 = 0.5·x0² − 1`.
pub fn label_rule(x: &NDArray) -> Result<NDArray> {
    let x0 = x.slice_axis(1, 0, Some(1))?;
    let x1 = x.slice_axis(1, 1, Some(2))?;
    let curve = (&(x0.square()? * 0.5)? - 1.0)?;
    x1.gt(&curve)
}

/// The changed rule of the concept-shift coda: `y = 1` above the line `x1 = 0.5 − 0.5·x0`.
pub fn shifted_rule(x: &NDArray) -> Result<NDArray> {
    let x0 = x.slice_axis(1, 0, Some(1))?;
    let x1 = x.slice_axis(1, 1, Some(2))?;
    x1.gt(&(x0 * -0.5)?.add_scalar(0.5)?)
}

/// `n` inputs from `N(mean, I)` as `[n, 2]`.
pub fn sample_inputs(n: usize, mean: [f32; 2]) -> Result<NDArray> {
    &nd::random::normal(0.0, 1.0, [n, 2])? + &nd::array(&[mean])?
}

/// A trained logistic regression: `score(x) = x · w + b`.
#[derive(Debug)]
pub struct Logistic {
    net: Dense,
}

impl Logistic {
    /// Fits `y ∈ {0, 1}` (`[n, 1]`) from `x` (`[n, 2]`) by `steps` full-batch gradient
    /// steps on the mean, optionally `weights`-weighted (`[n, 1]`), log loss.
    pub fn fit(
        x: &NDArray,
        y: &NDArray,
        weights: Option<&NDArray>,
        steps: usize,
        label: &str,
    ) -> Fallible<Logistic> {
        let net = Dense::new(1).in_units(2);
        net.initialize(Arc::new(Zero), Context::cpu())?;
        let loss_fn = SigmoidBinaryCrossEntropyLoss::new();
        let mut trainer = Trainer::new(
            &net.collect_params()?,
            "sgd",
            [("learning_rate", LEARNING_RATE)],
        )?;
        let n = x.shape().dims()[0];
        let mut bar = Progress::new(steps, label.to_string());
        for _ in 0..steps {
            let loss = autograd::record(|| {
                let score = net.forward(x)?;
                match weights {
                    Some(w) => loss_fn.forward_weighted(&score, y, w),
                    None => loss_fn.forward(&score, y),
                }
            })?;
            loss.backward()?;
            trainer.step(n)?;
            bar.step(nd::sum(&loss)?.as_scalar::<f32>()? as f64, n);
        }
        bar.finish();
        Ok(Logistic { net })
    }

    /// The scores `x · w + b` (`[n, 1]`).
    pub fn score(&self, x: &NDArray) -> Result<NDArray> {
        autograd::predict_mode(|| self.net.forward(x))
    }

    /// The fraction of `x` whose predicted class (score > 0) is `y`.
    pub fn accuracy(&self, x: &NDArray, y: &NDArray) -> Result<f64> {
        let hits = self.score(x)?.gt_scalar(0.0)?.eq(y)?;
        Ok(hits.mean()?.as_scalar::<f32>()? as f64)
    }

    /// `(w0, w1, b)`.
    pub fn params(&self) -> Fallible<(f64, f64, f64)> {
        let w = self.net.weight().data()?.to_vec::<f32>()?;
        let b = match self.net.bias() {
            Some(b) => b.data()?.to_vec::<f32>()?[0],
            None => return Err("Dense(1) was built without a bias".into()),
        };
        Ok((w[0] as f64, w[1] as f64, b as f64))
    }
}

/// What the demo measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The unweighted classifier's accuracy on source and on target test data.
    pub plain: (f64, f64),
    /// The importance-weighted classifier's accuracy on source and on target test data.
    pub weighted: (f64, f64),
    /// A classifier trained on labelled target data (the best a line can do there).
    pub oracle_target: f64,
    /// The estimated log density ratio `log q(x)/p(x) ≈ a0·x0 + a1·x1 + c`, as `(a0, a1, c)`.
    pub log_ratio: (f64, f64, f64),
    /// The true one, `(μq − μp)·x − (|μq|² − |μp|²)/2`.
    pub true_log_ratio: (f64, f64, f64),
    /// The effective sample size of the weights, `(Σw)² / Σw²`.
    pub effective_samples: f64,
    /// Concept shift: the source classifier's accuracy under the changed rule, and that of a
    /// classifier retrained on labels from the changed rule.
    pub concept: (f64, f64),
}

/// Runs the demonstration and prints what it measures.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let n = if opts.quick { QUICK_SAMPLES } else { SAMPLES };
    let steps = opts.epochs_or(STEPS, QUICK_STEPS);
    writeln!(
        out,
        "Covariate shift: inputs from N({SOURCE_MEAN:?}, I) for training, N({TARGET_MEAN:?}, I) at test time; \
         the same rule labels both (y = 1 above x1 = 0.5·x0² − 1). {n} samples per set, \
         logistic regressions fitted by {steps} full-batch SGD steps, lr {LEARNING_RATE}"
    )?;
    let xs = sample_inputs(n, SOURCE_MEAN)?;
    let ys = label_rule(&xs)?;
    let xs_test = sample_inputs(n, SOURCE_MEAN)?;
    let ys_test = label_rule(&xs_test)?;
    let xt_unlabelled = sample_inputs(n, TARGET_MEAN)?;
    let xt_test = sample_inputs(n, TARGET_MEAN)?;
    let yt_test = label_rule(&xt_test)?;

    let plain = Logistic::fit(&xs, &ys, None, steps, "source")?;
    let plain_acc = (
        plain.accuracy(&xs_test, &ys_test)?,
        plain.accuracy(&xt_test, &yt_test)?,
    );
    writeln!(
        out,
        "Trained on source data: accuracy {:.4} on source test data, {:.4} on target test data",
        plain_acc.0, plain_acc.1
    )?;

    // The density ratio from a domain classifier: label source inputs 0 and (unlabelled)
    // target inputs 1; then q(x)/p(x) = (n_p/n_q)·P(1|x)/P(0|x) = exp(score(x)) for equal
    // set sizes.
    let domain_x = nd::concat(&[&xs, &xt_unlabelled], 0)?;
    let domain_y = nd::concat(&[&nd::zeros([n, 1])?, &nd::ones([n, 1])?], 0)?;
    let domain = Logistic::fit(&domain_x, &domain_y, None, steps, "domain")?;
    let log_ratio = domain.params()?;
    let shift = [
        (TARGET_MEAN[0] - SOURCE_MEAN[0]) as f64,
        (TARGET_MEAN[1] - SOURCE_MEAN[1]) as f64,
    ];
    let sq = |m: [f32; 2]| (m[0] * m[0] + m[1] * m[1]) as f64;
    let true_log_ratio = (
        shift[0],
        shift[1],
        -(sq(TARGET_MEAN) - sq(SOURCE_MEAN)) / 2.0,
    );
    writeln!(
        out,
        "Estimated log q(x)/p(x) = {:.3}·x0 + {:.3}·x1 + {:.3} (true: {:.3}·x0 + {:.3}·x1 + {:.3})",
        log_ratio.0, log_ratio.1, log_ratio.2, true_log_ratio.0, true_log_ratio.1, true_log_ratio.2
    )?;
    let raw = domain.score(&xs)?.exp()?;
    let weights = (&raw / &raw.mean()?)?;
    let (w_sum, w_sq) = (
        nd::sum(&weights)?.as_scalar::<f32>()? as f64,
        nd::sum(&weights.square()?)?.as_scalar::<f32>()? as f64,
    );
    let effective_samples = w_sum * w_sum / w_sq;
    writeln!(
        out,
        "Importance weights (normalized to mean 1): max {:.2}, effective sample size {effective_samples:.0} of {n}",
        nd::max(&weights)?.as_scalar::<f32>()?
    )?;

    let weighted = Logistic::fit(&xs, &ys, Some(&weights), steps, "weighted")?;
    let weighted_acc = (
        weighted.accuracy(&xs_test, &ys_test)?,
        weighted.accuracy(&xt_test, &yt_test)?,
    );
    writeln!(
        out,
        "Trained with importance weights: accuracy {:.4} on source test data, {:.4} on target test data",
        weighted_acc.0, weighted_acc.1
    )?;
    let xt_train = sample_inputs(n, TARGET_MEAN)?;
    let oracle = Logistic::fit(&xt_train, &label_rule(&xt_train)?, None, steps, "oracle")?;
    let oracle_target = oracle.accuracy(&xt_test, &yt_test)?;
    writeln!(
        out,
        "Target accuracy: {:.4} before the correction, {:.4} after (a line trained on labelled target data: {oracle_target:.4})",
        plain_acc.1, weighted_acc.1
    )?;

    // Concept shift: the inputs keep their distribution, the rule changes. The density ratio
    // is 1 everywhere, so importance weighting leaves training as it was; only new labels help.
    let yc_test = shifted_rule(&xs_test)?;
    let xc_train = sample_inputs(n, SOURCE_MEAN)?;
    let relabelled = Logistic::fit(
        &xc_train,
        &shifted_rule(&xc_train)?,
        None,
        steps,
        "relabelled",
    )?;
    let concept = (
        plain.accuracy(&xs_test, &yc_test)?,
        relabelled.accuracy(&xs_test, &yc_test)?,
    );
    writeln!(
        out,
        "Concept shift (source inputs, labels now y = 1 above x1 = 0.5 − 0.5·x0): the source classifier scores {:.4}; \
         the inputs did not move, so the density ratio is 1 and reweighting changes nothing — \
         retraining on new labels scores {:.4}",
        concept.0, concept.1
    )?;

    let plot = opts.out_file("ch02_environment_shift.png")?;
    let to_points = |x: &NDArray, k: usize| -> Fallible<Vec<(f64, f64)>> {
        let v = x.slice_axis0(..k)?.to_vec::<f32>()?;
        Ok(v.chunks(2).map(|p| (p[0] as f64, p[1] as f64)).collect())
    };
    let k = n.min(300);
    let (source_pts, target_pts) = (to_points(&xs, k)?, to_points(&xt_test, k)?);
    let (lo, hi) = source_pts
        .iter()
        .chain(&target_pts)
        .fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            (lo.min(p.0), hi.max(p.0))
        });
    let xgrid: Vec<f64> = (0..=100)
        .map(|i| lo + (hi - lo) * i as f64 / 100.0)
        .collect();
    let line = |(w0, w1, b): (f64, f64, f64)| -> Vec<(f64, f64)> {
        if w1.abs() < 1e-9 {
            return Vec::new();
        }
        xgrid.iter().map(|&x0| (x0, -(w0 * x0 + b) / w1)).collect()
    };
    let truth: Vec<(f64, f64)> = xgrid.iter().map(|&x0| (x0, 0.5 * x0 * x0 - 1.0)).collect();
    let (plain_line, weighted_line) = (line(plain.params()?), line(weighted.params()?));
    scatter_plot(
        &plot,
        &LinePlot {
            title: "Covariate shift: decision boundaries",
            x_label: "x0",
            y_label: "x1",
            log_y: false,
        },
        &[
            Series {
                name: "source inputs",
                points: &source_pts,
            },
            Series {
                name: "target inputs",
                points: &target_pts,
            },
        ],
        &[
            Series {
                name: "true boundary",
                points: &truth,
            },
            Series {
                name: "trained on source",
                points: &plain_line,
            },
            Series {
                name: "importance-weighted",
                points: &weighted_line,
            },
        ],
    )?;
    writeln!(out, "Data and boundaries written to {}", plot.display())?;
    Ok(Summary {
        plain: plain_acc,
        weighted: weighted_acc,
        oracle_target,
        log_ratio,
        true_log_ratio,
        effective_samples,
        concept,
    })
}

fn main() {
    common::main_with(run);
}
