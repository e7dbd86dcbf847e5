//! Arithmetic operators `+ - * /` and unary `-`, candle-style: the output is always a
//! `Result<NDArray>` (shapes may not broadcast). Operands may be `NDArray`, `&NDArray`, a
//! `f64` scalar (on either side; a second scalar type would
//! make literals like `2.0` ambiguous), or a `Result<NDArray>` next to an array, so
//! chains read `((&a * &b) + &c)?` with one `?` at the end. Two `Result`s cannot meet (Rust's
//! orphan rule), nor a `Result` and a scalar: put a `?` on one side.
//!
//! ```
//! use kiln_frontend::NDArray;
//! let a = NDArray::from_slice(&[1.0f32, 2.0]);
//! let b = NDArray::from_slice(&[10.0f32, 20.0]);
//! let c = (((&a * &b) + &a)? - 1.0)?;
//! assert_eq!(c.to_vec::<f32>()?, vec![10.0, 41.0]);
//! let d = (&c + 2.0 * &a)?;
//! assert_eq!(d.to_vec::<f32>()?, vec![12.0, 45.0]);
//! assert_eq!((-&a)?.to_vec::<f32>()?, vec![-1.0, -2.0]);
//! # Ok::<(), kiln_frontend::Error>(())
//! ```

use super::NDArray;
use kiln_ir::Result;
use std::borrow::Borrow;

macro_rules! bin_trait {
    ($trait:ident, $fn:ident, $scalar_fn:ident, $rscalar_fn:ident) => {
        impl<B: Borrow<NDArray>> std::ops::$trait<B> for NDArray {
            type Output = Result<NDArray>;
            fn $fn(self, rhs: B) -> Result<NDArray> {
                NDArray::$fn(&self, rhs.borrow())
            }
        }

        impl<B: Borrow<NDArray>> std::ops::$trait<B> for &NDArray {
            type Output = Result<NDArray>;
            fn $fn(self, rhs: B) -> Result<NDArray> {
                NDArray::$fn(self, rhs.borrow())
            }
        }

        impl<B: Borrow<NDArray>> std::ops::$trait<NDArray> for Result<B> {
            type Output = Result<NDArray>;
            fn $fn(self, rhs: NDArray) -> Result<NDArray> {
                NDArray::$fn(self?.borrow(), &rhs)
            }
        }

        impl<B: Borrow<NDArray>> std::ops::$trait<&NDArray> for Result<B> {
            type Output = Result<NDArray>;
            fn $fn(self, rhs: &NDArray) -> Result<NDArray> {
                NDArray::$fn(self?.borrow(), rhs)
            }
        }

        impl<B: Borrow<NDArray>> std::ops::$trait<Result<B>> for NDArray {
            type Output = Result<NDArray>;
            fn $fn(self, rhs: Result<B>) -> Result<NDArray> {
                NDArray::$fn(&self, rhs?.borrow())
            }
        }

        impl<B: Borrow<NDArray>> std::ops::$trait<Result<B>> for &NDArray {
            type Output = Result<NDArray>;
            fn $fn(self, rhs: Result<B>) -> Result<NDArray> {
                NDArray::$fn(self, rhs?.borrow())
            }
        }

        impl std::ops::$trait<f64> for NDArray {
            type Output = Result<NDArray>;
            fn $fn(self, rhs: f64) -> Result<NDArray> {
                self.$scalar_fn(rhs)
            }
        }

        impl std::ops::$trait<f64> for &NDArray {
            type Output = Result<NDArray>;
            fn $fn(self, rhs: f64) -> Result<NDArray> {
                self.$scalar_fn(rhs)
            }
        }

        impl std::ops::$trait<NDArray> for f64 {
            type Output = Result<NDArray>;
            fn $fn(self, rhs: NDArray) -> Result<NDArray> {
                rhs.$rscalar_fn(self)
            }
        }

        impl std::ops::$trait<&NDArray> for f64 {
            type Output = Result<NDArray>;
            fn $fn(self, rhs: &NDArray) -> Result<NDArray> {
                rhs.$rscalar_fn(self)
            }
        }
    };
}

bin_trait!(Add, add, add_scalar, add_scalar);
bin_trait!(Sub, sub, sub_scalar, rsub_scalar);
bin_trait!(Mul, mul, mul_scalar, mul_scalar);
bin_trait!(Div, div, div_scalar, rdiv_scalar);

impl std::ops::Neg for NDArray {
    type Output = Result<NDArray>;
    fn neg(self) -> Result<NDArray> {
        NDArray::neg(&self)
    }
}

impl std::ops::Neg for &NDArray {
    type Output = Result<NDArray>;
    fn neg(self) -> Result<NDArray> {
        NDArray::neg(self)
    }
}
