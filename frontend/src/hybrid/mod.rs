//! hybridize: tracing blocks into graphs, running them cached, exporting them.


pub mod hybridize;
pub mod trace;

pub use trace::is_tracing;
