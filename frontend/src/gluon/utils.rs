//! gluon `utils` (being written).
