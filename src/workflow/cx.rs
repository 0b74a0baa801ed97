//! The parser's context: where messages go, and the small value readers every part of the
//! parser shares (private to [`crate::workflow`]).
//!
//! Every problem is recorded here as it is found ([`Cx::err`], [`Cx::warn`]), so a file's
//! every problem is reported, not only the first: a reader that fails records its message and
//! returns an [`Error`] that its caller may propagate with `?` (the rest of that section is
//! skipped) or drop with `.ok()` (the parse goes on with the next key or step).

use super::keys::{self, Cx as KeyCx};
use super::yaml::{self, Key, Node, NodeKind, Pos, Scalar};
use super::{Problem, Severity};
use crate::error::{Error, Result};
use crate::store::names::{printable_cut, printable_str};
use std::cell::RefCell;
use std::path::Path;

pub(crate) type Entries = [(Key, Node)];

pub(crate) struct Cx<'p> {
    pub path: &'p Path,
    pub problems: RefCell<Vec<Problem>>,
    /// `(feature, line, col)` of every use of a key that `prodigy run` does not run yet.
    pub features: RefCell<Vec<(String, Pos)>>,
    /// Every `(context, key)` the parser looked up (for the key table's invariant test).
    #[cfg(test)]
    pub read: RefCell<std::collections::BTreeSet<(KeyCx, String)>>,
}

impl<'p> Cx<'p> {
    pub fn new(path: &'p Path) -> Self {
        Cx {
            path,
            problems: RefCell::new(Vec::new()),
            features: RefCell::new(Vec::new()),
            #[cfg(test)]
            read: RefCell::new(Default::default()),
        }
    }

    fn record(&self, severity: Severity, pos: Pos, msg: String) -> String {
        let pos = if pos == Pos::default() {
            Pos { line: 1, col: 1 }
        } else {
            pos
        };
        let line = printable_str(&format!(
            "`{}`:{}:{}: {msg}",
            self.path.display(),
            pos.line,
            pos.col
        ));
        self.problems.borrow_mut().push(Problem {
            severity,
            line: pos.line,
            col: pos.col,
            message: printable_str(&msg),
            text: line.clone(),
        });
        line
    }

    /// Record an error at `pos` and return it (exit 2).
    pub fn err(&self, pos: Pos, msg: impl std::fmt::Display) -> Error {
        Error::usage(self.record(Severity::Error, pos, msg.to_string()))
    }

    /// Record a warning at `pos`.
    pub fn warn(&self, pos: Pos, msg: impl std::fmt::Display) {
        self.record(Severity::Warning, pos, msg.to_string());
    }

    /// Note a use of `feature` (a key `prodigy run` may not run yet) at `pos`.
    pub fn uses(&self, feature: &str, pos: Pos) {
        self.features.borrow_mut().push((feature.to_string(), pos));
    }

    /// Warn about every key of `m` that is not a key of `cx` in the key table.
    pub fn check_keys(&self, m: &Entries, cx: KeyCx) {
        for (k, _) in m {
            self.check_key(k, cx);
        }
    }

    /// Warn when `k` is not a key of `cx`; true when it is.
    pub fn check_key(&self, k: &Key, cx: KeyCx) -> bool {
        let name = k.name.as_str();
        if keys::known(cx, name) {
            return true;
        }
        let hint = match keys::closest(cx, name) {
            Some(s) => format!(" (did you mean `{s}`?)"),
            None => String::new(),
        };
        self.warn(
            k.pos,
            format!("unknown key `{name}` in {}{hint}; it is ignored", cx.what()),
        );
        false
    }

    /// The entry `key` of `m` in context `cx` (which must list it: the table is the truth).
    pub fn get<'a>(&self, cx: KeyCx, m: &'a Entries, key: &str) -> Option<(&'a Key, &'a Node)> {
        debug_assert!(
            keys::known(cx, key),
            "{key} is not in the key table for {cx:?}"
        );
        #[cfg(test)]
        self.read.borrow_mut().insert((cx, key.to_string()));
        get(m, key)
    }

    pub fn map_of<'n>(&self, k: &Key, v: &'n Node, what: &str) -> Result<&'n Entries> {
        match &v.kind {
            NodeKind::Map(m) => Ok(m),
            NodeKind::Scalar(Scalar::Null, _) => Ok(&[]),
            _ => Err(self.err(
                v.pos_or(k),
                format!("{what} must be a map, found {}", v.describe()),
            )),
        }
    }

    pub fn string<'n>(&self, k: &Key, v: &'n Node, what: &str) -> Result<&'n str> {
        match &v.kind {
            NodeKind::Scalar(Scalar::Str(s), _) => Ok(s),
            _ => Err(self.err(
                v.pos_or(k),
                format!("`{what}` must be a string, found {}", show(v)),
            )),
        }
    }

    /// A string, or a number or boolean as written (`5` → `"5"`).
    pub fn text(&self, k: &Key, v: &Node, what: &str) -> Result<String> {
        match &v.kind {
            NodeKind::Scalar(Scalar::Str(s), _) => Ok(s.clone()),
            NodeKind::Scalar(s @ (Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_)), raw) => {
                Ok(raw.clone().unwrap_or_else(|| yaml::scalar_text(s)))
            }
            _ => Err(self.err(
                v.pos_or(k),
                format!(
                    "`{what}` must be a string, number or boolean, found {}",
                    v.describe()
                ),
            )),
        }
    }

    /// A non-empty string.
    pub fn command(&self, k: &Key, v: &Node) -> Result<String> {
        let s = self.string(k, v, &k.name)?;
        if s.trim().is_empty() {
            return Err(self.err(v.pos_or(k), format!("`{}` is empty", k.name)));
        }
        Ok(s.to_string())
    }

    pub fn bool(&self, k: &Key, v: &Node) -> Result<bool> {
        match &v.kind {
            NodeKind::Scalar(Scalar::Bool(b), _) => Ok(*b),
            _ => Err(self.err(
                v.pos_or(k),
                format!("`{}` must be true or false, found {}", k.name, show(v)),
            )),
        }
    }

    /// A whole number `>= min`.
    pub fn uint(&self, k: &Key, v: &Node, min: u64) -> Result<u64> {
        match &v.kind {
            NodeKind::Scalar(Scalar::Int(i), _) if *i >= i128::from(min) => {
                u64::try_from(*i).map_err(|_| self.err(v.pos, format!("`{}` is too large", k.name)))
            }
            _ => {
                let what = if min == 0 {
                    "a whole number (0 or more)"
                } else {
                    "a positive whole number"
                };
                let unit = if k.name == "timeout" {
                    " of seconds"
                } else {
                    ""
                };
                Err(self.err(
                    v.pos_or(k),
                    format!("`{}` must be {what}{unit}, found {}", k.name, show(v)),
                ))
            }
        }
    }

    /// A number (integer or not).
    pub fn number(&self, k: &Key, v: &Node) -> Result<f64> {
        match v.kind {
            NodeKind::Scalar(Scalar::Int(i), _) => Ok(i as f64),
            NodeKind::Scalar(Scalar::Float(f), _) if f.is_finite() => Ok(f),
            _ => Err(self.err(
                v.pos_or(k),
                format!("`{}` must be a number, found {}", k.name, show(v)),
            )),
        }
    }

    /// One of `words`.
    pub fn word(&self, k: &Key, v: &Node, words: &[&str]) -> Result<String> {
        match &v.kind {
            NodeKind::Scalar(Scalar::Str(s), _) if words.contains(&s.as_str()) => Ok(s.clone()),
            _ => Err(self.err(
                v.pos_or(k),
                format!(
                    "`{}` must be one of {}, found {}",
                    k.name,
                    words
                        .iter()
                        .map(|w| format!("`{w}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    show(v)
                ),
            )),
        }
    }
}

impl Node {
    /// Where to point for a bad value: a scalar's own position, else (a list, a map, an empty
    /// value) the key's, which is where a reader looks.
    pub(crate) fn pos_or(&self, k: &Key) -> Pos {
        match self.kind {
            NodeKind::Scalar(..) if self.pos != Pos::default() => self.pos,
            _ => k.pos,
        }
    }
}

pub(crate) fn get<'a>(m: &'a Entries, key: &str) -> Option<(&'a Key, &'a Node)> {
    m.iter().find(|(k, _)| k.name == key).map(|(k, v)| (k, v))
}

/// A short rendering of a value for messages: scalars as written (cut), else their kind.
pub(crate) fn show(v: &Node) -> String {
    match &v.kind {
        NodeKind::Scalar(Scalar::Str(s), _) => format!("`{}`", printable_cut(s, 40)),
        NodeKind::Scalar(Scalar::Null, _) => "nothing".to_string(),
        NodeKind::Scalar(s, raw) => {
            format!(
                "`{}`",
                printable_cut(&raw.clone().unwrap_or_else(|| yaml::scalar_text(s)), 40)
            )
        }
        _ => v.describe().to_string(),
    }
}
