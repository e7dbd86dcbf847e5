//! Chapter 2, "The Perceptron": Rosenblatt's perceptron on synthetic, linearly separable
//! 2-D data (the notebook's `getfake(50, 2, 0.3)`), written with plain `nd` ops. Prints every
//! update of the first pass (the misclassified point, the new weight and bias), the number of
//! updates, then keeps passing over the data until no point is misclassified and compares the
//! update count with Novikoff's bound. Plots the data with the learned separating line, and
//! the average number of updates of one pass against the margin of the data.
//!
//! `cargo run --release --example ch02_perceptron`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::plot::{line_plot, scatter_plot, LinePlot, Series};
use common::{Fallible, Options};
use kiln::prelude::*;
use std::io::Write;

/// The book's sample count for the demonstration.
pub const SAMPLES: usize = 50;
/// The book's margin for the demonstration data.
pub const EPSILON: f64 = 0.3;
/// Points are drawn from N(0, I) and kept only inside this radius (as the book does).
pub const RADIUS: f64 = 3.0;
/// The most passes over the data before giving up on convergence.
pub const MAX_PASSES: usize = 1000;
/// Samples per data set in the updates-vs-margin experiment (the book's 1,000).
pub const MARGIN_SAMPLES: usize = 1000;
/// Data sets per margin in that experiment (the book's 10).
pub const MARGIN_TRIALS: usize = 10;

/// Linearly separable data: points `x` (`[n, d]`) with labels `y = ±1` (`[n]`) given by the
/// side of a random hyperplane they lie on.
#[derive(Debug)]
pub struct FakeData {
    /// The points.
    pub x: NDArray,
    /// Their labels, ±1.
    pub y: NDArray,
    /// The hyperplane's unit normal.
    pub w: NDArray,
    /// The hyperplane's offset.
    pub b: f64,
}

/// The notebook's `getfake(samples, dimensions, epsilon)`: a random unit normal `w` and
/// offset `b ~ N(0, 1)`, then points from `N(0, I)` kept when they lie within [`RADIUS`] of
/// the origin and further than `epsilon` from the hyperplane, labelled by its side.
/// Candidates are drawn 256 at a time (the book drew them one by one); the draw gives up
/// with an error when too few are accepted.
pub fn getfake(samples: usize, dimensions: usize, epsilon: f64) -> Fallible<FakeData> {
    if samples == 0 || dimensions == 0 || !(0.0..RADIUS).contains(&epsilon) {
        return Err(format!(
            "getfake: need samples and dimensions >= 1 and 0 <= epsilon < {RADIUS}, got {samples}, {dimensions}, {epsilon}"
        )
        .into());
    }
    let w = nd::random::normal(0.0, 1.0, [dimensions])?;
    let w = (&w / &w.norm()?)?;
    let b = nd::random::normal(0.0, 1.0, [1])?.to_vec::<f32>()?[0] as f64;
    let (mut xs, mut ys) = (Vec::with_capacity(samples * dimensions), Vec::new());
    const CHUNK: usize = 256;
    let max_draws = samples.saturating_mul(1000).max(100_000);
    let mut drawn = 0;
    while ys.len() < samples {
        if drawn >= max_draws {
            return Err(format!(
                "getfake: only {} of {samples} points accepted after {drawn} draws (margin {epsilon})",
                ys.len()
            )
            .into());
        }
        let tmp = nd::random::normal(0.0, 1.0, [CHUNK, dimensions])?;
        let margin = (&nd::dot(&tmp, &w)? + b)?.to_vec::<f32>()?;
        let norm = tmp.norm_axis(1)?.to_vec::<f32>()?;
        let values = tmp.to_vec::<f32>()?;
        drawn += CHUNK;
        for i in 0..CHUNK {
            if ys.len() == samples {
                break;
            }
            if (norm[i] as f64) < RADIUS && (margin[i].abs() as f64) > epsilon {
                xs.extend_from_slice(&values[i * dimensions..(i + 1) * dimensions]);
                ys.push(if margin[i] > 0.0 { 1.0f32 } else { -1.0 });
            }
        }
    }
    Ok(FakeData {
        x: NDArray::from_vec(xs, [samples, dimensions])?,
        y: NDArray::from_vec(ys, [samples])?,
        w,
        b,
    })
}

/// The notebook's `perceptron(w, b, x, y)`: when `y · (w·x + b) <= 0`, updates `w += y·x`,
/// `b += y` in place and returns true.
pub fn perceptron(w: &NDArray, b: &NDArray, x: &NDArray, y: &NDArray) -> Result<bool> {
    let score = (y * &(&nd::dot(w, x)? + b)?)?;
    if score.to_vec::<f32>()?[0] <= 0.0 {
        w.assign(&(w + &(y * x)?)?)?;
        b.assign(&(b + y)?)?;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// One pass of the perceptron over `data` from the current `w`, `b`; calls `on_update`
/// with the point's index after each update and returns the number of updates.
pub fn pass(
    w: &NDArray,
    b: &NDArray,
    data: &FakeData,
    on_update: &mut dyn FnMut(usize) -> Fallible<()>,
) -> Fallible<usize> {
    let n = data.y.shape().dims()[0];
    let mut updates = 0;
    for i in 0..n {
        let x = data.x.index(&s![i])?;
        let y = data.y.slice_axis0(i..i + 1)?;
        if perceptron(w, b, &x, &y)? {
            updates += 1;
            on_update(i)?;
        }
    }
    Ok(updates)
}

/// What the run measured, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// Updates in the first pass (what the notebook prints).
    pub first_pass_updates: usize,
    /// Passes until one made no update.
    pub passes: usize,
    /// Updates over all passes.
    pub total_updates: usize,
    /// Novikoff's bound on the total.
    pub bound: f64,
    /// Misclassified training points after training.
    pub errors: usize,
    /// The learned weight and bias.
    pub w: Vec<f32>,
    /// The learned bias.
    pub b: f32,
    /// `(margin, mean updates of one pass)` for each margin of the experiment.
    pub updates_by_margin: Vec<(f64, f64)>,
}

fn fmt_vec(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.8}")).collect();
    format!("[{}]", parts.join(" "))
}

/// The points with label `label`, as `(x0, x1)` pairs.
fn points_of(data: &FakeData, label: f32) -> Fallible<Vec<(f64, f64)>> {
    let x = data.x.to_vec::<f32>()?;
    let y = data.y.to_vec::<f32>()?;
    Ok(y.iter()
        .enumerate()
        .filter(|(_, &l)| l == label)
        .map(|(i, _)| (x[2 * i] as f64, x[2 * i + 1] as f64))
        .collect())
}

/// The line `w0·x0 + w1·x1 + b = 0` for `x0` across `lo..=hi` (the data's range).
fn boundary(w: &[f32], b: f64, (lo, hi): (f64, f64)) -> Vec<(f64, f64)> {
    let (w0, w1) = (w[0] as f64, w[1] as f64);
    if w1.abs() > 1e-6 {
        (0..=100)
            .map(|i| {
                let x0 = lo + (hi - lo) * i as f64 / 100.0;
                (x0, -(w0 * x0 + b) / w1)
            })
            .collect()
    } else if w0.abs() > 1e-6 {
        let x0 = -b / w0;
        vec![(x0, -RADIUS), (x0, RADIUS)]
    } else {
        Vec::new()
    }
}

/// Runs the notebook and prints what it prints.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let data = getfake(SAMPLES, 2, EPSILON)?;
    let positives = data.y.to_vec::<f32>()?.iter().filter(|&&y| y > 0.0).count();
    writeln!(
        out,
        "{SAMPLES} points in 2-D, margin {EPSILON}: {positives} labelled +1, {} labelled -1",
        SAMPLES - positives
    )?;

    let w = nd::zeros([2])?;
    let b = nd::zeros([1])?;
    let first_pass_updates = pass(&w, &b, &data, &mut |i| {
        let x = data.x.index(&s![i])?.to_vec::<f32>()?;
        let y = data.y.to_vec::<f32>()?[i];
        writeln!(out, "Encountered an error and updated parameters")?;
        writeln!(out, "data   {}, label {y:.1}", fmt_vec(&x))?;
        writeln!(
            out,
            "weight {}, bias {:.1}",
            fmt_vec(&w.to_vec::<f32>()?),
            b.to_vec::<f32>()?[0]
        )?;
        Ok(())
    })?;
    writeln!(out, "{first_pass_updates} update(s) in the first pass")?;

    // Further passes until the data are separated (the perceptron convergence theorem says
    // this happens after finitely many updates).
    let (mut passes, mut total_updates, mut last) = (1, first_pass_updates, first_pass_updates);
    while last > 0 && passes < MAX_PASSES {
        last = pass(&w, &b, &data, &mut |_| Ok(()))?;
        total_updates += last;
        passes += 1;
    }
    let scores = (&nd::dot(&data.x, &w)? + &b)?;
    let errors = nd::sum(&(&scores * &data.y)?.le_scalar(0.0)?)?.as_scalar::<f32>()? as usize;
    // Novikoff: updates <= (R·|u| / gamma)² for the augmented points (x, 1) and the true
    // separator u = (w*, b*), whose margin on the data is at least epsilon.
    let r2 =
        nd::max(&nd::sum_axes(&data.x.square()?, &[1], false)?)?.as_scalar::<f32>()? as f64 + 1.0;
    let bound = r2 * (1.0 + data.b * data.b) / (EPSILON * EPSILON);
    let w_final = w.to_vec::<f32>()?;
    let b_final = b.to_vec::<f32>()?[0];
    writeln!(
        out,
        "Separated after {passes} pass(es), {total_updates} update(s) in all (Novikoff's bound {bound:.0}); \
         {errors} training point(s) misclassified"
    )?;
    writeln!(
        out,
        "Final weight {}, bias {b_final:.1} (the generating plane: normal {}, offset {:.4})",
        fmt_vec(&w_final),
        fmt_vec(&data.w.to_vec::<f32>()?),
        data.b
    )?;

    let plot = opts.out_file("ch02_perceptron_data.png")?;
    let (pos, neg) = (points_of(&data, 1.0)?, points_of(&data, -1.0)?);
    let x_range = pos
        .iter()
        .chain(&neg)
        .fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            (lo.min(p.0), hi.max(p.0))
        });
    let learned = boundary(&w_final, b_final as f64, x_range);
    let truth = boundary(&data.w.to_vec::<f32>()?, data.b, x_range);
    scatter_plot(
        &plot,
        &LinePlot {
            title: "Perceptron: data and separating lines",
            x_label: "x0",
            y_label: "x1",
            log_y: false,
        },
        &[
            Series {
                name: "label +1",
                points: &pos,
            },
            Series {
                name: "label -1",
                points: &neg,
            },
        ],
        &[
            Series {
                name: "perceptron",
                points: &learned,
            },
            Series {
                name: "generating plane",
                points: &truth,
            },
        ],
    )?;
    writeln!(
        out,
        "Data and separating line written to {}",
        plot.display()
    )?;

    // Updates of one pass against the margin: the smaller the margin, the more mistakes.
    let (samples, trials) = if opts.quick {
        (200, 3)
    } else {
        (MARGIN_SAMPLES, MARGIN_TRIALS)
    };
    let mut updates_by_margin = Vec::new();
    for k in 1..=17 {
        let eps = 0.025 * k as f64;
        let mut sum = 0;
        for _ in 0..trials {
            let d = getfake(samples, 2, eps)?;
            let (w, b) = (nd::zeros([2])?, nd::zeros([1])?);
            sum += pass(&w, &b, &d, &mut |_| Ok(()))?;
        }
        updates_by_margin.push((eps, sum as f64 / trials as f64));
    }
    writeln!(
        out,
        "Average updates in one pass over {samples} points ({trials} data sets per margin):"
    )?;
    for (eps, u) in &updates_by_margin {
        writeln!(out, "  margin {eps:.3}: {u:.1}")?;
    }
    let plot = opts.out_file("ch02_perceptron_updates.png")?;
    line_plot(
        &plot,
        &LinePlot {
            title: "Perceptron: updates in one pass vs margin",
            x_label: "margin epsilon",
            y_label: "average number of updates",
            log_y: false,
        },
        &[Series {
            name: "average number of updates for training",
            points: &updates_by_margin,
        }],
    )?;
    writeln!(out, "Updates-vs-margin plot written to {}", plot.display())?;
    Ok(Summary {
        first_pass_updates,
        passes,
        total_updates,
        bound,
        errors,
        w: w_final,
        b: b_final,
        updates_by_margin,
    })
}

fn main() {
    common::main_with(run);
}
