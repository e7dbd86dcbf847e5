//! gluon `utils`: gradient clipping.

use crate::ndarray::NDArray;
use kiln_ir::{Error, Result};

/// Rescales `arrays` in place so that their joint L2 norm is at most `max_norm`, and returns
/// the norm they had (gluon `utils.clip_global_norm`).
///
/// The norm is `sqrt(Σ ‖a‖²)` over all arrays; when it exceeds `max_norm` every array is
/// multiplied by `max_norm / (norm + 1e-8)`. Typical use: the gradients of an RNN before
/// `trainer.step`. A non-finite norm (NaN or infinite gradients) is returned as it is and
/// the arrays are scaled by the resulting NaN or zero factor, as in gluon, where the
/// result is undefined.
///
/// Errors when `arrays` is empty or `max_norm` is not a positive finite number.
///
/// ```
/// use kiln_frontend::{gluon::utils::clip_global_norm, NDArray};
/// let a = NDArray::from_slice(&[3.0f32]);
/// let b = NDArray::from_slice(&[4.0f32]);
/// let norm = clip_global_norm(&[a.clone(), b.clone()], 1.0)?;
/// assert_eq!(norm, 5.0);
/// assert!((a.to_vec::<f32>()?[0] - 0.6).abs() < 1e-6);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
pub fn clip_global_norm(arrays: &[NDArray], max_norm: f64) -> Result<f64> {
    if arrays.is_empty() {
        return Err(Error::invalid(
            "clip_global_norm",
            "no arrays given: it needs at least one",
        ));
    }
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::invalid(
            "clip_global_norm",
            format!("max_norm must be a positive finite number, got {max_norm}"),
        ));
    }
    let mut total = 0.0;
    for a in arrays {
        // Accumulated in f64 so that many f32 arrays lose no precision in the sum.
        total += a.square()?.sum()?.as_scalar_f64()?;
    }
    let norm = total.sqrt();
    let scale = max_norm / (norm + 1e-8);
    if scale < 1.0 || scale.is_nan() {
        for a in arrays {
            a.mul_scalar_assign_(scale)?;
        }
    }
    Ok(norm)
}
