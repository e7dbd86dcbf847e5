//! Saving and loading arrays and model parameters in the safetensors format, which Python
//! tools read directly (`safetensors.numpy.load_file`, `safetensors.torch.load_file`).
//!
//! - [`save`] / [`save_map`] / [`load`]: lists or named sets of arrays (MXNet's `nd.save` /
//!   `nd.load`). A list saved with [`save`] is stored under the names `"0"`, `"1"`, ...
//! - [`save_parameters`] / [`load_parameters`]: every parameter of a [`Block`].
//!
//! Every file is written atomically: the bytes go to a temporary file in the target's
//! directory, which is flushed to disk and then renamed over the target, so a crash mid-save
//! leaves either the old file or the new one, never half a file.
//!
//! Supported dtypes: f32, f64, i32, i64, u8 and bool (stored as safetensors `F32`, `F64`,
//! `I32`, `I64`, `U8`, `BOOL`, little-endian).

use super::block::Block;
use crate::context::Context;
use crate::ndarray::NDArray;
use kiln_ir::{with_data, DType, Error, Result, Shape, Storage, Tensor};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView as StView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// The `__metadata__` key holding the saved order of the tensor names (a JSON list), so
/// [`load`] returns arrays in the order they were saved.
const ORDER_KEY: &str = "kiln.order";

/// Saves `arrays` to `path` under the names `"0"`, `"1"`, ... (MXNet's `nd.save` of a list).
///
/// ```
/// use kiln_frontend::{gluon::serialize, NDArray};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("a.safetensors");
/// serialize::save(&path, &[NDArray::from_slice(&[1.0f32, 2.0])])?;
/// let back = serialize::load(&path)?;
/// assert_eq!(back[0].0, "0");
/// assert_eq!(back[0].1.to_vec::<f32>()?, vec![1.0, 2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save(path: impl AsRef<Path>, arrays: &[NDArray]) -> Result<()> {
    let named: Vec<(String, NDArray)> = arrays
        .iter()
        .enumerate()
        .map(|(i, a)| (i.to_string(), a.clone()))
        .collect();
    save_map(path, &named)
}

/// Saves named arrays to `path` (MXNet's `nd.save` of a dict). Names must be unique.
pub fn save_map<S: AsRef<str>>(path: impl AsRef<Path>, arrays: &[(S, NDArray)]) -> Result<()> {
    save_map_with_metadata(path.as_ref(), arrays, HashMap::new())
}

/// [`save_map`] with extra `__metadata__` entries (for files that carry more than arrays,
/// such as a trainer's state).
pub(crate) fn save_map_with_metadata<S: AsRef<str>>(
    path: &Path,
    arrays: &[(S, NDArray)],
    mut metadata: HashMap<String, String>,
) -> Result<()> {
    let mut tensors = Vec::with_capacity(arrays.len());
    let mut seen = std::collections::HashSet::new();
    for (name, array) in arrays {
        let name = name.as_ref();
        if !seen.insert(name) {
            return Err(Error::invalid(
                "save",
                format!("{}: the name {name:?} appears twice", path.display()),
            ));
        }
        tensors.push((name.to_string(), HostTensor::from_ndarray(array)?));
    }
    let order: Vec<&str> = arrays.iter().map(|(n, _)| n.as_ref()).collect();
    let order = serde_json::to_string(&order)
        .map_err(|e| Error::Format(format!("save: {}: {e}", path.display())))?;
    metadata.insert(ORDER_KEY.to_string(), order);
    let bytes = safetensors::serialize(tensors, Some(metadata))
        .map_err(|e| Error::Format(format!("save: {}: {e}", path.display())))?;
    write_atomically(path, &bytes)
}

/// Loads every array of a safetensors file, in the order they were saved (for files written
/// by other tools, which do not record an order, sorted by name with numbers compared by
/// value, so `"2"` comes before `"10"`). Arrays are on the CPU.
///
/// Errors (never panics) on a missing, truncated or corrupt file and on dtypes kiln does not
/// have (f16, bf16, i8, ...).
pub fn load(path: impl AsRef<Path>) -> Result<Vec<(String, NDArray)>> {
    load_with_metadata(path.as_ref()).map(|(arrays, _)| arrays)
}

/// [`load`], also returning the file's `__metadata__` entries.
#[allow(clippy::type_complexity)]
pub(crate) fn load_with_metadata(
    path: &Path,
) -> Result<(Vec<(String, NDArray)>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let corrupt = |e: safetensors::SafeTensorError| {
        Error::Format(format!(
            "load: {}: not a valid safetensors file ({e}); the file may be truncated or corrupt",
            path.display()
        ))
    };
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(corrupt)?;
    let st = SafeTensors::deserialize(&bytes).map_err(corrupt)?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let tensor = tensor_from_view(&view).map_err(|msg| {
            Error::Format(format!("load: {}: tensor {name:?}: {msg}", path.display()))
        })?;
        out.push((name, NDArray::from_tensor(tensor, Context::cpu())));
    }
    let saved_order: Option<Vec<String>> = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(ORDER_KEY))
        .and_then(|s| serde_json::from_str(s).ok());
    match saved_order {
        Some(order) if order.len() == out.len() => {
            let rank: HashMap<&str, usize> = order
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i))
                .collect();
            if out.iter().all(|(n, _)| rank.contains_key(n.as_str())) {
                out.sort_by_key(|(n, _)| rank[n.as_str()]);
            } else {
                out.sort_by(|a, b| natural_cmp(&a.0, &b.0));
            }
        }
        _ => out.sort_by(|a, b| natural_cmp(&a.0, &b.0)),
    }
    Ok((out, metadata.metadata().clone().unwrap_or_default()))
}

/// Saves every parameter of `block` (and its children) to `path`.
///
/// Names follow gluon 1.x's `save_parameters`: a parameter's full name with the block's own
/// prefix removed (a `sequential0_` net stores `sequential0_dense0_weight` as
/// `dense0_weight`), so the file loads into another instance of the same architecture whose
/// prefix differs (`sequential1_`). Parameters whose name does not start with the prefix
/// keep their full name. Errors if a parameter is not initialized.
pub fn save_parameters(block: &dyn Block, path: impl AsRef<Path>) -> Result<()> {
    let prefix = block.prefix();
    let params = block.collect_params()?;
    let mut named = Vec::with_capacity(params.len());
    for p in params.iter() {
        let data = p.data().map_err(|e| {
            Error::invalid(
                "save_parameters",
                format!("cannot save {}: {e}", path.as_ref().display()),
            )
        })?;
        named.push((stored_name(&prefix, &p.name()), data));
    }
    save_map(path, &named)
}

/// Loads parameters saved by [`save_parameters`] into `block`, placing them on `ctx`.
///
/// The file must hold exactly the block's parameters (same naming rule as
/// [`save_parameters`]) with matching shapes (a dimension still unknown — 0 — before the
/// first forward pass matches any size) and dtypes. Every problem is reported at once in
/// one error — missing parameters, unexpected names, wrong shapes, wrong dtypes — and on
/// any problem no parameter is changed. [`load_parameters_with`] can allow missing or
/// extra names.
pub fn load_parameters(block: &dyn Block, path: impl AsRef<Path>, ctx: Context) -> Result<()> {
    load_parameters_with(block, path, ctx, LoadOptions::default())
}

/// Relaxations of [`load_parameters_with`] (gluon's `allow_missing` and `ignore_extra`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Parameters absent from the file keep their current value instead of being an error.
    pub allow_missing: bool,
    /// Names in the file that are not parameters of the block are skipped instead of being
    /// an error.
    pub ignore_extra: bool,
}

/// [`load_parameters`] with [`LoadOptions`]; shape and dtype mismatches are always errors.
pub fn load_parameters_with(
    block: &dyn Block,
    path: impl AsRef<Path>,
    ctx: Context,
    options: LoadOptions,
) -> Result<()> {
    let path = path.as_ref();
    let loaded: BTreeMap<String, NDArray> = load(path)?.into_iter().collect();
    let prefix = block.prefix();
    let params = block.collect_params()?;
    let mut wanted = BTreeMap::new();
    for p in params.iter() {
        wanted.insert(stored_name(&prefix, &p.name()), p.clone());
    }
    let mut problems = Vec::new();
    for (name, p) in &wanted {
        let Some(value) = loaded.get(name) else {
            if options.allow_missing {
                continue;
            }
            problems.push(format!(
                "missing: {name} (parameter {}, shape {}, {})",
                p.name(),
                p.shape(),
                p.dtype()
            ));
            continue;
        };
        let declared = p.shape();
        let fits = declared.rank() == value.shape().rank()
            && declared
                .iter()
                .zip(value.shape().iter())
                .all(|(&d, &n)| d == 0 || d == n);
        if !fits {
            problems.push(format!(
                "wrong shape: {name}: the file has {}, the parameter is {declared}",
                value.shape()
            ));
        }
        if value.dtype() != p.dtype() {
            problems.push(format!(
                "wrong dtype: {name}: the file has {}, the parameter is {}",
                value.dtype(),
                p.dtype()
            ));
        }
    }
    for (name, value) in &loaded {
        if !wanted.contains_key(name) && !options.ignore_extra {
            problems.push(format!(
                "unexpected: {name} (shape {}, {}) is not a parameter of {}",
                value.shape(),
                value.dtype(),
                if prefix.is_empty() {
                    "the block"
                } else {
                    &prefix
                }
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid(
            "load_parameters",
            format!(
                "{} does not match the block ({} problem{}):\n  {}",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                problems.join("\n  ")
            ),
        ));
    }
    for (name, p) in &wanted {
        if let Some(value) = loaded.get(name) {
            p.set_data(&value.as_in_context(ctx))?;
        }
    }
    Ok(())
}

/// The name a parameter is stored under: its full name less the block's prefix.
fn stored_name(prefix: &str, full: &str) -> String {
    match full.strip_prefix(prefix) {
        Some(rest) if !prefix.is_empty() && !rest.is_empty() => rest.to_string(),
        _ => full.to_string(),
    }
}

/// Compares names with runs of digits compared by value (`"2" < "10"`).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, sa), (db, sb)) in ca.iter().zip(cb.iter()) {
        let ord = if *da && *db {
            let (ta, tb) = (sa.trim_start_matches('0'), sb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            sa.cmp(sb)
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// An array's shape, dtype and little-endian bytes, as safetensors wants them.
struct HostTensor {
    dtype: StDtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl HostTensor {
    fn from_ndarray(a: &NDArray) -> Result<HostTensor> {
        let shape = a.shape().iter().copied().collect();
        let (dtype, bytes) = a.with_view(|v| {
            let dtype = st_dtype(v.dtype());
            let bytes = with_data!(v.data, T, s => {
                let mut out = Vec::with_capacity(std::mem::size_of_val(s));
                for &x in s {
                    out.extend_from_slice(&LeBytes::le_bytes(x));
                }
                out
            });
            (dtype, bytes)
        })?;
        Ok(HostTensor {
            dtype,
            shape,
            bytes,
        })
    }
}

impl safetensors::View for HostTensor {
    fn dtype(&self) -> StDtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Little-endian encoding of one element (bool as one byte, 0 or 1).
trait LeBytes: Sized {
    type Bytes: AsRef<[u8]>;
    fn le_bytes(self) -> Self::Bytes;
}

macro_rules! le_bytes {
    ($($t:ty),*) => {$(
        impl LeBytes for $t {
            type Bytes = [u8; std::mem::size_of::<$t>()];
            fn le_bytes(self) -> Self::Bytes {
                self.to_le_bytes()
            }
        }
    )*};
}
le_bytes!(f32, f64, i32, i64, u8);

impl LeBytes for bool {
    type Bytes = [u8; 1];
    fn le_bytes(self) -> [u8; 1] {
        [u8::from(self)]
    }
}

fn st_dtype(d: DType) -> StDtype {
    match d {
        DType::F32 => StDtype::F32,
        DType::F64 => StDtype::F64,
        DType::I32 => StDtype::I32,
        DType::I64 => StDtype::I64,
        DType::U8 => StDtype::U8,
        DType::Bool => StDtype::BOOL,
    }
}

/// Decodes a safetensors tensor; the error names what is wrong.
fn tensor_from_view(v: &StView<'_>) -> std::result::Result<Tensor, String> {
    fn decode<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    let bytes = v.data();
    let storage = match v.dtype() {
        StDtype::F32 => Storage::F32(decode(bytes, f32::from_le_bytes)),
        StDtype::F64 => Storage::F64(decode(bytes, f64::from_le_bytes)),
        StDtype::I32 => Storage::I32(decode(bytes, i32::from_le_bytes)),
        StDtype::I64 => Storage::I64(decode(bytes, i64::from_le_bytes)),
        StDtype::U8 => Storage::U8(bytes.to_vec()),
        StDtype::BOOL => {
            if let Some(b) = bytes.iter().find(|&&b| b > 1) {
                return Err(format!("bool element with byte value {b} (must be 0 or 1)"));
            }
            Storage::Bool(bytes.iter().map(|&b| b == 1).collect())
        }
        other => {
            return Err(format!(
                "dtype {other} is not supported (kiln has f32, f64, i32, i64, u8, bool)"
            ))
        }
    };
    let shape = Shape::new(v.shape());
    Tensor::new(shape, storage).map_err(|e| e.to_string())
}

/// Writes `bytes` to `path` through a temporary file in the same directory, flushed to disk
/// and renamed over `path`: readers see the old file or the new one, never a partial write.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid("save", format!("{} is not a file path", path.display())))?;
    // A dot-prefixed name keeps a leftover (after a crash) out of plain directory listings.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", file_name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    // On failure `persist` hands the temporary back, and dropping it deletes the file.
    tmp.persist(path).map_err(|e| io(e.error))?;
    // Make the rename itself durable; directories cannot be opened for syncing everywhere,
    // so a failure here is not an error.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
