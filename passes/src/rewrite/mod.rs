//! A small declarative rewrite engine: named rules, one a line, applied to a fixpoint.
//!
//! A rule is `name: pattern => template`, or a pattern with a rewrite written in Rust for the
//! rules that compute new attributes (composing two transposes). The pattern language is
//! described in [`pattern`]; in short:
//!
//! ```text
//! # name           pattern                                   replacement
//! neg-neg:         (neg (neg ?x))                         => ?x
//! mul-one-right:   (mul ?x 1)                             => ?x
//! max-self:        (maximum ?x ?x)                        => ?x
//! pow-two:         (pow_scalar{scalar=2, reverse=false} ?x) => (mul ?x ?x)
//! ```
//!
//! [`RuleSet::apply`] walks the graph in topological order and, at each op node, tries the
//! rules in order; the first that matches and builds a replacement *of the same type* (shape
//! and dtype) fires: every use of the node moves to the replacement, the node and whatever
//! only it used are removed, and the rule's counter goes up. A replacement of another type
//! (`(mul ?x 1)` where the `1` broadcasts `x` to a larger shape) is dropped and the rule does
//! not fire, so no rule can change a value's type. Sweeps repeat until one fires nothing or
//! `max_sweeps` is reached.
//!
//! ```
//! use kiln_ir::{DType, Graph, Op, TensorType, UnaryOp};
//! use kiln_passes::rewrite::RuleSet;
//!
//! let rules = RuleSet::parse("neg-neg: (neg (neg ?x)) => ?x")?;
//! let mut g = Graph::new();
//! let x = g.add_input("x", TensorType::new([2], DType::F32))?;
//! let n1 = g.add_op(Op::Unary { f: UnaryOp::Neg }, &[x])?;
//! let n2 = g.add_op(Op::Unary { f: UnaryOp::Neg }, &[n1])?;
//! g.set_outputs(vec![n2])?;
//! let fired = rules.apply(&mut g, 8)?;
//! assert_eq!(fired, vec![("neg-neg".to_string(), 1)]);
//! assert_eq!(g.to_text(), "%0 = input \"x\" : f32[2]\nreturn %0\n");
//! # Ok::<(), kiln_ir::Error>(())
//! ```

pub mod pattern;

pub use pattern::{Match, Pattern, Template, VarKind};

use crate::util::{remove_if_dead, replace_and_clean};
use crate::Firings;
use kiln_ir::{Error, Graph, NodeId, Result};

/// A rewrite written in Rust: given the match, add the replacement to the graph and return
/// it, or return `None` to decline (then it must not have added anything).
pub type RewriteFn = fn(&Match, &mut Graph) -> Result<Option<NodeId>>;

/// How a rule builds its replacement.
#[derive(Clone, Debug)]
pub enum Rewrite {
    /// From a template over the captures.
    Template(Template),
    /// In code.
    Code(RewriteFn),
}

/// One named rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The rule's name, as counted in statistics.
    pub name: String,
    /// What it matches.
    pub pattern: Pattern,
    /// What it builds.
    pub rewrite: Rewrite,
}

impl Rule {
    /// Parses `name: pattern => template`.
    pub fn parse(line: &str) -> Result<Rule> {
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| Error::Graph(format!("rewrite rule {line:?}: expected 'name: ...'")))?;
        let (pat, tmpl) = rest.split_once("=>").ok_or_else(|| {
            Error::Graph(format!(
                "rewrite rule {line:?}: expected 'pattern => replacement'"
            ))
        })?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(Error::Graph(format!(
                "rewrite rule {line:?}: the name must be one word"
            )));
        }
        let pattern = Pattern::parse(pat)?;
        let template = Template::parse(tmpl)?;
        let (mut bound, mut used) = (Vec::new(), Vec::new());
        pattern.vars(&mut bound);
        template.vars(&mut used);
        if let Some(v) = used.iter().find(|v| !bound.contains(v)) {
            return Err(Error::Graph(format!(
                "rewrite rule {name}: the replacement reads ?{v}, which the pattern does not bind"
            )));
        }
        Ok(Rule {
            name: name.to_string(),
            pattern,
            rewrite: Rewrite::Template(template),
        })
    }

    /// A rule whose replacement is computed by `f`.
    pub fn code(name: &str, pattern: &str, f: RewriteFn) -> Result<Rule> {
        Ok(Rule {
            name: name.to_string(),
            pattern: Pattern::parse(pattern)?,
            rewrite: Rewrite::Code(f),
        })
    }

    /// Tries the rule at `id`: the replacement when the pattern matches and the rewrite
    /// builds a node of `id`'s type.
    fn try_at(&self, g: &mut Graph, id: NodeId) -> Result<Option<NodeId>> {
        let Some(m) = self.pattern.matches(g, id) else {
            return Ok(None);
        };
        let new = match &self.rewrite {
            Rewrite::Template(t) => match t.build(g, &m) {
                Ok(n) => n,
                // A template op that does not infer on these inputs simply does not apply.
                Err(_) => return Ok(None),
            },
            Rewrite::Code(f) => match f(&m, g)? {
                Some(n) => n,
                None => return Ok(None),
            },
        };
        if new == id {
            return Ok(None);
        }
        if g.ty(new)? != g.ty(id)? {
            remove_if_dead(g, new)?;
            return Ok(None);
        }
        Ok(Some(new))
    }
}

impl std::fmt::Display for Rule {
    /// `name: pattern => replacement`, with `<code>` for a replacement written in Rust; a
    /// template rule prints in the syntax [`Rule::parse`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rewrite {
            Rewrite::Template(t) => write!(f, "{}: {} => {t}", self.name, self.pattern),
            Rewrite::Code(_) => write!(f, "{}: {} => <code>", self.name, self.pattern),
        }
    }
}

impl std::fmt::Display for RuleSet {
    /// The rules, one a line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for r in &self.rules {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

/// An ordered list of rules.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Parses rules, one a line; blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<RuleSet> {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Rule::parse)
            .collect::<Result<Vec<_>>>()?;
        Ok(RuleSet { rules })
    }

    /// Appends a rule.
    pub fn push(&mut self, rule: Rule) {
        self.rules.push(rule);
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Applies the rules until none fires or `max_sweeps` sweeps have run; returns how often
    /// each rule fired, in first-firing order.
    pub fn apply(&self, g: &mut Graph, max_sweeps: usize) -> Result<Vec<(String, usize)>> {
        let mut firings = Firings::default();
        for _ in 0..max_sweeps {
            let mut fired = false;
            for id in g.topo_order() {
                if !g.contains(id) || g.op(id)?.is_none() {
                    continue;
                }
                for rule in &self.rules {
                    if let Some(new) = rule.try_at(g, id)? {
                        replace_and_clean(g, id, new)?;
                        firings.bump(&rule.name);
                        fired = true;
                        break;
                    }
                }
            }
            if !fired {
                break;
            }
        }
        Ok(firings.into_vec())
    }
}
