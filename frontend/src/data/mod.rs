//! Data sets and readers.

pub mod idx;
pub mod mnist;
