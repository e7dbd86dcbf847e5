//! `Sequential` and `HybridSequential`: containers that chain their children.

use super::basic::{Activation, Dense, Dropout, Embedding, Flatten, LeakyReLU};
use crate::gluon::block::{Block, HybridBlock};
use crate::gluon::name::{name_scope, unique_prefix};
use crate::hybrid::hybridize::{self, HybridState};
use crate::ndarray::NDArray;
use kiln_ir::Result;
use std::any::Any;
use std::fmt;
use std::sync::{Arc, RwLock};

/// One registered child: the block, its hybrid view when it has one, and how to print it.
struct Child {
    block: Arc<dyn Block>,
    hybrid: Option<Arc<dyn HybridBlock>>,
    describe: Box<dyn Fn() -> String + Send + Sync>,
}

/// The children list shared by both containers; `add` takes `&self`, as in gluon.
#[derive(Default)]
struct Children(RwLock<Vec<Child>>);

impl Children {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Child>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, child: Child) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
    }

    /// A snapshot of the blocks, so no lock is held while children run.
    fn blocks(&self) -> Vec<Arc<dyn Block>> {
        self.read().iter().map(|c| c.block.clone()).collect()
    }

    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        let mut y = x.clone();
        for b in self.blocks() {
            y = b.forward(&y)?;
        }
        Ok(y)
    }

    fn visit(&self, f: &mut dyn FnMut(&dyn Block)) {
        for b in self.blocks() {
            f(b.as_ref());
        }
    }

    /// gluon's `print(net)` layout: one `(i): layer` line per child, nested containers
    /// indented by two more spaces.
    fn fmt(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{name}(")?;
        for (i, c) in self.read().iter().enumerate() {
            let text = (c.describe)().replace('\n', "\n  ");
            writeln!(f, "  ({i}): {text}")?;
        }
        write!(f, ")")
    }
}

/// How a child prints: the layers of this module print as gluon does; any other block prints
/// as its type's name.
fn describer<T: Block + 'static>(block: Arc<T>) -> Box<dyn Fn() -> String + Send + Sync> {
    Box::new(move || {
        let any: &dyn Any = block.as_ref();
        macro_rules! known {
            ($($t:ty),*) => {$(
                if let Some(b) = any.downcast_ref::<$t>() {
                    return b.to_string();
                }
            )*};
        }
        known!(
            Dense,
            Activation,
            Dropout,
            Flatten,
            LeakyReLU,
            Embedding,
            Sequential,
            HybridSequential
        );
        let full = std::any::type_name::<T>();
        let base = full.split('<').next().unwrap_or(full);
        base.rsplit("::").next().unwrap_or(base).to_string()
    })
}

/// Runs its children one after another (`gluon.nn.Sequential`).
///
/// ```
/// use kiln_frontend::gluon::{init, nn, Block};
/// use kiln_frontend::{nd, Context};
/// use std::sync::Arc;
/// let net = nn::Sequential::new();
/// net.name_scope(|| {
///     net.add(nn::Dense::new(4).activation(nn::ActivationKind::Relu));
///     net.add(nn::Dense::new(2));
/// });
/// net.initialize(Arc::new(init::Normal::default()), Context::cpu())?;
/// let y = net.forward(&nd::ones([3, 5])?)?;
/// assert_eq!(y.shape().dims(), &[3, 2]);
/// assert_eq!(net.collect_params()?.names()[0], format!("{}dense0_weight", net.prefix()));
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
pub struct Sequential {
    prefix: String,
    children: Children,
}

impl Sequential {
    /// An empty container, prefix `sequential0_` (then `sequential1_`, ...).
    pub fn new() -> Self {
        Sequential {
            prefix: unique_prefix("sequential"),
            children: Children::default(),
        }
    }

    /// Appends a block.
    pub fn add(&self, block: impl Block + 'static) {
        let block = Arc::new(block);
        self.children.push(Child {
            block: block.clone(),
            hybrid: None,
            describe: describer(block),
        });
    }

    /// Runs `f` under this container's name scope: blocks created inside are named
    /// `{prefix}dense0_`, ...
    pub fn name_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        name_scope(&self.prefix, f)
    }

    /// The number of children.
    pub fn len(&self) -> usize {
        self.children.read().len()
    }

    /// True without children.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th child.
    pub fn get(&self, i: usize) -> Option<Arc<dyn Block>> {
        self.children.read().get(i).map(|c| c.block.clone())
    }
}

impl Default for Sequential {
    fn default() -> Self {
        Self::new()
    }
}

impl Block for Sequential {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    /// The children in order; an empty container is the identity.
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        self.children.forward(x)
    }

    fn visit_children(&self, f: &mut dyn FnMut(&dyn Block)) {
        self.children.visit(f)
    }
}

impl fmt::Display for Sequential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.children.fmt("Sequential", f)
    }
}

impl fmt::Debug for Sequential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A [`Sequential`] whose children are all [`HybridBlock`]s, so the whole chain can be
/// hybridized (`gluon.nn.HybridSequential`).
pub struct HybridSequential {
    prefix: String,
    children: Children,
    hybrid: HybridState,
}

impl HybridSequential {
    /// An empty container, prefix `hybridsequential0_` (then `hybridsequential1_`, ...).
    pub fn new() -> Self {
        HybridSequential {
            prefix: unique_prefix("hybridsequential"),
            children: Children::default(),
            hybrid: HybridState::default(),
        }
    }

    /// Appends a hybrid block.
    pub fn add(&self, block: impl HybridBlock + 'static) {
        let block = Arc::new(block);
        self.children.push(Child {
            block: block.clone(),
            hybrid: Some(block.clone()),
            describe: describer(block),
        });
    }

    /// Runs `f` under this container's name scope (see [`Sequential::name_scope`]).
    pub fn name_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        name_scope(&self.prefix, f)
    }

    /// The number of children.
    pub fn len(&self) -> usize {
        self.children.read().len()
    }

    /// True without children.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th child.
    pub fn get(&self, i: usize) -> Option<Arc<dyn HybridBlock>> {
        self.children.read().get(i).and_then(|c| c.hybrid.clone())
    }

    /// The children, in order.
    pub fn children(&self) -> Vec<Arc<dyn HybridBlock>> {
        self.children
            .read()
            .iter()
            .filter_map(|c| c.hybrid.clone())
            .collect()
    }
}

impl Default for HybridSequential {
    fn default() -> Self {
        Self::new()
    }
}

impl Block for HybridSequential {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    /// The children in order (one compiled graph once hybridized); an empty container is the
    /// identity.
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        hybridize::call(self, x)
    }

    fn visit_children(&self, f: &mut dyn FnMut(&dyn Block)) {
        self.children.visit(f)
    }
}

impl HybridBlock for HybridSequential {
    /// Each child's forward in turn: while this container is traced, the children (hybridized
    /// or not) are traced inline into its graph.
    fn hybrid_forward(&self, x: &NDArray) -> Result<NDArray> {
        self.children.forward(x)
    }

    fn hybrid_state(&self) -> &HybridState {
        &self.hybrid
    }

    fn visit_hybrid_children(&self, f: &mut dyn FnMut(&dyn HybridBlock)) {
        for c in self.children() {
            f(c.as_ref());
        }
    }
}

impl fmt::Display for HybridSequential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.children.fmt("HybridSequential", f)
    }
}

impl fmt::Debug for HybridSequential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
