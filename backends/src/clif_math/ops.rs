//! A thin layer over `FunctionBuilder` for writing vector math: typed splat constants, an
//! fma-or-mul+add choice, NaN-aware min/max in the `minps`/`maxps` pattern, lane selects.
//!
//! Every helper works on whole vectors (`F32X4`, `F64X2`, `I32X4`, `I64X2`); the scalar entry
//! points of the module splat a scalar into a vector and extract lane 0 afterwards.

use cranelift_codegen::ir::{
    condcodes::{FloatCC, IntCC},
    types, ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value,
};
use cranelift_frontend::FunctionBuilder;

/// The emitter's state: the function being built and the code-generation choices.
pub(crate) struct M<'a, 'f> {
    pub b: &'a mut FunctionBuilder<'f>,
    /// Use `fma` for `a*b+c` (one rounding); otherwise `fmul` + `fadd`.
    pub fma: bool,
}

/// The integer vector type with the lanes of a float vector type.
fn int_of(ty: Type) -> Type {
    if ty == types::F64X2 {
        types::I64X2
    } else {
        types::I32X4
    }
}

/// The float vector type with the lanes of an integer vector type.
fn float_of(ty: Type) -> Type {
    if ty == types::I64X2 {
        types::F64X2
    } else {
        types::F32X4
    }
}

impl M<'_, '_> {
    pub fn ty(&self, v: Value) -> Type {
        self.b.func.dfg.value_type(v)
    }

    /// `c` splatted to float vector type `ty` (`F32X4` or `F64X2`).
    pub fn cf(&mut self, ty: Type, c: f64) -> Value {
        let s = if ty == types::F64X2 {
            self.b.ins().f64const(c)
        } else {
            self.b.ins().f32const(c as f32)
        };
        self.b.ins().splat(ty, s)
    }

    /// `c` splatted to integer vector type `ty` (`I32X4` or `I64X2`).
    pub fn ci(&mut self, ty: Type, c: i64) -> Value {
        let lane = ty.lane_type();
        let s = self.b.ins().iconst(lane, c);
        self.b.ins().splat(ty, s)
    }

    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    pub fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    pub fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    pub fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    /// `a + c` with a constant `c`.
    pub fn addc(&mut self, a: Value, c: f64) -> Value {
        let ty = self.ty(a);
        let k = self.cf(ty, c);
        self.add(a, k)
    }
    /// `a * c` with a constant `c`.
    pub fn mulc(&mut self, a: Value, c: f64) -> Value {
        let ty = self.ty(a);
        let k = self.cf(ty, c);
        self.mul(a, k)
    }
    /// `c - a` with a constant `c`.
    pub fn rsubc(&mut self, c: f64, a: Value) -> Value {
        let ty = self.ty(a);
        let k = self.cf(ty, c);
        self.sub(k, a)
    }

    /// `a * b + c`: one rounding with fma, two without.
    pub fn mla(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let p = self.b.ins().fmul(a, b);
            self.b.ins().fadd(p, c)
        }
    }
    /// `a * kb + kc` with constants `kb`, `kc`.
    pub fn mlacc(&mut self, a: Value, kb: f64, kc: f64) -> Value {
        let ty = self.ty(a);
        let b = self.cf(ty, kb);
        let c = self.cf(ty, kc);
        self.mla(a, b, c)
    }
    /// `a * kb + c` with a constant `kb`.
    pub fn mlac(&mut self, a: Value, kb: f64, c: Value) -> Value {
        let ty = self.ty(a);
        let b = self.cf(ty, kb);
        self.mla(a, b, c)
    }

    /// The polynomial `coeffs[0]*x^n + ... + coeffs[n]` (highest degree first) by Horner's rule.
    pub fn horner(&mut self, x: Value, coeffs: &[f64]) -> Value {
        let ty = self.ty(x);
        let mut acc = self.cf(ty, coeffs[0]);
        for &c in &coeffs[1..] {
            let k = self.cf(ty, c);
            acc = self.mla(acc, x, k);
        }
        acc
    }

    /// A float comparison; the result is a lane mask (`I32X4`/`I64X2`).
    pub fn fcmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(cc, a, b)
    }
    /// A float comparison against a constant.
    pub fn fcmpc(&mut self, cc: FloatCC, a: Value, c: f64) -> Value {
        let ty = self.ty(a);
        let k = self.cf(ty, c);
        self.fcmp(cc, a, k)
    }
    /// An integer comparison; the result is a lane mask.
    pub fn icmp(&mut self, cc: IntCC, a: Value, b: Value) -> Value {
        self.b.ins().icmp(cc, a, b)
    }
    /// An integer comparison against a constant.
    pub fn icmpc(&mut self, cc: IntCC, a: Value, c: i64) -> Value {
        let ty = self.ty(a);
        let k = self.ci(ty, c);
        self.icmp(cc, a, k)
    }

    /// Lane-wise `mask ? a : b` for a mask from `fcmp`/`icmp` (all-ones or all-zeros lanes).
    pub fn sel(&mut self, mask: Value, a: Value, b: Value) -> Value {
        let ty = self.ty(a);
        let m = if self.ty(mask) == ty {
            mask
        } else {
            self.b.ins().bitcast(ty, MemFlagsData::new(), mask)
        };
        self.b.ins().bitselect(m, a, b)
    }
    /// `mask ? c : b` with a constant `c`.
    pub fn selc(&mut self, mask: Value, c: f64, b: Value) -> Value {
        let ty = self.ty(b);
        let k = self.cf(ty, c);
        self.sel(mask, k, b)
    }

    /// `min(x, hi)` as `hi < x ? hi : x`: a NaN `x` passes through. With the constant first
    /// this is the shape the x64 backend turns into one `minps`.
    pub fn min_c(&mut self, x: Value, hi: f64) -> Value {
        let ty = self.ty(x);
        let h = self.cf(ty, hi);
        let m = self.fcmp(FloatCC::LessThan, h, x);
        self.sel(m, h, x)
    }
    /// `max(x, lo)` as `x < lo ? lo : x`: a NaN `x` passes through (one `maxps`).
    pub fn max_c(&mut self, x: Value, lo: f64) -> Value {
        let ty = self.ty(x);
        let l = self.cf(ty, lo);
        let m = self.fcmp(FloatCC::LessThan, x, l);
        self.sel(m, l, x)
    }

    pub fn fabs(&mut self, x: Value) -> Value {
        self.b.ins().fabs(x)
    }

    /// The float's bits as an integer vector.
    pub fn bits(&mut self, x: Value) -> Value {
        let ty = int_of(self.ty(x));
        self.b.ins().bitcast(ty, MemFlagsData::new(), x)
    }
    /// An integer vector's bits as floats.
    pub fn float(&mut self, i: Value) -> Value {
        let ty = float_of(self.ty(i));
        self.b.ins().bitcast(ty, MemFlagsData::new(), i)
    }

    pub fn iadd(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().iadd(a, b)
    }
    pub fn isub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().isub(a, b)
    }
    pub fn iaddc(&mut self, a: Value, c: i64) -> Value {
        let ty = self.ty(a);
        let k = self.ci(ty, c);
        self.iadd(a, k)
    }
    pub fn band(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().band(a, b)
    }
    pub fn bandc(&mut self, a: Value, c: i64) -> Value {
        let ty = self.ty(a);
        let k = self.ci(ty, c);
        self.band(a, k)
    }
    pub fn bor(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().bor(a, b)
    }
    pub fn bxor(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().bxor(a, b)
    }
    pub fn bnot(&mut self, a: Value) -> Value {
        self.b.ins().bnot(a)
    }
    pub fn shl(&mut self, a: Value, n: i64) -> Value {
        let s = self.b.ins().iconst(types::I32, n);
        self.b.ins().ishl(a, s)
    }
    pub fn ushr(&mut self, a: Value, n: i64) -> Value {
        let s = self.b.ins().iconst(types::I32, n);
        self.b.ins().ushr(a, s)
    }
    pub fn sshr(&mut self, a: Value, n: i64) -> Value {
        let s = self.b.ins().iconst(types::I32, n);
        self.b.ins().sshr(a, s)
    }

    /// `x` with the sign bit of `s` (both of the same float type).
    pub fn copysign(&mut self, x: Value, s: Value) -> Value {
        let ty = self.ty(x);
        let sign = if ty == types::F64X2 {
            i64::MIN
        } else {
            i32::MIN as i64
        };
        let xi = self.bits(x);
        let si = self.bits(s);
        let sb = self.bandc(si, sign);
        let xa = self.bandc(xi, !sign);
        let r = self.bor(xa, sb);
        self.float(r)
    }

    /// `F32X4` -> its low and high halves as `F64X2` (exact).
    pub fn widen(&mut self, x: Value) -> (Value, Value) {
        let lo = self.b.ins().fvpromote_low(x);
        let mut mask = [0u8; 16];
        for (i, m) in mask.iter_mut().enumerate() {
            *m = (8 + i % 8) as u8;
        }
        let hi32 = self.shuffle_f32(x, x, mask);
        let hi = self.b.ins().fvpromote_low(hi32);
        (lo, hi)
    }

    /// Two `F64X2` halves -> one `F32X4` (each lane rounded once).
    pub fn narrow(&mut self, lo: Value, hi: Value) -> Value {
        let a = self.b.ins().fvdemote(lo);
        let c = self.b.ins().fvdemote(hi);
        let mut mask = [0u8; 16];
        for (i, m) in mask.iter_mut().enumerate() {
            *m = if i < 8 { i as u8 } else { (16 + i - 8) as u8 };
        }
        self.shuffle_f32(a, c, mask)
    }

    /// A byte shuffle of two `F32X4` values.
    fn shuffle_f32(&mut self, a: Value, c: Value, mask: [u8; 16]) -> Value {
        let le = MemFlagsData::new().with_endianness(Endianness::Little);
        let ab = self.b.ins().bitcast(types::I8X16, le, a);
        let cb = self.b.ins().bitcast(types::I8X16, le, c);
        let imm = self
            .b
            .func
            .dfg
            .immediates
            .push(ConstantData::from(&mask[..]));
        let s = self.b.ins().shuffle(ab, cb, imm);
        self.b.ins().bitcast(types::F32X4, le, s)
    }
}
