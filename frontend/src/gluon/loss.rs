//! gluon `loss` (being written).
