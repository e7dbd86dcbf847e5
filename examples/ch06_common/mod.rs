//! What the chapter-6 optimization notebooks share: the book's synthetic linear-regression
//! problem, its `train(batch_size, lr, epochs, period)` driver (the full-data loss recorded
//! every `period` samples, printed per epoch next to the notebook's value, and plotted on a
//! log scale against epochs), the learner of the scratch notebooks (a linear model whose
//! parameters a hand-written [`UpdateRule`] updates) and that of the gluon notebooks
//! (`Dense(1)`, `L2Loss`, `DataLoader` and a `Trainer` with a named optimizer).
//!
//! The driver talks to either learner through [`Learner`], and both can be started from the
//! same weights ([`Init::Given`]) and fed the same sample order ([`Order::Seeded`]), so a
//! test can check that a hand-written update and gluon's optimizer give the same run.
//!
//! A notebook's runs take well under a second in release mode, so `--quick` trains them in
//! full as well; `--epochs N` changes the 3 epochs of every run.
#![allow(dead_code)] // each notebook uses the parts it needs

use super::common::plot::{line_plot, LinePlot, Series};
use super::common::progress::Progress;
use super::common::{Fallible, Options};
use kiln::gluon::data::{ArrayDataset, DataLoader};
use kiln::gluon::init::Normal;
use kiln::gluon::loss::L2Loss;
use kiln::gluon::nn::{Dense, Sequential};
use kiln::gluon::{Block, Parameter, Trainer};
use kiln::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// The notebooks' sample count.
pub const SAMPLES: usize = 1000;
/// The standard deviation of the label noise.
pub const NOISE: f64 = 0.01;
/// The true weights.
pub const TRUE_W: [f32; 2] = [2.0, -3.4];
/// The true bias.
pub const TRUE_B: f32 = 4.2;
/// The notebooks' `mx.random.seed(1)`.
pub const DATA_SEED: u64 = 1;
/// The notebooks' epochs.
pub const EPOCHS: usize = 3;
/// The factor the learning rate is multiplied by once the decay starts.
pub const DECAY: f64 = 0.1;

/// The synthetic regression problem: `X` of shape `[n, 2]` and `y` of shape `[n]`.
#[derive(Clone, Debug)]
pub struct Problem {
    /// The inputs, `[n, 2]`.
    pub x: NDArray,
    /// The labels, `[n]`.
    pub y: NDArray,
}

impl Problem {
    /// The notebooks' data: `X ~ N(0, 1)` of shape `[n, 2]` and
    /// `y = 2·x₁ − 3.4·x₂ + 4.2 + noise·N(0, 1)`, drawn from kiln's generator.
    pub fn synthetic(n: usize, noise: f64) -> Result<Problem> {
        let x = nd::random::normal(0.0, 1.0, [n, 2])?;
        let x0 = x.slice_axis(1, 0, Some(1))?.reshape(&[-1])?;
        let x1 = x.slice_axis(1, 1, Some(2))?.reshape(&[-1])?;
        let y = ((&(&x0 * TRUE_W[0] as f64)? + &(&x1 * TRUE_W[1] as f64)?)? + TRUE_B as f64)?;
        let y = (&y + &(nd::random::normal(0.0, 1.0, [n])? * noise)?)?;
        Ok(Problem { x, y })
    }

    /// A problem from given arrays; errors unless `x` is `[n, 2]` and `y` is `[n]`.
    pub fn new(x: NDArray, y: NDArray) -> Result<Problem> {
        let (xd, yd) = (x.shape().dims().to_vec(), y.shape().dims().to_vec());
        if xd.len() != 2 || xd[1] != 2 || yd != [xd[0]] {
            return Err(Error::invalid(
                "Problem::new",
                format!("x must be [n, 2] and y [n]; got x {xd:?} and y {yd:?}"),
            ));
        }
        Ok(Problem { x, y })
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.x.shape().dims()[0]
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a run's initial parameters come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// The notebooks' start: `w ~ N(0, 1)` (from kiln's generator), `b = 0`.
    Random,
    /// Given values, so that two learners can start from the same point.
    Given {
        /// The weights.
        w: [f32; 2],
        /// The bias.
        b: f32,
    },
}

/// How each epoch's samples are ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Order {
    /// As the notebook does: the scratch `data_iter` shuffles the indices (with a seed drawn
    /// from kiln's generator), the gluon `DataLoader` shuffles by itself.
    Notebook,
    /// Every learner sees the same permutation in a given epoch, drawn from this seed and the
    /// epoch number (for comparing two learners).
    Seeded(u64),
}

/// One call of the notebook's `train`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Samples per update.
    pub batch_size: usize,
    /// The learning rate (`None` for AdaDelta, which has none).
    pub lr: Option<f64>,
    /// Epochs (the notebooks train 3).
    pub epochs: usize,
    /// The full-data loss is recorded whenever `batch_index · batch_size` is a multiple of
    /// `period` (the notebook asserts `period` is a positive multiple of `batch_size`).
    pub period: usize,
    /// Multiply the learning rate by [`DECAY`] at the start of every epoch after this one
    /// (gd-sgd and momentum: `if epoch > 2: lr *= 0.1`).
    pub decay_after: Option<usize>,
    /// The initial parameters.
    pub init: Init,
    /// The sample order.
    pub order: Order,
    /// The notebook's printed loss for each epoch, where the catalog has it.
    pub book_losses: Vec<Option<f64>>,
    /// The notebook's printed `w` and `b`, where the catalog has them.
    pub book_params: Option<([f64; 2], f64)>,
}

impl Config {
    /// The notebook's run: 3 epochs, its initialization and shuffling, no book values.
    pub fn notebook(batch_size: usize, lr: Option<f64>, period: usize) -> Config {
        Config {
            batch_size,
            lr,
            epochs: EPOCHS,
            period,
            decay_after: None,
            init: Init::Random,
            order: Order::Notebook,
            book_losses: Vec::new(),
            book_params: None,
        }
    }

    /// This run with the learning-rate decay after epoch `epoch`.
    pub fn decay_after(mut self, epoch: usize) -> Config {
        self.decay_after = Some(epoch);
        self
    }

    /// This run with the notebook's printed per-epoch losses.
    pub fn book(mut self, losses: &[f64]) -> Config {
        self.book_losses = losses.iter().map(|&l| Some(l)).collect();
        self
    }

    /// This run with the notebook's printed loss for the last epoch only.
    pub fn book_last(mut self, loss: f64) -> Config {
        self.book_losses = vec![None; self.epochs.saturating_sub(1)];
        self.book_losses.push(Some(loss));
        self
    }

    /// This run with the notebook's printed learned parameters.
    pub fn book_params(mut self, w: [f64; 2], b: f64) -> Config {
        self.book_params = Some((w, b));
        self
    }
}

/// What a learner's update step sees besides the parameter and its state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The current learning rate (0 for a run without one).
    pub lr: f64,
    /// The batch size the summed gradient is divided by.
    pub batch_size: usize,
    /// The number of this update, from 1 (Adam's bias correction uses it).
    pub t: usize,
}

/// A model being trained on the problem: the scratch notebooks' hand-written linear model or
/// the gluon notebooks' `Dense(1)` with a `Trainer`.
pub trait Learner {
    /// A short description for the output (`sgd, hand-written update`).
    fn describe(&self) -> String;
    /// Fresh parameters and optimizer state for a run on `problem`.
    fn reset(&mut self, problem: &Problem, init: &Init, lr: Option<f64>) -> Fallible<()>;
    /// The per-sample loss `(ŷ − y)² / 2` on `(x, y)`.
    fn loss(&self, x: &NDArray, y: &NDArray) -> Fallible<NDArray>;
    /// One epoch's batches: in the notebook's own shuffled order, or in `order` when given.
    fn batches(
        &mut self,
        problem: &Problem,
        batch_size: usize,
        order: Option<&[usize]>,
    ) -> Fallible<Vec<(NDArray, NDArray)>>;
    /// One update on a batch; returns the batch's summed loss.
    fn step(&mut self, data: &NDArray, label: &NDArray, batch_size: usize) -> Fallible<f64>;
    /// The current learning rate (`None` when the optimizer has none).
    fn learning_rate(&self) -> Option<f64>;
    /// Changes the learning rate.
    fn set_learning_rate(&mut self, lr: f64) -> Fallible<()>;
    /// The learned weights and bias.
    fn weights(&self) -> Fallible<(Vec<f32>, f32)>;
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The run's batch size.
    pub batch_size: usize,
    /// The run's initial learning rate.
    pub lr: Option<f64>,
    /// The full-data loss the notebook prints after each epoch (the last one recorded).
    pub epoch_losses: Vec<f64>,
    /// Every recorded full-data loss, the initial one first.
    pub curve: Vec<f64>,
    /// The learned weights.
    pub w: Vec<f32>,
    /// The learned bias.
    pub b: f32,
    /// Where the loss plot went, if one was drawn.
    pub plot: Option<PathBuf>,
}

/// What a notebook's runs measured, for the tests.
#[derive(Clone, Debug)]
pub struct Summary {
    /// One entry per `train` call, in the notebook's order.
    pub runs: Vec<RunResult>,
}

/// `v` as Python's `%.4e` prints it (`4.9757e-05`, `nan`, `inf`).
pub fn sci(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}").to_lowercase();
    }
    let s = format!("{v:.4e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// A permutation of `0..n` drawn from `seed` (Fisher–Yates with a SplitMix64 stream), the
/// same on every platform.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx
}

/// The mean per-sample loss of `learner` over the whole problem.
pub fn full_loss(learner: &dyn Learner, problem: &Problem) -> Fallible<f64> {
    let loss = learner.loss(&problem.x, &problem.y)?;
    Ok(loss.mean()?.as_scalar::<f32>()? as f64)
}

/// The notebook's `train`: trains `learner` on `problem` as `cfg` says, printing each
/// epoch's full-data loss (with the notebook's value beside it) and the learned parameters.
pub fn train(
    problem: &Problem,
    cfg: &Config,
    learner: &mut dyn Learner,
    out: &mut dyn Write,
) -> Fallible<RunResult> {
    let bs = cfg.batch_size;
    if bs == 0 || cfg.period < bs || cfg.period % bs != 0 {
        return Err(format!(
            "train: period {} must be a positive multiple of the batch size {bs}",
            cfg.period
        )
        .into());
    }
    if cfg.lr.is_some_and(|lr| !lr.is_finite()) {
        return Err(format!("train: the learning rate must be finite, got {:?}", cfg.lr).into());
    }
    learner.reset(problem, &cfg.init, cfg.lr)?;
    let mut curve = vec![full_loss(learner, problem)?];
    let mut epoch_losses = Vec::with_capacity(cfg.epochs);
    for epoch in 1..=cfg.epochs {
        if cfg.decay_after.is_some_and(|after| epoch > after) {
            if let Some(lr) = learner.learning_rate() {
                learner.set_learning_rate(lr * DECAY)?;
            }
        }
        let order = match cfg.order {
            Order::Notebook => None,
            Order::Seeded(seed) => Some(permutation(
                problem.len(),
                seed.wrapping_mul(0x100_0000_01B3)
                    .wrapping_add(epoch as u64),
            )),
        };
        let batches = learner.batches(problem, bs, order.as_deref())?;
        let mut bar = Progress::new(batches.len(), format!("epoch {epoch}/{}", cfg.epochs));
        for (batch_i, (data, label)) in batches.iter().enumerate() {
            let loss_sum = learner.step(data, label, bs)?;
            bar.step(loss_sum, data.shape().dims()[0]);
            if batch_i * bs % cfg.period == 0 {
                curve.push(full_loss(learner, problem)?);
            }
        }
        bar.finish();
        let loss = curve.last().copied().unwrap_or(f64::NAN);
        epoch_losses.push(loss);
        let lr = match learner.learning_rate() {
            Some(lr) => format!(", Learning rate {lr:.6}"),
            None => String::new(),
        };
        let book = match cfg.book_losses.get(epoch - 1).copied().flatten() {
            Some(b) => format!("   [book: {}]", sci(b)),
            None => String::new(),
        };
        writeln!(
            out,
            "Batch size {bs}{lr}, Epoch {epoch}, loss {}{book}",
            sci(loss)
        )?;
    }
    let (w, b) = learner.weights()?;
    let w_text: Vec<String> = w.iter().map(|v| format!("{v:>11.8}")).collect();
    writeln!(out, "w: [[{}]] b: {b:.5}", w_text.join(" "))?;
    if let Some((bw, bb)) = cfg.book_params {
        writeln!(
            out,
            "   [book: w: [[{:>11.8} {:>11.8}]] b: {bb:.5}]",
            bw[0], bw[1]
        )?;
    }
    Ok(RunResult {
        batch_size: bs,
        lr: cfg.lr,
        epoch_losses,
        curve,
        w,
        b,
        plot: None,
    })
}

/// Plots a run's recorded losses against epochs on a log scale (the notebook's
/// `plt.semilogy(np.linspace(0, epochs, len(total_loss)), total_loss)`) into `file` under the
/// output folder and says where it went.
pub fn plot_run(
    opts: &Options,
    file: &str,
    title: &str,
    run: &RunResult,
    epochs: usize,
    out: &mut dyn Write,
) -> Fallible<PathBuf> {
    let n = run.curve.len();
    let points: Vec<(f64, f64)> = run
        .curve
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let x = if n > 1 {
                epochs as f64 * i as f64 / (n - 1) as f64
            } else {
                0.0
            };
            (x, l)
        })
        .collect();
    let path = opts.out_file(file)?;
    if points.iter().any(|p| p.1.is_finite() && p.1 > 0.0) {
        line_plot(
            &path,
            &LinePlot {
                title,
                x_label: "epoch",
                y_label: "loss",
                log_y: true,
            },
            &[Series {
                name: "full-data loss",
                points: &points,
            }],
        )?;
        writeln!(out, "Loss curve: {}", path.display())?;
    } else {
        writeln!(out, "No finite loss to plot for {title}")?;
    }
    Ok(path)
}

/// Runs a notebook: draws the problem (seed 1), then trains a fresh `learner` for each of
/// `runs`, printing and plotting each. `name` names the plots (`NAME_bs10_lr0.2.png`).
pub fn run_notebook(
    opts: &Options,
    out: &mut dyn Write,
    name: &str,
    learner: &mut dyn Learner,
    runs: &[Config],
) -> Fallible<Summary> {
    kiln::random::seed(DATA_SEED);
    let problem = Problem::synthetic(SAMPLES, NOISE)?;
    let epochs = opts.epochs_or(EPOCHS, EPOCHS);
    writeln!(
        out,
        "{SAMPLES} samples of y = {}·x1 {}·x2 + {TRUE_B} + {NOISE}·noise; {}; {epochs} epoch(s) per run",
        TRUE_W[0],
        TRUE_W[1],
        learner.describe()
    )?;
    let mut results = Vec::with_capacity(runs.len());
    for cfg in runs {
        let cfg = Config {
            epochs,
            ..cfg.clone()
        };
        let lr_text = cfg.lr.map(|lr| format!(", lr {lr}")).unwrap_or_default();
        let decay = cfg
            .decay_after
            .map(|e| format!(", lr ×{DECAY} once epoch > {e}"))
            .unwrap_or_default();
        writeln!(
            out,
            "\ntrain(batch_size={}{lr_text}, epochs={epochs}, period={}){decay}",
            cfg.batch_size, cfg.period
        )?;
        let mut result = train(&problem, &cfg, learner, out)?;
        let lr_file = cfg.lr.map(|lr| format!("_lr{lr}")).unwrap_or_default();
        let file = format!("{name}_bs{}{lr_file}.png", cfg.batch_size);
        let title = format!("{name}: batch {}{lr_text}", cfg.batch_size);
        result.plot = Some(plot_run(opts, &file, &title, &result, epochs, out)?);
        results.push(result);
    }
    Ok(Summary { runs: results })
}

// ----- the scratch notebooks' learner ---------------------------------------------------------

/// A hand-written optimizer: how many state arrays each parameter carries and how one
/// parameter is updated from its gradient.
pub trait UpdateRule {
    /// The optimizer's name (`adam`).
    fn name(&self) -> &str;
    /// How many state arrays (zeros shaped like the parameter at the start) each parameter
    /// carries.
    fn state_arrays(&self) -> usize;
    /// Updates `param` in place from its gradient `grad` (summed over the batch) and its
    /// `state`, which it updates too.
    fn update(&self, param: &NDArray, grad: &NDArray, state: &[NDArray], step: Step) -> Result<()>;
}

/// The scratch notebooks' linear model `X·w + b` with parameters `w` `[2, 1]` and `b` `[1]`,
/// trained by a hand-written update rule on batches taken from shuffled indices.
pub struct Scratch<R> {
    rule: R,
    params: Vec<NDArray>,
    states: Vec<Vec<NDArray>>,
    lr: Option<f64>,
    t: usize,
}

impl<R: UpdateRule> Scratch<R> {
    /// A learner using `rule`; parameters are made by [`Learner::reset`].
    pub fn new(rule: R) -> Self {
        Scratch {
            rule,
            params: Vec::new(),
            states: Vec::new(),
            lr: None,
            t: 0,
        }
    }

    fn net(&self, x: &NDArray) -> Result<NDArray> {
        match self.params.as_slice() {
            [w, b] => &nd::dot(x, w)? + b,
            _ => Err(Error::invalid(
                "Scratch::net",
                "the parameters are not made yet: call reset first",
            )),
        }
    }
}

/// The notebooks' `square_loss`: `(ŷ − y)² / 2` per sample, `y` reshaped like `ŷ`.
pub fn square_loss(yhat: &NDArray, y: &NDArray) -> Result<NDArray> {
    let y = y.reshape_like(yhat)?;
    nd::square(&(yhat - &y)?)? / 2.0
}

impl<R: UpdateRule> Learner for Scratch<R> {
    fn describe(&self) -> String {
        format!("{}, hand-written update", self.rule.name())
    }

    fn reset(&mut self, _problem: &Problem, init: &Init, lr: Option<f64>) -> Fallible<()> {
        let (w, b) = match init {
            Init::Random => (nd::random::normal(0.0, 1.0, [2, 1])?, nd::zeros([1])?),
            Init::Given { w, b } => (nd::array(&[[w[0]], [w[1]]])?, nd::array(&[*b])?),
        };
        self.params = vec![w, b];
        for p in &self.params {
            p.attach_grad();
        }
        self.states = self
            .params
            .iter()
            .map(|p| {
                (0..self.rule.state_arrays())
                    .map(|_| nd::zeros_like(p))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        self.lr = lr;
        self.t = 0;
        Ok(())
    }

    fn loss(&self, x: &NDArray, y: &NDArray) -> Fallible<NDArray> {
        Ok(square_loss(&self.net(x)?, y)?)
    }

    fn batches(
        &mut self,
        problem: &Problem,
        batch_size: usize,
        order: Option<&[usize]>,
    ) -> Fallible<Vec<(NDArray, NDArray)>> {
        // The notebook's data_iter: shuffle the indices, then `take` each batch's rows.
        let idx = match order {
            Some(o) => o.to_vec(),
            None => permutation(problem.len(), kiln::random::next_seed()),
        };
        idx.chunks(batch_size.max(1))
            .map(|chunk| {
                let j = NDArray::from_vec(
                    chunk.iter().map(|&i| i as i32).collect::<Vec<_>>(),
                    [chunk.len()],
                )?;
                Ok((problem.x.take(&j)?, problem.y.take(&j)?))
            })
            .collect()
    }

    fn step(&mut self, data: &NDArray, label: &NDArray, batch_size: usize) -> Fallible<f64> {
        let loss = autograd::record(|| square_loss(&self.net(data)?, label))?;
        loss.backward()?;
        self.t += 1;
        let step = Step {
            lr: self.lr.unwrap_or(0.0),
            batch_size,
            t: self.t,
        };
        for (p, state) in self.params.iter().zip(&self.states) {
            self.rule.update(p, &p.grad()?, state, step)?;
        }
        Ok(loss.sum()?.as_scalar::<f32>()? as f64)
    }

    fn learning_rate(&self) -> Option<f64> {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) -> Fallible<()> {
        self.lr = Some(lr);
        Ok(())
    }

    fn weights(&self) -> Fallible<(Vec<f32>, f32)> {
        match self.params.as_slice() {
            [w, b] => Ok((w.to_vec::<f32>()?, b.to_vec::<f32>()?[0])),
            _ => Err("Scratch::weights: the parameters are not made yet".into()),
        }
    }
}

// ----- the gluon notebooks' learner -----------------------------------------------------------

/// The gluon notebooks' model: a `Sequential` holding `Dense(1)` initialized with
/// `Normal(sigma=1)` (the bias with zeros), `L2Loss`, a shuffling `DataLoader`, and a
/// `Trainer` with the named optimizer and hyperparameters.
pub struct Gluon {
    optimizer: String,
    hyper: Vec<(String, f64)>,
    net: Sequential,
    weight: Option<Parameter>,
    bias: Option<Parameter>,
    trainer: Option<Trainer>,
    loader: Option<DataLoader<ArrayDataset>>,
    loss_fn: L2Loss,
    /// Whether the run set a learning rate (AdaDelta's runs do not: its rate is a fixed 1).
    has_lr: bool,
}

impl Gluon {
    /// A learner training with `Trainer::new(params, optimizer, hyper + learning_rate)`.
    pub fn new(optimizer: &str, hyper: &[(&str, f64)]) -> Self {
        Gluon {
            optimizer: optimizer.to_string(),
            hyper: hyper.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            net: Sequential::new(),
            weight: None,
            bias: None,
            trainer: None,
            loader: None,
            loss_fn: L2Loss::new(),
            has_lr: false,
        }
    }

    fn trainer(&mut self) -> Fallible<&mut Trainer> {
        self.trainer
            .as_mut()
            .ok_or_else(|| "Gluon: no trainer yet: call reset first".into())
    }
}

impl Learner for Gluon {
    fn describe(&self) -> String {
        let hyper: Vec<String> = self.hyper.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let extra = if hyper.is_empty() {
            String::new()
        } else {
            format!(" ({})", hyper.join(", "))
        };
        format!(
            "gluon Dense(1), L2Loss, Trainer '{}'{extra}",
            self.optimizer
        )
    }

    fn reset(&mut self, problem: &Problem, init: &Init, lr: Option<f64>) -> Fallible<()> {
        // A fresh network each run, as the notebook's `initialize(force_reinit=True)`.
        let dense = Dense::new(1);
        let weight = dense.weight().clone();
        let bias = dense
            .bias()
            .cloned()
            .ok_or("Dense(1) was built without a bias")?;
        let net = Sequential::new();
        net.add(dense);
        net.initialize(Arc::new(Normal::new(1.0)), Context::cpu())?;
        // The first forward learns the input size (deferred initialization).
        net.forward(&problem.x.slice_axis(0, 0, Some(1))?)?;
        if let Init::Given { w, b } = init {
            weight.set_data(&nd::array(&[[w[0], w[1]]])?)?;
            bias.set_data(&nd::array(&[*b])?)?;
        }
        let mut hyper: Vec<(String, f64)> = self.hyper.clone();
        if let Some(lr) = lr {
            hyper.push(("learning_rate".to_string(), lr));
        }
        self.trainer = Some(Trainer::new(
            &net.collect_params()?,
            self.optimizer.as_str(),
            hyper,
        )?);
        self.net = net;
        self.weight = Some(weight);
        self.bias = Some(bias);
        self.loader = None;
        self.has_lr = lr.is_some();
        Ok(())
    }

    fn loss(&self, x: &NDArray, y: &NDArray) -> Fallible<NDArray> {
        Ok(self.loss_fn.forward(&self.net.forward(x)?, y)?)
    }

    fn batches(
        &mut self,
        problem: &Problem,
        batch_size: usize,
        order: Option<&[usize]>,
    ) -> Fallible<Vec<(NDArray, NDArray)>> {
        let batches = match order {
            // The same order as another learner: the loader reads the permuted samples.
            Some(o) => {
                let j =
                    NDArray::from_vec(o.iter().map(|&i| i as i32).collect::<Vec<_>>(), [o.len()])?;
                let data = ArrayDataset::new(problem.x.take(&j)?, problem.y.take(&j)?)?;
                DataLoader::new(data, batch_size)
                    .iter()
                    .collect::<Result<Vec<_>>>()?
            }
            // The notebook's `DataLoader(dataset, batch_size, shuffle=True)`, made once per
            // run and reshuffling every epoch.
            None => {
                if self
                    .loader
                    .as_ref()
                    .is_none_or(|l| l.batch_size() != batch_size)
                {
                    let data = ArrayDataset::new(problem.x.clone(), problem.y.clone())?;
                    self.loader = Some(DataLoader::new(data, batch_size).shuffle(true));
                }
                match &self.loader {
                    Some(loader) => loader.iter().collect::<Result<Vec<_>>>()?,
                    None => Vec::new(),
                }
            }
        };
        Ok(batches)
    }

    fn step(&mut self, data: &NDArray, label: &NDArray, batch_size: usize) -> Fallible<f64> {
        let loss = autograd::record(|| self.loss_fn.forward(&self.net.forward(data)?, label))?;
        loss.backward()?;
        self.trainer()?.step(batch_size)?;
        Ok(loss.sum()?.as_scalar::<f32>()? as f64)
    }

    fn learning_rate(&self) -> Option<f64> {
        // AdaDelta's rate is a fixed 1 that the notebook never mentions.
        if !self.has_lr {
            return None;
        }
        self.trainer.as_ref().map(|t| t.learning_rate())
    }

    fn set_learning_rate(&mut self, lr: f64) -> Fallible<()> {
        Ok(self.trainer()?.set_learning_rate(lr)?)
    }

    fn weights(&self) -> Fallible<(Vec<f32>, f32)> {
        match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => Ok((w.data()?.to_vec::<f32>()?, b.data()?.to_vec::<f32>()?[0])),
            _ => Err("Gluon::weights: the network is not made yet: call reset first".into()),
        }
    }
}

// ----- the gd-sgd notebooks' runs (the scratch and gluon notebooks print the same values) ----

/// The five `train` calls of gd-sgd-scratch and gd-sgd-gluon, each with the learning rate
/// cut tenfold once the epoch is past 2, and the values the notebooks printed.
pub fn gd_sgd_runs() -> Vec<Config> {
    vec![
        Config::notebook(1, Some(0.2), 10)
            .decay_after(2)
            .book_last(4.9757e-05)
            .book_params([1.999_492_76, -3.399_816_04], 4.19997),
        Config::notebook(1000, Some(0.999), 1000)
            .decay_after(2)
            .book_last(6.9547e-04),
        Config::notebook(10, Some(0.2), 10)
            .decay_after(2)
            .book_last(4.8990e-05),
        Config::notebook(10, Some(5.0), 10)
            .decay_after(2)
            .book_last(f64::NAN),
        Config::notebook(10, Some(0.002), 10)
            .decay_after(2)
            .book_last(5.8656e+00),
    ]
}
