//! The IDX file format (MNIST's), plain or gzipped.
//!
//! Layout: two zero bytes, a type code, the number of dimensions `d`, then `d` big-endian u32
//! sizes, then the elements in big-endian row-major order. Every read is bounded by what the
//! header promises, so a truncated or corrupt file is an error, never a panic or a huge
//! allocation.

use flate2::read::GzDecoder;
use kiln_ir::{Error, Result, Shape, Storage, Tensor};
use std::io::Read;
use std::path::Path;

/// Largest element count accepted from a header (4 Gi elements): a guard against hostile sizes.
const MAX_ELEMENTS: u64 = 1 << 32;

/// Reads an IDX file (`.gz` or plain, decided by the gzip magic bytes) into a tensor.
///
/// Element types map to kiln dtypes: u8 → u8; i8, i16, i32 → i32; f32 → f32; f64 → f64.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_idx_bytes(&bytes).map_err(|e| Error::Format(format!("{}: {e}", path.display())))
}

/// Parses IDX data held in memory (gzipped or plain).
pub fn parse_idx_bytes(bytes: &[u8]) -> Result<Tensor> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut dec = GzDecoder::new(bytes);
        let mut header = [0u8; 4];
        dec.read_exact(&mut header)
            .map_err(|e| Error::Format(format!("gzip stream: {e}")))?;
        let ndim = header[3] as usize;
        let mut dims = vec![0u8; ndim * 4];
        dec.read_exact(&mut dims)
            .map_err(|_| Error::Format("truncated IDX header".into()))?;
        let (_, body_len) = parse_header(&header, &dims)?;
        let mut body = Vec::with_capacity(body_len);
        // Read one byte more than promised to detect trailing garbage.
        let got = dec
            .take(body_len as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| Error::Format(format!("gzip stream: {e}")))?;
        let mut all = Vec::with_capacity(4 + dims.len() + got);
        all.extend_from_slice(&header);
        all.extend_from_slice(&dims);
        all.extend_from_slice(&body);
        parse_plain(&all)
    } else {
        parse_plain(bytes)
    }
}

/// Validates the magic and dimensions; returns (shape, expected body length in bytes).
fn parse_header(magic: &[u8; 4], dims: &[u8]) -> Result<(Shape, usize)> {
    if magic[0] != 0 || magic[1] != 0 {
        return Err(Error::Format(format!(
            "not an IDX file (magic bytes {:02x} {:02x}, expected 00 00)",
            magic[0], magic[1]
        )));
    }
    let elem = elem_size(magic[2])?;
    let mut shape = Vec::with_capacity(dims.len() / 4);
    let mut count: u64 = 1;
    for c in dims.chunks_exact(4) {
        let d = u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
        count = count.saturating_mul(d);
        shape.push(d as usize);
    }
    if count > MAX_ELEMENTS {
        return Err(Error::Format(format!(
            "IDX header declares {count} elements, more than the {MAX_ELEMENTS} accepted"
        )));
    }
    Ok((Shape::from(shape), count as usize * elem))
}

fn elem_size(code: u8) -> Result<usize> {
    Ok(match code {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        other => {
            return Err(Error::Format(format!(
                "unknown IDX element type code 0x{other:02x}"
            )))
        }
    })
}

fn parse_plain(bytes: &[u8]) -> Result<Tensor> {
    if bytes.len() < 4 {
        return Err(Error::Format(format!(
            "truncated IDX header ({} bytes)",
            bytes.len()
        )));
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let ndim = magic[3] as usize;
    let dims_end = 4 + ndim * 4;
    if bytes.len() < dims_end {
        return Err(Error::Format(format!(
            "truncated IDX header: {ndim} dimensions need {dims_end} bytes, file has {}",
            bytes.len()
        )));
    }
    let (shape, body_len) = parse_header(&magic, &bytes[4..dims_end])?;
    let body = &bytes[dims_end..];
    if body.len() != body_len {
        return Err(Error::Format(format!(
            "IDX data of shape {shape} needs {body_len} bytes, file has {}{}",
            body.len(),
            if body.len() < body_len {
                " (truncated)"
            } else {
                " (trailing bytes)"
            }
        )));
    }
    let storage = match magic[2] {
        0x08 => Storage::U8(body.to_vec()),
        0x09 => Storage::I32(body.iter().map(|&b| b as i8 as i32).collect()),
        0x0B => Storage::I32(
            body.chunks_exact(2)
                .map(|c| i16::from_be_bytes([c[0], c[1]]) as i32)
                .collect(),
        ),
        0x0C => Storage::I32(
            body.chunks_exact(4)
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        0x0D => Storage::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        _ => Storage::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
    };
    Tensor::new(shape, storage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn sample() -> Vec<u8> {
        let mut b = vec![0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        b
    }

    #[test]
    fn reads_plain_and_gzipped() {
        let t = parse_idx_bytes(&sample()).unwrap();
        assert_eq!(t.shape(), &Shape::from([2, 3]));
        assert_eq!(t.as_slice::<u8>().unwrap(), &[1, 2, 3, 4, 5, 6]);
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(&sample()).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(parse_idx_bytes(&gz).unwrap(), t);
    }

    #[test]
    fn reads_big_endian_floats() {
        let mut b = vec![0, 0, 0x0D, 1, 0, 0, 0, 2];
        b.extend_from_slice(&1.5f32.to_be_bytes());
        b.extend_from_slice(&(-2.0f32).to_be_bytes());
        let t = parse_idx_bytes(&b).unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), &[1.5, -2.0]);
    }

    #[test]
    fn corrupt_files_are_errors() {
        let full = sample();
        for cut in 0..full.len() {
            let e = parse_idx_bytes(&full[..cut]).unwrap_err().to_string();
            assert!(e.contains("truncated"), "cut {cut}: {e}");
        }
        let mut extra = sample();
        extra.push(9);
        assert!(parse_idx_bytes(&extra)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        let mut bad_type = sample();
        bad_type[2] = 0x42;
        assert!(parse_idx_bytes(&bad_type)
            .unwrap_err()
            .to_string()
            .contains("type code"));
        let huge = vec![
            0, 0, 0x08, 3, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 9,
        ];
        assert!(parse_idx_bytes(&huge)
            .unwrap_err()
            .to_string()
            .contains("elements"));
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(&full).unwrap();
        let gz = enc.finish().unwrap();
        assert!(parse_idx_bytes(&gz[..gz.len() / 2]).is_err());
        assert!(parse_idx_bytes(&[1, 2, 3, 4, 5]).is_err());
    }
}
