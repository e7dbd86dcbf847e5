//! The pattern language: parsing and matching.
//!
//! ```text
//! pattern  := '?' NAME [':' KIND]          any value, captured as NAME
//!           | NUMBER                       a constant or `full` holding NUMBER everywhere
//!           | '(' OP [ATTRS] pattern* ')' ['@' NAME]
//! KIND     := 'const'                      a constant node
//!           | 'scalar'                     a constant node with one element
//! ATTRS    := '{' KEY '=' JSON (',' KEY '=' JSON)* '}'
//! template := '?' NAME | '(' OP template* ')'       (OP: a unary or binary op's name)
//! ```
//!
//! `OP` is the op's name in the text form (`mul`, `mul_scalar`, `transpose`); an op pattern
//! matches a node with exactly as many inputs as it lists. `ATTRS` constrain the op's
//! attributes by their JSON value (`{scalar=1, reverse=false}`; numbers compare as numbers).
//! A `NAME` used twice must match the same node (`(maximum ?x ?x)`); `@NAME` captures an op
//! node itself, so a rewrite written in code can read its attributes.

use crate::util::uniform_value;
use kiln_ir::graph::NodeKind;
use kiln_ir::{BinaryOp, Error, Graph, NodeId, Op, Result, UnaryOp};
use serde_json::Value;

/// What a `?NAME` variable accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarKind {
    /// Any node.
    Any,
    /// A constant node.
    Const,
    /// A constant node with exactly one element.
    Scalar,
}

/// A pattern over the IR (see the module docs for the syntax).
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    /// `?name` or `?name:kind`.
    Var {
        /// The capture name.
        name: String,
        /// What it accepts.
        kind: VarKind,
    },
    /// A node holding this value everywhere (a constant or `full`).
    Value(f64),
    /// An op node.
    Op {
        /// The op's text-form name.
        name: String,
        /// Attribute constraints, as JSON values.
        attrs: Vec<(String, Value)>,
        /// Patterns for its inputs, in order.
        args: Vec<Pattern>,
        /// `@name`: the node itself is captured.
        capture: Option<String>,
    },
}

/// A replacement built from captures: a captured node, or a unary/binary op of templates.
#[derive(Clone, Debug, PartialEq)]
pub enum Template {
    /// `?name`: the node captured by that name.
    Var(String),
    /// `(op args...)`: a new node.
    Op {
        /// The op (a unary or binary op).
        op: Op,
        /// Its inputs.
        args: Vec<Template>,
    },
}

/// The nodes a pattern matched: the root and every capture.
#[derive(Clone, Debug, Default)]
pub struct Match {
    /// The node the whole pattern matched.
    pub root: NodeId,
    bindings: Vec<(String, NodeId)>,
}

impl Match {
    /// The node captured as `name` (`?name` or `@name`).
    pub fn get(&self, name: &str) -> Result<NodeId> {
        self.bindings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
            .ok_or_else(|| Error::Graph(format!("rewrite: no capture named {name:?}")))
    }

    fn bind(&mut self, name: &str, id: NodeId) -> bool {
        match self.bindings.iter().find(|(n, _)| n == name) {
            Some((_, bound)) => *bound == id,
            None => {
                self.bindings.push((name.to_string(), id));
                true
            }
        }
    }
}

impl Pattern {
    /// Parses one pattern.
    pub fn parse(text: &str) -> Result<Pattern> {
        let mut p = Parser::new(text);
        let pat = p.pattern()?;
        p.end()?;
        Ok(pat)
    }

    /// Matches the pattern at `id`.
    pub fn matches(&self, g: &Graph, id: NodeId) -> Option<Match> {
        let mut m = Match {
            root: id,
            bindings: Vec::new(),
        };
        self.match_into(g, id, &mut m).then_some(m)
    }

    fn match_into(&self, g: &Graph, id: NodeId, m: &mut Match) -> bool {
        let Ok(node) = g.node(id) else {
            return false;
        };
        match self {
            Pattern::Var { name, kind } => {
                let ok = match kind {
                    VarKind::Any => true,
                    VarKind::Const => matches!(node.kind, NodeKind::Const(_)),
                    VarKind::Scalar => {
                        matches!(node.kind, NodeKind::Const(_)) && node.ty.shape.numel() == 1
                    }
                };
                ok && m.bind(name, id)
            }
            Pattern::Value(v) => uniform_value(g, id).is_some_and(|x| x == *v),
            Pattern::Op {
                name,
                attrs,
                args,
                capture,
            } => {
                let NodeKind::Op(op) = &node.kind else {
                    return false;
                };
                if op.name() != name {
                    return false;
                }
                if !attrs.is_empty() && !attrs_match(op, attrs) {
                    return false;
                }
                let Ok(inputs) = g.inputs_of(id) else {
                    return false;
                };
                if inputs.len() != args.len() {
                    return false;
                }
                if let Some(c) = capture {
                    if !m.bind(c, id) {
                        return false;
                    }
                }
                args.iter()
                    .zip(inputs)
                    .all(|(p, input)| p.match_into(g, input, m))
            }
        }
    }
}

fn attrs_match(op: &Op, attrs: &[(String, Value)]) -> bool {
    let Ok(Value::Object(map)) = serde_json::to_value(op) else {
        return false;
    };
    attrs.iter().all(|(k, want)| match (map.get(k), want) {
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(got), want) => got == want,
        (None, _) => false,
    })
}

impl Template {
    /// Parses one template.
    pub fn parse(text: &str) -> Result<Template> {
        let mut p = Parser::new(text);
        let t = p.template()?;
        p.end()?;
        Ok(t)
    }

    /// Every capture name the template reads.
    pub(crate) fn vars(&self, out: &mut Vec<String>) {
        match self {
            Template::Var(n) => out.push(n.clone()),
            Template::Op { args, .. } => args.iter().for_each(|a| a.vars(out)),
        }
    }

    /// Builds the replacement in `g`.
    pub fn build(&self, g: &mut Graph, m: &Match) -> Result<NodeId> {
        match self {
            Template::Var(name) => m.get(name),
            Template::Op { op, args } => {
                let ids = args
                    .iter()
                    .map(|a| a.build(g, m))
                    .collect::<Result<Vec<_>>>()?;
                g.add_op(op.clone(), &ids)
            }
        }
    }
}

impl Pattern {
    /// Every capture name the pattern binds.
    pub(crate) fn vars(&self, out: &mut Vec<String>) {
        match self {
            Pattern::Var { name, .. } => out.push(name.clone()),
            Pattern::Value(_) => {}
            Pattern::Op { args, capture, .. } => {
                out.extend(capture.clone());
                args.iter().for_each(|a| a.vars(out));
            }
        }
    }
}

/// A unary or binary op by its text-form name.
fn simple_op(name: &str) -> Option<Op> {
    UnaryOp::ALL
        .iter()
        .find(|f| f.name() == name)
        .map(|&f| Op::Unary { f })
        .or_else(|| {
            BinaryOp::ALL
                .iter()
                .find(|f| f.name() == name)
                .map(|&f| Op::Binary { f })
        })
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser { text, pos: 0 }
    }

    fn err(&self, what: &str) -> Error {
        Error::Graph(format!(
            "rewrite pattern {:?}: {what} at byte {}",
            self.text, self.pos
        ))
    }

    fn skip_ws(&mut self) {
        while self.rest().starts_with(char::is_whitespace) {
            self.pos += self.rest().chars().next().map_or(1, char::len_utf8);
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.rest().chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<String> {
        self.skip_ws();
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.err("expected a name"));
        }
        let s = self.rest()[..len].to_string();
        self.pos += len;
        Ok(s)
    }

    fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.err("unexpected trailing text")),
        }
    }

    fn var(&mut self) -> Result<(String, VarKind)> {
        let name = self.ident()?;
        let kind = if self.eat(':') {
            match self.ident()?.as_str() {
                "const" => VarKind::Const,
                "scalar" => VarKind::Scalar,
                other => return Err(self.err(&format!("unknown variable kind {other:?}"))),
            }
        } else {
            VarKind::Any
        };
        Ok((name, kind))
    }

    fn pattern(&mut self) -> Result<Pattern> {
        match self.peek() {
            Some('?') => {
                self.pos += 1;
                let (name, kind) = self.var()?;
                Ok(Pattern::Var { name, kind })
            }
            Some('(') => {
                self.pos += 1;
                let name = self.ident()?;
                let attrs = if self.peek() == Some('{') {
                    self.attrs()?
                } else {
                    Vec::new()
                };
                let mut args = Vec::new();
                while !self.eat(')') {
                    if self.peek().is_none() {
                        return Err(self.err("missing ')'"));
                    }
                    args.push(self.pattern()?);
                }
                let capture = if self.eat('@') {
                    Some(self.ident()?)
                } else {
                    None
                };
                Ok(Pattern::Op {
                    name,
                    attrs,
                    args,
                    capture,
                })
            }
            Some(_) => {
                let len = self
                    .rest()
                    .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
                    .unwrap_or(self.rest().len());
                let value = self.rest()[..len]
                    .parse::<f64>()
                    .map_err(|_| self.err("expected '?', '(' or a number"))?;
                self.pos += len;
                Ok(Pattern::Value(value))
            }
            None => Err(self.err("expected a pattern")),
        }
    }

    fn template(&mut self) -> Result<Template> {
        match self.peek() {
            Some('?') => {
                self.pos += 1;
                Ok(Template::Var(self.ident()?))
            }
            Some('(') => {
                self.pos += 1;
                let name = self.ident()?;
                let op = simple_op(&name).ok_or_else(|| {
                    self.err(&format!(
                        "templates build unary or binary ops only; {name:?} is neither"
                    ))
                })?;
                let mut args = Vec::new();
                while !self.eat(')') {
                    if self.peek().is_none() {
                        return Err(self.err("missing ')'"));
                    }
                    args.push(self.template()?);
                }
                Ok(Template::Op { op, args })
            }
            _ => Err(self.err("expected '?' or '('")),
        }
    }

    fn json(&mut self) -> Result<Value> {
        self.skip_ws();
        let mut stream = serde_json::Deserializer::from_str(self.rest()).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                self.pos += stream.byte_offset();
                Ok(v)
            }
            _ => Err(self.err("expected a JSON value")),
        }
    }

    fn attrs(&mut self) -> Result<Vec<(String, Value)>> {
        self.eat('{');
        let mut attrs = Vec::new();
        loop {
            if self.eat('}') {
                return Ok(attrs);
            }
            let key = self.ident()?;
            if !self.eat('=') {
                return Err(self.err("expected '=' after an attribute name"));
            }
            attrs.push((key, self.json()?));
            if !self.eat(',') && self.peek() != Some('}') {
                return Err(self.err("expected ',' or '}'"));
            }
        }
    }
}

impl std::fmt::Display for Pattern {
    /// The pattern in the syntax [`Pattern::parse`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Var { name, kind } => match kind {
                VarKind::Any => write!(f, "?{name}"),
                VarKind::Const => write!(f, "?{name}:const"),
                VarKind::Scalar => write!(f, "?{name}:scalar"),
            },
            Pattern::Value(v) => write!(f, "{v}"),
            Pattern::Op {
                name,
                attrs,
                args,
                capture,
            } => {
                write!(f, "({name}")?;
                if !attrs.is_empty() {
                    let parts: Vec<String> =
                        attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, "{{{}}}", parts.join(", "))?;
                }
                for a in args {
                    write!(f, " {a}")?;
                }
                write!(f, ")")?;
                if let Some(c) = capture {
                    write!(f, "@{c}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for Template {
    /// The template in the syntax [`Template::parse`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Template::Var(n) => write!(f, "?{n}"),
            Template::Op { op, args } => {
                write!(f, "({}", op.name())?;
                for a in args {
                    write!(f, " {a}")?;
                }
                write!(f, ")")
            }
        }
    }
}
