//! `Parameter` and `ParameterDict`: named, shared, lazily shaped model state.

use super::init::Initializer;
use crate::autograd::GradReq;
use crate::context::Context;
use crate::ndarray::NDArray;
use kiln_ir::{DType, Error, Result, Shape};
use std::sync::{Arc, Mutex, MutexGuard};

/// A named model parameter: a handle, so cloning shares it (weight tying is two layers holding
/// one `Parameter`).
///
/// Its shape may have unknown dimensions (0) until the first forward pass tells the layer its
/// input size (gluon's deferred initialization): `initialize` then only records the
/// initializer, and the layer calls [`Parameter::finish_deferred_init`] with the full shape.
///
/// ```
/// use kiln_frontend::gluon::{init::Initializer, Parameter};
/// use kiln_frontend::{Context, Shape};
/// let w = Parameter::new("dense0_weight", [4, 0]);
/// assert!(w.data().is_err()); // not initialized yet
/// ```
#[derive(Clone, Debug)]
pub struct Parameter {
    state: Arc<Mutex<ParamState>>,
}

#[derive(Debug)]
struct ParamState {
    name: String,
    shape: Shape,
    dtype: DType,
    grad_req: GradReq,
    /// This parameter's own initializer, overriding the one given to `initialize`.
    init: Option<Arc<dyn Initializer>>,
    /// `initialize` was called before the shape was known (the block-wide initializer).
    deferred: Option<(Arc<dyn Initializer>, Context)>,
    data: Option<NDArray>,
    lr_mult: f64,
    wd_mult: f64,
}

impl Parameter {
    /// True when `self` and `other` are handles on one parameter (weight tying).
    pub fn same_as(&self, other: &Parameter) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }

    /// A parameter of `shape` (0 for dimensions learnt on the first forward), f32, grad_req write.
    pub fn new(name: impl Into<String>, shape: impl Into<Shape>) -> Self {
        Parameter {
            state: Arc::new(Mutex::new(ParamState {
                name: name.into(),
                shape: shape.into(),
                dtype: DType::F32,
                grad_req: GradReq::Write,
                init: None,
                deferred: None,
                data: None,
                lr_mult: 1.0,
                wd_mult: 1.0,
            })),
        }
    }

    /// This parameter with its own initializer (as gluon's `Parameter(init=...)`).
    pub fn with_init(self, init: Arc<dyn Initializer>) -> Self {
        self.lock().init = Some(init);
        self
    }

    /// This parameter with another dtype.
    pub fn with_dtype(self, dtype: DType) -> Self {
        self.lock().dtype = dtype;
        self
    }

    /// This parameter with another grad_req (`GradReq::Null` for state such as running means).
    pub fn with_grad_req(self, req: GradReq) -> Self {
        self.lock().grad_req = req;
        self
    }

    fn lock(&self) -> MutexGuard<'_, ParamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The full name (`dense0_weight`).
    pub fn name(&self) -> String {
        self.lock().name.clone()
    }

    /// The shape; unknown dimensions are 0 until deferred initialization completes.
    pub fn shape(&self) -> Shape {
        self.lock().shape.clone()
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.lock().dtype
    }

    /// How backward writes this parameter's gradient.
    pub fn grad_req(&self) -> GradReq {
        self.lock().grad_req
    }

    /// Changes the grad_req (re-attaching the gradient buffer when initialized).
    pub fn set_grad_req(&self, req: GradReq) -> Result<()> {
        let mut s = self.lock();
        s.grad_req = req;
        if let Some(d) = &s.data {
            d.attach_grad_with(req);
        }
        Ok(())
    }

    /// Learning-rate multiplier (`Trainer` scales this parameter's rate by it).
    pub fn lr_mult(&self) -> f64 {
        self.lock().lr_mult
    }

    /// Sets the learning-rate multiplier.
    pub fn set_lr_mult(&self, m: f64) {
        self.lock().lr_mult = m;
    }

    /// Weight-decay multiplier.
    pub fn wd_mult(&self) -> f64 {
        self.lock().wd_mult
    }

    /// Sets the weight-decay multiplier.
    pub fn set_wd_mult(&self, m: f64) {
        self.lock().wd_mult = m;
    }

    /// True once the parameter holds data.
    pub fn is_initialized(&self) -> bool {
        self.lock().data.is_some()
    }

    /// Initializes the value with this parameter's own initializer if it has one, else `init`.
    /// With unknown dimensions the initialization is deferred to the first forward pass.
    /// An initialized parameter is left alone unless `force_reinit`.
    pub fn initialize(
        &self,
        init: Arc<dyn Initializer>,
        ctx: Context,
        force_reinit: bool,
    ) -> Result<()> {
        let mut s = self.lock();
        if s.data.is_some() && !force_reinit {
            return Ok(());
        }
        if s.shape.contains(&0) {
            s.deferred = Some((init, ctx));
            s.data = None;
            return Ok(());
        }
        let (name, shape, dtype, req) = (s.name.clone(), s.shape.clone(), s.dtype, s.grad_req);
        let data = initial_value(&s.init, &init, &name, &shape, dtype, ctx)?;
        check_init_shape(&name, &shape, dtype, &data)?;
        data.attach_grad_with(req);
        s.data = Some(data);
        s.deferred = None;
        Ok(())
    }

    /// Completes a deferred initialization once the layer knows the full `shape` (its known
    /// dimensions must agree with the declared ones). Does nothing if already initialized
    /// with that shape.
    pub fn finish_deferred_init(&self, shape: impl Into<Shape>) -> Result<()> {
        let shape = shape.into();
        let mut s = self.lock();
        let declared = s.shape.clone();
        let compatible = declared.rank() == shape.rank()
            && declared
                .iter()
                .zip(shape.iter())
                .all(|(&d, &n)| d == 0 || d == n);
        if !compatible || shape.contains(&0) {
            return Err(Error::shape(
                "parameter",
                format!(
                    "{}: declared shape {declared} cannot take inferred shape {shape}",
                    s.name
                ),
            ));
        }
        if let Some(d) = &s.data {
            if d.shape() == &shape {
                return Ok(());
            }
        }
        let Some((init, ctx)) = s.deferred.clone() else {
            return Err(Error::invalid(
                "parameter",
                format!(
                    "{} is not initialized: call initialize() on the block (or its \
                     collect_params()) before the first forward pass",
                    s.name
                ),
            ));
        };
        s.shape = shape.clone();
        let (name, dtype, req) = (s.name.clone(), s.dtype, s.grad_req);
        let data = initial_value(&s.init, &init, &name, &shape, dtype, ctx)?;
        check_init_shape(&name, &shape, dtype, &data)?;
        data.attach_grad_with(req);
        s.data = Some(data);
        s.deferred = None;
        Ok(())
    }

    /// The value. Errors if the parameter is not initialized (or its initialization is still
    /// waiting for the first forward pass).
    pub fn data(&self) -> Result<NDArray> {
        let s = self.lock();
        match &s.data {
            Some(d) => Ok(d.clone()),
            None if s.deferred.is_some() => Err(Error::invalid(
                "parameter",
                format!(
                    "{} has deferred initialization: its shape {} is known only after the \
                     first forward pass",
                    s.name, s.shape
                ),
            )),
            None => Err(Error::invalid(
                "parameter",
                format!("{} is not initialized: call initialize() first", s.name),
            )),
        }
    }

    /// The gradient buffer (shares storage: in-place updates are visible to backward).
    pub fn grad(&self) -> Result<NDArray> {
        let d = self.data()?;
        if self.grad_req() == GradReq::Null {
            return Err(Error::Autograd(format!(
                "{} has grad_req null: it has no gradient",
                self.name()
            )));
        }
        d.grad()
    }

    /// Replaces the value (copied in place when shapes agree, so views stay valid; the first
    /// call on an uninitialized parameter adopts a copy of `value`).
    pub fn set_data(&self, value: &NDArray) -> Result<()> {
        let mut s = self.lock();
        let declared = s.shape.clone();
        let fits = declared.rank() == value.shape().rank()
            && declared
                .iter()
                .zip(value.shape().iter())
                .all(|(&d, &n)| d == 0 || d == n);
        if !fits {
            return Err(Error::shape(
                "set_data",
                format!(
                    "{}: shape {} does not fit the parameter's shape {declared}",
                    s.name,
                    value.shape()
                ),
            ));
        }
        if value.dtype() != s.dtype {
            return Err(Error::dtype(
                "set_data",
                format!(
                    "{}: dtype {} but the parameter is {}",
                    s.name,
                    value.dtype(),
                    s.dtype
                ),
            ));
        }
        match &s.data {
            Some(d) if d.shape() == value.shape() => d.assign(value),
            _ => {
                let data = value.copy()?;
                data.attach_grad_with(s.grad_req);
                s.shape = value.shape().clone();
                s.data = Some(data);
                s.deferred = None;
                Ok(())
            }
        }
    }

    /// Sets the gradient buffer to zeros.
    pub fn zero_grad(&self) -> Result<()> {
        if self.grad_req() == GradReq::Null || !self.is_initialized() {
            return Ok(());
        }
        self.grad()?.fill(0.0)
    }
}

/// The first value of a parameter: its own initializer is applied as is (as MXNet does for
/// `Parameter(init=...)`), the block-wide one by the parameter's name (biases to zero, ...).
fn initial_value(
    own: &Option<Arc<dyn Initializer>>,
    fallback: &Arc<dyn Initializer>,
    name: &str,
    shape: &Shape,
    dtype: DType,
    ctx: Context,
) -> Result<NDArray> {
    match own {
        Some(init) => init.init_weight(name, shape, dtype, ctx),
        None => fallback.init_param(name, shape, dtype, ctx),
    }
}

fn check_init_shape(name: &str, shape: &Shape, dtype: DType, data: &NDArray) -> Result<()> {
    if data.shape() != shape || data.dtype() != dtype {
        return Err(Error::shape(
            "initialize",
            format!(
                "{name}: initializer returned {} {}, expected {dtype} {shape}",
                data.dtype(),
                data.shape()
            ),
        ));
    }
    Ok(())
}

/// numpy's name for a dtype (`float32`), as gluon prints it.
fn numpy_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::U8 => "uint8",
        DType::Bool => "bool",
    }
}

/// A shape as Python writes a tuple: `(128, 784)`, `(10,)`, `()`.
fn python_tuple(shape: &Shape) -> String {
    let dims: Vec<String> = shape.dims().iter().map(|d| d.to_string()).collect();
    match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    }
}

/// Gluon's form: `Parameter dense0_weight (shape=(128, 0), dtype=float32)`, a dimension
/// still unknown before the first forward pass showing as 0.
impl std::fmt::Display for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Parameter {} (shape={}, dtype={})",
            self.name(),
            python_tuple(&self.shape()),
            numpy_name(self.dtype())
        )
    }
}

/// An ordered collection of parameters by full name (what `collect_params()` returns).
///
/// A dict made with [`ParameterDict::with_prefix`] also creates parameters, as a gluon
/// block's `self.params.get(name, shape=...)` does:
///
/// ```
/// use kiln_frontend::gluon::ParameterDict;
/// let mut params = ParameterDict::with_prefix("mydense0_");
/// let w = params.get_or_create("weight", [10, 0])?;
/// assert_eq!(w.name(), "mydense0_weight");
/// // Asking again gives the same parameter.
/// let again = params.get_or_create("weight", [10, 0])?;
/// assert!(again.same_as(&w));
/// assert_eq!(
///     params.to_string(),
///     "mydense0_ (\n  Parameter mydense0_weight (shape=(10, 0), dtype=float32)\n)"
/// );
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ParameterDict {
    prefix: String,
    params: Vec<Parameter>,
}

impl ParameterDict {
    /// An empty dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty dict whose [`get_or_create`](Self::get_or_create) names parameters
    /// `{prefix}{name}` (gluon's `ParameterDict(prefix=...)`).
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        ParameterDict {
            prefix: prefix.into(),
            params: Vec::new(),
        }
    }

    /// The prefix of the names this dict creates (empty for a collected dict).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The parameter `{prefix}{name}`, created with `shape` (0 for dimensions learnt on the
    /// first forward pass) when absent. An existing parameter must have a compatible shape:
    /// the same rank, and equal sizes wherever both are known.
    pub fn get_or_create(&mut self, name: &str, shape: impl Into<Shape>) -> Result<Parameter> {
        let full = format!("{}{name}", self.prefix);
        let shape = shape.into();
        if let Some(p) = self.get(&full) {
            let have = p.shape();
            let compatible = have.rank() == shape.rank()
                && have
                    .dims()
                    .iter()
                    .zip(shape.dims())
                    .all(|(a, b)| *a == 0 || *b == 0 || a == b);
            if !compatible {
                return Err(Error::shape(
                    "ParameterDict::get_or_create",
                    format!("{full} has shape {have}, asked for {shape}"),
                ));
            }
            return Ok(p.clone());
        }
        let p = Parameter::new(full, shape);
        self.params.push(p.clone());
        Ok(p)
    }

    /// Adds a parameter; a parameter already present (the same handle, as with weight tying)
    /// is kept once. Two different parameters with one name are an error.
    pub fn insert(&mut self, p: Parameter) -> Result<()> {
        let name = p.name();
        if let Some(existing) = self.params.iter().find(|q| q.name() == name) {
            if Arc::ptr_eq(&existing.state, &p.state) {
                return Ok(());
            }
            return Err(Error::invalid(
                "collect_params",
                format!("two different parameters are named {name}"),
            ));
        }
        self.params.push(p);
        Ok(())
    }

    /// Adds every parameter of `other`.
    pub fn extend(&mut self, other: ParameterDict) -> Result<()> {
        for p in other.params {
            self.insert(p)?;
        }
        Ok(())
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Parameter> {
        self.params.iter().find(|p| p.name() == name)
    }

    /// The parameters in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Parameter> {
        self.params.iter()
    }

    /// The names in insertion order.
    pub fn names(&self) -> Vec<String> {
        self.params.iter().map(|p| p.name()).collect()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Initializes every parameter (see [`Parameter::initialize`]).
    pub fn initialize(
        &self,
        init: Arc<dyn Initializer>,
        ctx: Context,
        force_reinit: bool,
    ) -> Result<()> {
        for p in &self.params {
            p.initialize(init.clone(), ctx, force_reinit)?;
        }
        Ok(())
    }

    /// Zeros every gradient buffer.
    pub fn zero_grad(&self) -> Result<()> {
        for p in &self.params {
            p.zero_grad()?;
        }
        Ok(())
    }

    /// Sets grad_req on every parameter.
    pub fn set_grad_req(&self, req: GradReq) -> Result<()> {
        for p in &self.params {
            p.set_grad_req(req)?;
        }
        Ok(())
    }
}

/// Gluon's form: the prefix, then one parameter a line in parentheses.
impl std::fmt::Display for ParameterDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} (", self.prefix)?;
        for p in &self.params {
            writeln!(f, "  {p}")?;
        }
        write!(f, ")")
    }
}

impl<'a> IntoIterator for &'a ParameterDict {
    type Item = &'a Parameter;
    type IntoIter = std::slice::Iter<'a, Parameter>;
    fn into_iter(self) -> Self::IntoIter {
        self.params.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_print_as_gluon_does() {
        let w = Parameter::new("dense0_weight", [128, 0]);
        assert_eq!(
            w.to_string(),
            "Parameter dense0_weight (shape=(128, 0), dtype=float32)"
        );
        let b = Parameter::new("dense0_bias", [10]).with_dtype(DType::F64);
        assert_eq!(
            b.to_string(),
            "Parameter dense0_bias (shape=(10,), dtype=float64)"
        );
        let mut dict = ParameterDict::new();
        dict.insert(w).unwrap();
        dict.insert(b).unwrap();
        assert_eq!(
            dict.to_string(),
            " (\n  Parameter dense0_weight (shape=(128, 0), dtype=float32)\n  Parameter dense0_bias (shape=(10,), dtype=float64)\n)"
        );
    }

    #[test]
    fn get_or_create_makes_once_and_checks_shapes() {
        let mut params = ParameterDict::with_prefix("block_");
        assert_eq!(params.prefix(), "block_");
        let w = params.get_or_create("weight", [3, 0]).unwrap();
        assert_eq!(w.name(), "block_weight");
        // A known size where the first call left 0 is compatible.
        assert!(params.get_or_create("weight", [3, 5]).unwrap().same_as(&w));
        assert_eq!(params.len(), 1);
        let err = params
            .get_or_create("weight", [4, 5])
            .unwrap_err()
            .to_string();
        assert!(err.contains("block_weight has shape"), "{err}");
        let err = params.get_or_create("weight", [3]).unwrap_err().to_string();
        assert!(err.contains("asked for"), "{err}");
        assert!(!params.get_or_create("bias", [3]).unwrap().same_as(&w));
        assert_eq!(params.names(), ["block_weight", "block_bias"]);
    }
}
