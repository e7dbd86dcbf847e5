//! gluon.nn layers (being written).
