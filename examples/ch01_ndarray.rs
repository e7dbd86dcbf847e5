//! Chapter 1, "Manipulate data the MXNet way with ndarray": creating arrays, elementwise
//! math, `dot`, in-place updates, slicing, broadcasting, host copies and contexts.
//!
//! `cargo run --release --example ch01_ndarray`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::{Fallible, Options};
use kiln::prelude::*;
use std::io::Write;

#[allow(dead_code)] // read by the tests
/// Values the tour computed, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// `nd.dot(x, y.T)` with `x` all ones: every row holds the row sums of `y`.
    pub dot: NDArray,
    /// The row sums of the random `y` the dot product was taken with.
    pub y_row_sums: Vec<f32>,
    /// `x` after `x[1,2] = 9` and `x[1:2,1:3] = 5`.
    pub x_after_writes: NDArray,
    /// `ones(3,3) + arange(3)` (row-wise broadcast).
    pub broadcast_row: NDArray,
    /// `ones(3,3) + arange(3).reshape(3,1)` (column-wise broadcast).
    pub broadcast_col: NDArray,
    /// Whether `z[:] = x + y`, `x += y` and `as_in_context` kept their arrays' storage.
    pub kept_storage: [bool; 3],
}

/// Runs the notebook's cells in order, printing what they print.
pub fn run(_opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);

    writeln!(out, "## Getting started")?;
    writeln!(
        out,
        "x = nd.empty((3, 4)): kiln never hands out uninitialized memory; nd::zeros allocates instead"
    )?;
    let x = nd::zeros([3, 5])?;
    writeln!(out, "x = nd::zeros([3, 5])\n{x}")?;
    let x = nd::ones([3, 4])?;
    writeln!(out, "x = nd::ones([3, 4])\n{x}")?;
    let y = nd::random::normal(0.0, 1.0, [3, 4])?;
    writeln!(out, "y = nd::random::normal(0, 1, [3, 4])\n{y}")?;
    writeln!(out, "y.shape = {}", y.shape())?;
    writeln!(out, "y.size = {}", y.size())?;

    writeln!(out, "\n## Operations")?;
    writeln!(out, "x + y\n{}", (&x + &y)?)?;
    writeln!(out, "x * y\n{}", (&x * &y)?)?;
    writeln!(out, "nd.exp(y)\n{}", nd::exp(&y)?)?;
    let dot = nd::dot(&x, &y.transpose()?)?;
    writeln!(out, "nd.dot(x, y.T)\n{dot}")?;
    let y_row_sums = y.sum_axis(1)?.to_vec::<f32>()?;

    writeln!(out, "\n## In-place operations")?;
    // `y = y + x` binds the name to a new array; Python's `id()` becomes "shares storage".
    let y_before = y.clone();
    let y = (&y + &x)?;
    writeln!(
        out,
        "y = y + x: same storage as before? {}",
        y.shares_storage_with(&y_before)
    )?;
    let z = nd::zeros_like(&x)?;
    let z_before = z.clone();
    z.assign(&(&x + &y)?)?;
    let z_kept = z.shares_storage_with(&z_before);
    writeln!(out, "z[:] = x + y: same storage as before? {z_kept}")?;
    // nd.elemwise_add(x, y, out=z): kiln writes a computed result into an existing array.
    z.assign(&nd::add(&x, &y)?)?;
    writeln!(
        out,
        "nd.elemwise_add(x, y, out=z) (z.assign(&nd::add(&x, &y)?))\n{z}"
    )?;
    let mut x = x;
    let x_before = x.clone();
    x += &y;
    let x_kept = x.shares_storage_with(&x_before);
    writeln!(out, "x += y: same storage as before? {x_kept}\n{x}")?;

    writeln!(out, "\n## Slicing")?;
    writeln!(out, "x[1:3]\n{}", x.index(&s![1..3])?)?;
    x.set(&s![1, 2], 9.0)?;
    writeln!(out, "x[1,2] = 9.0\n{x}")?;
    writeln!(out, "x[1:2,1:3]\n{}", x.index(&s![1..2, 1..3])?)?;
    x.set(&s![1..2, 1..3], 5.0)?;
    writeln!(out, "x[1:2,1:3] = 5.0\n{x}")?;
    let x_after_writes = x.copy()?;

    writeln!(out, "\n## Broadcasting")?;
    let x = nd::ones([3, 3])?;
    writeln!(out, "x = \n{x}")?;
    let y = nd::arange(3)?;
    writeln!(out, "y = \n{y}")?;
    let broadcast_row = (&x + &y)?;
    writeln!(out, "x + y = \n{broadcast_row}")?;
    let y = y.reshape(&[3, 1])?;
    writeln!(out, "y = y.reshape((3,1))\n{y}")?;
    let broadcast_col = (&x + &y)?;
    writeln!(out, "x + y = \n{broadcast_col}")?;

    writeln!(
        out,
        "\n## Converting to and from host data (MXNet's asnumpy)"
    )?;
    let a = x.to_tensor();
    writeln!(
        out,
        "a = x.to_tensor(): a {} host tensor of shape {}",
        a.dtype(),
        a.shape()
    )?;
    let y = NDArray::from_tensor(a, Context::cpu());
    writeln!(out, "y = NDArray::from_tensor(a, cpu)\n{y}")?;

    writeln!(out, "\n## Managing context")?;
    writeln!(
        out,
        "kiln runs on the CPU only today (Context::cpu()); the notebook's gpu(0) cells run on cpu(0) here"
    )?;
    let ctx = Context::cpu();
    let z = nd::ones_with([3, 3], ctx)?;
    writeln!(out, "z = nd::ones_with([3, 3], cpu)\n{z}")?;
    let x_copy = nd::zeros_like(&x)?;
    x.copyto(&x_copy)?;
    writeln!(out, "x.copyto(&x_copy)\n{x_copy}")?;
    writeln!(out, "x_copy + z\n{}", (&x_copy + &z)?)?;
    writeln!(out, "x_copy.context = {}", x_copy.context())?;
    writeln!(out, "z.context = {}", z.context())?;
    // copyto always copies; as_in_context is a no-op when the array already lives there.
    let z_copy = z.copy()?;
    writeln!(
        out,
        "z.copy(): same storage as z? {}",
        z_copy.shares_storage_with(&z)
    )?;
    let z_same = z.as_in_context(ctx);
    let ctx_kept = z_same.shares_storage_with(&z);
    writeln!(
        out,
        "z.as_in_context(cpu): same storage as z? {ctx_kept}\n{z_same}"
    )?;

    Ok(Summary {
        dot,
        y_row_sums,
        x_after_writes,
        broadcast_row,
        broadcast_col,
        kept_storage: [z_kept, x_kept, ctx_kept],
    })
}

#[allow(dead_code)] // the tests include this file as a module and call `run`
fn main() {
    common::main_with(run);
}
