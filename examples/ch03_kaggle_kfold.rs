//! Chapter 3, "Kaggle house prices with gluon and k-fold cross-validation": the Ames house
//! price data (`data/house-prices/{train,test}.csv`) preprocessed as the notebook does with
//! pandas — numeric features standardized, categorical ones one-hot encoded with a column for
//! missing values (`get_dummies(dummy_na=True)`), missing numbers filled with the (zero) mean —
//! then a linear `Dense(1)` trained with `L2Loss` and Adam (learning rate 5), scored by the RMSE
//! of log prices under 5-fold cross-validation, trained again on all the data, and used to
//! write a submission file of predicted prices for the test houses.
//!
//! `cargo run --release --example ch03_kaggle_kfold`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::csv::{quote, read_csv, ColumnKind, Table, DEFAULT_NA};
use common::plot::{line_plot, LinePlot, Series};
use common::progress::Progress;
use common::{Fallible, Options};
use kiln::gluon::data::{ArrayDataset, DataLoader};
use kiln::gluon::init::Uniform;
use kiln::gluon::loss::L2Loss;
use kiln::gluon::nn::{Dense, Sequential};
use kiln::gluon::{Block, Trainer};
use kiln::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The book's number of folds.
pub const K: usize = 5;
/// The book's epochs (for each fold and for the final training on all the data).
pub const EPOCHS: usize = 100;
/// Epochs under `--quick`: the book's, since the data set is small enough (1,460 houses)
/// for the whole notebook to take seconds.
pub const QUICK_EPOCHS: usize = EPOCHS;
/// The book's `verbose_epoch`: the epochs after it print their training loss.
pub const VERBOSE_EPOCH: usize = 95;
/// The book's Adam learning rate: large, because the prices are in dollars (~180,000) and the
/// model starts near zero.
pub const LEARNING_RATE: f64 = 5.0;
/// The book's weight decay.
pub const WEIGHT_DECAY: f64 = 0.0;
/// The book's batch size.
pub const BATCH_SIZE: usize = 100;
/// The first and last feature columns the notebook takes (`'MSSubClass':'SaleCondition'`),
/// leaving out `Id` and the target.
pub const FIRST_FEATURE: &str = "MSSubClass";
/// See [`FIRST_FEATURE`].
pub const LAST_FEATURE: &str = "SaleCondition";
/// The target column of the training file.
pub const TARGET: &str = "SalePrice";

/// The model's inputs after the notebook's preprocessing.
#[derive(Debug)]
pub struct Features {
    /// `[n_train, features]` f32.
    pub x_train: NDArray,
    /// `[n_train]` f32 sale prices.
    pub y_train: NDArray,
    /// `[n_test, features]` f32.
    pub x_test: NDArray,
    /// The `Id` of each test row, for the submission file.
    pub test_ids: Vec<String>,
    /// The feature names: numeric columns first, then `column_value` dummies (and
    /// `column_nan`) of each categorical column, as pandas orders them.
    pub names: Vec<String>,
    /// How many of `names` are numeric columns.
    pub numeric: usize,
}

/// The notebook's preprocessing of the training and test tables.
///
/// Numeric columns (every non-missing cell a number, over both files) are standardized with
/// the mean and the sample standard deviation (pandas' `std`, ddof 1) of both files together;
/// text columns become one 0/1 column per value, in sorted order, plus one for missing cells;
/// missing numbers then get the column mean, which after standardization is 0. A numeric
/// column with no spread (pandas would divide by zero and keep NaNs) becomes all zeros.
pub fn preprocess(train: &Table, test: &Table) -> Fallible<Features> {
    let first = train.column_index(FIRST_FEATURE)?;
    let last = train.column_index(LAST_FEATURE)?;
    if last < first {
        return Err(format!(
            "{}: column {LAST_FEATURE} comes before {FIRST_FEATURE}",
            train.source
        )
        .into());
    }
    let (n_train, n_test) = (train.len(), test.len());
    if n_train == 0 || n_test == 0 {
        return Err(format!(
            "house prices: need rows in both files, got {n_train} training and {n_test} test rows"
        )
        .into());
    }
    let n = n_train + n_test;
    // Each feature column: train cells then test cells, as pandas' concat stacks them.
    let mut numeric: Vec<(String, Vec<f64>)> = Vec::new();
    let mut dummies: Vec<(String, Vec<f64>)> = Vec::new();
    for col in first..=last {
        let name = &train.header[col];
        let test_col = test.column_index(name)?;
        let kinds = (
            train.column_kind(col, DEFAULT_NA),
            test.column_kind(test_col, DEFAULT_NA),
        );
        if kinds == (ColumnKind::Numeric, ColumnKind::Numeric) {
            let mut values = train.numeric_column(col, DEFAULT_NA)?;
            values.extend(test.numeric_column(test_col, DEFAULT_NA)?);
            numeric.push((name.clone(), standardize_and_fill(&values)));
        } else {
            let mut cells = train.text_column(col, DEFAULT_NA);
            cells.extend(test.text_column(test_col, DEFAULT_NA));
            let mut levels: Vec<&String> = cells.iter().flatten().collect();
            levels.sort();
            levels.dedup();
            for level in levels {
                let column = cells
                    .iter()
                    .map(|c| f64::from(u8::from(c.as_ref() == Some(level))))
                    .collect();
                dummies.push((format!("{name}_{level}"), column));
            }
            let missing = cells.iter().map(|c| f64::from(u8::from(c.is_none())));
            dummies.push((format!("{name}_nan"), missing.collect()));
        }
    }
    let n_numeric = numeric.len();
    let columns: Vec<(String, Vec<f64>)> = numeric.into_iter().chain(dummies).collect();
    let width = columns.len();
    let mut rows = vec![0f32; n * width];
    for (j, (_, column)) in columns.iter().enumerate() {
        for (i, v) in column.iter().enumerate() {
            rows[i * width + j] = *v as f32;
        }
    }
    let (train_rows, test_rows) = rows.split_at(n_train * width);
    let target = train.column_index(TARGET)?;
    let mut prices = Vec::with_capacity(n_train);
    for (price, line) in train
        .numeric_column(target, DEFAULT_NA)?
        .into_iter()
        .zip(&train.row_lines)
    {
        match price {
            Some(p) if p > 0.0 => prices.push(p as f32),
            _ => {
                return Err(format!(
                    "{}:{line}: {TARGET} must be a positive number, got {price:?}",
                    train.source
                )
                .into())
            }
        }
    }
    let id = test.column_index("Id")?;
    Ok(Features {
        x_train: NDArray::from_vec(train_rows.to_vec(), [n_train, width])?,
        y_train: NDArray::from_vec(prices, [n_train])?,
        x_test: NDArray::from_vec(test_rows.to_vec(), [n_test, width])?,
        test_ids: test.column(id).map(str::to_string).collect(),
        names: columns.into_iter().map(|(name, _)| name).collect(),
        numeric: n_numeric,
    })
}

/// `(x - mean) / std` over the present values (pandas' ddof-1 std), then missing values set
/// to the mean of the standardized column (pandas' `fillna(mean)`).
fn standardize_and_fill(values: &[Option<f64>]) -> Vec<f64> {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    let count = present.len() as f64;
    let mean = present.iter().sum::<f64>() / count.max(1.0);
    let var = present.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0).max(1.0);
    let std = var.sqrt();
    let scaled: Vec<Option<f64>> = values
        .iter()
        .map(|v| {
            v.map(|v| {
                if std > 0.0 && std.is_finite() {
                    (v - mean) / std
                } else {
                    0.0
                }
            })
        })
        .collect();
    let present: Vec<f64> = scaled.iter().flatten().copied().collect();
    let fill = if present.is_empty() {
        0.0
    } else {
        present.iter().sum::<f64>() / present.len() as f64
    };
    scaled.into_iter().map(|v| v.unwrap_or(fill)).collect()
}

/// The folder with the house-price files: `DATA/house-prices` when it exists, else `DATA`.
pub fn data_dir(opts: &Options) -> PathBuf {
    opts.data_subdir("house-prices")
}

/// Reads `train.csv` and `test.csv` (or their `.gz` forms) from the data folder.
pub fn load_tables(opts: &Options) -> Fallible<(Table, Table)> {
    let dir = data_dir(opts);
    Ok((
        read_csv(&dir.join("train.csv"))?,
        read_csv(&dir.join("test.csv"))?,
    ))
}

/// The notebook's `get_net`: one linear `Dense(1)` in a `Sequential`, initialized with
/// gluon's default `Uniform(0.07)` (the bias with zeros).
pub fn get_net() -> Fallible<Sequential> {
    let net = Sequential::new();
    net.name_scope(|| net.add(Dense::new(1)));
    net.initialize(Arc::new(Uniform::default()), Context::cpu())?;
    Ok(net)
}

/// The notebook's `get_rmse_log`: `sqrt(mean((log clip(pred, 1, inf) - log y)²))`, written
/// through `L2Loss` (half the squared error) as the book does.
pub fn rmse_log(net: &dyn Block, x: &NDArray, y: &NDArray) -> Fallible<f64> {
    let n = x.shape().dims()[0];
    let preds = autograd::predict_mode(|| net.forward(x))?;
    let clipped = nd::clip(&preds, 1.0, f64::INFINITY)?;
    let loss = L2Loss::new().forward(&clipped.log()?, &y.log()?)?;
    let total = nd::sum(&loss)?.as_scalar_f64()?;
    Ok((2.0 * total / n as f64).sqrt())
}

/// The losses of one training run, per epoch.
#[derive(Clone, Debug, Default)]
pub struct Curves {
    /// Training-set RMSE of log prices after each epoch.
    pub train: Vec<f64>,
    /// Validation RMSE after each epoch (empty when training on all the data).
    pub test: Vec<f64>,
}

/// The notebook's `train`: Adam on `L2Loss` in shuffled batches of [`BATCH_SIZE`], scoring
/// the log-price RMSE on the training (and validation) data after each epoch, and printing
/// the epochs after [`VERBOSE_EPOCH`].
pub fn train(
    out: &mut dyn Write,
    label: &str,
    net: &dyn Block,
    train: (&NDArray, &NDArray),
    test: Option<(&NDArray, &NDArray)>,
    epochs: usize,
) -> Fallible<Curves> {
    let loader = DataLoader::new(
        ArrayDataset::new(train.0.clone(), train.1.clone())?,
        BATCH_SIZE,
    )
    .shuffle(true);
    let mut trainer = Trainer::new(
        &net.collect_params()?,
        "adam",
        [("learning_rate", LEARNING_RATE), ("wd", WEIGHT_DECAY)],
    )?;
    let square_loss = L2Loss::new();
    let mut curves = Curves::default();
    let mut bar = Progress::new(epochs * loader.len(), label.to_string());
    for epoch in 0..epochs {
        for batch in loader.iter() {
            let (data, target) = batch?;
            let loss = autograd::record(|| square_loss.forward(&net.forward(&data)?, &target))?;
            loss.backward()?;
            // As the notebook: the nominal batch size, also for the smaller last batch.
            trainer.step(BATCH_SIZE)?;
            bar.step(nd::sum(&loss)?.as_scalar_f64()?, data.shape().dims()[0]);
        }
        let train_loss = rmse_log(net, train.0, train.1)?;
        // The book prints the epochs after `verbose_epoch`; a shorter run prints its last.
        if epoch > VERBOSE_EPOCH || (epochs <= VERBOSE_EPOCH + 1 && epoch + 1 == epochs) {
            writeln!(out, "Epoch {epoch}, train loss: {train_loss:.6}")?;
        }
        curves.train.push(train_loss);
        if let Some((x, y)) = test {
            curves.test.push(rmse_log(net, x, y)?);
        }
    }
    bar.finish();
    Ok(curves)
}

/// One fold's final losses and curves.
#[derive(Clone, Debug)]
pub struct Fold {
    /// The last epoch's training RMSE of log prices.
    pub train_loss: f64,
    /// The last epoch's validation RMSE of log prices.
    pub test_loss: f64,
    /// The per-epoch curves.
    pub curves: Curves,
}

/// The notebook's `k_fold_cross_valid`: `k` contiguous folds of `n / k` rows (the
/// remainder is never validated on, as in the book); each fold in turn is the validation
/// set and a fresh net trains on the others.
pub fn k_fold_cross_valid(
    out: &mut dyn Write,
    k: usize,
    epochs: usize,
    x: &NDArray,
    y: &NDArray,
) -> Fallible<Vec<Fold>> {
    let n = x.shape().dims()[0];
    if k < 2 || n < k {
        return Err(format!("k-fold: need 2 <= k <= samples, got k = {k} for {n} samples").into());
    }
    let fold_size = n / k;
    let part = |a: &NDArray, i: usize| a.slice_axis0(i * fold_size..(i + 1) * fold_size);
    let mut folds = Vec::with_capacity(k);
    for test_i in 0..k {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for i in (0..k).filter(|&i| i != test_i) {
            xs.push(part(x, i)?);
            ys.push(part(y, i)?);
        }
        let x_train = nd::concat(&xs.iter().collect::<Vec<_>>(), 0)?;
        let y_train = nd::concat(&ys.iter().collect::<Vec<_>>(), 0)?;
        let (x_val, y_val) = (part(x, test_i)?, part(y, test_i)?);
        let net = get_net()?;
        let curves = train(
            out,
            &format!("fold {}/{k}", test_i + 1),
            &net,
            (&x_train, &y_train),
            Some((&x_val, &y_val)),
            epochs,
        )?;
        let fold = Fold {
            train_loss: curves.train.last().copied().unwrap_or(f64::NAN),
            test_loss: curves.test.last().copied().unwrap_or(f64::NAN),
            curves,
        };
        writeln!(
            out,
            "Fold {}: train loss {:.6}, Test loss: {:.6}",
            test_i + 1,
            fold.train_loss,
            fold.test_loss
        )?;
        folds.push(fold);
    }
    Ok(folds)
}

/// What the run measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// Rows and columns of the two files.
    pub train_shape: (usize, usize),
    /// See `train_shape`.
    pub test_shape: (usize, usize),
    /// Feature columns after preprocessing, and how many of them are numeric.
    pub features: (usize, usize),
    /// The folds' results.
    pub folds: Vec<Fold>,
    /// The mean over folds of the final training and validation losses.
    pub avg_train: f64,
    /// See `avg_train`.
    pub avg_test: f64,
    /// The training curve of the final model, trained on all the data.
    pub final_curve: Vec<f64>,
    /// The predicted prices of the test houses.
    pub predictions: Vec<f32>,
    /// Where the submission file went.
    pub submission: PathBuf,
}

/// Runs the notebook: preprocessing, k-fold cross-validation, the final fit and the
/// submission file.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let start = Instant::now();
    let epochs = opts.epochs_or(EPOCHS, QUICK_EPOCHS);
    let (train_table, test_table) = load_tables(opts)?;
    let train_shape = (train_table.len(), train_table.header.len());
    let test_shape = (test_table.len(), test_table.header.len());
    writeln!(
        out,
        "train.csv: {train_shape:?}, test.csv: {test_shape:?} (rows, columns)"
    )?;
    let features = preprocess(&train_table, &test_table)?;
    let width = features.names.len();
    writeln!(
        out,
        "Features: {} numeric (standardized) + {} one-hot = {width}; X_train {:?}, X_test {:?}",
        features.numeric,
        width - features.numeric,
        features.x_train.shape().dims(),
        features.x_test.shape().dims()
    )?;
    writeln!(
        out,
        "Linear Dense(1), L2Loss, Adam lr {LEARNING_RATE}, wd {WEIGHT_DECAY}, batch {BATCH_SIZE}, {epochs} epoch(s), {K}-fold"
    )?;

    let folds = k_fold_cross_valid(out, K, epochs, &features.x_train, &features.y_train)?;
    let avg_train = folds.iter().map(|f| f.train_loss).sum::<f64>() / K as f64;
    let avg_test = folds.iter().map(|f| f.test_loss).sum::<f64>() / K as f64;
    writeln!(
        out,
        "{K}-fold validation: Avg train loss: {avg_train:.6}, Avg test loss: {avg_test:.6}"
    )?;

    // The notebook's `learn`: the same model on all the training data, then the test set.
    let net = get_net()?;
    let full = train(
        out,
        "all data",
        &net,
        (&features.x_train, &features.y_train),
        None,
        epochs,
    )?;
    let predictions = autograd::predict_mode(|| net.forward(&features.x_test))?
        .reshape(&[-1])?
        .to_vec::<f32>()?;
    let submission = opts.out_file("ch03_kaggle_kfold_submission.csv")?;
    let mut csv = String::from("Id,SalePrice\n");
    for (id, price) in features.test_ids.iter().zip(&predictions) {
        csv.push_str(&format!("{},{price}\n", quote(id)));
    }
    std::fs::write(&submission, csv)?;
    writeln!(
        out,
        "Predictions for the {} test houses written to {} (first: {:?})",
        predictions.len(),
        submission.display(),
        &predictions[..predictions.len().min(3)]
    )?;

    let mean_curve = |pick: &dyn Fn(&Fold) -> &Vec<f64>| -> Vec<(f64, f64)> {
        (0..epochs)
            .map(|e| {
                let sum: f64 = folds.iter().map(|f| pick(f)[e]).sum();
                ((e + 1) as f64, sum / folds.len() as f64)
            })
            .collect()
    };
    let cv_train = mean_curve(&|f| &f.curves.train);
    let cv_test = mean_curve(&|f| &f.curves.test);
    let all_train: Vec<(f64, f64)> = full
        .train
        .iter()
        .enumerate()
        .map(|(e, &l)| ((e + 1) as f64, l))
        .collect();
    let plot = opts.out_file("ch03_kaggle_kfold_loss.png")?;
    line_plot(
        &plot,
        &LinePlot {
            title: "House prices: RMSE of log prices",
            x_label: "epoch",
            y_label: "RMSE of log price",
            log_y: true,
        },
        &[
            Series {
                name: "train (mean of folds)",
                points: &cv_train,
            },
            Series {
                name: "test (mean of folds)",
                points: &cv_test,
            },
            Series {
                name: "train on all data",
                points: &all_train,
            },
        ],
    )?;
    writeln!(out, "Loss curves written to {}", plot.display())?;
    writeln!(out, "Done in {:.1} s", start.elapsed().as_secs_f64())?;
    Ok(Summary {
        train_shape,
        test_shape,
        features: (width, features.numeric),
        folds,
        avg_train,
        avg_test,
        final_curve: full.train,
        predictions,
        submission,
    })
}

fn main() {
    common::main_with(run);
}
