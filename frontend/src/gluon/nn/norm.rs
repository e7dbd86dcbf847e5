//! Normalization layers: BatchNorm, LayerNorm.
