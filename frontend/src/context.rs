//! Devices an array lives on.

use kiln_backends::{CpuBackend, Kernels};
use std::fmt;

/// The kind of device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// The host CPU.
    Cpu,
}

/// Where an array lives and which kernels run its ops (`Context::cpu()`; OpenCL devices join
/// later as another [`DeviceKind`]).
///
/// ```
/// use kiln_frontend::Context;
/// assert_eq!(Context::cpu().to_string(), "cpu(0)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Context {
    kind: DeviceKind,
    id: usize,
}

static CPU: CpuBackend = CpuBackend;

impl Context {
    /// The host CPU.
    pub fn cpu() -> Self {
        Context {
            kind: DeviceKind::Cpu,
            id: 0,
        }
    }

    /// The device kind.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// The device index within its kind.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The kernels that run ops on this device.
    pub fn kernels(&self) -> &'static dyn Kernels {
        match self.kind {
            DeviceKind::Cpu => &CPU,
        }
    }
}

impl Default for Context {
    fn default() -> Self {
        Context::cpu()
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DeviceKind::Cpu => write!(f, "cpu({})", self.id),
        }
    }
}
