//! gluon.data (being written).
