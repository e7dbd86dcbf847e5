//! The one error type of kiln.

/// Everything that can go wrong on user input: a bad shape, a wrong dtype, a corrupt file.
///
/// Messages name the op and the shapes involved, e.g.
/// `add: cannot broadcast shapes [2, 3] and [4]`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Shapes that an op cannot take.
    #[error("{op}: {msg}")]
    Shape {
        /// The op (or API function) that refused its input.
        op: String,
        /// What was wrong, with the shapes, dtypes or values involved.
        msg: String,
    },
    /// A dtype that an op cannot take.
    #[error("{op}: {msg}")]
    DType {
        /// The op (or API function) that refused its input.
        op: String,
        /// What was wrong, with the shapes, dtypes or values involved.
        msg: String,
    },
    /// A bad attribute or argument value.
    #[error("{op}: {msg}")]
    Invalid {
        /// The op (or API function) that refused its input.
        op: String,
        /// What was wrong, with the shapes, dtypes or values involved.
        msg: String,
    },
    /// Autograd misuse (no gradient attached, backward twice, ...).
    #[error("autograd: {0}")]
    Autograd(String),
    /// A malformed or inconsistent graph.
    #[error("graph: {0}")]
    Graph(String),
    /// A file or format problem.
    #[error("{0}")]
    Format(String),
    /// An I/O error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with kiln's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A shape error for `op`.
    pub fn shape(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Shape {
            op: op.into(),
            msg: msg.into(),
        }
    }
    /// A dtype error for `op`.
    pub fn dtype(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::DType {
            op: op.into(),
            msg: msg.into(),
        }
    }
    /// An invalid-argument error for `op`.
    pub fn invalid(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op: op.into(),
            msg: msg.into(),
        }
    }
}
