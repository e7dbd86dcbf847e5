//! Chapter 1, "Automatic differentiation with autograd": attaching gradients, recording,
//! `backward`, head gradients, and differentiating through ordinary control flow.
//!
//! `cargo run --release --example ch01_autograd`

/// The options every example takes (`#[path]` so that the tests, which include this file
/// as a module, find it too).
#[path = "common/mod.rs"]
pub mod common;

use common::{Fallible, Options};
use kiln::prelude::*;
use std::io::Write;

#[allow(dead_code)] // read by the tests
/// Gradients the notebook computed, for the tests.
#[derive(Debug)]
pub struct Summary {
    /// `x.grad` for `z = 2 * x * x` at `x = [[1, 2], [3, 4]]`.
    pub grad: NDArray,
    /// The same with the head gradient `[[10, 1], [0.1, 0.01]]`.
    pub head_grad: NDArray,
    /// The random input of the control-flow example.
    pub a: NDArray,
    /// Its output `c`.
    pub c: NDArray,
    /// `a.grad` for the control-flow example with the head gradient `[0.01, 1, 0.1]`.
    pub a_grad: NDArray,
}

/// Runs the notebook's cells in order, printing what they print.
pub fn run(_opts: &Options, out: &mut dyn Write) -> Fallible<Summary> {
    kiln::random::seed(1);

    writeln!(out, "## Attaching gradients")?;
    let x = nd::array(&[[1, 2], [3, 4]])?;
    x.attach_grad();
    let z = autograd::record(|| -> Result<NDArray> {
        let y = (&x * 2.0)?;
        &y * &x
    })?;
    z.backward()?;
    let grad = x.grad()?.copy()?;
    writeln!(out, "x.grad (z = 2 * x * x, so dz/dx = 4x)\n{grad}")?;

    writeln!(out, "\n## Head gradients and the chain rule")?;
    let z = autograd::record(|| -> Result<NDArray> {
        let y = (&x * 2.0)?;
        &y * &x
    })?;
    let head_gradient = nd::array(&[[10.0, 1.0], [0.1, 0.01]])?;
    z.backward_with(&head_gradient)?;
    let head_grad = x.grad()?.copy()?;
    writeln!(
        out,
        "x.grad with head gradient [[10, 1], [0.1, 0.01]]\n{head_grad}"
    )?;

    writeln!(out, "\n## Control flow")?;
    let a = nd::random::normal(0.0, 1.0, [3])?;
    a.attach_grad();
    let (c, doublings, scaled) = autograd::record(|| -> Result<(NDArray, u32, bool)> {
        let mut b = (&a * 2.0)?;
        let mut doublings = 1;
        while nd::norm(&b)?.as_scalar::<f32>()? < 1000.0 {
            b = (&b * 2.0)?;
            doublings += 1;
        }
        if nd::sum(&b)?.as_scalar::<f32>()? > 0.0 {
            Ok((b, doublings, false))
        } else {
            Ok(((100.0 * &b)?, doublings, true))
        }
    })?;
    writeln!(out, "a\n{a}")?;
    writeln!(
        out,
        "b = a * 2^{doublings}; sum(b) {} 0, so c = {}",
        if scaled { "<=" } else { ">" },
        if scaled { "100 * b" } else { "b" }
    )?;
    let head_gradient = nd::array(&[0.01, 1.0, 0.1])?;
    c.backward_with(&head_gradient)?;
    let a_grad = a.grad()?.copy()?;
    writeln!(out, "a.grad with head gradient [0.01, 1.0, 0.1]\n{a_grad}")?;
    // c is linear in a, so its gradient is head_gradient * c / a.
    writeln!(
        out,
        "head_gradient * c / a (the same, since c is linear in a)\n{}",
        (&head_gradient * &(&c / &a)?)?
    )?;

    Ok(Summary {
        grad,
        head_grad,
        a,
        c,
        a_grad,
    })
}

#[allow(dead_code)] // the tests include this file as a module and call `run`
fn main() {
    common::main_with(run);
}
