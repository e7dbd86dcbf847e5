//! gluon `trainer` (being written).
