//! gluon `serialize` (being written).
