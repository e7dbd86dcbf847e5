//! gluon `metric` (being written).
