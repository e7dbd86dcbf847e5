//! Optimizers (being written).
