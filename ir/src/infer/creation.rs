//! Shape/dtype inference for the creation and random ops.
//!
//! Attribute checks live here so a bad call fails before anything runs:
//! - `arange`: finite bounds and a non-zero step; `linspace`: finite bounds;
//! - `random_uniform`: float dtypes, finite `low < high` that stay finite and distinct in the
//!   dtype;
//! - `random_normal`: float dtypes, finite `loc`, finite `scale >= 0`;
//! - `random_bernoulli`: `p` in `[0, 1]`, any dtype (bool included);
//! - `random_randint`: `low < high` with every value of the range exact in the dtype (integer
//!   dtypes, or floats within ±2^24 for f32 and ±2^53 for f64; bool is rejected);
//! - `multinomial`: float probabilities of rank >= 1 with at least one category (their values
//!   are checked when the op runs);
//! - `shuffle`: rank >= 1.

use super::common::{expect_inputs, require_float, sized};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::TensorType;

pub(crate) fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType> {
    let name = op.name();
    match op {
        Op::Full { shape, dtype, .. } => {
            expect_inputs(op, inputs, 0)?;
            sized(name, shape.clone(), *dtype)
        }
        Op::Arange {
            start,
            stop,
            step,
            dtype,
        } => {
            expect_inputs(op, inputs, 0)?;
            let n = arange_len(*start, *stop, *step).map_err(|msg| {
                Error::invalid(
                    name,
                    format!("start={start} stop={stop} step={step}: {msg}"),
                )
            })?;
            sized(name, Shape::from([n]), *dtype)
        }
        Op::Linspace {
            start,
            stop,
            num,
            dtype,
            ..
        } => {
            expect_inputs(op, inputs, 0)?;
            if !start.is_finite() || !stop.is_finite() {
                return Err(Error::invalid(
                    name,
                    format!("needs finite bounds, got start={start} stop={stop}"),
                ));
            }
            sized(name, Shape::from([*num]), *dtype)
        }
        Op::RandomUniform {
            low,
            high,
            shape,
            dtype,
            ..
        } => {
            expect_inputs(op, inputs, 0)?;
            need_float(name, *dtype)?;
            let width = high - low;
            // A NaN bound makes the width NaN.
            if low >= high || !width.is_finite() {
                return Err(Error::invalid(
                    name,
                    format!("needs finite low < high, got low={low} high={high}"),
                ));
            }
            if *dtype == DType::F32 {
                let (lo, hi) = (*low as f32, *high as f32);
                if !lo.is_finite() || !hi.is_finite() {
                    return Err(Error::invalid(
                        name,
                        format!("low={low} and high={high} must be finite in f32"),
                    ));
                }
                if lo >= hi {
                    return Err(Error::invalid(
                        name,
                        format!("low={low} and high={high} are equal in f32"),
                    ));
                }
            }
            sized(name, shape.clone(), *dtype)
        }
        Op::RandomNormal {
            loc,
            scale,
            shape,
            dtype,
            ..
        } => {
            expect_inputs(op, inputs, 0)?;
            need_float(name, *dtype)?;
            if !loc.is_finite() || !scale.is_finite() || *scale < 0.0 {
                return Err(Error::invalid(
                    name,
                    format!("needs finite loc and finite scale >= 0, got loc={loc} scale={scale}"),
                ));
            }
            sized(name, shape.clone(), *dtype)
        }
        Op::RandomBernoulli {
            p, shape, dtype, ..
        } => {
            expect_inputs(op, inputs, 0)?;
            if !(0.0..=1.0).contains(p) {
                return Err(Error::invalid(
                    name,
                    format!("needs p in [0, 1], got p={p}"),
                ));
            }
            sized(name, shape.clone(), *dtype)
        }
        Op::RandomRandint {
            low,
            high,
            shape,
            dtype,
            ..
        } => {
            expect_inputs(op, inputs, 0)?;
            if low >= high {
                return Err(Error::invalid(
                    name,
                    format!("needs low < high, got low={low} high={high}"),
                ));
            }
            let (min, max): (i64, i64) = match dtype {
                DType::I32 => (i32::MIN as i64, i32::MAX as i64),
                DType::I64 => (i64::MIN, i64::MAX),
                DType::U8 => (0, u8::MAX as i64),
                DType::F32 => (-(1 << 24), 1 << 24),
                DType::F64 => (-(1 << 53), 1 << 53),
                DType::Bool => {
                    return Err(Error::dtype(
                        name,
                        "needs a numeric dtype, got bool (use random_bernoulli)",
                    ))
                }
            };
            if *low < min || high - 1 > max {
                return Err(Error::invalid(
                    name,
                    format!("range [{low}, {high}) does not fit in {dtype} (values {min}..={max})"),
                ));
            }
            sized(name, shape.clone(), *dtype)
        }
        Op::Multinomial { num_samples, .. } => {
            expect_inputs(op, inputs, 1)?;
            let p = &inputs[0];
            require_float(name, "probabilities", p)?;
            let Some((&k, batch)) = p.shape.split_last() else {
                return Err(Error::shape(
                    name,
                    format!(
                        "needs probabilities of shape [.., K], got {} {}",
                        p.dtype, p.shape
                    ),
                ));
            };
            if k == 0 {
                return Err(Error::shape(
                    name,
                    format!("needs at least one category, got {} {}", p.dtype, p.shape),
                ));
            }
            let mut dims = batch.to_vec();
            dims.push(*num_samples);
            sized(name, Shape::from(dims), DType::I64)
        }
        Op::Shuffle { .. } => {
            expect_inputs(op, inputs, 1)?;
            let x = &inputs[0];
            if x.shape.rank() == 0 {
                return Err(Error::shape(
                    name,
                    format!("needs an input of rank >= 1, got {} {}", x.dtype, x.shape),
                ));
            }
            Ok(x.clone())
        }
        _ => Err(Error::invalid(name, "is not a creation op")),
    }
}

fn need_float(name: &str, dtype: DType) -> Result<()> {
    if !dtype.is_float() {
        return Err(Error::dtype(
            name,
            format!("needs a floating-point dtype, got {dtype}"),
        ));
    }
    Ok(())
}

/// The element count of `arange(start, stop, step)`: `ceil((stop - start) / step)`, 0 when
/// the step points away from `stop` (numpy).
pub(crate) fn arange_len(start: f64, stop: f64, step: f64) -> std::result::Result<usize, String> {
    if !start.is_finite() || !stop.is_finite() || !step.is_finite() {
        return Err("bounds and step must be finite".into());
    }
    if step == 0.0 {
        return Err("step must not be 0".into());
    }
    let n = ((stop - start) / step).ceil();
    if n.is_nan() || n <= 0.0 {
        return Ok(0);
    }
    // Beyond 2^53 the count is not even exact in f64; no tensor is that large anyway.
    if n > (1u64 << 53) as f64 {
        return Err(format!("{n} elements are too many"));
    }
    Ok(n as usize)
}
