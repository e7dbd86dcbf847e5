//! kiln-ir: the vocabulary every other part of kiln speaks.
//!
//! - [`DType`], [`Shape`] (numpy broadcasting), [`Tensor`] (owned host data);
//! - [`Op`]: the one op set, with shape/dtype inference ([`infer`]), reference semantics
//!   ([`interp`]) and vector-Jacobian products ([`vjp`]);
//! - [`FusedKernel`]: several ops run as one kernel, the backend-neutral form code generators
//!   lower;
//! - [`Graph`]: ops over petgraph, with text, DOT and JSON forms, run by the interpreter.
//!
//! `ir` knows nothing of execution engines: backends implement the same semantics faster and
//! are tested against [`interp`].

pub mod dtype;
pub mod error;
pub mod fused;
pub mod graph;
pub mod infer;
pub mod interp;
pub mod op;
pub mod random;
pub mod shape;
pub mod tensor;
pub mod vjp;

pub use dtype::DType;
pub use error::{Error, Result};
pub use fused::{FusedArg, FusedInst, FusedKernel, FusedKind};
pub use graph::{Graph, NodeId};
pub use op::{ArgReduceOp, BinaryOp, Op, PoolKind, ReduceOp, UnaryOp};
pub use shape::Shape;
pub use tensor::{DataRef, Element, Storage, Tensor, TensorType, TensorView};
