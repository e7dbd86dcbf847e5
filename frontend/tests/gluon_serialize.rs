//! Serialization: safetensors round trips, parameters of a Block, atomic writes, error reports.

use kiln_frontend::gluon::serialize::{
    load, load_parameters, load_parameters_with, save, save_map, save_parameters, LoadOptions,
};
use kiln_frontend::gluon::{Block, Parameter};
use kiln_frontend::{Context, DType, NDArray, Result};
use std::path::Path;

/// A tiny two-parameter block: y = x * w + b.
struct Affine {
    prefix: String,
    w: Parameter,
    b: Parameter,
}

impl Affine {
    fn new(prefix: &str, w_shape: &[usize], b_dtype: DType) -> Affine {
        Affine {
            prefix: prefix.to_string(),
            w: Parameter::new(format!("{prefix}weight"), w_shape),
            b: Parameter::new(format!("{prefix}bias"), [2]).with_dtype(b_dtype),
        }
    }
}

impl Block for Affine {
    fn prefix(&self) -> String {
        self.prefix.clone()
    }
    fn params(&self) -> Vec<Parameter> {
        vec![self.w.clone(), self.b.clone()]
    }
    fn forward(&self, x: &NDArray) -> Result<NDArray> {
        (x * &self.w.data()?) + &self.b.data()?
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_dtype_round_trips() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.safetensors");
    let arrays = vec![
        NDArray::from_vec(vec![1.5f32, -2.0, f32::INFINITY, 0.1], [2, 2])?,
        NDArray::from_vec(vec![std::f64::consts::PI, -1e300], [2])?,
        NDArray::from_vec(vec![i32::MIN, 0, i32::MAX], [3, 1])?,
        NDArray::from_vec(vec![i64::MIN, 7], [1, 2])?,
        NDArray::from_vec(vec![0u8, 255, 128], [3])?,
        NDArray::from_vec(vec![true, false, true], [3])?,
        NDArray::scalar(42.0f32),
        NDArray::from_vec(Vec::<f32>::new(), [0, 3])?,
    ];
    save(&path, &arrays)?;
    let back = load(&path)?;
    let names: Vec<&str> = back.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["0", "1", "2", "3", "4", "5", "6", "7"]);
    for ((_, b), a) in back.iter().zip(&arrays) {
        assert_eq!(b.shape(), a.shape());
        assert_eq!(b.dtype(), a.dtype());
    }
    assert_eq!(back[0].1.to_vec::<f32>()?, arrays[0].to_vec::<f32>()?);
    assert_eq!(
        back[1].1.to_vec::<f64>()?,
        vec![std::f64::consts::PI, -1e300]
    );
    assert_eq!(back[2].1.to_vec::<i32>()?, vec![i32::MIN, 0, i32::MAX]);
    assert_eq!(back[3].1.to_vec::<i64>()?, vec![i64::MIN, 7]);
    assert_eq!(back[4].1.to_vec::<u8>()?, vec![0, 255, 128]);
    assert_eq!(back[5].1.to_vec::<bool>()?, vec![true, false, true]);
    assert_eq!(back[6].1.as_scalar::<f32>()?, 42.0);
    assert_eq!(back[7].1.size(), 0);
    Ok(())
}

#[test]
fn named_arrays_keep_their_order_and_bytes_are_standard() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("named.safetensors");
    let z = NDArray::from_slice(&[1i32, 2]);
    let a = NDArray::from_slice(&[3.0f64]);
    save_map(&path, &[("zeta", z), ("alpha", a)])?;
    let back = load(&path)?;
    assert_eq!(back[0].0, "zeta");
    assert_eq!(back[1].0, "alpha");
    assert_eq!(back[0].1.to_vec::<i32>()?, vec![1, 2]);

    // The layout any safetensors reader expects: an 8-byte little-endian header length, a
    // JSON header, then the raw little-endian data.
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(
        header.contains(r#""zeta":{"dtype":"I32","shape":[2]"#),
        "{header}"
    );
    assert!(
        header.contains(r#""alpha":{"dtype":"F64","shape":[1]"#),
        "{header}"
    );
    assert_eq!(bytes.len(), 8 + n + 8 + 8);

    let dup = save_map(
        dir.path().join("dup.safetensors"),
        &[
            ("x", NDArray::scalar(1.0f32)),
            ("x", NDArray::scalar(2.0f32)),
        ],
    );
    assert!(dup.unwrap_err().to_string().contains("appears twice"));
    Ok(())
}

#[test]
fn block_parameters_round_trip_across_prefixes() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("affine.params");
    let net = Affine::new("affine0_", &[2], DType::F64);
    net.w.set_data(&NDArray::from_slice(&[2.0f32, 3.0]))?;
    net.b.set_data(&NDArray::from_slice(&[0.5f64, -0.5]))?;
    save_parameters(&net, &path)?;
    let names: Vec<String> = load(&path)?.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias"], "the block's prefix is stripped");

    // A second instance with another prefix and a deferred (unknown) weight dimension.
    let other = Affine::new("affine1_", &[0], DType::F64);
    load_parameters(&other, &path, Context::cpu())?;
    assert_eq!(other.w.data()?.to_vec::<f32>()?, vec![2.0, 3.0]);
    assert_eq!(other.b.data()?.to_vec::<f64>()?, vec![0.5, -0.5]);
    // Loading replaces initialized values too.
    net.w.set_data(&NDArray::from_slice(&[9.0f32, 9.0]))?;
    load_parameters(&net, &path, Context::cpu())?;
    assert_eq!(net.w.data()?.to_vec::<f32>()?, vec![2.0, 3.0]);

    let uninit = Affine::new("affine2_", &[2], DType::F64);
    let err = save_parameters(&uninit, dir.path().join("u.params")).unwrap_err();
    assert!(err.to_string().contains("not initialized"), "{err}");
    Ok(())
}

#[test]
fn load_parameters_reports_every_mismatch() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.params");
    save_map(
        &path,
        &[
            ("weight", NDArray::from_vec(vec![1.0f32; 3], [3])?),
            ("bias", NDArray::from_slice(&[1.0f32, 2.0])),
            ("extra", NDArray::from_slice(&[1u8])),
        ],
    )?;
    // weight: wrong shape; bias: wrong dtype (f32 vs f64); extra: unexpected.
    let net = Affine::new("m0_", &[2], DType::F64);
    net.w.set_data(&NDArray::from_slice(&[7.0f32, 7.0]))?;
    let msg = load_parameters(&net, &path, Context::cpu())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("3 problems"), "{msg}");
    assert!(
        msg.contains("wrong shape: weight: the file has [3], the parameter is [2]"),
        "{msg}"
    );
    assert!(
        msg.contains("wrong dtype: bias: the file has f32, the parameter is f64"),
        "{msg}"
    );
    assert!(msg.contains("unexpected: extra"), "{msg}");
    // Nothing was changed.
    assert_eq!(net.w.data()?.to_vec::<f32>()?, vec![7.0, 7.0]);

    save_map(&path, &[("weight", NDArray::from_slice(&[1.0f32, 2.0]))])?;
    let msg = load_parameters(&net, &path, Context::cpu())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("1 problem)"), "{msg}");
    assert!(msg.contains("missing: bias (parameter m0_bias"), "{msg}");
    Ok(())
}

#[test]
fn load_options_allow_missing_and_ignore_extra() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.params");
    save_map(
        &path,
        &[
            ("weight", NDArray::from_slice(&[4.0f32, 5.0])),
            ("extra", NDArray::from_slice(&[1u8])),
        ],
    )?;
    let net = Affine::new("p0_", &[2], DType::F32);
    net.b.set_data(&NDArray::from_slice(&[1.0f32, 1.0]))?;
    let only_missing = LoadOptions {
        allow_missing: true,
        ignore_extra: false,
    };
    let msg = load_parameters_with(&net, &path, Context::cpu(), only_missing)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("unexpected: extra") && !msg.contains("missing"),
        "{msg}"
    );
    let both = LoadOptions {
        allow_missing: true,
        ignore_extra: true,
    };
    load_parameters_with(&net, &path, Context::cpu(), both)?;
    assert_eq!(net.w.data()?.to_vec::<f32>()?, vec![4.0, 5.0]);
    assert_eq!(
        net.b.data()?.to_vec::<f32>()?,
        vec![1.0, 1.0],
        "missing bias kept"
    );
    Ok(())
}

#[test]
fn saves_are_atomic_and_leave_no_temporaries() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    save(&path, &[NDArray::from_vec(vec![1.0f32; 1000], [1000])?])?;
    let big_len = std::fs::metadata(&path).unwrap().len();
    // Overwriting with a smaller file replaces the target whole (no stale tail).
    save(&path, &[NDArray::from_slice(&[5i32])])?;
    let small_len = std::fs::metadata(&path).unwrap().len();
    assert!(small_len < big_len);
    let back = load(&path)?;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1.to_vec::<i32>()?, vec![5]);
    assert_eq!(files_in(dir.path()), ["w.safetensors"]);

    // A save that fails (the target is a directory) keeps nothing half-written around.
    let target_dir = dir.path().join("sub");
    std::fs::create_dir(&target_dir).unwrap();
    assert!(save(&target_dir, &[NDArray::scalar(1.0f32)]).is_err());
    assert_eq!(files_in(dir.path()), ["sub", "w.safetensors"]);
    assert!(save(dir.path().join("no/such/dir/x.st"), &[]).is_err());
    Ok(())
}

#[test]
fn truncated_or_corrupt_files_are_clear_errors() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    save(&path, &[NDArray::from_vec(vec![1.0f64; 16], [4, 4])?])?;
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 4, 8, 20, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("not a valid safetensors file"),
            "cut {cut}: {err}"
        );
    }
    // A header length pointing far past the end.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &huge).unwrap();
    assert!(load(&path).is_err());
    // Garbage in the JSON header.
    let mut garbled = bytes.clone();
    garbled[9] = b'#';
    std::fs::write(&path, &garbled).unwrap();
    assert!(load(&path).is_err());
    // Bool bytes other than 0/1 and an unsupported dtype.
    let header = br#"{"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}"#;
    let mut raw = (header.len() as u64).to_le_bytes().to_vec();
    raw.extend_from_slice(header);
    raw.extend_from_slice(&[1, 7]);
    std::fs::write(&path, &raw).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("byte value 7"), "{err}");
    let header = br#"{"h":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}"#;
    let mut raw = (header.len() as u64).to_le_bytes().to_vec();
    raw.extend_from_slice(header);
    raw.extend_from_slice(&[0, 60]);
    std::fs::write(&path, &raw).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("F16 is not supported"), "{err}");
    // A missing file names the path.
    let err = load(dir.path().join("absent.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.safetensors"), "{err}");
    Ok(())
}
