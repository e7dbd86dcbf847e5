//! The environment variables, parsed in one place. Everything they set can also be set
//! through [`crate::PassManager`]'s API; tests use the API, never the process environment.
//!
//! | variable        | value                               | effect                                   |
//! |-----------------|-------------------------------------|------------------------------------------|
//! | `KILN_PASSES`   | comma list: `none`, `all`, `-name`, `+name` or `name` | switches passes, left to right (`none,+cse`: only CSE among the optional passes) |
//! | `KILN_DUMP`     | `all`, or a comma list of pass names | prints the graph text after those passes to stderr |
//! | `KILN_DUMP_DIR` | a directory                          | writes `NN-pass.txt` and `NN-pass.dot` per pass |
//! | `KILN_VERIFY`   | `1`/`0` (`true`/`false`)             | verifier on or off (default: on in debug builds) |

use kiln_ir::{Error, Result};
use std::path::PathBuf;

/// One switch of `KILN_PASSES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Switch {
    /// `none`: every optional pass off.
    NoneOptional,
    /// `all`: every pass on.
    All,
    /// `-name`: that pass off.
    Off(String),
    /// `name` or `+name`: that pass on.
    On(String),
}

/// Settings read from the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvConfig {
    /// `KILN_PASSES`, in order.
    pub switches: Vec<Switch>,
    /// `KILN_DUMP`: `None` when unset; `Some(vec![])` for `all`.
    pub dump: Option<Vec<String>>,
    /// `KILN_DUMP_DIR`.
    pub dump_dir: Option<PathBuf>,
    /// `KILN_VERIFY`.
    pub verify: Option<bool>,
}

impl EnvConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<EnvConfig> {
        let var = |k: &str| std::env::var(k).ok();
        EnvConfig::parse(
            var("KILN_PASSES").as_deref(),
            var("KILN_DUMP").as_deref(),
            var("KILN_DUMP_DIR").as_deref(),
            var("KILN_VERIFY").as_deref(),
        )
    }

    /// Parses the variables' values (`None`: unset).
    pub fn parse(
        passes: Option<&str>,
        dump: Option<&str>,
        dump_dir: Option<&str>,
        verify: Option<&str>,
    ) -> Result<EnvConfig> {
        let items = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        let switches = passes
            .map(items)
            .unwrap_or_default()
            .into_iter()
            .map(|p| match p.as_str() {
                "none" => Switch::NoneOptional,
                "all" => Switch::All,
                _ => match p.strip_prefix('-') {
                    Some(n) => Switch::Off(n.to_string()),
                    None => Switch::On(p.trim_start_matches('+').to_string()),
                },
            })
            .collect();
        let dump = dump.map(items).and_then(|d| match d.as_slice() {
            [] => None,
            [one] if one == "all" => Some(Vec::new()),
            _ => Some(d),
        });
        let dump_dir = dump_dir.filter(|d| !d.is_empty()).map(PathBuf::from);
        let verify = match verify.map(str::trim) {
            None | Some("") => None,
            Some("1" | "true" | "on" | "yes") => Some(true),
            Some("0" | "false" | "off" | "no") => Some(false),
            Some(other) => {
                return Err(Error::Graph(format!(
                    "KILN_VERIFY: expected 1 or 0, got {other:?}"
                )))
            }
        };
        Ok(EnvConfig {
            switches,
            dump,
            dump_dir,
            verify,
        })
    }
}
