//! Chapter 6, "Introduction to optimization": the notebook's pictures of why minimizing a
//! training loss is hard. It plots `f(x) = x·cos(πx)` on `[-1, 2)` (a local minimum beside the
//! global one), `f(x) = x³` on `[-2, 2)` (a saddle point: the gradient vanishes at 0, which is
//! neither a minimum nor a maximum), and the saddle `z = x² − y²` of two variables (the
//! notebook draws it as a surface; here its two axis slices: a minimum along x, a maximum
//! along y). The extrema are located on a fine grid and refined, and kiln's autograd confirms
//! the gradient is zero at each of them; gradient descent from two starting points ends in
//! the local minimum from one and in the global one from the other.
//!
//! `cargo run --release --example ch06_optimization_intro`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::plot::{scatter_plot, LinePlot, Series};
use common::{Fallible, Options};
use kiln::prelude::*;
use std::f64::consts::PI;
use std::io::Write;
use std::path::PathBuf;

/// What the example found, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// The notebook's points of `x·cos(πx)`: `x = -1.0, -0.9, ..., 1.9`.
    pub curve: Vec<(f64, f64)>,
    /// The local (not global) minimum of `x·cos(πx)` on `[-1, 2]`, as `(x, f(x))`.
    pub local_min: (f64, f64),
    /// The global minimum of `x·cos(πx)` on `[-1, 2]`.
    pub global_min: (f64, f64),
    /// `f'(x)` at the local and the global minimum, by autograd.
    pub grads_at_minima: [f64; 2],
    /// `x³` just left and just right of 0 (`x = ∓0.1`): negative, then positive.
    pub cubic_around_zero: (f64, f64),
    /// The gradient of `x³` at 0, by autograd.
    pub cubic_grad_at_zero: f64,
    /// The gradient `(∂z/∂x, ∂z/∂y)` of `x² − y²` at the origin, by autograd.
    pub saddle_grad: (f64, f64),
    /// Where gradient descent on `x·cos(πx)` ends from `x = -0.8` and from `x = 0.5`.
    pub descents: [(f64, f64); 2],
    /// The plots written.
    pub plots: Vec<PathBuf>,
}

/// The notebook's first curve, `f(x) = x·cos(πx)`, elementwise on kiln arrays.
pub fn f(x: &NDArray) -> Result<NDArray> {
    x * &(x * PI)?.cos()?
}

fn f_scalar(x: f64) -> f64 {
    x * (PI * x).cos()
}

/// The learning rate of the gradient-descent demonstration.
pub const GD_LR: f64 = 0.05;
/// The steps of the gradient-descent demonstration.
pub const GD_STEPS: usize = 200;

/// Plain gradient descent on `x·cos(πx)` from `start`, the gradient by autograd; returns
/// where it ends.
pub fn gradient_descent(start: f64) -> Result<f64> {
    let x = NDArray::from_vec(vec![start], [1])?;
    x.attach_grad();
    for _ in 0..GD_STEPS {
        let y = autograd::record(|| f(&x))?;
        y.backward()?;
        x.assign(&(&x - &(&x.grad()? * GD_LR)?)?)?;
    }
    Ok(x.to_vec::<f64>()?[0])
}

/// Golden-section search for the minimum of `g` on `[a, b]` (`g` unimodal there).
pub fn golden_min(g: impl Fn(f64) -> f64, mut a: f64, mut b: f64) -> f64 {
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - r * (b - a), a + r * (b - a));
    while (b - a).abs() > 1e-12 {
        if g(c) < g(d) {
            b = d;
        } else {
            a = c;
        }
        c = b - r * (b - a);
        d = a + r * (b - a);
    }
    (a + b) / 2.0
}

/// The interior local minima of `values` sampled at `xs`, each refined by golden-section
/// search on `g` between its grid neighbours.
fn local_minima(xs: &[f64], values: &[f64], g: impl Fn(f64) -> f64 + Copy) -> Vec<(f64, f64)> {
    (1..values.len().saturating_sub(1))
        .filter(|&i| values[i] < values[i - 1] && values[i] < values[i + 1])
        .map(|i| {
            let x = golden_min(g, xs[i - 1], xs[i + 1]);
            (x, g(x))
        })
        .collect()
}

/// `d/dx g(x)` by autograd at each of `at`.
fn grad_at(at: &[f64], g: impl Fn(&NDArray) -> Result<NDArray>) -> Result<Vec<f64>> {
    let x = NDArray::from_vec(at.to_vec(), [at.len()])?;
    x.attach_grad();
    let y = autograd::record(|| g(&x))?;
    y.backward()?;
    x.grad()?.to_vec::<f64>()
}

fn as_points(x: &NDArray, y: &NDArray) -> Result<Vec<(f64, f64)>> {
    let (xs, ys) = (x.to_vec::<f64>()?, y.to_vec::<f64>()?);
    Ok(xs.into_iter().zip(ys).collect())
}

/// Draws the notebook's curves, locates their extrema and prints them.
pub fn run(opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);
    let f64_opts = DType::F64;
    let mut plots = Vec::new();

    // A local minimum: the notebook's x = np.arange(-1.0, 2.0, 0.1) and f(x) = x·cos(πx).
    let x = nd::arange_with(-1.0, 2.0, 0.1, f64_opts)?;
    let curve = as_points(&x, &f(&x)?)?;
    writeln!(
        out,
        "f(x) = x·cos(πx) at the notebook's points x = -1.0, -0.9, ..., 1.9:"
    )?;
    for row in curve.chunks(6) {
        let cells: Vec<String> = row
            .iter()
            .map(|(x, y)| format!("f({x:>4.1}) = {y:>7.4}"))
            .collect();
        writeln!(out, "  {}", cells.join("  "))?;
    }
    let fine = nd::linspace_with(-1.0, 2.0, 3001, true, f64_opts)?;
    let fine_curve = as_points(&fine, &f(&fine)?)?;
    let (xs, ys): (Vec<f64>, Vec<f64>) = fine_curve.iter().copied().unzip();
    let minima = local_minima(&xs, &ys, f_scalar);
    let global_min = minima
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or("x·cos(πx) has no interior minimum on [-1, 2]")?;
    let local_min = minima
        .iter()
        .copied()
        .find(|m| m.0 != global_min.0)
        .ok_or("x·cos(πx) has only one minimum on [-1, 2]")?;
    let grads = grad_at(&[local_min.0, global_min.0], f)?;
    writeln!(
        out,
        "local minimum:  x = {:.4}, f(x) = {:.4} (f'(x) = {:.1e} by autograd)",
        local_min.0, local_min.1, grads[0]
    )?;
    writeln!(
        out,
        "global minimum: x = {:.4}, f(x) = {:.4} (f'(x) = {:.1e} by autograd)",
        global_min.0, global_min.1, grads[1]
    )?;
    // Where gradient descent ends depends on where it starts.
    let descents = [
        (-0.8, gradient_descent(-0.8)?),
        (0.5, gradient_descent(0.5)?),
    ];
    for (start, end) in descents {
        writeln!(
            out,
            "gradient descent (lr {GD_LR}, {GD_STEPS} steps) from x = {start} ends at x = {end:.4}"
        )?;
    }
    let path = opts.out_file("ch06_optimization_intro_local_minimum.png")?;
    scatter_plot(
        &path,
        &LinePlot {
            title: "x·cos(πx): a local and the global minimum",
            x_label: "x",
            y_label: "f(x)",
            log_y: false,
        },
        &[
            Series {
                name: "the notebook's points",
                points: &curve,
            },
            Series {
                name: "local minimum",
                points: &[local_min],
            },
            Series {
                name: "global minimum",
                points: &[global_min],
            },
        ],
        &[Series {
            name: "f(x) = x·cos(πx)",
            points: &fine_curve,
        }],
    )?;
    writeln!(out, "Plot: {}", path.display())?;
    plots.push(path);

    // A saddle point: the notebook's x = np.arange(-2.0, 2.0, 0.1) and x³.
    let cube = |x: &NDArray| x.pow_scalar(3.0);
    let x = nd::arange_with(-2.0, 2.0, 0.1, f64_opts)?;
    let cubic = as_points(&x, &cube(&x)?)?;
    let fine = nd::linspace_with(-2.0, 2.0, 401, true, f64_opts)?;
    let fine_cubic = as_points(&fine, &cube(&fine)?)?;
    let around = cube(&NDArray::from_vec(vec![-0.1f64, 0.1], [2])?)?.to_vec::<f64>()?;
    let cubic_grad_at_zero = grad_at(&[0.0], cube)?[0];
    writeln!(
        out,
        "\nx³ at x = -0.1, 0, 0.1: {:.4}, 0, {:.4}; its gradient at 0 is {cubic_grad_at_zero} (autograd): \
         a saddle point, neither a minimum nor a maximum",
        around[0], around[1]
    )?;
    let path = opts.out_file("ch06_optimization_intro_saddle_point.png")?;
    scatter_plot(
        &path,
        &LinePlot {
            title: "x³: a saddle point at 0",
            x_label: "x",
            y_label: "x³",
            log_y: false,
        },
        &[
            Series {
                name: "the notebook's points",
                points: &cubic,
            },
            Series {
                name: "saddle point",
                points: &[(0.0, 0.0)],
            },
        ],
        &[Series {
            name: "x³",
            points: &fine_cubic,
        }],
    )?;
    writeln!(out, "Plot: {}", path.display())?;
    plots.push(path);

    // A saddle of two variables, z = x² − y² on the notebook's 31-point grid of [-1, 1].
    let t = nd::linspace_with(-1.0, 1.0, 31, true, f64_opts)?;
    let along_x = as_points(&t, &t.square()?)?; // y = 0: a minimum at the origin
    let along_y = as_points(&t, &t.square()?.neg()?)?; // x = 0: a maximum there
    let (px, py) = (
        NDArray::from_vec(vec![0.0f64], [1])?,
        NDArray::from_vec(vec![0.0f64], [1])?,
    );
    px.attach_grad();
    py.attach_grad();
    let z = autograd::record(|| &px.square()? - &py.square()?)?;
    z.backward()?;
    // `+ 0.0` prints a negative zero as 0.
    let saddle_grad = (
        px.grad()?.to_vec::<f64>()?[0] + 0.0,
        py.grad()?.to_vec::<f64>()?[0] + 0.0,
    );
    writeln!(
        out,
        "\nz = x² − y²: along y = 0 it is x² (a minimum at the origin), along x = 0 it is −y² \
         (a maximum there); gradient at the origin ({}, {}) by autograd",
        saddle_grad.0, saddle_grad.1
    )?;
    let path = opts.out_file("ch06_optimization_intro_saddle_2d.png")?;
    scatter_plot(
        &path,
        &LinePlot {
            title: "z = x² − y² along its axes: a saddle at the origin",
            x_label: "x (or y)",
            y_label: "z",
            log_y: false,
        },
        &[
            Series {
                name: "z(x, 0) = x²",
                points: &along_x,
            },
            Series {
                name: "z(0, y) = −y²",
                points: &along_y,
            },
            Series {
                name: "saddle point",
                points: &[(0.0, 0.0)],
            },
        ],
        &[],
    )?;
    writeln!(out, "Plot: {}", path.display())?;
    plots.push(path);

    Ok(Summary {
        curve,
        local_min,
        global_min,
        grads_at_minima: [grads[0], grads[1]],
        cubic_around_zero: (around[0], around[1]),
        cubic_grad_at_zero,
        saddle_grad,
        descents,
        plots,
    })
}

fn main() {
    common::main_with(run);
}
