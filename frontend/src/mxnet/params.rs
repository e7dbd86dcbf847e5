//! MXNet's `.params` files: the binary NDArray-list format written by `mx.nd.save`, gluon's
//! `export()` / `save_parameters()` and `mx.model.save_checkpoint`.
//!
//! # The format (little-endian throughout)
//!
//! ```text
//! u64 0x112                      list magic
//! u64 0                          reserved
//! u64 N                          number of arrays, then N arrays:
//!   u32 magic                    0xF993FAC9 (V2, MXNet 1.x) or 0xF993FACA (V3, NumPy shapes)
//!   i32 storage type             0 dense (1 row_sparse and 2 csr are refused; -1 only when empty)
//!   i32 ndim, ndim x i64 dims    the shape
//!   i32 dev_type, i32 dev_id     the context the array was saved from (1 cpu, 2 gpu, ...)
//!   i32 type flag                0 f32, 1 f64, 2 f16, 3 u8, 4 i32, 5 i8, 6 i64, 7 bool, ...
//!   data                         numel x element size bytes, C order
//! u64 M                          number of names (0, or N), then M times: u64 length + bytes
//! ```
//!
//! Older files use other array headers, read too: V1 (magic 0xF993FAC8, then `u32 ndim` and
//! i64 dims, no storage type) and the legacy layout, which has no magic at all: the first
//! `u32` is `ndim`, then `ndim` `u32` dims. An array whose shape is unknown (MXNet's empty
//! `NDArray()`: V2 `ndim` 0 or -1, V3 `ndim` -1, legacy `ndim` 0) ends right after its shape.
//!
//! Names from gluon's `export()` and `save_checkpoint` carry an `arg:` (learned parameter)
//! or `aux:` (auxiliary state, e.g. BatchNorm's running mean) prefix; [`MxParams`] sorts
//! them by prefix. `save_parameters()` and `nd.save` of a dict write plain names, and
//! `nd.save` of a list writes none.
//!
//! # Element types
//!
//! kiln has f32, f64, i32, i64, u8 and bool tensors. The other MXNet types are widened
//! exactly: f16 and bf16 to f32, i8, i16 and u16 to i32, u32 to i64; u64 becomes i64 when
//! every value fits (otherwise an error). [`StoredArray::source_dtype`] keeps the type the
//! file used. The writer writes each tensor in its own kiln type.
//!
//! # Hostile input
//!
//! Every count and length is checked against the bytes that remain before anything is
//! allocated, and every size computation is checked for overflow, so a truncated, corrupt
//! or hostile file is an [`Error::Format`] naming the byte offset and the array (or name),
//! never a panic or a huge allocation.
//!
//! ```
//! use kiln_frontend::mxnet::params::{read_params, write_params, MxParams};
//! use kiln_ir::Tensor;
//! let mut p = MxParams::default();
//! p.args.push(("fc_weight".into(), Tensor::from_vec(vec![1.0f32, 2.0], [1, 2])?));
//! p.auxs.push(("bn_moving_mean".into(), Tensor::from_vec(vec![0.5f32], [1])?));
//! let bytes = write_params(&p)?;
//! let back = read_params(&bytes)?;
//! assert_eq!(back, p);
//! assert_eq!(back.arg("fc_weight").unwrap().shape().dims(), &[1, 2]);
//! # Ok::<(), kiln_ir::Error>(())
//! ```

use kiln_ir::{DType, Error, Result, Shape, Storage, Tensor};
use std::collections::HashSet;
use std::path::Path;

/// The magic number at the start of an NDArray-list file.
pub const LIST_MAGIC: u64 = 0x112;
/// The array magic of MXNet's first versioned header (no storage type).
pub const NDARRAY_V1_MAGIC: u32 = 0xF993_FAC8;
/// The array magic of MXNet 1.x (storage type, i64 dims).
pub const NDARRAY_V2_MAGIC: u32 = 0xF993_FAC9;
/// The array magic of arrays saved with NumPy shape semantics (`npx.set_np()`).
pub const NDARRAY_V3_MAGIC: u32 = 0xF993_FACA;

/// The prefix of learned parameters in exported files.
pub const ARG_PREFIX: &str = "arg:";
/// The prefix of auxiliary states in exported files.
pub const AUX_PREFIX: &str = "aux:";

/// The smallest number of bytes one array can take (a legacy empty array: its `ndim`).
const MIN_ARRAY_BYTES: usize = 4;
/// The smallest number of bytes one name can take (its length).
const MIN_NAME_BYTES: usize = 8;

/// The header layout an array was stored with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderLayout {
    /// No magic: `u32 ndim`, `ndim` x `u32` dims, context, type flag, data.
    Legacy,
    /// Magic [`NDARRAY_V1_MAGIC`], `u32 ndim`, i64 dims, context, type flag, data.
    V1,
    /// Magic [`NDARRAY_V2_MAGIC`], storage type, `i32 ndim`, i64 dims, context, type flag,
    /// data: what MXNet 1.x writes.
    V2,
    /// Magic [`NDARRAY_V3_MAGIC`]: as V2, with NumPy shape semantics (`ndim` 0 is a scalar
    /// and a zero dim an empty array). MXNet reads it only under `npx.set_np()`.
    V3,
}

/// An element type as MXNet (mshadow) numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MxDType {
    /// `float32`, flag 0.
    F32,
    /// `float64`, flag 1.
    F64,
    /// `float16`, flag 2 (read as f32).
    F16,
    /// `uint8`, flag 3.
    U8,
    /// `int32`, flag 4.
    I32,
    /// `int8`, flag 5 (read as i32).
    I8,
    /// `int64`, flag 6.
    I64,
    /// `bool`, flag 7.
    Bool,
    /// `int16`, flag 8 (read as i32).
    I16,
    /// `uint16`, flag 9 (read as i32).
    U16,
    /// `uint32`, flag 10 (read as i64).
    U32,
    /// `uint64`, flag 11 (read as i64 when every value fits).
    U64,
    /// `bfloat16`, flag 12 (read as f32).
    BF16,
}

impl MxDType {
    /// The type for an mshadow type flag.
    pub fn from_flag(flag: i32) -> Option<MxDType> {
        Some(match flag {
            0 => MxDType::F32,
            1 => MxDType::F64,
            2 => MxDType::F16,
            3 => MxDType::U8,
            4 => MxDType::I32,
            5 => MxDType::I8,
            6 => MxDType::I64,
            7 => MxDType::Bool,
            8 => MxDType::I16,
            9 => MxDType::U16,
            10 => MxDType::U32,
            11 => MxDType::U64,
            12 => MxDType::BF16,
            _ => return None,
        })
    }

    /// The mshadow type flag.
    pub fn flag(self) -> i32 {
        match self {
            MxDType::F32 => 0,
            MxDType::F64 => 1,
            MxDType::F16 => 2,
            MxDType::U8 => 3,
            MxDType::I32 => 4,
            MxDType::I8 => 5,
            MxDType::I64 => 6,
            MxDType::Bool => 7,
            MxDType::I16 => 8,
            MxDType::U16 => 9,
            MxDType::U32 => 10,
            MxDType::U64 => 11,
            MxDType::BF16 => 12,
        }
    }

    /// Bytes per element in the file.
    pub fn size_of(self) -> usize {
        match self {
            MxDType::U8 | MxDType::I8 | MxDType::Bool => 1,
            MxDType::F16 | MxDType::I16 | MxDType::U16 | MxDType::BF16 => 2,
            MxDType::F32 | MxDType::I32 | MxDType::U32 => 4,
            MxDType::F64 | MxDType::I64 | MxDType::U64 => 8,
        }
    }

    /// MXNet's name for the type (`float16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MxDType::F32 => "float32",
            MxDType::F64 => "float64",
            MxDType::F16 => "float16",
            MxDType::U8 => "uint8",
            MxDType::I32 => "int32",
            MxDType::I8 => "int8",
            MxDType::I64 => "int64",
            MxDType::Bool => "bool",
            MxDType::I16 => "int16",
            MxDType::U16 => "uint16",
            MxDType::U32 => "uint32",
            MxDType::U64 => "uint64",
            MxDType::BF16 => "bfloat16",
        }
    }

    /// The kiln dtype an array of this type is read as.
    pub fn kiln_dtype(self) -> DType {
        match self {
            MxDType::F32 | MxDType::F16 | MxDType::BF16 => DType::F32,
            MxDType::F64 => DType::F64,
            MxDType::U8 => DType::U8,
            MxDType::I32 | MxDType::I8 | MxDType::I16 | MxDType::U16 => DType::I32,
            MxDType::I64 | MxDType::U32 | MxDType::U64 => DType::I64,
            MxDType::Bool => DType::Bool,
        }
    }

    /// The MXNet type a kiln dtype is written as.
    pub fn of(dtype: DType) -> MxDType {
        match dtype {
            DType::F32 => MxDType::F32,
            DType::F64 => MxDType::F64,
            DType::I32 => MxDType::I32,
            DType::I64 => MxDType::I64,
            DType::U8 => MxDType::U8,
            DType::Bool => MxDType::Bool,
        }
    }
}

/// The device an array was saved from (MXNet's `Context`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceContext {
    /// 1 cpu, 2 gpu, 3 cpu_pinned, 5 cpu_shared.
    pub dev_type: i32,
    /// The device number.
    pub dev_id: i32,
}

impl DeviceContext {
    /// `cpu(0)`, what the writer records.
    pub const CPU: DeviceContext = DeviceContext {
        dev_type: 1,
        dev_id: 0,
    };
}

/// One array of an NDArray-list file, with what the file said about it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredArray {
    /// The data, or `None` for an array of unknown shape (MXNet's empty `NDArray()`).
    pub tensor: Option<Tensor>,
    /// The header layout.
    pub layout: HeaderLayout,
    /// The element type in the file (the tensor may be wider; see the module docs).
    pub source_dtype: MxDType,
    /// The device it was saved from.
    pub context: DeviceContext,
}

impl StoredArray {
    /// An array to be written with the V2 header (V3 for shapes V2 cannot express: rank 0
    /// or a zero dim), from `cpu(0)`.
    pub fn new(tensor: Tensor) -> StoredArray {
        let dims = tensor.shape().dims();
        let layout = if dims.is_empty() || dims.contains(&0) {
            HeaderLayout::V3
        } else {
            HeaderLayout::V2
        };
        StoredArray {
            source_dtype: MxDType::of(tensor.dtype()),
            tensor: Some(tensor),
            layout,
            context: DeviceContext::CPU,
        }
    }
}

/// The contents of an NDArray-list file: arrays and their names (none, or one per array).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NdArrayList {
    /// The arrays, in file order.
    pub arrays: Vec<StoredArray>,
    /// The names, empty or as many as `arrays`.
    pub names: Vec<String>,
}

/// The parameters of an MXNet model, sorted by name prefix.
///
/// Names are stored without their `arg:` / `aux:` prefix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MxParams {
    /// Learned parameters (`arg:NAME` in the file), in file order.
    pub args: Vec<(String, Tensor)>,
    /// Auxiliary states (`aux:NAME`), in file order.
    pub auxs: Vec<(String, Tensor)>,
    /// Arrays with neither prefix (`save_parameters`, `nd.save` of a dict), named as in the
    /// file; the arrays of a file without names are named by their index (`"0"`, `"1"`, ...).
    pub other: Vec<(String, Tensor)>,
}

impl MxParams {
    /// The learned parameter called `name` (without the `arg:` prefix).
    pub fn arg(&self, name: &str) -> Option<&Tensor> {
        self.args.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The auxiliary state called `name` (without the `aux:` prefix).
    pub fn aux(&self, name: &str) -> Option<&Tensor> {
        self.auxs.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Looks a name up in `args`, then `auxs`, then `other`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.arg(name)
            .or_else(|| self.aux(name))
            .or_else(|| self.other.iter().find(|(n, _)| n == name).map(|(_, t)| t))
    }

    /// The number of arrays.
    pub fn len(&self) -> usize {
        self.args.len() + self.auxs.len() + self.other.len()
    }

    /// Whether there are no arrays.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sorts a file's arrays by prefix. Errors on an empty (unknown-shape) array, on a name
    /// list whose length is not the array count, and on a name that appears twice.
    pub fn from_list(list: NdArrayList) -> Result<MxParams> {
        let n = list.arrays.len();
        if !list.names.is_empty() && list.names.len() != n {
            return Err(fmt_err(format!(
                "{} names for {n} arrays (a file has no names or one per array)",
                list.names.len()
            )));
        }
        let names: Vec<String> = if list.names.is_empty() {
            (0..n).map(|i| i.to_string()).collect()
        } else {
            list.names
        };
        let mut seen = HashSet::new();
        let mut out = MxParams::default();
        for (i, (name, array)) in names.into_iter().zip(list.arrays).enumerate() {
            if !seen.insert(name.clone()) {
                return Err(fmt_err(format!(
                    "array {i}: the name {name:?} appears twice"
                )));
            }
            let Some(tensor) = array.tensor else {
                return Err(fmt_err(format!(
                    "array {i} ({name:?}) is an empty NDArray with no shape, not a parameter"
                )));
            };
            if let Some(rest) = name.strip_prefix(ARG_PREFIX) {
                out.args.push((rest.to_string(), tensor));
            } else if let Some(rest) = name.strip_prefix(AUX_PREFIX) {
                out.auxs.push((rest.to_string(), tensor));
            } else {
                out.other.push((name, tensor));
            }
        }
        Ok(out)
    }

    /// The file contents: `arg:` names, then `aux:` names, then the others as they are.
    pub fn to_list(&self) -> NdArrayList {
        let mut list = NdArrayList::default();
        let groups = [
            (ARG_PREFIX, &self.args),
            (AUX_PREFIX, &self.auxs),
            ("", &self.other),
        ];
        for (prefix, group) in groups {
            for (name, t) in group {
                list.names.push(format!("{prefix}{name}"));
                list.arrays.push(StoredArray::new(t.clone()));
            }
        }
        list
    }
}

/// Reads a `.params` file (see [`read_params`]).
pub fn load_params(path: impl AsRef<Path>) -> Result<MxParams> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    read_params(&bytes).map_err(|e| Error::Format(format!("{}: {e}", path.display())))
}

/// Parses `.params` bytes into parameters sorted by their `arg:` / `aux:` prefix.
pub fn read_params(bytes: &[u8]) -> Result<MxParams> {
    MxParams::from_list(read_ndarrays(bytes)?)
}

/// Serializes parameters with `arg:` / `aux:` prefixes, as gluon's `export()` does.
pub fn write_params(params: &MxParams) -> Result<Vec<u8>> {
    write_ndarrays(&params.to_list())
}

/// Writes a `.params` file (see [`write_params`]).
pub fn save_params(path: impl AsRef<Path>, params: &MxParams) -> Result<()> {
    let path = path.as_ref();
    let bytes = write_params(params)?;
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Reads an NDArray-list file as it is (see [`read_ndarrays`]).
pub fn load_ndarrays(path: impl AsRef<Path>) -> Result<NdArrayList> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    read_ndarrays(&bytes).map_err(|e| Error::Format(format!("{}: {e}", path.display())))
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn fmt_err(msg: String) -> Error {
    Error::Format(format!("mxnet params: {msg}"))
}

/// A bounded little-endian reader that names where it failed.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// What is being read ("array 3 of 7"), for messages.
    what: String,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn err(&self, msg: impl std::fmt::Display) -> Error {
        fmt_err(format!("{}: {msg} (at byte {})", self.what, self.pos))
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "the file ends inside {field}: it needs {n} bytes, {} remain",
                self.remaining()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u32(&mut self, field: &str) -> Result<u32> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn i32(&mut self, field: &str) -> Result<i32> {
        self.array(field).map(i32::from_le_bytes)
    }

    fn u64(&mut self, field: &str) -> Result<u64> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// Reads a count and checks that `count * min_each` bytes remain.
    fn count(&mut self, field: &str, min_each: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(field)?;
        let fits = usize::try_from(n).ok().filter(|&n| {
            n.checked_mul(min_each)
                .is_some_and(|b| b <= self.remaining())
        });
        fits.ok_or_else(|| {
            fmt_err(format!(
                "{}: {field} is {n} (at byte {at}), more than the {} remaining bytes can hold",
                self.what,
                self.remaining()
            ))
        })
    }
}

/// Parses an NDArray-list file: every array with its header details, and the names.
pub fn read_ndarrays(bytes: &[u8]) -> Result<NdArrayList> {
    let mut r = Reader {
        bytes,
        pos: 0,
        what: "the file header".into(),
    };
    let magic = r.u64("the list magic")?;
    if magic != LIST_MAGIC {
        return Err(fmt_err(format!(
            "not an MXNet NDArray file: the first 8 bytes are {magic:#x}, not the list magic {LIST_MAGIC:#x}"
        )));
    }
    r.u64("the reserved field")?;
    let n = r.count("the array count", MIN_ARRAY_BYTES)?;
    let mut arrays = Vec::with_capacity(n);
    for i in 0..n {
        r.what = format!("array {i} of {n}");
        arrays.push(read_array(&mut r)?);
    }
    r.what = "the name list".into();
    let m = r.count("the name count", MIN_NAME_BYTES)?;
    if m != 0 && m != n {
        return Err(r.err(format!(
            "{m} names for {n} arrays (a file has no names or one per array)"
        )));
    }
    let mut names = Vec::with_capacity(m);
    for i in 0..m {
        r.what = format!("name {i} of {m}");
        let len = r.count("the name length", 1)?;
        let at = r.pos;
        let raw = r.take(len, "the name")?;
        let name = std::str::from_utf8(raw).map_err(|_| {
            fmt_err(format!(
                "name {i} of {m} (at byte {at}) is not valid UTF-8: {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(64)])
            ))
        })?;
        names.push(name.to_string());
    }
    if r.remaining() != 0 {
        return Err(fmt_err(format!(
            "{} unexpected bytes after the name list (at byte {})",
            r.remaining(),
            r.pos
        )));
    }
    Ok(NdArrayList { arrays, names })
}

fn read_array(r: &mut Reader) -> Result<StoredArray> {
    let first = r.u32("the array magic")?;
    let layout = match first {
        NDARRAY_V1_MAGIC => HeaderLayout::V1,
        NDARRAY_V2_MAGIC => HeaderLayout::V2,
        NDARRAY_V3_MAGIC => HeaderLayout::V3,
        _ => HeaderLayout::Legacy,
    };
    let mut storage_type = 0;
    if matches!(layout, HeaderLayout::V2 | HeaderLayout::V3) {
        let at = r.pos;
        storage_type = r.i32("the storage type")?;
        match storage_type {
            0 | -1 => {}
            1 | 2 => {
                let kind = if storage_type == 1 {
                    "row_sparse"
                } else {
                    "csr"
                };
                return Err(r.err(format!(
                    "sparse storage ({kind}) is not supported; save the array dense \
                     (.tostype('default')) in MXNet"
                )));
            }
            s => {
                return Err(fmt_err(format!(
                    "{}: unknown storage type {s} (at byte {at})",
                    r.what
                )))
            }
        }
    }
    let unknown = |layout| StoredArray {
        tensor: None,
        layout,
        source_dtype: MxDType::F32,
        context: DeviceContext::CPU,
    };
    // The shape; `None` is an unknown shape (an empty NDArray).
    let dims: Option<Vec<usize>> = match layout {
        HeaderLayout::Legacy => {
            let ndim = first as usize;
            if ndim == 0 {
                None
            } else {
                let raw = r.take_dims(ndim, 4)?;
                Some(
                    raw.chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
                        .collect(),
                )
            }
        }
        HeaderLayout::V1 => {
            let ndim = r.u32("ndim")? as usize;
            if ndim == 0 {
                None
            } else {
                Some(read_i64_dims(r, ndim, layout)?)
            }
        }
        HeaderLayout::V2 | HeaderLayout::V3 => {
            let at = r.pos;
            let ndim = r.i32("ndim")?;
            match ndim {
                -1 => None,
                0 if layout == HeaderLayout::V2 => None,
                n if n < 0 => {
                    return Err(fmt_err(format!(
                        "{}: negative ndim {n} (at byte {at})",
                        r.what
                    )))
                }
                n => read_i64_dims_or_unknown(r, n as usize, layout)?,
            }
        }
    };
    let Some(dims) = dims else {
        return Ok(unknown(layout));
    };
    if storage_type == -1 {
        return Err(r.err(format!(
            "storage type -1 (undefined) on an array of shape {dims:?}"
        )));
    }
    let at = r.pos;
    let dev_type = r.i32("the device type")?;
    let dev_id = r.i32("the device id")?;
    if !matches!(dev_type, 1 | 2 | 3 | 5) {
        return Err(fmt_err(format!(
            "{}: unknown device type {dev_type} (at byte {at}; 1 cpu, 2 gpu, 3 cpu_pinned, \
             5 cpu_shared)",
            r.what
        )));
    }
    let at = r.pos;
    let flag = r.i32("the type flag")?;
    let Some(dt) = MxDType::from_flag(flag) else {
        return Err(fmt_err(format!(
            "{}: unknown type flag {flag} (at byte {at}; MXNet's are 0 to 12)",
            r.what
        )));
    };
    // The product of the nonzero dims must fit too: an empty array of shape
    // [0, 2^40, 2^40] would overflow stride computations later.
    let numel = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d.max(1)))
        .map(|n| if dims.contains(&0) { 0 } else { n });
    let nbytes = numel.and_then(|n| n.checked_mul(dt.size_of()).map(|b| (n, b)));
    let Some((numel, nbytes)) = nbytes.filter(|&(_, b)| b <= r.remaining()) else {
        if nbytes.is_none() {
            return Err(r.err(format!(
                "the shape {dims:?} is too large: its size in bytes overflows"
            )));
        }
        return Err(r.err(format!(
            "the data of shape {dims:?} of {} needs {} bytes, {} remain",
            dt.name(),
            nbytes.map_or(0, |(_, b)| b),
            r.remaining()
        )));
    };
    let at = r.pos;
    let data = r.take(nbytes, "the data")?;
    let storage = decode(dt, data).map_err(|m| {
        fmt_err(format!(
            "{}: {m} (data at byte {at}, shape {dims:?})",
            r.what
        ))
    })?;
    debug_assert_eq!(storage.len(), numel);
    let tensor = Tensor::new(Shape::new(&dims), storage)?;
    Ok(StoredArray {
        tensor: Some(tensor),
        layout,
        source_dtype: dt,
        context: DeviceContext { dev_type, dev_id },
    })
}

impl Reader<'_> {
    /// Takes `ndim` dims of `size` bytes each, checking the length first.
    fn take_dims(&mut self, ndim: usize, size: usize) -> Result<&[u8]> {
        match ndim.checked_mul(size) {
            Some(n) if n <= self.remaining() => self.take(n, "the shape"),
            _ => Err(self.err(format!(
                "ndim {ndim} needs {ndim} x {size} shape bytes, {} remain",
                self.remaining()
            ))),
        }
    }
}

/// Reads `ndim` i64 dims; a negative dim is an error.
fn read_i64_dims(r: &mut Reader, ndim: usize, layout: HeaderLayout) -> Result<Vec<usize>> {
    read_i64_dims_or_unknown(r, ndim, layout)?
        .ok_or_else(|| r.err("an unknown (-1) dim in a V1 shape"))
}

/// Reads `ndim` i64 dims; a -1 dim makes the shape unknown (V2, V3), other negative dims
/// and dims beyond `usize` are errors.
fn read_i64_dims_or_unknown(
    r: &mut Reader,
    ndim: usize,
    layout: HeaderLayout,
) -> Result<Option<Vec<usize>>> {
    let at = r.pos;
    let raw = r.take_dims(ndim, 8)?;
    let mut dims = Vec::with_capacity(ndim);
    let mut unknown = false;
    for c in raw.chunks_exact(8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let d = i64::from_le_bytes(a);
        if d == -1 && layout != HeaderLayout::V1 {
            unknown = true;
            continue;
        }
        let Ok(d) = usize::try_from(d) else {
            return Err(fmt_err(format!(
                "{}: bad dim {d} in a shape of {ndim} dims (at byte {at})",
                r.what
            )));
        };
        dims.push(d);
    }
    Ok((!unknown).then_some(dims))
}

/// Converts little-endian element bytes (whose length is a multiple of the element size).
fn decode(dt: MxDType, data: &[u8]) -> std::result::Result<Storage, String> {
    fn each<const N: usize, T>(data: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        data.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    Ok(match dt {
        MxDType::F32 => Storage::F32(each(data, f32::from_le_bytes)),
        MxDType::F64 => Storage::F64(each(data, f64::from_le_bytes)),
        MxDType::F16 => Storage::F32(each(data, |a| f16_to_f32(u16::from_le_bytes(a)))),
        MxDType::BF16 => Storage::F32(each(data, |a| {
            f32::from_bits(u32::from(u16::from_le_bytes(a)) << 16)
        })),
        MxDType::U8 => Storage::U8(data.to_vec()),
        MxDType::Bool => Storage::Bool(data.iter().map(|&b| b != 0).collect()),
        MxDType::I8 => Storage::I32(data.iter().map(|&b| i32::from(b as i8)).collect()),
        MxDType::I16 => Storage::I32(each(data, |a| i32::from(i16::from_le_bytes(a)))),
        MxDType::U16 => Storage::I32(each(data, |a| i32::from(u16::from_le_bytes(a)))),
        MxDType::I32 => Storage::I32(each(data, i32::from_le_bytes)),
        MxDType::U32 => Storage::I64(each(data, |a| i64::from(u32::from_le_bytes(a)))),
        MxDType::I64 => Storage::I64(each(data, i64::from_le_bytes)),
        MxDType::U64 => {
            let v = each(data, u64::from_le_bytes);
            if let Some((i, x)) = v.iter().enumerate().find(|(_, &x)| x > i64::MAX as u64) {
                return Err(format!(
                    "uint64 element {i} is {x}, beyond int64 (kiln reads uint64 as int64)"
                ));
            }
            Storage::I64(v.into_iter().map(|x| x as i64).collect())
        }
    })
}

/// Converts an IEEE half-precision value to f32 (exactly: every f16 is an f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let negative = h & 0x8000 != 0;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let sign = u32::from(negative) << 31;
    match exp {
        0 => {
            // Zero or subnormal: mant x 2^-24, exact in f32.
            let v = mant as f32 * (1.0 / 16_777_216.0);
            if negative {
                -v
            } else {
                v
            }
        }
        31 => f32::from_bits(sign | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13)),
    }
}

/// Serializes an NDArray-list: each array with its recorded layout and context, in its
/// tensor's type; an unknown-shape array as MXNet writes an empty `NDArray()`.
///
/// Errors when a shape cannot be written in the array's layout (rank 0 outside V3, a dim
/// beyond `u32` in the legacy layout) or when the names are neither empty nor one per
/// array. (A zero dim is written in any layout, as MXNet's saver does, though MXNet reads
/// it back only from V3; [`StoredArray::new`] picks V3 for such shapes.)
pub fn write_ndarrays(list: &NdArrayList) -> Result<Vec<u8>> {
    let n = list.arrays.len();
    if !list.names.is_empty() && list.names.len() != n {
        return Err(fmt_err(format!(
            "cannot write {} names for {n} arrays (give none or one per array)",
            list.names.len()
        )));
    }
    let mut out = Vec::new();
    out.extend_from_slice(&LIST_MAGIC.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(n as u64).to_le_bytes());
    for (i, a) in list.arrays.iter().enumerate() {
        write_array(&mut out, a).map_err(|m| {
            let name = list
                .names
                .get(i)
                .map(|s| format!(" ({s:?})"))
                .unwrap_or_default();
            fmt_err(format!("cannot write array {i}{name}: {m}"))
        })?;
    }
    out.extend_from_slice(&(list.names.len() as u64).to_le_bytes());
    for name in &list.names {
        out.extend_from_slice(&(name.len() as u64).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    Ok(out)
}

fn write_array(out: &mut Vec<u8>, a: &StoredArray) -> std::result::Result<(), String> {
    let i32le = |out: &mut Vec<u8>, v: i32| out.extend_from_slice(&v.to_le_bytes());
    let Some(t) = &a.tensor else {
        // An empty NDArray: the shape says "unknown" and nothing follows.
        match a.layout {
            HeaderLayout::Legacy => out.extend_from_slice(&0u32.to_le_bytes()),
            HeaderLayout::V1 => {
                out.extend_from_slice(&NDARRAY_V1_MAGIC.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
            }
            HeaderLayout::V2 | HeaderLayout::V3 => {
                let magic = if a.layout == HeaderLayout::V2 {
                    NDARRAY_V2_MAGIC
                } else {
                    NDARRAY_V3_MAGIC
                };
                out.extend_from_slice(&magic.to_le_bytes());
                i32le(out, -1);
                i32le(out, -1);
            }
        }
        return Ok(());
    };
    let dims = t.shape().dims();
    let shape_err = |why: &str| format!("shape {dims:?} {why} in the {:?} layout", a.layout);
    if a.layout != HeaderLayout::V3 && dims.is_empty() {
        // Only V3 has scalars: elsewhere ndim 0 means an empty NDArray.
        return Err(shape_err("(rank 0) cannot be written"));
    }
    let ndim_i32 = i32::try_from(dims.len()).map_err(|_| shape_err("has too many dims"))?;
    match a.layout {
        HeaderLayout::Legacy => {
            out.extend_from_slice(&(ndim_i32 as u32).to_le_bytes());
            for &d in dims {
                let d = u32::try_from(d).map_err(|_| shape_err("has a dim beyond u32"))?;
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
        HeaderLayout::V1 | HeaderLayout::V2 | HeaderLayout::V3 => {
            let magic = match a.layout {
                HeaderLayout::V1 => NDARRAY_V1_MAGIC,
                HeaderLayout::V2 => NDARRAY_V2_MAGIC,
                _ => NDARRAY_V3_MAGIC,
            };
            out.extend_from_slice(&magic.to_le_bytes());
            if a.layout != HeaderLayout::V1 {
                i32le(out, 0); // dense storage
            }
            i32le(out, ndim_i32);
            for &d in dims {
                let d = i64::try_from(d).map_err(|_| shape_err("has a dim beyond i64"))?;
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
    }
    i32le(out, a.context.dev_type);
    i32le(out, a.context.dev_id);
    i32le(out, MxDType::of(t.dtype()).flag());
    t.write_le_bytes(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Little-endian byte builder for hand-made files.
    #[derive(Default)]
    struct B(Vec<u8>);

    impl B {
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn i64(mut self, v: i64) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn raw(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }
        fn f32s(mut self, v: &[f32]) -> Self {
            v.iter()
                .for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
            self
        }
        fn name(self, s: &str) -> Self {
            self.u64(s.len() as u64).raw(s.as_bytes())
        }
        /// List header with `n` arrays.
        fn list(n: u64) -> Self {
            B::default().u64(LIST_MAGIC).u64(0).u64(n)
        }
        /// A V2 dense f32 array.
        fn v2_f32(self, dims: &[i64], data: &[f32]) -> Self {
            let mut b = self.u32(NDARRAY_V2_MAGIC).i32(0).i32(dims.len() as i32);
            for &d in dims {
                b = b.i64(d);
            }
            b.i32(1).i32(0).i32(0).f32s(data)
        }
    }

    fn err(bytes: &[u8]) -> String {
        match read_ndarrays(bytes) {
            Ok(l) => panic!("expected an error, read {l:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn t<T: kiln_ir::Element>(v: Vec<T>, dims: &[usize]) -> Tensor {
        Tensor::from_vec(v, Shape::new(dims)).unwrap()
    }

    fn sample() -> MxParams {
        MxParams {
            args: vec![
                (
                    "w".into(),
                    t(vec![1.5f32, -2.0, 3.0, 0.25, 9.0, -1.0], &[2, 3]),
                ),
                ("d".into(), t(vec![1e-300f64, -2.5], &[2])),
                ("i".into(), t(vec![i32::MIN, 0, i32::MAX], &[3, 1, 1])),
            ],
            auxs: vec![
                ("l".into(), t(vec![i64::MIN, 1, i64::MAX], &[3])),
                ("u".into(), t(vec![0u8, 200, 255], &[1, 3])),
                ("b".into(), t(vec![true, false], &[2])),
            ],
            other: vec![
                ("s".into(), Tensor::scalar(4.5f32)),
                ("e".into(), Tensor::zeros([0, 3], DType::F32)),
            ],
        }
    }

    #[test]
    fn params_round_trip_every_dtype() {
        let p = sample();
        let bytes = write_params(&p).unwrap();
        let back = read_params(&bytes).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.len(), 8);
        assert_eq!(back.arg("w").unwrap().to_f64_vec()[1], -2.0);
        assert_eq!(
            back.aux("u").unwrap().as_slice::<u8>().unwrap(),
            &[0, 200, 255]
        );
        assert!(back.arg("u").is_none());
        assert_eq!(back.get("s").unwrap().shape().rank(), 0);
        let list = read_ndarrays(&bytes).unwrap();
        assert_eq!(list.names[0], "arg:w");
        assert_eq!(list.names[3], "aux:l");
        assert_eq!(list.names[6], "s");
        let layouts: Vec<_> = list.arrays.iter().map(|a| a.layout).collect();
        use HeaderLayout::*;
        assert_eq!(layouts, [V2, V2, V2, V2, V2, V2, V3, V3]);
        // The same bytes again, and a file on disk.
        assert_eq!(write_ndarrays(&list).unwrap(), bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m-0000.params");
        save_params(&path, &p).unwrap();
        assert_eq!(load_params(&path).unwrap(), p);
        let missing = load_params(dir.path().join("nope.params")).unwrap_err();
        assert!(missing.to_string().contains("nope.params"), "{missing}");
    }

    #[test]
    fn every_layout_round_trips_with_contexts_and_empty_arrays() {
        let arrays = vec![
            StoredArray {
                tensor: Some(t(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2])),
                layout: HeaderLayout::Legacy,
                source_dtype: MxDType::F32,
                context: DeviceContext {
                    dev_type: 2,
                    dev_id: 3,
                },
            },
            StoredArray {
                tensor: Some(t(vec![7i64, 8], &[2])),
                layout: HeaderLayout::V1,
                source_dtype: MxDType::I64,
                context: DeviceContext::CPU,
            },
            StoredArray {
                tensor: None,
                layout: HeaderLayout::V2,
                source_dtype: MxDType::F32,
                context: DeviceContext::CPU,
            },
            StoredArray {
                tensor: None,
                layout: HeaderLayout::Legacy,
                source_dtype: MxDType::F32,
                context: DeviceContext::CPU,
            },
            StoredArray {
                tensor: None,
                layout: HeaderLayout::V3,
                source_dtype: MxDType::F32,
                context: DeviceContext::CPU,
            },
            StoredArray::new(Tensor::scalar(-3i32)),
        ];
        let list = NdArrayList {
            arrays,
            names: vec![],
        };
        let bytes = write_ndarrays(&list).unwrap();
        assert_eq!(read_ndarrays(&bytes).unwrap(), list);
        // Without names, read_params names arrays by index, and refuses empty arrays.
        let e = read_params(&bytes).unwrap_err().to_string();
        assert!(e.contains("array 2 (\"2\") is an empty NDArray"), "{e}");
        let mut no_empty = list.clone();
        no_empty.arrays.retain(|a| a.tensor.is_some());
        let p = read_params(&write_ndarrays(&no_empty).unwrap()).unwrap();
        let names: Vec<_> = p.other.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["0", "1", "2"]);
    }

    #[test]
    fn writer_refuses_what_a_layout_cannot_hold() {
        let mut a = StoredArray::new(Tensor::scalar(1.0f32));
        a.layout = HeaderLayout::V2;
        let list = NdArrayList {
            arrays: vec![a],
            names: vec!["arg:x".into()],
        };
        let e = write_ndarrays(&list).unwrap_err().to_string();
        assert!(
            e.contains("array 0 (\"arg:x\")") && e.contains("rank 0"),
            "{e}"
        );
        let list = NdArrayList {
            arrays: vec![StoredArray::new(Tensor::scalar(1.0f32))],
            names: vec!["a".into(), "b".into()],
        };
        assert!(write_ndarrays(&list)
            .unwrap_err()
            .to_string()
            .contains("2 names for 1"));
    }

    #[test]
    fn reads_bytes_written_by_mxnet_1_9() {
        // mx.nd.save(f, {'arg:a': nd.array([[1, 2, 3]], dtype='float16'),
        //                'aux:b': nd.array([1], dtype='int64')}) with MXNet 1.9.1.
        let hex = "120100000000000000000000000000000200000000000000c9fa93f9000000000200000001\
                   000000000000000300000000000000010000000000000002000000003c00400042c9fa93f9\
                   000000000100000001000000000000000100000000000000060000000100000000000000\
                   020000000000000005000000000000006172673a6105000000000000006175783a62";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let list = read_ndarrays(&bytes).unwrap();
        assert_eq!(list.arrays[0].source_dtype, MxDType::F16);
        assert_eq!(list.arrays[0].layout, HeaderLayout::V2);
        let p = MxParams::from_list(list).unwrap();
        assert_eq!(p.arg("a").unwrap(), &t(vec![1.0f32, 2.0, 3.0], &[1, 3]));
        assert_eq!(p.aux("b").unwrap(), &t(vec![1i64], &[1]));
    }

    #[test]
    fn reads_hand_built_legacy_and_v1_headers() {
        // Legacy: no magic; u32 ndim = 2, u32 dims 2 x 2, cpu(0), float32.
        let bytes = B::list(2)
            .u32(2)
            .u32(2)
            .u32(2)
            .i32(1)
            .i32(0)
            .i32(0)
            .f32s(&[1.0, 2.0, 3.0, 4.0])
            // Legacy float16 vector of 3 from gpu(1).
            .u32(1)
            .u32(3)
            .i32(2)
            .i32(1)
            .i32(2)
            .raw(&[0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00])
            .u64(2)
            .name("arg:fc_weight")
            .name("aux:half")
            .0;
        let list = read_ndarrays(&bytes).unwrap();
        assert_eq!(list.arrays[0].layout, HeaderLayout::Legacy);
        assert_eq!(
            list.arrays[1].context,
            DeviceContext {
                dev_type: 2,
                dev_id: 1
            }
        );
        let p = MxParams::from_list(list).unwrap();
        assert_eq!(
            p.arg("fc_weight").unwrap(),
            &t(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])
        );
        let half = p.aux("half").unwrap().as_slice::<f32>().unwrap().to_vec();
        assert_eq!(half, [1.0, -2.0, 2f32.powi(-24)]);
        // V1: magic, u32 ndim, i64 dims, no storage type; int32 data.
        let bytes = B::list(1)
            .u32(NDARRAY_V1_MAGIC)
            .u32(1)
            .i64(2)
            .i32(1)
            .i32(0)
            .i32(4)
            .i32(-9)
            .i32(9)
            .u64(0)
            .0;
        let list = read_ndarrays(&bytes).unwrap();
        assert_eq!(list.arrays[0].layout, HeaderLayout::V1);
        assert_eq!(list.arrays[0].tensor, Some(t(vec![-9i32, 9], &[2])));
        assert!(list.names.is_empty());
    }

    #[test]
    fn widens_the_types_kiln_lacks() {
        let arr = |flag: i32, n: i64, data: &[u8]| {
            B::list(1)
                .u32(NDARRAY_V2_MAGIC)
                .i32(0)
                .i32(1)
                .i64(n)
                .i32(1)
                .i32(0)
                .i32(flag)
                .raw(data)
                .u64(0)
                .0
        };
        let get = |b: Vec<u8>| read_ndarrays(&b).unwrap().arrays.remove(0).tensor.unwrap();
        assert_eq!(get(arr(5, 2, &[0x80, 0x7f])), t(vec![-128i32, 127], &[2]));
        assert_eq!(get(arr(8, 1, &[0x00, 0x80])), t(vec![-32768i32], &[1]));
        assert_eq!(get(arr(9, 1, &[0xff, 0xff])), t(vec![65535i32], &[1]));
        assert_eq!(
            get(arr(10, 1, &u32::MAX.to_le_bytes())),
            t(vec![u32::MAX as i64], &[1])
        );
        assert_eq!(get(arr(11, 1, &7u64.to_le_bytes())), t(vec![7i64], &[1]));
        assert_eq!(get(arr(12, 1, &[0xc0, 0x3f])), t(vec![1.5f32], &[1]));
        assert_eq!(get(arr(7, 2, &[0, 3])), t(vec![false, true], &[2]));
        let e = err(&arr(11, 1, &u64::MAX.to_le_bytes()));
        assert!(
            e.contains("beyond int64") && e.contains("array 0 of 1"),
            "{e}"
        );
    }

    #[test]
    fn f16_conversion_is_exact() {
        let cases: [(u16, f32); 10] = [
            (0x0000, 0.0),
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x3800, 0.5),
            (0x7bff, 65504.0),
            (0x0001, 5.960_464_5e-8),
            (0x03ff, 6.097_555e-5),
            (0x0400, 6.103_515_6e-5),
            (0x7c00, f32::INFINITY),
            (0xfc00, f32::NEG_INFINITY),
        ];
        for (h, f) in cases {
            assert_eq!(f16_to_f32(h), f, "{h:#06x}");
        }
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    }

    /// A small valid file with two arrays and names, for the corruption tests.
    fn small_file() -> Vec<u8> {
        B::list(2)
            .v2_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0])
            .u32(1)
            .u32(2)
            .i32(1)
            .i32(0)
            .i32(0)
            .f32s(&[5.0, 6.0])
            .u64(2)
            .name("arg:a")
            .name("aux:b")
            .0
    }

    #[test]
    fn every_truncation_is_a_clear_error() {
        let full = small_file();
        assert_eq!(read_params(&full).unwrap().len(), 2);
        for n in 0..full.len() {
            let e = err(&full[..n]);
            assert!(
                e.starts_with("mxnet params: ") && e.contains("at byte") && e.contains("remain"),
                "cut at {n}: {e}"
            );
        }
        // The message names the array being read.
        let e = err(&full[..70]);
        assert!(e.contains("array 0 of 2") && e.contains("the data"), "{e}");
        let e = err(&full[..full.len() - 3]);
        assert!(e.contains("name 1 of 2"), "{e}");
    }

    #[test]
    fn hostile_headers_are_clear_errors() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "ends inside the list magic"),
            (
                "bad list magic",
                B::default().u64(0x113).u64(0).u64(0).0,
                "not an MXNet",
            ),
            (
                "huge array count",
                B::list(u64::MAX).0,
                "the array count is 18446744073709551615",
            ),
            (
                "array count too big for the bytes",
                B::list(3).u32(0).u32(0).0,
                "array count is 3",
            ),
            (
                "huge name count",
                B::list(0).u64(1 << 60).0,
                "the name count is 1152921504606846976",
            ),
            (
                "name count mismatch",
                B::list(0).u64(1).name("x").0,
                "1 names for 0 arrays",
            ),
            (
                "huge name length",
                B::list(1).u32(0).u64(1).u64(u64::MAX - 1).0,
                "the name length is 18446744073709551614",
            ),
            (
                "name not utf-8",
                B::list(1).u32(0).u64(1).u64(2).raw(&[0xff, 0xfe]).0,
                "not valid UTF-8",
            ),
            (
                "trailing bytes",
                B::list(0).u64(0).raw(&[1, 2, 3]).0,
                "3 unexpected bytes",
            ),
            (
                "huge legacy ndim",
                B::list(1).u32(0xF000_0000).raw(&[0; 64]).0,
                "ndim 4026531840 needs",
            ),
            (
                "huge v2 ndim",
                B::list(1).u32(NDARRAY_V2_MAGIC).i32(0).i32(i32::MAX).0,
                "ndim 2147483647 needs",
            ),
            (
                "huge v1 ndim",
                B::list(1).u32(NDARRAY_V1_MAGIC).u32(u32::MAX).0,
                "ndim 4294967295 needs",
            ),
            (
                "negative ndim",
                B::list(1).u32(NDARRAY_V2_MAGIC).i32(0).i32(-5).0,
                "negative ndim -5",
            ),
            (
                "negative dim",
                B::list(1).u32(NDARRAY_V2_MAGIC).i32(0).i32(1).i64(-7).0,
                "bad dim -7",
            ),
            (
                "dims whose product overflows",
                B::list(1)
                    .v2_f32(&[1 << 40, 1 << 40, 1 << 40], &[])
                    .u64(0)
                    .0,
                "is too large: its size in bytes overflows",
            ),
            (
                "an empty shape whose other dims overflow",
                B::list(1).v2_f32(&[0, 1 << 40, 1 << 40], &[]).u64(0).0,
                "is too large: its size in bytes overflows",
            ),
            (
                "data larger than the file",
                B::list(1).v2_f32(&[1 << 30, 1 << 20], &[]).u64(0).0,
                "needs 4503599627370496 bytes",
            ),
            (
                "unknown type flag",
                B::list(1)
                    .u32(NDARRAY_V2_MAGIC)
                    .i32(0)
                    .i32(1)
                    .i64(1)
                    .i32(1)
                    .i32(0)
                    .i32(99)
                    .0,
                "unknown type flag 99",
            ),
            (
                "unknown device",
                B::list(1)
                    .u32(NDARRAY_V2_MAGIC)
                    .i32(0)
                    .i32(1)
                    .i64(1)
                    .i32(9)
                    .i32(0)
                    .0,
                "unknown device type 9",
            ),
            (
                "row sparse",
                B::list(1).u32(NDARRAY_V2_MAGIC).i32(1).0,
                "row_sparse",
            ),
            (
                "csr",
                B::list(1).u32(NDARRAY_V2_MAGIC).i32(2).0,
                "sparse storage (csr)",
            ),
            (
                "unknown storage",
                B::list(1).u32(NDARRAY_V2_MAGIC).i32(7).0,
                "storage type 7",
            ),
            (
                "undefined storage with a shape",
                B::list(1).u32(NDARRAY_V2_MAGIC).i32(-1).i32(1).i64(2).0,
                "storage type -1",
            ),
        ];
        for (what, bytes, want) in cases {
            let e = err(&bytes);
            assert!(e.contains(want), "{what}: {e:?} lacks {want:?}");
            assert!(e.starts_with("mxnet params: "), "{what}: {e}");
        }
        // Duplicate names are caught when sorting by prefix.
        let dup = B::list(2)
            .v2_f32(&[1], &[1.0])
            .v2_f32(&[1], &[2.0])
            .u64(2)
            .name("arg:x")
            .name("arg:x")
            .0;
        let e = read_params(&dup).unwrap_err().to_string();
        assert!(e.contains("\"arg:x\" appears twice"), "{e}");
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/mxnet")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn reads_mxnet_nd_save_of_every_dtype() {
        let p = read_params(&fixture("dtypes.params")).unwrap();
        assert!(p.args.is_empty() && p.auxs.is_empty());
        let get = |n: &str| p.get(n).unwrap().clone();
        assert_eq!(
            get("f32"),
            t(vec![-1.0f32, -0.5, 0.0, 0.5, 1.0, 1.5], &[2, 3])
        );
        let f64s: Vec<f64> = (0..4).map(|i| i as f64 / 3.0).collect();
        assert_eq!(get("f64"), t(f64s, &[4]));
        // 1/3 rounds to the nearest half, 0x3555.
        assert_eq!(
            get("f16"),
            t(vec![1.0f32, -2.0, 0.5, 65504.0, 0.333_251_95], &[5])
        );
        assert_eq!(get("u8"), t(vec![0u8, 1, 127, 255], &[4]));
        assert_eq!(get("i32"), t(vec![i32::MIN, -1, 0, i32::MAX], &[4]));
        assert_eq!(get("i64"), t(vec![-5i64, 7, 1 << 40], &[3]));
        assert_eq!(get("i8"), t(vec![-128i32, -1, 0, 127], &[4]));
    }

    #[test]
    fn reads_mxnet_numpy_shape_files() {
        let list = read_ndarrays(&fixture("npshape.params")).unwrap();
        assert!(list.arrays.iter().all(|a| a.layout == HeaderLayout::V3));
        let p = MxParams::from_list(list).unwrap();
        assert_eq!(p.get("scalar").unwrap(), &Tensor::scalar(2.5f32));
        assert_eq!(p.get("empty").unwrap(), &Tensor::zeros([0, 3], DType::F32));
        assert_eq!(
            p.get("matrix").unwrap(),
            &t(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])
        );
    }

    #[test]
    fn reads_gluon_exports() {
        let p = read_params(&fixture("lenet-0000.params")).unwrap();
        assert!(p.other.is_empty());
        // Two convolutions (weight, bias), two BatchNorms (gamma, beta), two Dense layers.
        assert_eq!(
            p.args.len(),
            12,
            "{:?}",
            p.args.iter().map(|a| &a.0).collect::<Vec<_>>()
        );
        // Running mean and variance of both BatchNorms.
        assert_eq!(p.auxs.len(), 4);
        assert!(p.auxs.iter().all(|(n, _)| n.contains("running_")));
        let conv = p.args.iter().find(|(n, _)| n.ends_with("weight")).unwrap();
        assert_eq!(conv.1.shape().dims(), &[4, 1, 3, 3]);
        // Re-writing gives MXNet's bytes back: same layout, same order.
        let bytes = fixture("mlp-0000.params");
        let list = read_ndarrays(&bytes).unwrap();
        assert_eq!(write_ndarrays(&list).unwrap(), bytes);
        assert_eq!(
            write_params(&MxParams::from_list(list).unwrap()).unwrap(),
            bytes
        );
        // A block without parameters exports an empty list.
        assert!(read_params(&fixture("scalar_ops-0000.params"))
            .unwrap()
            .is_empty());
    }

    /// A mutation fuzzer on stable Rust: it mutates valid files (bit flips, interesting
    /// values in length fields, truncations, splices, insertions, deletions) with a seeded
    /// RNG and checks that the reader never panics and that whatever it accepts writes back
    /// and reads again to the same bytes. `KILN_FUZZ=SECONDS` runs it for that long
    /// (`KILN_FUZZ_SEED` picks the seed); by default a short fixed run is part of the tests.
    mod fuzz {
        use super::*;
        use rand::{Rng, SeedableRng};
        use rand_pcg::Pcg64Mcg;
        use std::panic::{catch_unwind, AssertUnwindSafe};
        use std::time::{Duration, Instant};

        const INTERESTING: [u64; 14] = [
            0,
            1,
            2,
            3,
            0x7f,
            0xff,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            1 << 32,
            1 << 62,
            i64::MAX as u64,
            u64::MAX,
        ];

        fn corpus() -> Vec<Vec<u8>> {
            let legacy = NdArrayList {
                arrays: vec![
                    StoredArray {
                        layout: HeaderLayout::Legacy,
                        ..StoredArray::new(t(vec![1.0f32, 2.0, 3.0], &[3, 1]))
                    },
                    StoredArray {
                        layout: HeaderLayout::V1,
                        ..StoredArray::new(t(vec![5u8, 6], &[2]))
                    },
                    StoredArray {
                        tensor: None,
                        ..StoredArray::new(t(vec![1i32], &[1]))
                    },
                ],
                names: vec!["arg:a".into(), "aux:b".into(), "c".into()],
            };
            vec![
                small_file(),
                write_params(&sample()).unwrap(),
                write_ndarrays(&legacy).unwrap(),
                fixture("dtypes.params"),
                fixture("npshape.params"),
                fixture("mlp-0000.params"),
            ]
        }

        fn mutate(rng: &mut Pcg64Mcg, corpus: &[Vec<u8>]) -> Vec<u8> {
            let mut b = corpus[rng.random_range(0..corpus.len())].clone();
            for _ in 0..rng.random_range(1..4) {
                let len = b.len();
                let at = if len == 0 {
                    0
                } else {
                    rng.random_range(0..len)
                };
                match rng.random_range(0..8) {
                    0 if len > 0 => b[at] ^= 1 << rng.random_range(0..8),
                    1 if len > 0 => b[at] = rng.random(),
                    2 => {
                        // An interesting value over a 4- or 8-byte field.
                        let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                        let v = if rng.random_bool(0.3) {
                            v.wrapping_neg()
                        } else {
                            v
                        };
                        let w = if rng.random_bool(0.5) { 4 } else { 8 };
                        let at = at & !3;
                        for (i, byte) in v.to_le_bytes()[..w].iter().enumerate() {
                            if let Some(slot) = b.get_mut(at + i) {
                                *slot = *byte;
                            }
                        }
                    }
                    3 => b.truncate(at),
                    4 => {
                        // Splice: this file's head with another file's tail.
                        let other = &corpus[rng.random_range(0..corpus.len())];
                        let from = rng.random_range(0..=other.len());
                        b.truncate(at);
                        b.extend_from_slice(&other[from..]);
                    }
                    5 => {
                        let n = rng.random_range(1..16);
                        for _ in 0..n {
                            b.insert(at, rng.random());
                        }
                    }
                    6 if len > 0 => {
                        let end = (at + rng.random_range(1..16)).min(len);
                        b.drain(at..end);
                    }
                    _ if len > 0 => {
                        // Duplicate a chunk in place (repeats arrays or names).
                        let end = (at + rng.random_range(1..64)).min(len);
                        let chunk = b[at..end].to_vec();
                        b.splice(at..at, chunk);
                    }
                    _ => b.push(rng.random()),
                }
            }
            b
        }

        /// Never panics; what reads writes back to bytes that read to the same bytes.
        fn check(bytes: &[u8]) -> std::result::Result<bool, String> {
            let run = catch_unwind(AssertUnwindSafe(|| -> std::result::Result<bool, String> {
                let Ok(list) = read_ndarrays(bytes) else {
                    return Ok(false);
                };
                let _ = MxParams::from_list(list.clone());
                let once = write_ndarrays(&list).map_err(|e| format!("write: {e}"))?;
                let again = read_ndarrays(&once).map_err(|e| format!("reread: {e}"))?;
                let twice = write_ndarrays(&again).map_err(|e| format!("rewrite: {e}"))?;
                if once != twice {
                    return Err("the round trip changed the bytes".into());
                }
                Ok(true)
            }));
            run.unwrap_or_else(|_| Err("panicked".into()))
        }

        fn run(seed: u64, budget: Budget) -> (u64, u64) {
            let corpus = corpus();
            let mut rng = Pcg64Mcg::seed_from_u64(seed);
            let start = Instant::now();
            let (mut execs, mut accepted) = (0u64, 0u64);
            loop {
                match budget {
                    Budget::Execs(n) if execs >= n => break,
                    Budget::Time(d) if start.elapsed() >= d => break,
                    _ => {}
                }
                let input = mutate(&mut rng, &corpus);
                match check(&input) {
                    Ok(ok) => accepted += u64::from(ok),
                    Err(why) => {
                        let path = std::env::temp_dir().join(format!("kiln-fuzz-{seed}-{execs}"));
                        let _ = std::fs::write(&path, &input);
                        panic!(
                            "seed {seed}, exec {execs}: {why}; input in {}",
                            path.display()
                        );
                    }
                }
                execs += 1;
            }
            (execs, accepted)
        }

        #[derive(Clone, Copy)]
        enum Budget {
            Execs(u64),
            Time(Duration),
        }

        #[test]
        fn mutated_files_never_panic() {
            // Fixed seeds and counts, so a failure reproduces.
            for seed in 0..4 {
                let (execs, accepted) = run(seed, Budget::Execs(12_500));
                assert_eq!(execs, 12_500);
                // Some mutations (in data bytes, say) leave a valid file.
                assert!(accepted > 0, "seed {seed}: no mutant was accepted");
            }
        }

        #[test]
        fn fuzz_for_kiln_fuzz_seconds() {
            let Some(secs) = std::env::var("KILN_FUZZ")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                return;
            };
            let seed = std::env::var("KILN_FUZZ_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(1, |d| d.as_secs())
                });
            let (execs, accepted) = run(seed, Budget::Time(Duration::from_secs(secs)));
            println!("mxnet params fuzz: seed {seed}, {execs} inputs, {accepted} accepted");
            assert!(execs > 0);
        }
    }
}
