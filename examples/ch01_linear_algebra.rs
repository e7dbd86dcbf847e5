//! Chapter 1, "Linear algebra": scalars, vectors, matrices and tensors; elementwise math,
//! sums and means, dot products, matrix-vector and matrix-matrix products, norms.
//!
//! `cargo run --release --example ch01_linear_algebra`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::{Fallible, Options};
use kiln::prelude::*;
use std::io::Write;

#[allow(dead_code)] // read by the tests
/// Values the notebook computed, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// `x + y, x * y, x / y, x ** y` for the scalars 3 and 2.
    pub scalar_ops: [f32; 4],
    /// `A[2, 3]` of `arange(20).reshape(5, 4)`.
    pub a23: f32,
    /// `nd.sum(A)`, `nd.mean(A)` of that `A`.
    pub sum_mean: [f32; 2],
    /// `nd.dot(u, v)` of `u = [1, 2, 4, 8]`, `v = [2, 2, 2, 2]`.
    pub dot_uv: f32,
    /// `nd.dot(A, u)`.
    pub a_dot_u: NDArray,
    /// `nd.dot(nd.ones((3, 4)), nd.ones((4, 5)))`.
    pub ones_dot: NDArray,
    /// `nd.norm(u)` and `nd.sum(nd.abs(u))`.
    pub norms: [f32; 2],
}

/// Runs the notebook's cells in order, printing what they print.
pub fn run(_opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    writeln!(out, "## Scalars")?;
    let x = nd::array(&[3.0])?;
    let y = nd::array(&[2.0])?;
    let ops = [
        ("x + y", (&x + &y)?),
        ("x * y", (&x * &y)?),
        ("x / y", (&x / &y)?),
        ("x ** y", nd::power(&x, &y)?),
    ];
    let mut scalar_ops = [0.0f32; 4];
    for (slot, (name, value)) in scalar_ops.iter_mut().zip(&ops) {
        writeln!(out, "{name} = \n{value}")?;
        *slot = value.as_scalar::<f32>()?;
    }
    writeln!(out, "x.asscalar() = {}", x.as_scalar::<f32>()?)?;

    writeln!(out, "\n## Vectors")?;
    let u = nd::arange(4)?;
    writeln!(out, "u = \n{u}")?;
    writeln!(out, "u[3] = \n{}", u.index(&s![3])?)?;
    writeln!(out, "len(u) = {}", u.shape()[0])?;
    writeln!(out, "u.shape = {}", u.shape())?;
    let a = 2.0;
    let x = nd::array(&[1, 2, 3])?;
    let y = nd::array(&[10, 20, 30])?;
    writeln!(out, "a * x\n{}", (a * &x)?)?;
    writeln!(out, "a * x + y\n{}", ((a * &x)? + &y)?)?;

    writeln!(out, "\n## Matrices")?;
    let big_a = nd::arange(20)?.reshape(&[5, 4])?;
    writeln!(out, "A = \n{big_a}")?;
    let a23 = big_a.index(&s![2, 3])?;
    writeln!(out, "A[2, 3] = \n{a23}")?;
    writeln!(out, "row 2 \n{}", big_a.index(&s![2, ..])?)?;
    writeln!(out, "column 3 \n{}", big_a.index(&s![.., 3])?)?;
    writeln!(out, "A.T\n{}", big_a.transpose()?)?;

    writeln!(out, "\n## Tensors")?;
    let big_x = nd::arange(24)?.reshape(&[2, 3, 4])?;
    writeln!(out, "X.shape = {}", big_x.shape())?;
    writeln!(out, "X = \n{big_x}")?;

    writeln!(out, "\n## Element-wise operations")?;
    let u = nd::array(&[1, 2, 4, 8])?;
    let v = (nd::ones_like(&u)? * 2.0)?;
    writeln!(out, "v = \n{v}")?;
    writeln!(out, "u + v \n{}", (&u + &v)?)?;
    writeln!(out, "u - v \n{}", (&u - &v)?)?;
    writeln!(out, "u * v \n{}", (&u * &v)?)?;
    writeln!(out, "u / v \n{}", (&u / &v)?)?;
    let big_b = (nd::ones_like(&big_a)? * 3.0)?;
    writeln!(out, "B = \n{big_b}")?;
    writeln!(out, "A + B = \n{}", (&big_a + &big_b)?)?;
    writeln!(out, "A * B = \n{}", (&big_a * &big_b)?)?;

    writeln!(out, "\n## Basic properties of tensor arithmetic")?;
    let x = nd::ones([3])?;
    let y = nd::zeros([3])?;
    writeln!(out, "{}", x.shape())?;
    writeln!(out, "{}", y.shape())?;
    writeln!(out, "{}", (a * &x)?.shape())?;
    writeln!(out, "{}", ((a * &x)? + &y)?.shape())?;

    writeln!(out, "\n## Sums and means")?;
    writeln!(out, "nd.sum(u) = \n{}", nd::sum(&u)?)?;
    let sum_a = nd::sum(&big_a)?;
    writeln!(out, "nd.sum(A) = \n{sum_a}")?;
    let mean_a = nd::mean(&big_a)?;
    writeln!(out, "nd.mean(A) = \n{mean_a}")?;
    writeln!(
        out,
        "nd.sum(A) / A.size = \n{}",
        (&sum_a / big_a.size() as f64)?
    )?;

    writeln!(out, "\n## Dot products")?;
    let dot_uv = nd::dot(&u, &v)?;
    writeln!(out, "nd.dot(u, v) = \n{dot_uv}")?;
    writeln!(out, "nd.sum(u * v) = \n{}", nd::sum(&(&u * &v)?)?)?;

    writeln!(out, "\n## Matrix-vector products")?;
    let a_dot_u = nd::dot(&big_a, &u)?;
    writeln!(out, "nd.dot(A, u) = \n{a_dot_u}")?;

    writeln!(out, "\n## Matrix-matrix multiplication")?;
    let ones_dot = nd::dot(&nd::ones([3, 4])?, &nd::ones([4, 5])?)?;
    writeln!(
        out,
        "nd.dot(nd.ones((3, 4)), nd.ones((4, 5))) = \n{ones_dot}"
    )?;

    writeln!(out, "\n## Norms")?;
    let l2 = nd::norm(&u)?;
    writeln!(out, "nd.norm(u) = \n{l2}")?;
    let l1 = nd::sum(&nd::abs(&u)?)?;
    writeln!(out, "nd.sum(nd.abs(u)) = \n{l1}")?;

    Ok(Summary {
        scalar_ops,
        a23: a23.as_scalar::<f32>()?,
        sum_mean: [sum_a.as_scalar::<f32>()?, mean_a.as_scalar::<f32>()?],
        dot_uv: dot_uv.as_scalar::<f32>()?,
        a_dot_u,
        ones_dot,
        norms: [l2.as_scalar::<f32>()?, l1.as_scalar::<f32>()?],
    })
}

#[allow(dead_code)] // the tests include this file as a module and call `run`
fn main() {
    common::main_with(run);
}
