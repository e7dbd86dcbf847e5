//! kiln-frontend: NDArray, autograd and (later) gluon.
