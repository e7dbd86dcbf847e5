//! Reading models saved by Apache MXNet 1.x.

pub mod params;
