//! A YAML document as a tree of nodes that know their line and column (private to
//! [`crate::workflow`]).
//!
//! Owns the one place that talks to serde_yaml_ng, and the limits that keep a hostile file from
//! exhausting memory. Knows nothing about workflows; never touches files, never prints.
//!
//! serde_yaml_ng has no spanned values: a position is only attached to an *error*, as the
//! position of the parser event being deserialized when it failed. So every scalar (map keys
//! included) is read through a visitor that stashes the value and then fails on purpose; the
//! seed that asked for it takes the position from the error and returns the stashed value. A
//! scalar is one parser event, so after such a failure the deserializer stands exactly where a
//! success would have left it, and the enclosing map or sequence goes on normally. A map or a
//! sequence takes the position of its first entry.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::{Cell, RefCell};
use std::fmt;

/// Most nodes one document may expand to. Real workflow files have a few hundred; the limit
/// stops alias bombs that stay under serde_yaml_ng's own repetition limit.
pub(crate) const MAX_NODES: usize = 100_000;
/// Without aliases a document cannot hold more than about one node per byte; allowing ten per
/// byte (plus a floor) leaves room for anchors reused a few times while refusing exponential
/// expansion after a few thousand nodes, i.e. in milliseconds.
fn node_limit(text_len: usize) -> usize {
    text_len
        .saturating_mul(10)
        .saturating_add(10_000)
        .min(MAX_NODES)
}
/// Most scalar bytes one document may expand to (aliases of one long string count each time).
pub(crate) const MAX_SCALAR_BYTES: usize = 16 << 20;

/// A 1-based line and column; `0:0` when unknown (an empty document).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A scalar as YAML 1.2 core schema resolves it (what serde_yaml_ng reports).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

/// One node of the document.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

/// What a node holds.
#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    /// A scalar and, for plain numbers and booleans, the text as written (`1.10`, not `1.1`).
    Scalar(Scalar, Option<String>),
    Seq(Vec<Node>),
    /// Entries in file order; keys are unique (a duplicate key is an error).
    Map(Vec<(Key, Node)>),
}

/// A map key: its text and where it is.
#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Node {
    /// "a string", "a list", ... for messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(Scalar::Null, _) => "nothing (null)",
            NodeKind::Scalar(Scalar::Bool(_), _) => "a boolean",
            NodeKind::Scalar(Scalar::Int(_), _) | NodeKind::Scalar(Scalar::Float(_), _) => {
                "a number"
            }
            NodeKind::Scalar(Scalar::Str(_), _) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a map",
        }
    }
}

/// A parse failure: a position when one is known, and a message without it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parse one YAML document into a [`Node`] tree. An empty document (or only comments) is a
/// null scalar at `0:0`. Errors: YAML syntax, more than one document, a non-scalar or
/// duplicate map key, tags on collections, nesting deeper than 128, and documents that
/// expand (through aliases) beyond [`MAX_NODES`] or [`MAX_SCALAR_BYTES`].
pub(crate) fn parse(text: &str) -> Result<Node, YamlError> {
    let ctx = Ctx {
        src: text,
        stash: RefCell::new(None),
        failure: RefCell::new(None),
        nodes: Cell::new(0),
        bytes: Cell::new(0),
        max_nodes: node_limit(text.len()),
    };
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (NodeSeed { ctx: &ctx }).deserialize(de) {
        Ok(node) => Ok(node),
        Err(e) => {
            if let Some(f) = ctx.failure.take() {
                return Err(f);
            }
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    col: l.column(),
                })
                .unwrap_or_default();
            let mut message = e.to_string();
            if message == "repetition limit exceeded" {
                message = "YAML aliases expand too many times (repetition limit exceeded); \
                           an exponential alias chain (\"billion laughs\") is refused"
                    .to_string();
            } else if pos != Pos::default() {
                let at = format!(" at line {} column {}", pos.line, pos.col);
                if let Some(i) = message.find(&at) {
                    message.replace_range(i..i + at.len(), "");
                }
            }
            Err(YamlError { pos, message })
        }
    }
}

struct Ctx<'s> {
    src: &'s str,
    /// The scalar a visitor read just before failing on purpose.
    stash: RefCell<Option<Scalar>>,
    /// An error of ours with its own position; wins over serde_yaml_ng's.
    failure: RefCell<Option<YamlError>>,
    nodes: Cell<usize>,
    bytes: Cell<usize>,
    max_nodes: usize,
}

/// The message of the deliberate failure; never shown to users.
const STASHED: &str = "\u{0}prodigy-stashed-scalar\u{0}";

impl Ctx<'_> {
    fn fail<E: de::Error>(&self, pos: Pos, message: String) -> E {
        *self.failure.borrow_mut() = Some(YamlError { pos, message });
        E::custom("workflow file error")
    }

    fn count<E: de::Error>(&self, pos: Pos, scalar_bytes: usize) -> Result<(), E> {
        self.nodes.set(self.nodes.get() + 1);
        self.bytes.set(self.bytes.get() + scalar_bytes);
        if self.nodes.get() > self.max_nodes || self.bytes.get() > MAX_SCALAR_BYTES {
            return Err(self.fail(
                pos,
                format!(
                    "the document expands to more than {} values or {} MiB of text through \
                     YAML aliases; refused (an alias bomb?)",
                    self.max_nodes,
                    MAX_SCALAR_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }

    /// The position serde_yaml_ng put into our deliberate failure: the display ends with
    /// " at line L column C", or has no position when the event is at line 1, column 1.
    fn stashed_pos(message: &str) -> Option<Pos> {
        let rest = &message[message.find(STASHED)? + STASHED.len()..];
        let Some(rest) = rest.strip_prefix(" at line ") else {
            return Some(Pos { line: 1, col: 1 });
        };
        let (line, col) = rest.split_once(" column ")?;
        Some(Pos {
            line: line.parse().ok()?,
            col: col.parse().ok()?,
        })
    }

    /// The plain token at `pos` in the source, used to keep `1.10` as written.
    fn raw_at(&self, pos: Pos) -> Option<String> {
        let line = self.src.lines().nth(pos.line.checked_sub(1)?)?;
        let start: String = line.chars().skip(pos.col.checked_sub(1)?).collect();
        let token: String = start
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}' | '#'))
            .collect();
        Some(token)
    }
}

struct NodeSeed<'c, 's> {
    ctx: &'c Ctx<'s>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        let ctx = self.ctx;
        match d.deserialize_any(NodeVisitor { ctx }) {
            Ok(node) => Ok(node),
            Err(e) => {
                let Some(scalar) = ctx.stash.borrow_mut().take() else {
                    return Err(e);
                };
                let Some(pos) = Ctx::stashed_pos(&e.to_string()) else {
                    return Err(e);
                };
                let len = match &scalar {
                    Scalar::Str(s) => s.len(),
                    _ => 8,
                };
                ctx.count::<D::Error>(pos, len)?;
                let raw = match &scalar {
                    Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_) => {
                        ctx.raw_at(pos).filter(|raw| same_value(raw, &scalar))
                    }
                    _ => None,
                };
                Ok(Node {
                    pos,
                    kind: NodeKind::Scalar(scalar, raw),
                })
            }
        }
    }
}

/// True when `raw` is a spelling of `scalar` (so an anchor or tag was not picked up instead).
fn same_value(raw: &str, scalar: &Scalar) -> bool {
    match scalar {
        Scalar::Int(i) => raw.replace('_', "").parse::<i128>().ok() == Some(*i),
        Scalar::Float(f) => raw.parse::<f64>().ok() == Some(*f),
        Scalar::Bool(b) => raw.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        _ => false,
    }
}

struct NodeVisitor<'c, 's> {
    ctx: &'c Ctx<'s>,
}

impl NodeVisitor<'_, '_> {
    fn stash<E: de::Error>(&self, s: Scalar) -> Result<Node, E> {
        *self.ctx.stash.borrow_mut() = Some(s);
        Err(E::custom(STASHED))
    }
}

impl<'de> Visitor<'de> for NodeVisitor<'_, '_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value without tags")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        self.stash(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        self.stash(Scalar::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        self.stash(Scalar::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        self.stash(Scalar::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        match i128::try_from(v) {
            Ok(i) => self.stash(Scalar::Int(i)),
            Err(_) => self.stash(Scalar::Float(v as f64)),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        self.stash(Scalar::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        self.stash(Scalar::Str(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        self.stash(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        self.stash(Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element_seed(NodeSeed { ctx: self.ctx })? {
            items.push(n);
        }
        let pos = items.first().map(|n| n.pos).unwrap_or_default();
        self.ctx.count::<A::Error>(pos, 0)?;
        Ok(Node {
            pos,
            kind: NodeKind::Seq(items),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(k) = map.next_key_seed(NodeSeed { ctx: self.ctx })? {
            let name = match k.kind {
                NodeKind::Scalar(Scalar::Str(s), _) => s,
                NodeKind::Scalar(s, raw) => raw.unwrap_or_else(|| scalar_text(&s)),
                _ => {
                    return Err(self.ctx.fail(
                        k.pos,
                        format!("a map key must be a plain value, found {}", k.describe()),
                    ))
                }
            };
            if let Some((first, _)) = entries.iter().find(|(e, _)| e.name == name) {
                return Err(self.ctx.fail(
                    k.pos,
                    format!(
                        "duplicate key `{name}` (first at line {}); keep one",
                        first.pos.line
                    ),
                ));
            }
            let v = map.next_value_seed(NodeSeed { ctx: self.ctx })?;
            entries.push((Key { name, pos: k.pos }, v));
        }
        let pos = entries.first().map(|(k, _)| k.pos).unwrap_or_default();
        self.ctx.count::<A::Error>(pos, 0)?;
        Ok(Node {
            pos,
            kind: NodeKind::Map(entries),
        })
    }
}

/// A non-string scalar as text (`null`, `true`, `3`, `1.5`).
pub(crate) fn scalar_text(s: &Scalar) -> String {
    match s {
        Scalar::Null => "null".to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Str(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: &Node) -> &[(Key, Node)] {
        match &n.kind {
            NodeKind::Map(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn keys_and_scalars_carry_line_and_column() {
        let n = parse("a: 1\nlist:\n  - x: yes\n    y: \"s\"\n").unwrap();
        let m = map(&n);
        assert_eq!(m[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(m[0].1.pos, Pos { line: 1, col: 4 });
        assert_eq!(m[1].0.pos, Pos { line: 2, col: 1 });
        let NodeKind::Seq(items) = &m[1].1.kind else {
            panic!()
        };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
        let inner = map(&items[0]);
        assert_eq!(inner[1].0.name, "y");
        assert_eq!(inner[1].0.pos, Pos { line: 4, col: 5 });
        assert!(matches!(&inner[1].1.kind, NodeKind::Scalar(Scalar::Str(s), None) if s == "s"));
    }

    #[test]
    fn plain_numbers_keep_their_spelling() {
        let n = parse("v: 1.10\nw: 0x1F\n").unwrap();
        let m = map(&n);
        assert!(matches!(&m[0].1.kind, NodeKind::Scalar(Scalar::Float(_), Some(r)) if r == "1.10"));
        assert!(matches!(&m[1].1.kind, NodeKind::Scalar(Scalar::Int(31), _)));
    }

    #[test]
    fn duplicate_key_is_refused_at_the_second_key() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        assert!(
            e.message.contains("duplicate key `a` (first at line 1)"),
            "{e:?}"
        );
    }

    #[test]
    fn syntax_error_has_position_and_no_repeated_location() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        assert!(!e.message.is_empty());
        let at = format!(" at line {} column {}", e.pos.line, e.pos.col);
        assert!(!e.message.starts_with(&at));
    }

    #[test]
    fn empty_document_is_null() {
        let n = parse("# only a comment\n").unwrap();
        assert!(matches!(n.kind, NodeKind::Scalar(Scalar::Null, _)));
    }

    #[test]
    fn wide_alias_fanout_hits_the_node_limit() {
        // 50 * 50 * 50 = 125k scalars from a small file: under serde_yaml_ng's repetition
        // limit per alias but over MAX_NODES.
        let row = vec!["x"; 50].join(", ");
        let a = format!("a: &a [{row}]\n");
        let b = format!("b: &b [{}]\n", vec!["*a"; 50].join(", "));
        let c = format!("c: [{}]\n", vec!["*b"; 50].join(", "));
        let e = parse(&(a + &b + &c)).unwrap_err();
        assert!(
            e.message.contains("expands to more than") || e.message.contains("repetition limit"),
            "{e:?}"
        );
    }
}
