//! Printing as MXNet does: numpy's `str()` of the values, then `<NDArray 2x3 @cpu(0)>`.
//!
//! The value layout follows numpy's `array2string` defaults: 75-column lines, floats in the
//! shortest form that round-trips (at most 8 decimals), scientific notation when the
//! magnitudes call for it, and arrays over 1000 elements summarized with `...` keeping 3
//! items at each edge of every axis.

use super::NDArray;
use kiln_ir::{DType, DataRef, Shape, TensorView};
use std::fmt;

const LINE_WIDTH: usize = 75;
const THRESHOLD: usize = 1000;
const EDGE_ITEMS: usize = 3;
const PRECISION: usize = 8;

impl fmt::Display for NDArray {
    /// A symbolic array (inside a hybridize trace) has no values to print: it prints as
    /// `<symbolic NDArray 2x3 f32 @cpu(0)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_symbolic() {
            let dims: Vec<String> = self.shape().iter().map(|d| d.to_string()).collect();
            return write!(
                f,
                "<symbolic NDArray {} {} @{}>",
                if dims.is_empty() {
                    "scalar".to_string()
                } else {
                    dims.join("x")
                },
                self.dtype(),
                self.context()
            );
        }
        let body = self
            .with_view(|v| format_values(&v))
            .map_err(|_| fmt::Error)?;
        let dims: Vec<String> = self.shape().iter().map(|d| d.to_string()).collect();
        let shape = if dims.is_empty() {
            "scalar".to_string()
        } else {
            dims.join("x")
        };
        write!(f, "{body}\n<NDArray {shape} @{}>", self.context())
    }
}

/// numpy's `str()` of the values of `v`.
pub(crate) fn format_values(v: &TensorView<'_>) -> String {
    let shape = &v.shape;
    if shape.numel() == 0 {
        return "[]".to_string();
    }
    let summarize = shape.numel() > THRESHOLD;
    let shown = shown_positions(shape, summarize);
    let format = ElementFormat::new(v.data, &shown);
    let printer = Printer {
        shape,
        strides: shape.strides().to_vec(),
        data: v.data,
        format: &format,
        summarize,
    };
    let mut index = Vec::with_capacity(shape.rank());
    printer.recurse(&mut index, " ", LINE_WIDTH)
}

/// The positions printed along an axis of length `d`.
fn shown_along(d: usize, summarize: bool) -> Vec<usize> {
    if summarize && 2 * EDGE_ITEMS < d {
        (0..EDGE_ITEMS).chain(d - EDGE_ITEMS..d).collect()
    } else {
        (0..d).collect()
    }
}

/// The flat positions of the elements that will be printed (numpy sizes the columns from
/// these only).
fn shown_positions(shape: &Shape, summarize: bool) -> Vec<usize> {
    let strides = shape.strides();
    let mut flats = vec![0usize];
    for (axis, &d) in shape.iter().enumerate() {
        let pos = shown_along(d, summarize);
        let stride = strides[axis];
        flats = flats
            .iter()
            .flat_map(|&base| pos.iter().map(move |&p| base + p * stride))
            .collect();
    }
    flats
}

/// Element `i` of `data` as an integer (integer dtypes; exact for all of i64).
fn int_at(data: DataRef<'_>, i: usize) -> i64 {
    match data {
        DataRef::I32(s) => s.get(i).map_or(0, |&v| i64::from(v)),
        DataRef::I64(s) => s.get(i).copied().unwrap_or(0),
        DataRef::U8(s) => s.get(i).map_or(0, |&v| i64::from(v)),
        other => float_at(other, i) as i64,
    }
}

/// Element `i` of `data` as f64.
fn float_at(data: DataRef<'_>, i: usize) -> f64 {
    if i < data.len() {
        data.get_f64(i)
    } else {
        0.0
    }
}

/// How every element of one array is formatted (numpy's per-dtype formatter, sized from the
/// printed values so columns line up).
enum ElementFormat {
    Bool,
    Int { width: usize },
    Float(FloatFormat),
}

struct FloatFormat {
    single: bool,
    exp: bool,
    /// Digits after the point in scientific mode (all values share it).
    precision: usize,
    pad_left: usize,
    pad_right: usize,
    exp_size: usize,
}

impl ElementFormat {
    fn new(data: DataRef<'_>, shown: &[usize]) -> ElementFormat {
        match data.dtype() {
            DType::Bool => ElementFormat::Bool,
            DType::F32 | DType::F64 => {
                let values: Vec<f64> = shown.iter().map(|&i| float_at(data, i)).collect();
                ElementFormat::Float(FloatFormat::new(data.dtype() == DType::F32, &values))
            }
            DType::I32 | DType::I64 | DType::U8 => {
                let width = shown
                    .iter()
                    .map(|&i| int_at(data, i).to_string().len())
                    .max()
                    .unwrap_or(0);
                ElementFormat::Int { width }
            }
        }
    }

    fn format(&self, data: DataRef<'_>, i: usize) -> String {
        match self {
            ElementFormat::Bool => if float_at(data, i) != 0.0 {
                " True"
            } else {
                "False"
            }
            .to_string(),
            ElementFormat::Int { width } => format!("{:>width$}", int_at(data, i)),
            ElementFormat::Float(f) => f.format(float_at(data, i)),
        }
    }
}

impl FloatFormat {
    fn new(single: bool, shown: &[f64]) -> FloatFormat {
        let finite: Vec<f64> = shown.iter().copied().filter(|v| v.is_finite()).collect();
        let nonzero: Vec<f64> = finite
            .iter()
            .map(|v| v.abs())
            .filter(|&v| v != 0.0)
            .collect();
        // numpy compares in the array's own precision.
        let (small, big) = if single {
            (f64::from(0.0001f32), f64::from(1e8f32))
        } else {
            (0.0001, 1e8)
        };
        let exp = match (
            nonzero.iter().copied().reduce(f64::max),
            nonzero.iter().copied().reduce(f64::min),
        ) {
            (Some(max), Some(min)) => max >= big || min < small || max / min > 1000.0,
            _ => false,
        };
        let mut f = FloatFormat {
            single,
            exp,
            precision: 0,
            pad_left: 0,
            pad_right: 0,
            exp_size: 0,
        };
        if !finite.is_empty() {
            if exp {
                let parts: Vec<(String, String, String)> =
                    finite.iter().map(|&v| f.scientific_parts(v)).collect();
                f.precision = parts.iter().map(|p| p.1.len()).max().unwrap_or(0);
                f.pad_left = parts.iter().map(|p| p.0.len()).max().unwrap_or(0);
                f.exp_size = parts.iter().map(|p| p.2.len() - 1).max().unwrap_or(0);
                f.pad_right = f.exp_size + 2 + f.precision;
            } else {
                let parts: Vec<(String, String)> =
                    finite.iter().map(|&v| f.positional_parts(v)).collect();
                f.pad_left = parts.iter().map(|p| p.0.len()).max().unwrap_or(0);
                f.pad_right = parts.iter().map(|p| p.1.len()).max().unwrap_or(0);
            }
        }
        if finite.len() != shown.len() {
            let neg_inf = shown.contains(&f64::NEG_INFINITY);
            let inf_len = 3 + usize::from(neg_inf);
            let offset = f.pad_right + 1;
            f.pad_left = f
                .pad_left
                .max(3usize.saturating_sub(offset))
                .max(inf_len.saturating_sub(offset));
        }
        f
    }

    /// The shortest round-trip decimal digits of `v` in its own precision.
    fn shortest(&self, v: f64) -> String {
        if self.single {
            format!("{}", v as f32)
        } else {
            format!("{v}")
        }
    }

    /// Integer part (with sign) and fraction digits, trimmed of trailing zeros, at most
    /// [`PRECISION`] decimals.
    fn positional_parts(&self, v: f64) -> (String, String) {
        let mut s = self.shortest(v);
        let frac_len = s.split_once('.').map_or(0, |(_, f)| f.len());
        if frac_len > PRECISION {
            s = if self.single {
                format!("{:.*}", PRECISION, v as f32)
            } else {
                format!("{v:.PRECISION$}")
            };
        }
        let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
        (int.to_string(), frac.trim_end_matches('0').to_string())
    }

    /// Mantissa integer part (with sign), mantissa fraction digits (trimmed, at most
    /// [`PRECISION`]) and the exponent with its sign (at least two digits).
    fn scientific_parts(&self, v: f64) -> (String, String, String) {
        let shortest = if self.single {
            format!("{:e}", v as f32)
        } else {
            format!("{v:e}")
        };
        let mut s = shortest;
        let frac_len = |s: &str| {
            let mant = s.split_once('e').map_or(s, |(m, _)| m);
            mant.split_once('.').map_or(0, |(_, f)| f.len())
        };
        if frac_len(&s) > PRECISION {
            s = if self.single {
                format!("{:.*e}", PRECISION, v as f32)
            } else {
                format!("{v:.PRECISION$e}")
            };
        }
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        (
            int.to_string(),
            frac.trim_end_matches('0').to_string(),
            format!("{sign}{digits:0>2}"),
        )
    }

    fn format(&self, v: f64) -> String {
        let width = self.pad_left + self.pad_right + 1;
        if v.is_nan() {
            return format!("{:>width$}", "nan");
        }
        if v.is_infinite() {
            let s = if v < 0.0 { "-inf" } else { "inf" };
            return format!("{s:>width$}");
        }
        if self.exp {
            let (int, frac, exp) = self.scientific_parts(v);
            let (sign, digits) = exp.split_at(1);
            format!(
                "{int:>pl$}.{frac:0<prec$}e{sign}{digits:0>es$}",
                pl = self.pad_left,
                prec = self.precision,
                es = self.exp_size
            )
        } else {
            let (int, frac) = self.positional_parts(v);
            format!(
                "{int:>pl$}.{frac:<pr$}",
                pl = self.pad_left,
                pr = self.pad_right
            )
        }
    }
}

/// numpy's `_formatArray`: nested brackets, rows wrapped at the line width, `...` for
/// summarized axes.
struct Printer<'a> {
    shape: &'a Shape,
    strides: Vec<usize>,
    data: DataRef<'a>,
    format: &'a ElementFormat,
    summarize: bool,
}

impl Printer<'_> {
    fn recurse(&self, index: &mut Vec<usize>, hanging: &str, width: usize) -> String {
        let axis = index.len();
        let axes_left = self.shape.rank() - axis;
        if axes_left == 0 {
            let flat: usize = index.iter().zip(&self.strides).map(|(i, s)| i * s).sum();
            return self.format.format(self.data, flat);
        }
        let next_hanging = format!("{hanging} ");
        let next_width = width.saturating_sub(1);
        let len = self.shape[axis];
        let summary = self.summarize && 2 * EDGE_ITEMS < len;
        let (leading, trailing) = if summary {
            (EDGE_ITEMS, EDGE_ITEMS)
        } else {
            (0, len)
        };
        let mut child = |i: usize| {
            index.push(i);
            let s = self.recurse(index, &next_hanging, next_width);
            index.pop();
            s
        };
        let mut s = String::new();
        if axes_left == 1 {
            let elem_width = width.saturating_sub(1);
            let mut line = hanging.to_string();
            for i in 0..leading {
                extend_line(&mut s, &mut line, &child(i), elem_width, hanging);
                line.push(' ');
            }
            if summary {
                extend_line(&mut s, &mut line, "...", elem_width, hanging);
                line.push(' ');
            }
            for i in (2..=trailing).rev() {
                extend_line(&mut s, &mut line, &child(len - i), elem_width, hanging);
                line.push(' ');
            }
            extend_line(&mut s, &mut line, &child(len - 1), elem_width, hanging);
            s.push_str(&line);
        } else {
            let line_sep = "\n".repeat(axes_left - 1);
            for i in 0..leading {
                s.push_str(hanging);
                s.push_str(&child(i));
                s.push_str(&line_sep);
            }
            if summary {
                s.push_str(hanging);
                s.push_str("...");
                s.push_str(&line_sep);
            }
            for i in (2..=trailing).rev() {
                s.push_str(hanging);
                s.push_str(&child(len - i));
                s.push_str(&line_sep);
            }
            s.push_str(hanging);
            s.push_str(&child(len - 1));
        }
        format!("[{}]", &s[hanging.len()..])
    }
}

/// Appends `word` to `line`, first moving `line` into `s` when the word would overflow
/// (unless the line holds only the indent, where wrapping would not help).
fn extend_line(s: &mut String, line: &mut String, word: &str, width: usize, prefix: &str) {
    let needs_wrap = line.len() + word.len() > width && line.len() > prefix.len();
    if needs_wrap {
        s.push_str(line.trim_end());
        s.push('\n');
        *line = prefix.to_string();
    }
    line.push_str(word);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::Tensor;

    fn show<T: kiln_ir::Element>(v: Vec<T>, shape: &[usize]) -> String {
        let t = Tensor::from_vec(v, shape).unwrap();
        format_values(&t.view())
    }

    #[test]
    fn floats_print_as_numpy() {
        assert_eq!(show(vec![1.0f32, 2.0, 3.0], &[3]), "[1. 2. 3.]");
        assert_eq!(show(vec![1.0f32, 2.5], &[2]), "[1.  2.5]");
        assert_eq!(show(vec![-1.0f64, 0.125], &[2]), "[-1.     0.125]");
        assert_eq!(show(vec![0.1f32, 0.2, 0.3], &[3]), "[0.1 0.2 0.3]");
        assert_eq!(show(vec![1.0f64 / 3.0], &[1]), "[0.33333333]");
        assert_eq!(show(vec![1e-5f64, 1.0], &[2]), "[1.e-05 1.e+00]");
        assert_eq!(show(vec![1.5e-5f64, 1.0], &[2]), "[1.5e-05 1.0e+00]");
        assert_eq!(show(vec![1e100f64, 1e-5], &[2]), "[1.e+100 1.e-005]");
        assert_eq!(
            show(vec![f64::NAN, 1.0, f64::NEG_INFINITY], &[3]),
            "[ nan   1. -inf]"
        );
        assert_eq!(show(vec![2.0f32], &[]), "2.");
    }

    #[test]
    fn ints_and_bools_pad_to_the_widest() {
        assert_eq!(show(vec![1i64, 10, -3], &[3]), "[ 1 10 -3]");
        assert_eq!(
            show(vec![i64::MAX, 0], &[2]),
            "[9223372036854775807                   0]"
        );
        assert_eq!(show(vec![255u8, 7], &[2]), "[255   7]");
        assert_eq!(show(vec![true, false], &[2]), "[ True False]");
    }

    #[test]
    fn long_rows_wrap_at_75_columns() {
        let v: Vec<f32> = (0..30).map(|i| i as f32).collect();
        assert_eq!(
            show(v, &[30]),
            "[ 0.  1.  2.  3.  4.  5.  6.  7.  8.  9. 10. 11. 12. 13. 14. 15. 16. 17.\n \
             18. 19. 20. 21. 22. 23. 24. 25. 26. 27. 28. 29.]"
        );
    }
}
