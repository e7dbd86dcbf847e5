//! Writes into an array's existing storage: `+=` and friends, `assign`, `fill`, indexed
//! `set`. Every view sharing the storage sees the change.
//!
//! The new values are always computed first (through the ordinary op path) and the storage
//! is write-locked only to copy them in: an operand may be the target itself or a view of it.

//!
//! While a hybridize trace runs, the only in-place write allowed is a whole-array write into a
//! parameter (BatchNorm's running statistics): it becomes a state update of the traced graph
//! (see [`crate::hybrid::trace`]). Other writes are errors that say what to do instead.

use super::index::{SliceArg, SlicePlan};
use super::{apply_on, write_storage, Data, NDArray};
use crate::hybrid::trace;
use kiln_ir::{Element, Error, Op, Result, Storage};
use std::sync::Arc;

/// Runs `$body` with `$d` and `$s` bound to the typed vectors of two storages of one dtype.
macro_rules! same_dtype {
    ($dst:expr, $src:expr, $op:expr, $d:ident, $s:ident => $body:expr) => {
        match ($dst, $src) {
            (Storage::F32($d), Storage::F32($s)) => $body,
            (Storage::F64($d), Storage::F64($s)) => $body,
            (Storage::I32($d), Storage::I32($s)) => $body,
            (Storage::I64($d), Storage::I64($s)) => $body,
            (Storage::U8($d), Storage::U8($s)) => $body,
            (Storage::Bool($d), Storage::Bool($s)) => $body,
            (d, s) => {
                return Err(Error::dtype(
                    $op,
                    format!(
                        "cannot write {} values into a {} array",
                        s.dtype(),
                        d.dtype()
                    ),
                ))
            }
        }
    };
}

fn scatter<T: Copy>(
    dst: &mut [T],
    base: usize,
    plan: &SlicePlan,
    shape: &kiln_ir::Shape,
    src: &[T],
) {
    let mut k = 0;
    plan.for_each_offset(shape, |o| {
        if let (Some(d), Some(&s)) = (dst.get_mut(base + o), src.get(k)) {
            *d = s;
        }
        k += 1;
    });
}

fn fill_typed<T: Element>(
    dst: &mut [T],
    base: usize,
    plan: &SlicePlan,
    shape: &kiln_ir::Shape,
    value: f64,
) {
    let v = T::from_f64(value);
    plan.for_each_offset(shape, |o| {
        if let Some(d) = dst.get_mut(base + o) {
            *d = v;
        }
    });
}

/// The elements of a freshly computed array as owned storage, without copying when the
/// array is the only handle on its storage. Errors on a symbolic array (`op` names the write).
fn into_storage(op: &str, a: NDArray) -> Result<Storage> {
    let copy = |a: &NDArray| a.try_with_view(op, |v| v.data.to_storage());
    let inner = match Arc::try_unwrap(a.inner) {
        Ok(inner) => inner,
        Err(shared) => return copy(&NDArray { inner: shared }),
    };
    let (start, n) = (inner.offset, inner.shape.numel());
    let storage = match inner.data {
        Data::Concrete(s) => s,
        Data::Symbolic(sym) => {
            return Err(trace::value_read_error(op, &inner.shape, sym.dtype));
        }
    };
    match Arc::try_unwrap(storage) {
        Ok(lock) => {
            let s = lock.into_inner().unwrap_or_else(|e| e.into_inner());
            Ok(if start == 0 && s.len() == n {
                s
            } else {
                s.slice(start..start + n).to_storage()
            })
        }
        Err(storage) => copy(&NDArray::from_parts(storage, start, inner.shape, inner.ctx)),
    }
}

/// True when a write into `target` must go through the trace: a trace is running, or the
/// target is symbolic (a value kept past its trace, which the trace code reports).
fn traced_write(target: &NDArray) -> bool {
    trace::is_tracing() || target.is_symbolic()
}

macro_rules! assign_ops {
    ($($name:ident, $scalar_name:ident => $method:ident, $scalar_method:ident, $sym:literal;)*) => {
        impl NDArray {$(
            #[doc = concat!("`self ", $sym, " rhs` written into this array's storage (seen by every view). `rhs` broadcasts to this array's shape; errors when it cannot, or on a dtype mismatch.")]
            pub fn $name(&self, rhs: &NDArray) -> Result<()> {
                if !rhs.shape().broadcasts_to(self.shape()) {
                    return Err(Error::shape(
                        stringify!($name),
                        format!(
                            "cannot broadcast an operand of shape {} into the target's shape {}",
                            rhs.shape(),
                            self.shape()
                        ),
                    ));
                }
                let value = self.$method(rhs)?;
                self.overwrite_with(stringify!($name), value)
            }
            #[doc = concat!("`self ", $sym, " scalar` written into this array's storage.")]
            pub fn $scalar_name(&self, scalar: f64) -> Result<()> {
                let value = self.$scalar_method(scalar)?;
                self.overwrite_with(stringify!($scalar_name), value)
            }
        )*}
    };
}

assign_ops! {
    add_assign_, add_scalar_assign_ => add, add_scalar, "+";
    sub_assign_, sub_scalar_assign_ => sub, sub_scalar, "-";
    mul_assign_, mul_scalar_assign_ => mul, mul_scalar, "*";
    div_assign_, div_scalar_assign_ => div, div_scalar, "/";
}

impl NDArray {
    /// Writes `value` (an array computed from this one, of this shape and dtype) over this
    /// array's elements.
    fn overwrite_with(&self, op: &str, value: NDArray) -> Result<()> {
        if traced_write(self) {
            return trace::write_traced(op, self, &value);
        }
        crate::autograd::check_inplace(op, self)?;
        if value.shape() != self.shape() {
            return Err(Error::shape(
                op,
                format!(
                    "the result has shape {}, which does not fit the target's shape {}",
                    value.shape(),
                    self.shape()
                ),
            ));
        }
        let src = into_storage(op, value)?;
        let storage = self.inner.data.storage(op, self.shape())?;
        let mut guard = write_storage(storage);
        let off = self.inner.offset;
        let n = self.size();
        same_dtype!(&mut *guard, &src, op, d, s => {
            if let (Some(d), Some(s)) = (d.get_mut(off..off + n), s.get(..n)) {
                d.copy_from_slice(s);
            }
        });
        Ok(())
    }

    /// Overwrites every element with `value`'s (MXNet `x[:] = y`): `value` is broadcast to
    /// this array's shape and converted to its dtype. Views of this array see the change.
    ///
    /// ```
    /// use kiln_frontend::NDArray;
    /// let w = NDArray::from_slice(&[1.0f32, 2.0]);
    /// let alias = w.clone();
    /// w.assign(&(&w - 0.5)?)?;
    /// assert_eq!(alias.to_vec::<f32>()?, vec![0.5, 1.5]);
    /// # Ok::<(), kiln_frontend::Error>(())
    /// ```
    pub fn assign(&self, value: &NDArray) -> Result<()> {
        self.set_array(&[], value)
    }

    /// Sets every element to `value` (converted to the array's dtype). Errors only while
    /// recording, when the array is tracked by autograd (as every in-place write does).
    pub fn fill(&self, value: f64) -> Result<()> {
        self.set(&[], value)
    }

    /// Sets the selected elements to `value` (numpy `x[1:3, ::2] = v`; see
    /// [`s!`](crate::s)). Errors as [`NDArray::index`] does.
    pub fn set(&self, args: &[SliceArg], value: f64) -> Result<()> {
        if traced_write(self) {
            if !args.is_empty() {
                return Err(trace::indexed_write_error("set", self));
            }
            let full = apply_on(
                Op::Full {
                    shape: self.shape().clone(),
                    dtype: self.dtype(),
                    value,
                },
                &[],
                self.context(),
            )?;
            return trace::write_traced("fill", self, &full);
        }
        crate::autograd::check_inplace("set", self)?;
        let plan = SlicePlan::new("set", self.shape(), args)?;
        let mut guard = write_storage(self.inner.data.storage("set", self.shape())?);
        let base = self.inner.offset;
        let shape = self.shape();
        match &mut *guard {
            Storage::F32(d) => fill_typed(d, base, &plan, shape, value),
            Storage::F64(d) => fill_typed(d, base, &plan, shape, value),
            Storage::I32(d) => fill_typed(d, base, &plan, shape, value),
            Storage::I64(d) => fill_typed(d, base, &plan, shape, value),
            Storage::U8(d) => fill_typed(d, base, &plan, shape, value),
            Storage::Bool(d) => fill_typed(d, base, &plan, shape, value),
        }
        Ok(())
    }

    /// Sets the selected elements from `value`, broadcast to the selection's shape and
    /// converted to this array's dtype (numpy `x[0, 1:3] = y`).
    pub fn set_array(&self, args: &[SliceArg], value: &NDArray) -> Result<()> {
        if traced_write(self) && !args.is_empty() {
            return Err(trace::indexed_write_error("set_array", self));
        }
        if !traced_write(self) {
            crate::autograd::check_inplace("set_array", self)?;
        }
        let plan = SlicePlan::new("set_array", self.shape(), args)?;
        let target = plan.result_shape();
        let mut value = value.clone();
        if value.shape() != &target {
            if !value.shape().broadcasts_to(&target) {
                return Err(Error::shape(
                    "set_array",
                    format!(
                        "cannot broadcast a value of shape {} to the selection's shape {target} (array shape {})",
                        value.shape(),
                        self.shape()
                    ),
                ));
            }
            value = value.broadcast_to(target)?;
        }
        let dtype = self.dtype();
        if value.dtype() != dtype {
            value = value.cast(dtype)?;
        }
        if traced_write(self) {
            return trace::write_traced("assign", self, &value);
        }
        let src = into_storage("set_array", value)?;
        let mut guard = write_storage(self.inner.data.storage("set_array", self.shape())?);
        let base = self.inner.offset;
        let shape = self.shape();
        same_dtype!(&mut *guard, &src, "set_array", d, s => scatter(d, base, &plan, shape, s));
        Ok(())
    }
}

macro_rules! assign_traits {
    ($($trait:ident, $fn:ident, $method:ident, $scalar_method:ident, $sym:literal;)*) => {$(
        #[doc = concat!("`a ", $sym, "= &b`: writes into `a`'s storage. Panics when `b` does not broadcast to `a`'s shape or the dtypes differ; [`NDArray::", stringify!($method), "`] returns the error instead.")]
        impl std::ops::$trait<&NDArray> for NDArray {
            fn $fn(&mut self, rhs: &NDArray) {
                if let Err(e) = self.$method(rhs) {
                    panic!("`{}=` on NDArray failed: {e}", $sym);
                }
            }
        }
        #[doc = concat!("`a ", $sym, "= b`: as with `&b`; panics on a shape or dtype mismatch.")]
        impl std::ops::$trait<NDArray> for NDArray {
            fn $fn(&mut self, rhs: NDArray) {
                if let Err(e) = self.$method(&rhs) {
                    panic!("`{}=` on NDArray failed: {e}", $sym);
                }
            }
        }
        #[doc = concat!("`a ", $sym, "= 2.0`: writes into `a`'s storage.")]
        impl std::ops::$trait<f64> for NDArray {
            fn $fn(&mut self, rhs: f64) {
                if let Err(e) = self.$scalar_method(rhs) {
                    panic!("`{}=` on NDArray failed: {e}", $sym);
                }
            }
        }
    )*};
}

assign_traits! {
    AddAssign, add_assign, add_assign_, add_scalar_assign_, "+";
    SubAssign, sub_assign, sub_assign_, sub_scalar_assign_, "-";
    MulAssign, mul_assign, mul_assign_, mul_scalar_assign_, "*";
    DivAssign, div_assign, div_assign_, div_scalar_assign_, "/";
}
