//! Reading MXNet attribute strings (Python syntax: `"True"`, `"(3, 3)"`, `"None"`, `"-1"`).

use crate::mxnet::symbol::SymNode;
use kiln_ir::{DType, Error, Result};

/// A node's attributes with typed getters; errors name the node, the key and the value.
pub(crate) struct Attrs<'a> {
    node: &'a SymNode,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(node: &'a SymNode) -> Self {
        Attrs { node }
    }

    fn bad(&self, key: &str, value: &str, what: &str) -> Error {
        Error::invalid(
            self.node.op.clone(),
            format!(
                "node {:?}: attribute {key}={value:?} is not {what}",
                self.node.name
            ),
        )
    }

    /// The raw string, absent or `"None"` reading as `None`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.node
            .attrs
            .get(key)
            .map(|s| s.trim())
            .filter(|s| *s != "None" && !s.is_empty())
    }

    /// True when the attribute is written as `None` (which can differ from its default).
    pub(crate) fn is_none(&self, key: &str) -> bool {
        self.node.attrs.get(key).is_some_and(|s| s.trim() == "None")
    }

    pub(crate) fn str_or(&self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v {
                "True" | "true" | "1" => Ok(true),
                "False" | "false" | "0" => Ok(false),
                _ => Err(self.bad(key, v, "a boolean")),
            },
        }
    }

    pub(crate) fn opt_float(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_float(v)
                .map(Some)
                .ok_or_else(|| self.bad(key, v, "a number")),
        }
    }

    pub(crate) fn float(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_float(key)?.unwrap_or(default))
    }

    pub(crate) fn opt_int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_int(v)
                .map(Some)
                .ok_or_else(|| self.bad(key, v, "an integer")),
        }
    }

    pub(crate) fn int(&self, key: &str, default: i64) -> Result<i64> {
        Ok(self.opt_int(key)?.unwrap_or(default))
    }

    /// A non-negative integer (a count, a size).
    pub(crate) fn usize(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_int(v)
                .and_then(|x| usize::try_from(x).ok())
                .ok_or_else(|| self.bad(key, v, "a non-negative integer")),
        }
    }

    /// A required non-negative integer.
    pub(crate) fn req_usize(&self, key: &str) -> Result<usize> {
        match self.get(key) {
            None => Err(self.missing(key)),
            Some(_) => self.usize(key, 0),
        }
    }

    pub(crate) fn missing(&self, key: &str) -> Error {
        Error::invalid(
            self.node.op.clone(),
            format!("node {:?}: the attribute {key} is required", self.node.name),
        )
    }

    /// A tuple of integers (`"(3, 3)"`, `"[1]"`, `"(2,)"`, `"()"` or a bare `"3"`).
    pub(crate) fn tuple(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let items = parse_opt_tuple(v).ok_or_else(|| self.bad(key, v, "a tuple"))?;
                items
                    .into_iter()
                    .map(|x| x.ok_or_else(|| self.bad(key, v, "a tuple of integers")))
                    .collect::<Result<Vec<i64>>>()
                    .map(Some)
            }
        }
    }

    /// A tuple of non-negative integers.
    pub(crate) fn utuple(&self, key: &str) -> Result<Option<Vec<usize>>> {
        match self.tuple(key)? {
            None => Ok(None),
            Some(v) => v
                .iter()
                .map(|&x| {
                    usize::try_from(x)
                        .map_err(|_| self.bad(key, self.get(key).unwrap_or(""), "a tuple of sizes"))
                })
                .collect::<Result<Vec<usize>>>()
                .map(Some),
        }
    }

    /// A tuple whose entries may be `None` (slice bounds).
    pub(crate) fn opt_tuple(&self, key: &str) -> Result<Option<Vec<Option<i64>>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_opt_tuple(v)
                .map(Some)
                .ok_or_else(|| self.bad(key, v, "a tuple")),
        }
    }

    /// MXNet's dtype attribute (`"float32"`...), or `default`.
    pub(crate) fn dtype(&self, key: &str, default: DType) -> Result<DType> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_dtype(v).ok_or_else(|| {
                self.bad(
                    key,
                    v,
                    "a dtype kiln has (float32, float64, float16 read as float32, uint8, int32, int64, bool)",
                )
            }),
        }
    }
}

pub(crate) fn parse_float(v: &str) -> Option<f64> {
    let v = v.trim();
    match v {
        "inf" | "+inf" | "Infinity" => Some(f64::INFINITY),
        "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
        "nan" | "NaN" => Some(f64::NAN),
        "True" => Some(1.0),
        "False" => Some(0.0),
        _ => v.parse::<f64>().ok(),
    }
}

pub(crate) fn parse_int(v: &str) -> Option<i64> {
    let v = v.trim().trim_end_matches('L');
    v.parse::<i64>().ok().or_else(|| {
        // "2.0" style integers appear in some files.
        let f = v.parse::<f64>().ok()?;
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

/// `"(1, None, -2)"` -> `[Some(1), None, Some(-2)]`; a bare scalar is a 1-tuple.
pub(crate) fn parse_opt_tuple(v: &str) -> Option<Vec<Option<i64>>> {
    let v = v.trim();
    let inner =
        if (v.starts_with('(') && v.ends_with(')')) || (v.starts_with('[') && v.ends_with(']')) {
            &v[1..v.len() - 1]
        } else {
            v
        };
    let mut out = Vec::new();
    for part in inner.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        if p == "None" {
            out.push(None);
        } else {
            out.push(Some(parse_int(p)?));
        }
    }
    Some(out)
}

/// MXNet dtype names and the numeric codes of `__dtype__`.
pub(crate) fn parse_dtype(v: &str) -> Option<DType> {
    match v.trim().trim_matches('\'') {
        "float32" | "0" => Some(DType::F32),
        "float64" | "1" => Some(DType::F64),
        "float16" | "2" => Some(DType::F32),
        "uint8" | "3" => Some(DType::U8),
        "int32" | "4" => Some(DType::I32),
        "int64" | "6" => Some(DType::I64),
        "bool" | "7" => Some(DType::Bool),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_and_numbers() {
        assert_eq!(
            parse_opt_tuple("(1, None, -2)"),
            Some(vec![Some(1), None, Some(-2)])
        );
        assert_eq!(parse_opt_tuple("(3,)"), Some(vec![Some(3)]));
        assert_eq!(parse_opt_tuple("()"), Some(vec![]));
        assert_eq!(parse_opt_tuple("[2, 2]"), Some(vec![Some(2), Some(2)]));
        assert_eq!(parse_opt_tuple("5"), Some(vec![Some(5)]));
        assert_eq!(parse_opt_tuple("(a, 1)"), None);
        assert_eq!(parse_int("3L"), Some(3));
        assert_eq!(parse_int("2.0"), Some(2));
        assert_eq!(parse_int("2.5"), None);
        assert_eq!(parse_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("1e-5"), Some(1e-5));
        assert_eq!(parse_dtype("float16"), Some(DType::F32));
        assert_eq!(parse_dtype("int8"), None);
    }

    #[test]
    fn attribute_errors_name_the_node() {
        let mut node = SymNode {
            op: "Convolution".into(),
            name: "conv0".into(),
            attrs: Default::default(),
            inputs: vec![],
        };
        node.attrs.insert("kernel".into(), "(3, x)".into());
        node.attrs.insert("no_bias".into(), "maybe".into());
        node.attrs.insert("scale".into(), "None".into());
        let a = Attrs::new(&node);
        let e = a.tuple("kernel").unwrap_err().to_string();
        assert!(e.contains("conv0") && e.contains("kernel"), "{e}");
        let e = a.bool("no_bias", false).unwrap_err().to_string();
        assert!(e.contains("no_bias=\"maybe\""), "{e}");
        assert_eq!(a.opt_float("scale").unwrap(), None);
        assert!(a
            .req_usize("num_filter")
            .unwrap_err()
            .to_string()
            .contains("required"));
    }
}
