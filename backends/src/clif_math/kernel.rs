//! A small JIT harness: compiles `out[i] = f(x[i])` (an f32x4 loop plus a scalar tail) so that
//! tests and benchmarks can run the emitted math densely.

use super::{emit_math_with, emit_pow_with, MathFn, MathOptions};
use cranelift_codegen::ir::{
    condcodes::IntCC, types, AbiParam, Block, InstBuilder, MemFlagsData, Type, UserFuncName, Value,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use kiln_ir::{Error, Result, UnaryOp};

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid("clif_math", format!("{what}: {e}"))
}

/// A fresh JIT module for the host ISA (optimizing; the IR verifier on in debug builds).
fn new_module() -> Result<JITModule> {
    let mut fb = settings::builder();
    fb.set("opt_level", "speed")
        .map_err(|e| err("opt_level", e))?;
    let verify = if cfg!(debug_assertions) {
        "true"
    } else {
        "false"
    };
    fb.set("enable_verifier", verify)
        .map_err(|e| err("enable_verifier", e))?;
    fb.set("is_pic", "false").map_err(|e| err("is_pic", e))?;
    let isa = cranelift_native::builder()
        .map_err(|e| err("host ISA", e))?
        .finish(settings::Flags::new(fb))
        .map_err(|e| err("host ISA", e))?;
    Ok(JITModule::new(JITBuilder::with_isa(
        isa,
        default_libcall_names(),
    )))
}

/// Builds `fn(n, in_0 .. in_{k-1}, out)`: `out[i] = body(in_0[i], ..)` over f32 arrays, in
/// f32x4 steps and then one element at a time. Returns the module and the code address.
fn build_loop(
    name: &str,
    inputs: usize,
    body: &dyn Fn(&mut FunctionBuilder, &[Value]) -> Value,
) -> Result<Compiled> {
    let mut module = new_module()?;
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    for _ in 0..inputs + 2 {
        sig.params.push(AbiParam::new(ptr));
    }
    let id = module
        .declare_function(name, Linkage::Local, &sig)
        .map_err(|e| err(name, e))?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        let vhead = b.create_block();
        let vbody = b.create_block();
        let shead = b.create_block();
        let sbody = b.create_block();
        let exit = b.create_block();
        for blk in [vhead, vbody, shead, sbody] {
            b.append_block_param(blk, ptr);
        }
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let n = params[0];
        let ins = params[1..=inputs].to_vec();
        let out = params[inputs + 1];
        let nvec = b.ins().band_imm_s(n, -4);
        let zero = b.ins().iconst(ptr, 0);
        b.ins().jump(vhead, &[zero.into()]);

        let step = |b: &mut FunctionBuilder, blk: Block, next: Block, ty: Type, lanes: i64| {
            b.switch_to_block(blk);
            let i = b.block_params(blk)[0];
            let off = b.ins().ishl_imm_u(i, 2);
            let mf = MemFlagsData::new().with_notrap();
            let xs: Vec<Value> = ins
                .iter()
                .map(|&p| {
                    let a = b.ins().iadd(p, off);
                    b.ins().load(ty, mf, a, 0)
                })
                .collect();
            let y = body(b, &xs);
            let a = b.ins().iadd(out, off);
            b.ins().store(mf, y, a, 0);
            let i2 = b.ins().iadd_imm_s(i, lanes);
            b.ins().jump(next, &[i2.into()]);
        };

        b.switch_to_block(vhead);
        let i = b.block_params(vhead)[0];
        let c = b.ins().icmp(IntCC::UnsignedLessThan, i, nvec);
        b.ins().brif(c, vbody, &[i.into()], shead, &[i.into()]);
        step(&mut b, vbody, vhead, types::F32X4, 4);

        b.switch_to_block(shead);
        let i = b.block_params(shead)[0];
        let c = b.ins().icmp(IntCC::UnsignedLessThan, i, n);
        b.ins().brif(c, sbody, &[i.into()], exit, &[]);
        step(&mut b, sbody, shead, types::F32, 1);

        b.switch_to_block(exit);
        b.ins().return_(&[]);
        b.seal_all_blocks();
        b.finalize(module.target_config());
    }
    let clif = ctx.func.display().to_string();
    ctx.set_disasm(true);
    module
        .define_function(id, &mut ctx)
        .map_err(|e| err(name, format!("{e:?}")))?;
    let disasm = ctx
        .compiled_code()
        .and_then(|c| c.vcode.clone())
        .unwrap_or_default();
    module.clear_context(&mut ctx);
    module.finalize_definitions().map_err(|e| err(name, e))?;
    let code = module.get_finalized_function(id);
    Ok(Compiled {
        module,
        code,
        clif,
        disasm,
    })
}

/// A compiled loop: the module owning the code, the code's address, its IR and disassembly.
struct Compiled {
    module: JITModule,
    code: *const u8,
    clif: String,
    disasm: String,
}

type UnaryFn = unsafe extern "C" fn(usize, *const f32, *mut f32);
type BinaryFn = unsafe extern "C" fn(usize, *const f32, *const f32, *mut f32);

/// A compiled `out[i] = f(x[i])` loop over f32 slices.
pub struct UnaryKernel {
    module: Option<JITModule>,
    func: UnaryFn,
    name: &'static str,
    clif: String,
    disasm: String,
}

impl UnaryKernel {
    /// The kernel's Cranelift IR (before optimization).
    pub fn clif(&self) -> &str {
        &self.clif
    }

    /// The kernel's machine code as Cranelift prints it (VCode after register allocation).
    pub fn disasm(&self) -> &str {
        &self.disasm
    }

    /// The function's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `out[i] = f(x[i])` for every i. The slices must have the same length.
    pub fn run(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        if x.len() != out.len() {
            return Err(Error::shape(
                self.name,
                format!("input has {} elements, output {}", x.len(), out.len()),
            ));
        }
        // SAFETY: the code was compiled by `build_loop` with this signature; it reads exactly
        // `x.len()` f32s from `x` and writes as many to `out`, which the check above makes the
        // same length, and the module owning the code lives as long as `self`.
        unsafe { (self.func)(x.len(), x.as_ptr(), out.as_mut_ptr()) };
        Ok(())
    }
}

impl Drop for UnaryKernel {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: `func` points into this module's memory and is private to `self`, which
            // is being dropped, so no pointer into the code survives.
            unsafe { m.free_memory() };
        }
    }
}

/// A compiled `out[i] = pow(x[i], y[i])` loop over f32 slices.
pub struct PowKernel {
    module: Option<JITModule>,
    func: BinaryFn,
}

impl PowKernel {
    /// `out[i] = pow(x[i], y[i])` for every i. The slices must have the same length.
    pub fn run(&self, x: &[f32], y: &[f32], out: &mut [f32]) -> Result<()> {
        if x.len() != out.len() || y.len() != out.len() {
            return Err(Error::shape(
                "pow",
                format!(
                    "inputs have {} and {} elements, output {}",
                    x.len(),
                    y.len(),
                    out.len()
                ),
            ));
        }
        // SAFETY: as for `UnaryKernel::run`, with two inputs of the checked length.
        unsafe { (self.func)(x.len(), x.as_ptr(), y.as_ptr(), out.as_mut_ptr()) };
        Ok(())
    }
}

impl Drop for PowKernel {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: as for `UnaryKernel`'s drop.
            unsafe { m.free_memory() };
        }
    }
}

/// JIT-compiles `out[i] = f(x[i])` for a float unary op, with the host's options.
pub fn compile_unary_kernel(f: UnaryOp) -> Result<UnaryKernel> {
    compile_math_kernel(MathFn::Unary(f), MathOptions::host())
}

/// JIT-compiles `out[i] = f(x[i])` for any [`MathFn`] with explicit options.
pub fn compile_math_kernel(f: MathFn, opts: MathOptions) -> Result<UnaryKernel> {
    let body = move |b: &mut FunctionBuilder, xs: &[Value]| {
        // Both loads are f32 or f32x4, which every MathFn accepts.
        emit_math_with(b, opts, f, xs[0]).expect("f32 operand")
    };
    let c = build_loop(f.name(), 1, &body)?;
    // SAFETY: `build_loop` compiled the function with the signature (n, *const f32, *mut f32)
    // in the platform's C convention (the module's default call convention).
    let func = unsafe { std::mem::transmute::<*const u8, UnaryFn>(c.code) };
    Ok(UnaryKernel {
        module: Some(c.module),
        func,
        name: f.name(),
        clif: c.clif,
        disasm: c.disasm,
    })
}

/// JIT-compiles `out[i] = pow(x[i], y[i])`.
pub fn compile_pow_kernel(opts: MathOptions) -> Result<PowKernel> {
    let body = move |b: &mut FunctionBuilder, xs: &[Value]| emit_pow_with(b, opts, xs[0], xs[1]);
    let c = build_loop("pow", 2, &body)?;
    // SAFETY: compiled with the signature (n, *const f32, *const f32, *mut f32).
    let func = unsafe { std::mem::transmute::<*const u8, BinaryFn>(c.code) };
    Ok(PowKernel {
        module: Some(c.module),
        func,
    })
}
