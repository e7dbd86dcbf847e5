//! A small CSV reader for the examples' tabular data (the house-prices files): RFC 4180
//! quoting, missing-value markers, plain or gzipped files, and errors that name the file,
//! the line and what was wrong.
//!
//! Cells stay text; [`Table::column_kind`] and [`Table::numeric_column`] decide, as pandas'
//! `read_csv` does, that a column is numeric when every cell that is not a missing-value
//! marker parses as a number.
#![allow(dead_code)] // each example binary uses a different part of the shared module

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The cells pandas 1.x's `read_csv` reads as missing by default. (pandas 2 adds `"None"`,
/// which the Ames house data uses as a real category, e.g. `MasVnrType = None`; the book ran
/// on pandas 0.2x, so `None` stays a value here.)
pub const DEFAULT_NA: &[&str] = &[
    "", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "#N/A", "#N/A N/A",
    "#NA", "<NA>", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN",
];

/// What went wrong reading a CSV file: where, and why.
#[derive(Debug)]
pub struct CsvError {
    /// The file (or other source) being read.
    pub source: String,
    /// The 1-based line the problem is on (0 when it concerns the whole file).
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "csv: {}: {}", self.source, self.message)
        } else {
            write!(f, "csv: {}:{}: {}", self.source, self.line, self.message)
        }
    }
}

impl std::error::Error for CsvError {}

fn error(source: &str, line: usize, message: impl Into<String>) -> CsvError {
    CsvError {
        source: source.to_string(),
        line,
        message: message.into(),
    }
}

/// What a column holds, by its cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Every non-missing cell is a number (an all-missing column counts as numeric, as in
    /// pandas, where it becomes a float column of NaNs).
    Numeric,
    /// Some non-missing cell is not a number.
    Text,
}

/// A parsed CSV file: a header and rows of equally many text cells.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Where the table came from (for error messages).
    pub source: String,
    /// The column names, from the first record.
    pub header: Vec<String>,
    /// The data records, each with `header.len()` cells.
    pub rows: Vec<Vec<String>>,
    /// The 1-based line each row starts on (for error messages).
    pub row_lines: Vec<usize>,
}

/// Reads the CSV file at `path`. A gzipped file (by its magic bytes) is decompressed; when
/// `path` does not exist but `path.gz` does, that is read instead.
pub fn read_csv(path: &Path) -> Result<Table, CsvError> {
    let source = path.display().to_string();
    let actual: PathBuf = if !path.exists() {
        let mut gz = path.as_os_str().to_owned();
        gz.push(".gz");
        let gz = PathBuf::from(gz);
        if gz.exists() {
            gz
        } else {
            return Err(error(
                &source,
                0,
                format!("no such file (nor {})", gz.display()),
            ));
        }
    } else {
        path.to_path_buf()
    };
    let source = actual.display().to_string();
    let bytes = std::fs::read(&actual).map_err(|e| error(&source, 0, e.to_string()))?;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut plain)
            .map_err(|e| {
                error(
                    &source,
                    0,
                    format!("cannot decompress (truncated or corrupt gzip?): {e}"),
                )
            })?;
        plain
    } else {
        bytes
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        error(
            &source,
            0,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })?;
    parse_csv(&text, &source)
}

/// Splits `text` into records of fields. Fields are separated by commas and records by
/// `\n` or `\r\n`; a field in double quotes may hold commas, line breaks and doubled quotes
/// (`""` for `"`). A blank line ends nothing and is skipped.
fn records(text: &str, source: &str) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
    let mut out = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut record_line = 1;
    let mut in_quotes = false;
    // Whether the current field was quoted, so that `"a"b` is caught.
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut end_record = |record: &mut Vec<String>, field: &mut String, record_line: usize| {
        record.push(std::mem::take(field));
        let fields = std::mem::take(record);
        // A line with nothing on it is not a record of one empty field.
        if !(fields.len() == 1 && fields[0].is_empty()) {
            out.push((record_line, fields));
        }
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
            }
            '"' => {
                return Err(error(
                    source,
                    line,
                    format!(
                        "a quote inside the unquoted field {field:?} (quote the whole field and \
                         double the quote)"
                    ),
                ))
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                end_record(&mut record, &mut field, record_line);
                quoted = false;
                line += 1;
                record_line = line;
            }
            _ if quoted => {
                return Err(error(
                    source,
                    line,
                    format!("text {c:?} after the closing quote of a field"),
                ))
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(error(
            source,
            record_line,
            "a quoted field is not closed before the end of the file",
        ));
    }
    if !record.is_empty() || !field.is_empty() || quoted {
        end_record(&mut record, &mut field, record_line);
    }
    Ok(out)
}

/// Parses CSV `text` whose first record is the header; `source` names it in errors.
///
/// Errors on an empty input, an empty or repeated column name, a record with more or fewer
/// fields than the header, and malformed quoting.
pub fn parse_csv(text: &str, source: &str) -> Result<Table, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut recs = records(text, source)?.into_iter();
    let Some((_, header)) = recs.next() else {
        return Err(error(source, 0, "empty file: no header line"));
    };
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(error(
                source,
                1,
                format!("column {} of the header has no name", i + 1),
            ));
        }
        if header[..i].contains(name) {
            return Err(error(
                source,
                1,
                format!("the column name {name:?} appears twice in the header"),
            ));
        }
    }
    let mut rows = Vec::new();
    let mut row_lines = Vec::new();
    for (line, fields) in recs {
        if fields.len() != header.len() {
            return Err(error(
                source,
                line,
                format!(
                    "{} fields, but the header has {} columns",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        rows.push(fields);
        row_lines.push(line);
    }
    Ok(Table {
        source: source.to_string(),
        header,
        rows,
        row_lines,
    })
}

/// True when `cell` is one of the missing-value markers `na`.
pub fn is_na(cell: &str, na: &[&str]) -> bool {
    na.contains(&cell)
}

impl Table {
    /// The number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the table has no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The index of the column called `name`.
    pub fn column_index(&self, name: &str) -> Result<usize, CsvError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            error(
                &self.source,
                0,
                format!(
                    "no column {name:?} (the file has {} columns: {}{})",
                    self.header.len(),
                    self.header
                        .iter()
                        .take(8)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    if self.header.len() > 8 { ", ..." } else { "" }
                ),
            )
        })
    }

    /// The cells of column `col`, top to bottom (empty strings past the last column).
    pub fn column(&self, col: usize) -> impl Iterator<Item = &str> + '_ {
        self.rows
            .iter()
            .map(move |r| r.get(col).map_or("", String::as_str))
    }

    /// Whether column `col` is numeric or text, with `na` the missing-value markers.
    pub fn column_kind(&self, col: usize, na: &[&str]) -> ColumnKind {
        let numeric = self
            .column(col)
            .all(|c| is_na(c, na) || c.parse::<f64>().is_ok());
        if numeric {
            ColumnKind::Numeric
        } else {
            ColumnKind::Text
        }
    }

    /// Column `col` as numbers, `None` for missing cells. Errors, naming the line, on a cell
    /// that is neither a number nor a missing-value marker.
    pub fn numeric_column(&self, col: usize, na: &[&str]) -> Result<Vec<Option<f64>>, CsvError> {
        let name = self.header.get(col).cloned().unwrap_or_default();
        self.column(col)
            .zip(&self.row_lines)
            .map(|(cell, &line)| {
                if is_na(cell, na) {
                    Ok(None)
                } else {
                    cell.parse::<f64>().map(Some).map_err(|_| {
                        error(
                            &self.source,
                            line,
                            format!("column {name:?}: {cell:?} is not a number"),
                        )
                    })
                }
            })
            .collect()
    }

    /// Column `col` as text, `None` for missing cells.
    pub fn text_column(&self, col: usize, na: &[&str]) -> Vec<Option<String>> {
        self.column(col)
            .map(|c| (!is_na(c, na)).then(|| c.to_string()))
            .collect()
    }
}

/// Quotes `field` for a CSV file when it needs it (a comma, quote or line break inside).
pub fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}
