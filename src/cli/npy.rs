//! A small, bounded reader and writer for NumPy `.npy` files.
//!
//! Supported: format versions 1.0, 2.0 and 3.0; little-endian (or byte-order-free) `f4`,
//! `f8`, `i4`, `i8`, `u1` and `b1` element types (kiln's f32, f64, i32, i64, u8, bool); C
//! order. Everything else (big-endian data, other dtypes, Fortran order, object arrays) is a
//! clear [`Error::Format`] naming the file and what was found, never a panic. Headers longer
//! than [`MAX_HEADER_LEN`] bytes and data whose length does not match the header's shape are
//! rejected too.
//!
//! ```
//! use kiln::cli::npy;
//! use kiln_ir::Tensor;
//! let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?;
//! let bytes = npy::to_bytes(&t);
//! assert_eq!(npy::from_bytes(&bytes, "t.npy")?, t);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_ir::{DType, Error, Result, Shape, Storage, Tensor};
use std::path::Path;

/// The longest header (the Python dict after the preamble) that is read, in bytes.
pub const MAX_HEADER_LEN: usize = 64 * 1024;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

fn bad(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::Format(format!("npy: {what}: {msg}"))
}

/// Reads a `.npy` file into a tensor.
pub fn read(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    from_bytes(&bytes, &path.display().to_string())
}

/// Writes a tensor as a version 1.0 `.npy` file.
pub fn write(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, to_bytes(t)).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The `descr` string numpy uses for a dtype.
pub fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
    }
}

fn dtype_of(descr: &str, what: &str) -> Result<DType> {
    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'|' | b'=') => (&descr[..1], &descr[1..]),
        _ => ("", descr),
    };
    let dtype = match code {
        "f4" => DType::F32,
        "f8" => DType::F64,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "u1" => DType::U8,
        "b1" => DType::Bool,
        _ => {
            return Err(bad(
                what,
                format!(
                    "unsupported dtype {descr:?} (supported: float32 <f4, float64 <f8, int32 <i4, \
                     int64 <i8, uint8 |u1, bool |b1)"
                ),
            ))
        }
    };
    if order == ">" && dtype.size_of() > 1 {
        return Err(bad(
            what,
            format!("big-endian data ({descr:?}) is not supported; save it little-endian"),
        ));
    }
    Ok(dtype)
}

/// Parses `.npy` bytes; `what` names the source in error messages.
pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Tensor> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad(
            what,
            "not a .npy file (the magic string \\x93NUMPY is missing)",
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(what, "the file ends inside the header length"));
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        _ => {
            return Err(bad(
                what,
                format!("unsupported format version {major}.{minor} (1.0, 2.0 and 3.0 are read)"),
            ))
        }
    };
    if header_len > MAX_HEADER_LEN {
        return Err(bad(
            what,
            format!("the header is {header_len} bytes, more than the {MAX_HEADER_LEN} read"),
        ));
    }
    let end = start + header_len;
    let header = bytes.get(start..end).ok_or_else(|| {
        bad(
            what,
            format!("the file ends inside the {header_len}-byte header"),
        )
    })?;
    let header =
        std::str::from_utf8(header).map_err(|_| bad(what, "the header is not valid text"))?;
    let h = parse_header(header).map_err(|m| bad(what, format!("bad header {header:?}: {m}")))?;
    let dtype = dtype_of(&h.descr, what)?;
    if h.fortran_order {
        return Err(bad(
            what,
            "Fortran-order arrays are not supported; save with np.ascontiguousarray(a)",
        ));
    }
    let numel = h
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size_of()).map(|b| (n, b)));
    let Some((numel, nbytes)) = numel else {
        return Err(bad(what, format!("the shape {:?} is too large", h.shape)));
    };
    let data = &bytes[end..];
    if data.len() < nbytes {
        return Err(bad(
            what,
            format!(
                "truncated data: shape {:?} of {} needs {nbytes} bytes, the file has {}",
                h.shape,
                dtype.name(),
                data.len()
            ),
        ));
    }
    if data.len() > nbytes {
        return Err(bad(
            what,
            format!(
                "{} bytes after the data of shape {:?} of {} ({nbytes} bytes)",
                data.len() - nbytes,
                h.shape,
                dtype.name()
            ),
        ));
    }
    let storage = decode(dtype, data, numel);
    Tensor::new(Shape::new(&h.shape), storage)
}

fn decode(dtype: DType, data: &[u8], numel: usize) -> Storage {
    fn chunks<const N: usize, T>(data: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        data.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    let s = match dtype {
        DType::F32 => Storage::F32(chunks(data, f32::from_le_bytes)),
        DType::F64 => Storage::F64(chunks(data, f64::from_le_bytes)),
        DType::I32 => Storage::I32(chunks(data, i32::from_le_bytes)),
        DType::I64 => Storage::I64(chunks(data, i64::from_le_bytes)),
        DType::U8 => Storage::U8(data.to_vec()),
        DType::Bool => Storage::Bool(data.iter().map(|&b| b != 0).collect()),
    };
    debug_assert_eq!(s.len(), numel);
    s
}

/// Serializes a tensor as a version 1.0 `.npy` file.
pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let dims = t.shape().dims();
    let shape = match dims {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        descr(t.dtype())
    );
    // The preamble (10 bytes), the header and its final newline fill a multiple of 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.storage().len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // The header of a tensor's shape stays far below 64 KiB (at most a few dozen dims).
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    t.write_le_bytes(&mut out);
    out
}

/// The fields of a `.npy` header.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value in the header dict.
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != q {
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err("unterminated string".into());
        }
        let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(text)
    }

    fn word(&mut self) -> &str {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    fn value(&mut self) -> std::result::Result<Value, String> {
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Value::Str),
            Some(b'(') => {
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    if self.eat(b')') {
                        break;
                    }
                    let w = self.word().to_string();
                    let w = w.trim_end_matches('L');
                    let d = w
                        .parse::<usize>()
                        .map_err(|_| format!("bad dimension {w:?} in the shape"))?;
                    dims.push(d);
                    if !self.eat(b',') {
                        self.expect(b')')?;
                        break;
                    }
                }
                Ok(Value::Tuple(dims))
            }
            _ => match self.word().to_string().as_str() {
                "True" => Ok(Value::Bool(true)),
                "False" => Ok(Value::Bool(false)),
                w => Err(format!("unexpected value {w:?} before byte {}", self.i)),
            },
        }
    }
}

fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let mut c = Cursor {
        s: text.as_bytes(),
        i: 0,
    };
    c.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        if c.eat(b'}') {
            break;
        }
        let key = c.string()?;
        c.expect(b':')?;
        let v = c.value()?;
        match (key.as_str(), v) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", _) => {
                return Err(format!("key {key:?} has a value of the wrong kind"))
            }
            _ => return Err(format!("unknown key {key:?}")),
        }
        if !c.eat(b',') {
            c.expect(b'}')?;
            break;
        }
    }
    if c.peek().is_some() {
        return Err(format!("text after the dict at byte {}", c.i));
    }
    match (descr, fortran, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header {
            descr,
            fortran_order,
            shape,
        }),
        _ => Err("it needs the keys 'descr', 'fortran_order' and 'shape'".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn round_trips_every_dtype_and_rank() {
        let ts = [
            Tensor::from_vec(vec![1.5f32, -2.0, 3.25], [3]).unwrap(),
            Tensor::from_vec(vec![1.5f64, -2.0, 3.25, 4.0], [2, 2]).unwrap(),
            Tensor::from_vec(vec![-7i32, 0, 7, 1, 2, 3], [1, 2, 3]).unwrap(),
            Tensor::from_vec(vec![i64::MIN, i64::MAX], [2]).unwrap(),
            Tensor::from_vec(vec![0u8, 255, 9], [3, 1]).unwrap(),
            Tensor::from_vec(vec![true, false], [2]).unwrap(),
            Tensor::scalar(2.5f32),
            Tensor::zeros([0, 4], DType::F32),
        ];
        for t in ts {
            let b = to_bytes(&t);
            assert_eq!((b.len() - t.storage().len() * t.dtype().size_of()) % 64, 0);
            assert_eq!(from_bytes(&b, "t").unwrap(), t);
        }
    }

    #[test]
    fn reads_version_2_and_python2_longs() {
        let header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2L,), }\n";
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[2, 0]);
        b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&5i32.to_le_bytes());
        b.extend_from_slice(&(-6i32).to_le_bytes());
        let t = from_bytes(&b, "v2").unwrap();
        assert_eq!(t.as_slice::<i32>().unwrap(), &[5, -6]);
    }

    #[test]
    fn rejects_bad_files_with_clear_messages() {
        let err = |b: &[u8]| from_bytes(b, "f.npy").unwrap_err().to_string();
        assert!(err(b"hello world").contains("not a .npy file"));
        let h = |d: &str, f: &str, s: &str| {
            format!("{{'descr': '{d}', 'fortran_order': {f}, 'shape': {s}, }}\n")
        };
        assert!(err(&raw(&h("<f2", "False", "(1,)"), &[0, 0])).contains("unsupported dtype"));
        assert!(err(&raw(&h(">f4", "False", "(1,)"), &[0; 4])).contains("big-endian"));
        assert!(err(&raw(&h("<f4", "True", "(1,)"), &[0; 4])).contains("Fortran"));
        let e = err(&raw(&h("<f4", "False", "(2, 3)"), &[0; 20]));
        assert!(e.contains("truncated") && e.contains("24 bytes"), "{e}");
        assert!(err(&raw(&h("<f4", "False", "(1,)"), &[0; 8])).contains("bytes after"));
        assert!(err(&raw("{'descr': '<f4'}", &[])).contains("needs the keys"));
        assert!(err(&raw("{'descr': '<f4', 'shape': (x,)}", &[])).contains("bad dimension"));
        let mut short = raw(&h("<f4", "False", "(1,)"), &[0; 4]);
        short.truncate(20);
        assert!(err(&short).contains("ends inside"));
        let mut v9 = raw(&h("<f4", "False", "(1,)"), &[0; 4]);
        v9[6] = 9;
        assert!(err(&v9).contains("version 9.0"));
        let huge = h("<f8", "False", "(4294967296, 4294967296, 4294967296)");
        assert!(err(&raw(&huge, &[])).contains("too large"));
    }

    /// `np.save` output (NumPy 1.23.5), in hex.
    const NUMPY: [(&str, &str); 10] = [
        ("f32", "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c2032292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a0000c03f000000c00000000000004040"),
        ("f64", "934e554d5059010076007b276465736372273a20273c6638272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a9a9999999999b93f9c7500883ce4377e"),
        ("i32", "934e554d5059010076007b276465736372273a20273c6934272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200affffffffffffff7f"),
        ("i64", "934e554d5059010076007b276465736372273a20273c6938272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028312c2031292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a0000000000000080"),
        ("u8", "934e554d5059010076007b276465736372273a20277c7531272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028332c292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a00ff07"),
        ("bool", "934e554d5059010076007b276465736372273a20277c6231272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a0100"),
        ("scalar", "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a00002040"),
        ("fortran", "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a20547275652c20277368617065273a2028322c2033292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a00000000000040400000803f00008040000000400000a040"),
        ("be", "934e554d5059010076007b276465736372273a20273e6934272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028312c292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a00000001"),
        ("f16", "934e554d5059010076007b276465736372273a20273c6632272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028312c292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a003c"),
    ];

    fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    fn numpy(name: &str) -> Vec<u8> {
        unhex(NUMPY.iter().find(|(n, _)| *n == name).unwrap().1)
    }

    #[test]
    fn reads_and_writes_numpys_bytes_exactly() {
        let expected = [
            (
                "f32",
                Tensor::from_vec(vec![1.5f32, -2.0, 0.0, 3.0], [2, 2]).unwrap(),
            ),
            ("f64", Tensor::from_vec(vec![0.1f64, 1e300], [2]).unwrap()),
            ("i32", Tensor::from_vec(vec![-1i32, i32::MAX], [2]).unwrap()),
            ("i64", Tensor::from_vec(vec![i64::MIN], [1, 1]).unwrap()),
            ("u8", Tensor::from_vec(vec![0u8, 255, 7], [3]).unwrap()),
            ("bool", Tensor::from_vec(vec![true, false], [2]).unwrap()),
            ("scalar", Tensor::scalar(2.5f32)),
        ];
        for (name, t) in expected {
            let bytes = numpy(name);
            assert_eq!(from_bytes(&bytes, name).unwrap(), t, "{name}");
            // kiln writes what NumPy writes, header padding included.
            assert_eq!(to_bytes(&t), bytes, "{name}");
        }
    }

    #[test]
    fn refuses_numpy_files_it_cannot_represent() {
        let err = |name: &str| from_bytes(&numpy(name), "x.npy").unwrap_err().to_string();
        let e = err("fortran");
        assert!(
            e.starts_with("npy: x.npy: ") && e.contains("Fortran-order"),
            "{e}"
        );
        assert!(err("be").contains("big-endian data (\">i4\")"));
        let e = err("f16");
        assert!(
            e.contains("unsupported dtype \"<f2\"") && e.contains("float32"),
            "{e}"
        );
    }

    #[test]
    fn reads_the_mxnet_fixture_inputs_and_outputs() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mxnet");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        let mut files = 0;
        for model in manifest["models"].as_object().unwrap().values() {
            let entries = model["inputs"].as_array().unwrap().iter();
            for entry in entries.chain(model["outputs"].as_array().unwrap()) {
                let t = read(dir.join(entry["file"].as_str().unwrap())).unwrap();
                let shape: Vec<usize> = entry["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(t.shape().dims(), shape.as_slice());
                assert_eq!(t.dtype(), DType::F32);
                assert!(t.to_f64_vec().iter().all(|x| x.is_finite()));
                files += 1;
            }
        }
        assert_eq!(files, 18);
    }
}
