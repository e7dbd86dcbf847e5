//! A small reader for the LIBSVM text format (`label index:value index:value ...`, indices
//! from 1 and ascending), producing dense row-major features — what the book's
//! logistic-regression notebook builds from the Adult "a1a" files.
//!
//! The reader is bounded: the feature count is fixed by the caller, every index is checked
//! against it, rows are capped at [`MAX_ROWS`] and a gzipped file may inflate to at most
//! [`MAX_TEXT_BYTES`]. A malformed line is an error naming the file, the line and the token,
//! never a panic.
#![allow(dead_code)] // each example binary uses a different part of the shared module

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The most rows a file may hold (a guard against a wrong or hostile file).
pub const MAX_ROWS: usize = 1 << 22;
/// The most bytes of text a file (after gunzipping) may hold.
pub const MAX_TEXT_BYTES: u64 = 1 << 30;
/// The most dense feature values (`rows × features`) a file may expand to.
pub const MAX_DENSE_VALUES: usize = 1 << 28;

/// What reading a LIBSVM file can fail with.
#[derive(Debug)]
pub enum LibSvmError {
    /// The file could not be opened or read (or its gzip stream is corrupt).
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A line is not valid LIBSVM, or breaks a bound.
    Parse {
        /// The file (or `<text>` for in-memory input).
        source: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        msg: String,
    },
    /// The input as a whole breaks a bound (too large, or no rows).
    Limit(String),
}

impl fmt::Display for LibSvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LibSvmError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            LibSvmError::Parse { source, line, msg } => write!(f, "{source} line {line}: {msg}"),
            LibSvmError::Limit(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for LibSvmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LibSvmError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A LIBSVM file read into dense arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct LibSvm {
    /// `rows × features` values, row-major; absent features are 0.
    pub features: Vec<f32>,
    /// One label per row, as written in the file.
    pub labels: Vec<f32>,
    /// The number of rows (samples).
    pub rows: usize,
    /// The number of features per row.
    pub num_features: usize,
}

impl LibSvm {
    /// The fraction of labels equal to `label`.
    pub fn rate_of(&self, label: f32) -> f64 {
        if self.rows == 0 {
            return f64::NAN;
        }
        self.labels.iter().filter(|&&l| l == label).count() as f64 / self.rows as f64
    }
}

/// Parses LIBSVM text with `num_features` features; `source` names the input in errors.
/// Blank lines and lines starting with `#` are skipped.
pub fn parse(text: &str, num_features: usize, source: &str) -> Result<LibSvm, LibSvmError> {
    let perr = |line: usize, msg: String| LibSvmError::Parse {
        source: source.to_string(),
        line,
        msg,
    };
    if num_features == 0 {
        return Err(LibSvmError::Limit(format!(
            "{source}: the feature count must be at least 1"
        )));
    }
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if labels.len() >= MAX_ROWS {
            return Err(LibSvmError::Limit(format!(
                "{source}: more than {MAX_ROWS} rows"
            )));
        }
        if (labels.len() + 1) * num_features > MAX_DENSE_VALUES {
            return Err(LibSvmError::Limit(format!(
                "{source}: {} rows × {num_features} features exceed {MAX_DENSE_VALUES} dense values",
                labels.len() + 1
            )));
        }
        let mut tokens = line.split_whitespace();
        let label_tok = tokens.next().unwrap_or_default();
        let label: f32 = match label_tok.parse::<f32>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                return Err(perr(
                    line_no,
                    format!("label `{label_tok}` is not a number"),
                ))
            }
        };
        let row_start = features.len();
        features.resize(row_start + num_features, 0.0);
        let mut last_index = 0usize;
        for tok in tokens {
            let Some((idx, val)) = tok.split_once(':') else {
                return Err(perr(line_no, format!("token `{tok}` is not `index:value`")));
            };
            let index: usize = idx.parse().map_err(|_| {
                perr(
                    line_no,
                    format!("feature index `{idx}` in `{tok}` is not a whole number"),
                )
            })?;
            if index == 0 || index > num_features {
                return Err(perr(
                    line_no,
                    format!("feature index {index} in `{tok}` is outside 1..={num_features}"),
                ));
            }
            if index <= last_index {
                return Err(perr(
                    line_no,
                    format!(
                        "feature index {index} in `{tok}` does not follow {last_index} (indices must ascend)"
                    ),
                ));
            }
            let value: f32 = match val.parse::<f32>() {
                Ok(v) if v.is_finite() => v,
                _ => {
                    return Err(perr(
                        line_no,
                        format!("feature value `{val}` in `{tok}` is not a finite number"),
                    ))
                }
            };
            features[row_start + index - 1] = value;
            last_index = index;
        }
        labels.push(label);
    }
    if labels.is_empty() {
        return Err(LibSvmError::Limit(format!("{source}: no data rows")));
    }
    Ok(LibSvm {
        rows: labels.len(),
        features,
        labels,
        num_features,
    })
}

/// Reads a LIBSVM file, gzipped (detected by its magic bytes) or plain.
pub fn read(path: &Path, num_features: usize) -> Result<LibSvm, LibSvmError> {
    let io = |source| LibSvmError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut raw = Vec::new();
    file.take(MAX_TEXT_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(io)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(MAX_TEXT_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(io)?;
        text
    } else {
        raw
    };
    if bytes.len() as u64 > MAX_TEXT_BYTES {
        return Err(LibSvmError::Limit(format!(
            "{}: more than {MAX_TEXT_BYTES} bytes of text",
            path.display()
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        LibSvmError::Limit(format!(
            "{}: not UTF-8 text (bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse(&text, num_features, &path.display().to_string())
}

/// Reads `dir/name.gz` when it exists, else `dir/name` (see [`read`]).
pub fn read_in(dir: &Path, name: &str, num_features: usize) -> Result<LibSvm, LibSvmError> {
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        read(&gz, num_features)
    } else {
        read(&dir.join(name), num_features)
    }
}
