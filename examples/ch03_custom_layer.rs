//! Chapter 3, "Designing a custom layer with gluon": a parameter-free `CenteredLayer`
//! (`x - mean(x)`), a `Parameter` on its own and a parameter dict under a prefix, and
//! `MyDense`, a dense layer that declares its own weight (with its own Xavier initializer)
//! and bias. A `MyDense(128)`-`MyDense(64)`-`MyDense(10)` net then trains on MNIST for two
//! epochs with SGD (learning rate 0.1). As in the notebook, the accuracy metric is created
//! once and never reset, so each printed accuracy is cumulative over every evaluation so far;
//! the accuracy of each pass alone is printed next to it.
//!
//! `cargo run --release --example ch03_custom_layer`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;
/// MNIST loading shared by the classification examples.
#[path = "mnist_train/mod.rs"]
pub mod mnist_train;

use common::params::describe_dict;
use common::progress::Progress;
use common::{Fallible, Options};
use kiln::gluon::data::{ArrayDataset, DataLoader, Dataset};
use kiln::gluon::init::{FactorType, RandType, Uniform, Xavier};
use kiln::gluon::loss::SoftmaxCrossEntropyLoss;
use kiln::gluon::metric::{Accuracy, EvalMetric};
use kiln::gluon::name::unique_prefix;
use kiln::gluon::nn::{Dense, Sequential};
use kiln::gluon::{Block, Parameter, ParameterDict, Trainer};
use kiln::prelude::*;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// The book's epochs.
pub const EPOCHS: usize = 2;
/// The book's learning rate (the trainer divides the summed gradient by the batch size).
pub const LEARNING_RATE: f64 = 0.1;
/// The book's batch size.
pub const BATCH_SIZE: usize = 64;
/// Training samples `--quick` uses (the full split has 60,000).
pub const QUICK_TRAIN: usize = 12_000;

/// The book's Xavier initializer.
fn xavier() -> Arc<Xavier> {
    Arc::new(Xavier::new(RandType::Uniform, FactorType::Avg, 2.24))
}

/// The notebook's `CenteredLayer`: subtracts the mean of all of its input.
pub struct CenteredLayer {
    prefix: String,
}

impl CenteredLayer {
    /// A new `centeredlayerN_` block.
    pub fn new() -> CenteredLayer {
        CenteredLayer {
            prefix: unique_prefix("centeredlayer"),
        }
    }
}

impl Default for CenteredLayer {
    fn default() -> Self {
        CenteredLayer::new()
    }
}

impl Block for CenteredLayer {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        x - &nd::mean(x)?
    }
}

/// The notebook's `MyDense`: `relu(x · W + b)` with `W` of shape `[in_units, units]`
/// (transposed from gluon's `Dense`), the weight initialized by its own Xavier initializer
/// whatever `initialize` is given, the bias by the block-wide one (zeros, by its name).
pub struct MyDense {
    prefix: String,
    units: usize,
    weight: Parameter,
    bias: Parameter,
}

impl MyDense {
    /// `units` outputs from `in_units` inputs (0: learnt on the first call).
    pub fn new(units: usize, in_units: usize) -> MyDense {
        let prefix = unique_prefix("mydense");
        MyDense {
            weight: Parameter::new(format!("{prefix}weight"), [in_units, units])
                .with_init(xavier()),
            bias: Parameter::new(format!("{prefix}bias"), [units]),
            units,
            prefix,
        }
    }

    /// The weight, `[in_units, units]`.
    pub fn weight(&self) -> &Parameter {
        &self.weight
    }
}

impl Block for MyDense {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    fn params(&self) -> Vec<Parameter> {
        vec![self.weight.clone(), self.bias.clone()]
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        if x.ndim() != 2 {
            return Err(Error::shape(
                "MyDense",
                format!(
                    "{}: the input must be [batch, features], got shape {}",
                    self.prefix,
                    x.shape()
                ),
            ));
        }
        if !self.weight.is_initialized() {
            self.weight
                .finish_deferred_init([x.shape().dims()[1], self.units])?;
        }
        let linear = (&nd::dot(x, &self.weight.data()?)? + &self.bias.data()?)?;
        linear.relu()
    }
}

/// What the run measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// `CenteredLayer` applied to `[1, 2, 3, 4, 5]`.
    pub centered: Vec<f32>,
    /// The mean of `Dense(128)`-`Dense(10)`-`CenteredLayer`'s output for one image.
    pub centered_net_mean: f32,
    /// The names in the prefixed parameter dict.
    pub dict_names: Vec<String>,
    /// `MyDense(20, in_units=10)`'s parameter names and its output shape on `ones(2, 10)`.
    pub my_dense: (Vec<String>, Vec<usize>),
    /// Per epoch: the cumulative (never reset) train and test accuracies the book prints.
    pub cumulative: Vec<(f64, f64)>,
    /// Per epoch: the accuracy of that epoch's train and test pass alone.
    pub per_pass: Vec<(f64, f64)>,
    /// The mean per-sample training loss of each epoch.
    pub epoch_losses: Vec<f64>,
}

/// Feeds `data` through `net` in predict mode, updating the shared `metric`; returns the
/// accuracy of this pass alone and the metric's (cumulative) value after it.
fn evaluate(
    data: &ArrayDataset,
    net: &dyn Block,
    metric: &mut Accuracy,
    seen: &mut (f64, f64),
) -> Fallible<(f64, f64)> {
    let mut pass = Accuracy::new();
    for batch in DataLoader::new(data.clone(), 1000).iter() {
        let (x, y) = batch?;
        let out = autograd::predict_mode(|| net.forward(&x))?;
        metric.update(&[&y], &[&out])?;
        pass.update(&[&y], &[&out])?;
    }
    let n = data.len() as f64;
    let pass_acc = pass.get().1;
    seen.0 += pass_acc * n;
    seen.1 += n;
    Ok((pass_acc, metric.get().1))
}

/// Builds the notebook's layers, then trains the `MyDense` net.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let (train, test) = mnist_train::load(opts, QUICK_TRAIN)?;

    writeln!(out, "# A layer without parameters")?;
    let layer = CenteredLayer::new();
    let centered = layer.forward(&nd::array(&[1.0f32, 2.0, 3.0, 4.0, 5.0])?)?;
    writeln!(out, "CenteredLayer()([1, 2, 3, 4, 5]) = {centered}")?;
    let net2 = Sequential::new();
    net2.add(Dense::new(128));
    net2.add(Dense::new(10));
    net2.add(CenteredLayer::new());
    net2.initialize(xavier(), Context::cpu())?;
    let output = net2.forward(&train.data().slice_axis0(..1)?)?;
    let centered_net_mean = nd::mean(&output)?.as_scalar::<f32>()?;
    writeln!(
        out,
        "{net2}\nits output for one image:\n{output}\nnd::mean(output) = {centered_net_mean:e}"
    )?;

    writeln!(out, "\n# Parameters")?;
    let my_param = Parameter::new("exciting_parameter_yay", [5, 5]);
    writeln!(out, "{my_param}")?;
    my_param.initialize(xavier(), Context::cpu(), false)?;
    writeln!(
        out,
        "data:\n{}\ngrad:\n{}",
        my_param.data()?,
        my_param.grad()?
    )?;
    // gluon's `ParameterDict(prefix="block1_").get(name, shape=...)`: the dict's prefix is
    // part of every name it holds.
    let mut pd = ParameterDict::with_prefix("block1_");
    pd.get_or_create("exciting_parameter_yay", [5, 5])?;
    writeln!(out, "{pd}")?;
    let looked_up = pd
        .get("block1_exciting_parameter_yay")
        .ok_or("block1_exciting_parameter_yay is not in the dict")?;
    writeln!(out, "pd[\"block1_exciting_parameter_yay\"] = {looked_up}")?;

    writeln!(out, "\n# A layer with parameters")?;
    let dense = MyDense::new(20, 10);
    dense.initialize(Arc::new(Uniform::default()), Context::cpu())?;
    let dense_params = dense.collect_params()?;
    writeln!(out, "{}", describe_dict(&dense.prefix(), &dense_params))?;
    let dense_out = dense.forward(&nd::ones([2, 10])?)?;
    writeln!(out, "dense(nd::ones([2, 10])) =\n{dense_out}")?;

    let net = Sequential::new();
    net.name_scope(|| {
        net.add(MyDense::new(128, 784));
        net.add(MyDense::new(64, 128));
        net.add(MyDense::new(10, 64));
    });
    net.initialize(Arc::new(Uniform::default()), Context::cpu())?;
    writeln!(
        out,
        "{}",
        describe_dict(&net.prefix(), &net.collect_params()?)
    )?;

    let epochs = opts.epochs_or(EPOCHS, 1);
    writeln!(
        out,
        "\nMNIST: {} training, {} test samples; MyDense 784-128-64-10; batch {BATCH_SIZE}, SGD lr {LEARNING_RATE}, {epochs} epoch(s)",
        train.len(),
        test.len()
    )?;
    let loss_fn = SoftmaxCrossEntropyLoss::new();
    let mut trainer = Trainer::new(
        &net.collect_params()?,
        "sgd",
        [("learning_rate", LEARNING_RATE)],
    )?;
    let loader = DataLoader::new(train.clone(), BATCH_SIZE).shuffle(true);
    // The notebook's one metric, never reset.
    let mut metric = Accuracy::new();
    let mut seen = (0.0, 0.0);
    let (mut cumulative, mut per_pass, mut epoch_losses) = (Vec::new(), Vec::new(), Vec::new());
    let start = Instant::now();
    for epoch in 0..epochs {
        let mut bar = Progress::new(loader.len(), format!("epoch {}/{epochs}", epoch + 1));
        for batch in loader.iter() {
            let (x, y) = batch?;
            let n = x.shape().dims()[0];
            let loss = autograd::record(|| loss_fn.forward(&net.forward(&x)?, &y))?;
            loss.backward()?;
            trainer.step(n)?;
            bar.step(nd::sum(&loss)?.as_scalar_f64()?, n);
        }
        epoch_losses.push(bar.mean_loss());
        bar.finish();
        let (test_pass, test_acc) = evaluate(&test, &net, &mut metric, &mut seen)?;
        let (train_pass, train_acc) = evaluate(&train, &net, &mut metric, &mut seen)?;
        writeln!(
            out,
            "Epoch {epoch}. Train_acc {train_acc}, Test_acc {test_acc} (this pass alone: train {train_pass:.4}, test {test_pass:.4}; loss {:.6})",
            epoch_losses[epoch]
        )?;
        cumulative.push((train_acc, test_acc));
        per_pass.push((train_pass, test_pass));
    }
    writeln!(
        out,
        "Trained {epochs} epoch(s) in {:.1} s; the metric has seen {} samples, {:.4} of them right",
        start.elapsed().as_secs_f64(),
        seen.1,
        seen.0 / seen.1.max(1.0)
    )?;
    Ok(Summary {
        centered: centered.to_vec::<f32>()?,
        centered_net_mean,
        dict_names: pd.names(),
        my_dense: (dense_params.names(), dense_out.shape().dims().to_vec()),
        cumulative,
        per_pass,
        epoch_losses,
    })
}

fn main() {
    common::main_with(run);
}
