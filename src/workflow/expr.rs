//! The one expression language of a step's `when:` and of `map.filter` (run.md §2
//! "Expressions"; what Prodigy 0.4.4's two evaluators accept is in `prodigy-0.4.4-steps.md` §5).
//!
//! Owns parsing and evaluating expressions. It knows no variable names and reads nothing: a
//! caller compiles the text once ([`compile`], [`compile_when`]) and evaluates it against a
//! resolver of field paths ([`Expr::eval`]); [`Expr::matches_item`] resolves against a work
//! item, [`eval_when`] evaluates the text of a `when:` after `${…}` interpolation.
//!
//! **Grammar**, loosest first (keywords and function names in any case; field names as written):
//! ```text
//! expr    := and (("||" | OR) and)*
//! and     := not (("&&" | AND) not)*
//! not     := ("!" | NOT) not | test
//! test    := value [ ("==" | "=" | "!=" | "<" | "<=" | ">" | ">=") value
//!                  | [NOT] IN "[" [literal ("," literal)*] "]"
//!                  | (CONTAINS | STARTS_WITH | ENDS_WITH) value
//!                  | MATCHES 'regex'
//!                  | IS_NULL | IS_NOT_NULL | IS [NOT] NULL ]
//! value   := literal | field | FUNCTION "(" expr ("," expr)* ")" | "(" expr ")"
//! literal := number | 'string' | "string" | TRUE | FALSE | NULL
//! ```
//! `!`/`NOT` bind looser than a comparison, so `!x == 1` is `!(x == 1)` (0.4.4's `when` binds
//! `!` tighter, its filter applies a leading `!` to the whole rest; neither is what a reader
//! expects). Comparisons do not chain: `a == b == c` is an error. Functions: `contains(a, b)`,
//! `starts_with`, `ends_with`, `matches(a, 're')`, `is_null(a)`, `is_not_null`, `is_number`,
//! `is_string`, `is_bool`, `is_array`, `is_object`, `length(a)` (characters of a string,
//! elements of an array or object, else null) and `length(a, n)` (0.4.4's form: `length(a) ==
//! n`). A field whose last step is `.length` and that is missing or null is the length of the
//! value before it (`tags.length > 2`, as 0.4.4's docs write it).
//!
//! **Fields**: `name`, dotted steps (`File.score`, `list.0`), `[N]` and `['key']` steps
//! (`tags[0]`, `meta['a b']`). A leading `item.` is dropped when resolving against a work item
//! (`item.score` = `score`; `item` alone is the whole item; a key named `item` is `item.item`).
//! A missing field is null. A field named like an operator word (`and`, `in`, `contains` …) is
//! written with the `item.` prefix.
//!
//! **Literals**: numbers (`-1`, `2.5`, `1e3`), strings in single or double quotes with escapes
//! `\\ \' \" \n \t \r`; any other backslash is kept with the character after it, so a regex in
//! a string reads as written (`'\.rs$'` is the regex `\.rs$`).
//!
//! **Values and comparisons**: numbers compare as numbers (`5 == 5.0`; 0.4.4's filter never
//! matches an integer field against a literal, a bug). A string that is a decimal number
//! (`5`, `-2.5`, `1e3`, blanks around it ignored) compares with a number as that number (`"5" == 5`, `"10" > 9`), as 0.4.4's `when`
//! does; two strings compare as strings (`'10' < '9'`). `<`, `<=`, `>`, `>=` between anything
//! else (a number and a word, null, booleans, arrays) are false, never an error. `==` compares
//! arrays and objects element by element with the same number rule. Truthiness (a value used as
//! a condition, and the result): null, `false`, `0`, `""`, `"false"` and `"0"` are false,
//! everything else true (0.4.4's `when` rule). `contains` tests a substring of a string or an
//! element of an array; `starts_with`, `ends_with` and `matches` work on the text of a string,
//! number or boolean and are false for anything else. `in` is `==` against each literal.
//!
//! **`when:` text** ([`compile_when`], [`eval_when`]): the runner interpolates `${…}` first, so
//! the expression sees values as text (`${build.success} == true` becomes `true == true`). In
//! this form a bare word is any run of characters other than blanks, quotes, parentheses,
//! brackets, commas and `! = < > & |`: a number, `true`/`false`/`null` and the operator words
//! are what they are in the filter language; any other word is a field when the resolver knows
//! it, else its own text as a string, so `main == 'main'` and `success == success` are true and
//! `feature/x-1 == main` is false. A word `${NAME}` left by interpolation (an unknown variable)
//! is null, as 0.4.4 treats an unknown variable. A value with blanks or operator characters must
//! be quoted in the file (`'${message}' == 'ok'`); a value containing the quote cannot be.
//! Blank text (an empty capture) is false.
//!
//! **Bounds**: text longer than [`MAX_LEN`] bytes, nesting (parentheses, `!`, function calls)
//! deeper than [`MAX_DEPTH`], and more than [`MAX_REGEXES`] regexes are compile errors; each
//! regex is compiled once (regex-lite: matching is linear in the text) with a size limit of
//! [`REGEX_SIZE_LIMIT`] bytes and a nesting limit of [`MAX_DEPTH`]/2. `&&`/`||` chains are
//! flat lists, so a long chain costs no stack. Evaluation cannot fail or panic.

use crate::store::names::printable_cut;
use regex_lite::{Regex, RegexBuilder};
use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;

/// Longest expression text accepted, in bytes.
pub const MAX_LEN: usize = 16 * 1024;
/// Deepest nesting of parentheses, `!`/`NOT` and function calls accepted.
pub const MAX_DEPTH: usize = 64;
/// Most `matches` in one expression.
pub const MAX_REGEXES: usize = 32;
/// regex-lite's size limit for one compiled regex, in bytes (its default is 10 MiB).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// A compile error: where (byte offset and 1-based column in characters) and what, one line,
/// lowercase, with any quoted input escaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset into the expression text.
    pub offset: usize,
    /// 1-based column in characters.
    pub column: usize,
    /// What is wrong, one line.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ExprError {}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    /// `.key` or `['key']` (and the first name). On an array, a key of digits is an index.
    Key(String),
    /// `[N]`.
    Index(usize),
}

/// `segs` written as a variable path (`a.b[0]`), the form `vars::Vars::get` takes.
pub fn path_text(segs: &[PathSeg]) -> String {
    let mut s = String::new();
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            PathSeg::Key(k) if i == 0 => s.push_str(k),
            PathSeg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            PathSeg::Index(n) => s.push_str(&format!("[{n}]")),
        }
    }
    s
}

/// The value at `path` in a work item (`item.` prefix dropped, as in the module documentation);
/// `None` when a step is missing. A key of digits indexes an array.
pub fn item_field(item: &Value, path: &[PathSeg]) -> Option<Value> {
    let path = match path.first() {
        Some(PathSeg::Key(k)) if k == "item" => &path[1..],
        _ => path,
    };
    let mut v = item;
    for seg in path {
        v = match (seg, v) {
            (PathSeg::Key(k), Value::Object(o)) => o.get(k)?,
            (PathSeg::Key(k), Value::Array(a)) => a.get(k.parse::<usize>().ok()?)?,
            (PathSeg::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v.clone())
}

/// Compile a field path alone (`distinct`, `sort_by` keys): `name`, `.key`, `[N]`, `['key']`,
/// with or without `item.`. Err: a positioned message.
pub fn compile_field(text: &str) -> Result<Vec<PathSeg>, ExprError> {
    let lx = Lexer::new(text, false)?;
    let toks = lx.run()?;
    match toks.as_slice() {
        [(_, Tok::Word(w))] if keyword(w).is_none() && literal_word(w).is_none() => {
            parse_path(w).map_err(|(o, m)| err(text, o, m))
        }
        [] => Err(err(
            text,
            0,
            "expected a field (e.g. `priority`, `item.meta.size`)".into(),
        )),
        [(at, t), ..] => Err(err(
            text,
            *at,
            format!(
                "expected a field (e.g. `priority`, `item.meta.size`), found {}",
                t.describe()
            ),
        )),
    }
}

/// A compiled expression. Cheap to evaluate many times; holds its compiled regexes.
#[derive(Clone, Debug)]
pub struct Expr {
    node: Node,
}

/// Compile `text` in the filter form: every bare word that is not a literal or an operator is a
/// field path. Err: the first problem, positioned.
pub fn compile(text: &str) -> Result<Expr, ExprError> {
    Parser::new(text, false)?.parse()
}

/// Compile `text` in the `when:` form (bare words, module documentation).
pub fn compile_when(text: &str) -> Result<Expr, ExprError> {
    Parser::new(text, true)?.parse()
}

/// Evaluate the text of a `when:` after `${…}` interpolation: true when the step should run.
/// Blank text is false; every bare word is its own text (no resolver). Err: the text is not an
/// expression (positioned). `eval_when("true")`, `eval_when("0 != 0")`,
/// `eval_when("main == 'main'")`.
pub fn eval_when(text: &str) -> Result<bool, ExprError> {
    if text.trim().is_empty() {
        return Ok(false);
    }
    Ok(compile_when(text)?.eval(&|_| None))
}

impl Expr {
    /// The truth of the expression with fields looked up by `resolve` (`None`: missing, which
    /// is null; in the `when` form, a word's own text).
    pub fn eval(&self, resolve: &dyn Fn(&[PathSeg]) -> Option<Value>) -> bool {
        truthy(&self.node.value(resolve))
    }

    /// [`Expr::eval`] against a work item ([`item_field`]).
    pub fn matches_item(&self, item: &Value) -> bool {
        self.eval(&|p| item_field(item, p))
    }
}

// ---------------------------------------------------------------------------------------------
// Tree and evaluation

#[derive(Clone, Debug)]
enum Node {
    Lit(Value),
    Field(Field),
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Cmp(Box<Node>, Cmp, Box<Node>),
    In(Box<Node>, Vec<Node>),
    Text(Box<Node>, TextOp, Box<Node>),
    Matches(Box<Node>, Box<Regex>),
    Test(Box<Node>, TypeTest),
    Length(Box<Node>),
}

#[derive(Clone, Debug)]
struct Field {
    path: Vec<PathSeg>,
    /// `when` form: the word as written, its value when the resolver does not know it.
    word: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TypeTest {
    Null,
    NotNull,
    Number,
    String,
    Bool,
    Array,
    Object,
}

type Resolve<'a> = &'a dyn Fn(&[PathSeg]) -> Option<Value>;

impl Node {
    fn value(&self, r: Resolve) -> Value {
        match self {
            Node::Lit(v) => v.clone(),
            Node::Field(f) => f.value(r),
            Node::Or(xs) => Value::Bool(xs.iter().any(|x| truthy(&x.value(r)))),
            Node::And(xs) => Value::Bool(xs.iter().all(|x| truthy(&x.value(r)))),
            Node::Not(x) => Value::Bool(!truthy(&x.value(r))),
            Node::Cmp(a, op, b) => {
                let (a, b) = (a.value(r), b.value(r));
                Value::Bool(match op {
                    Cmp::Eq => loose_eq(&a, &b),
                    Cmp::Ne => !loose_eq(&a, &b),
                    _ => match order(&a, &b) {
                        None => false,
                        Some(o) => match op {
                            Cmp::Lt => o == Ordering::Less,
                            Cmp::Le => o != Ordering::Greater,
                            Cmp::Gt => o == Ordering::Greater,
                            _ => o != Ordering::Less,
                        },
                    },
                })
            }
            Node::In(a, list) => {
                let a = a.value(r);
                Value::Bool(list.iter().any(|x| loose_eq(&a, &x.value(r))))
            }
            Node::Text(a, op, b) => {
                let (a, b) = (a.value(r), b.value(r));
                Value::Bool(match (op, &a) {
                    (TextOp::Contains, Value::Array(xs)) => xs.iter().any(|x| loose_eq(x, &b)),
                    _ => match (text_of(&a), text_of(&b)) {
                        (Some(a), Some(b)) => match op {
                            TextOp::Contains => a.contains(&*b),
                            TextOp::StartsWith => a.starts_with(&*b),
                            TextOp::EndsWith => a.ends_with(&*b),
                        },
                        _ => false,
                    },
                })
            }
            Node::Matches(a, re) => {
                Value::Bool(text_of(&a.value(r)).is_some_and(|t| re.is_match(&t)))
            }
            Node::Test(a, t) => {
                let v = a.value(r);
                Value::Bool(match t {
                    TypeTest::Null => v.is_null(),
                    TypeTest::NotNull => !v.is_null(),
                    TypeTest::Number => v.is_number(),
                    TypeTest::String => v.is_string(),
                    TypeTest::Bool => v.is_boolean(),
                    TypeTest::Array => v.is_array(),
                    TypeTest::Object => v.is_object(),
                })
            }
            Node::Length(a) => length(&a.value(r)),
        }
    }
}

impl Field {
    fn value(&self, r: Resolve) -> Value {
        // A `when` word that is no path (`feature/x`) is never looked up.
        let found = if self.path.is_empty() {
            None
        } else {
            r(&self.path)
        };
        match found {
            Some(v) if !v.is_null() => return v,
            found => {
                // `tags.length`: the length of `tags` when no field `length` is there.
                if let [parent @ .., PathSeg::Key(last)] = self.path.as_slice() {
                    if last == "length" && !parent.is_empty() {
                        if let Some(p) = r(parent) {
                            let n = length(&p);
                            if !n.is_null() {
                                return n;
                            }
                        }
                    }
                }
                if found.is_some() {
                    return Value::Null;
                }
            }
        }
        match &self.word {
            Some(w) if w.starts_with("${") && w.ends_with('}') => Value::Null,
            Some(w) => Value::String(w.clone()),
            None => Value::Null,
        }
    }
}

fn length(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::from(s.chars().count()),
        Value::Array(a) => Value::from(a.len()),
        Value::Object(o) => Value::from(o.len()),
        _ => Value::Null,
    }
}

/// 0.4.4's `when` truthiness (`src/cook/expression/mod.rs:136-143`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !(s.is_empty() || s == "false" || s == "0"),
        _ => true,
    }
}

/// A string in JSON's number syntax (after trimming blanks), as a number.
fn numeric(s: &str) -> Option<f64> {
    let t = s.trim();
    let b = t.as_bytes();
    let digits = b.iter().any(u8::is_ascii_digit);
    let shape = b.iter().all(|c| c.is_ascii_digit() || b"+-.eE".contains(c));
    if !digits || !shape || t.starts_with('+') {
        return None;
    }
    t.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn num_eq(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    a.as_f64() == b.as_f64()
}

/// `==`: numbers by value, a numeric string as its number against a number, arrays and objects
/// element by element, anything else by JSON equality.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_eq(x, y),
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
            numeric(s).is_some_and(|x| n.as_f64() == Some(x))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| loose_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| loose_eq(a, b)))
        }
        _ => a == b,
    }
}

/// The order of `<` and friends: numbers (a numeric string counts as its number against a
/// number), strings bytewise; `None` for anything else.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    let num = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Number(_), Value::Number(_)) => {
            if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
                return Some(x.cmp(&y));
            }
            num(a)?.partial_cmp(&num(b)?)
        }
        (Value::Number(_), Value::String(s)) => num(a)?.partial_cmp(&numeric(s)?),
        (Value::String(s), Value::Number(_)) => numeric(s)?.partial_cmp(&num(b)?),
        _ => None,
    }
}

/// The text `starts_with`, `ends_with`, `matches` and string `contains` work on.
fn text_of(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Owned(b.to_string())),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(Value),
    Str(String),
    /// A bare word: a field path, an operator word, a literal word; in the `when` form any run
    /// of word characters.
    Word(String),
    Open,
    Close,
    LBrack,
    RBrack,
    Comma,
    Op(Cmp),
    AndAnd,
    OrOr,
    Bang,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(n) => format!("`{n}`"),
            Tok::Str(s) => format!("the string `{}`", printable_cut(s, 40)),
            Tok::Word(w) => format!("`{}`", printable_cut(w, 40)),
            Tok::Open => "`(`".into(),
            Tok::Close => "`)`".into(),
            Tok::LBrack => "`[`".into(),
            Tok::RBrack => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Op(op) => format!("`{}`", op_text(*op)),
            Tok::AndAnd => "`&&`".into(),
            Tok::OrOr => "`||`".into(),
            Tok::Bang => "`!`".into(),
        }
    }
}

fn op_text(op: Cmp) -> &'static str {
    match op {
        Cmp::Eq => "==",
        Cmp::Ne => "!=",
        Cmp::Lt => "<",
        Cmp::Le => "<=",
        Cmp::Gt => ">",
        Cmp::Ge => ">=",
    }
}

fn err(text: &str, offset: usize, message: String) -> ExprError {
    let offset = offset.min(text.len());
    let column = text.get(..offset).map_or(offset, |s| s.chars().count()) + 1;
    ExprError {
        offset,
        column,
        message,
    }
}

/// Operator words, lowercased: `Some(word)` when `w` is one (in any case).
fn keyword(w: &str) -> Option<&'static str> {
    const WORDS: &[&str] = &[
        "and",
        "or",
        "not",
        "in",
        "is",
        "contains",
        "starts_with",
        "ends_with",
        "matches",
        "is_null",
        "is_not_null",
    ];
    WORDS.iter().copied().find(|k| k.eq_ignore_ascii_case(w))
}

fn literal_word(w: &str) -> Option<Value> {
    if w.eq_ignore_ascii_case("true") {
        Some(Value::Bool(true))
    } else if w.eq_ignore_ascii_case("false") {
        Some(Value::Bool(false))
    } else if w.eq_ignore_ascii_case("null") {
        Some(Value::Null)
    } else {
        None
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}
fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}
/// Characters that end a bare word of the `when` form.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || "()[],'\"!=<>&|".contains(c)
}

struct Lexer<'t> {
    text: &'t str,
    when: bool,
    i: usize,
}

impl<'t> Lexer<'t> {
    fn new(text: &'t str, when: bool) -> Result<Self, ExprError> {
        if text.len() > MAX_LEN {
            return Err(err(
                text,
                0,
                format!("expression is longer than {MAX_LEN} bytes"),
            ));
        }
        Ok(Lexer { text, when, i: 0 })
    }

    fn run(mut self) -> Result<Vec<(usize, Tok)>, ExprError> {
        let mut out = Vec::new();
        while let Some(t) = self.next()? {
            out.push(t);
        }
        Ok(out)
    }

    fn fail(&self, at: usize, msg: String) -> ExprError {
        err(self.text, at, msg)
    }

    fn next(&mut self) -> Result<Option<(usize, Tok)>, ExprError> {
        let s = self.text;
        let b = s.as_bytes();
        // Any Unicode blank separates tokens (a `\x0b` too: the `when` form ends words at
        // every blank, so both must agree or an empty word would never advance).
        self.i = s[self.i..]
            .find(|c: char| !c.is_whitespace())
            .map_or(s.len(), |e| self.i + e);
        let start = self.i;
        let Some(c) = s[start..].chars().next() else {
            return Ok(None);
        };
        let two = s.get(start..start + 2).unwrap_or("");
        let fixed = match two {
            "&&" => Some((2, Tok::AndAnd)),
            "||" => Some((2, Tok::OrOr)),
            "==" => Some((2, Tok::Op(Cmp::Eq))),
            "!=" => Some((2, Tok::Op(Cmp::Ne))),
            "<=" => Some((2, Tok::Op(Cmp::Le))),
            ">=" => Some((2, Tok::Op(Cmp::Ge))),
            _ => match c {
                '=' => Some((1, Tok::Op(Cmp::Eq))),
                '<' => Some((1, Tok::Op(Cmp::Lt))),
                '>' => Some((1, Tok::Op(Cmp::Gt))),
                '!' => Some((1, Tok::Bang)),
                '(' => Some((1, Tok::Open)),
                ')' => Some((1, Tok::Close)),
                '[' => Some((1, Tok::LBrack)),
                ']' => Some((1, Tok::RBrack)),
                ',' => Some((1, Tok::Comma)),
                _ => None,
            },
        };
        if let Some((n, t)) = fixed {
            self.i += n;
            return Ok(Some((start, t)));
        }
        if c == '\'' || c == '"' {
            let (v, end) = self.string(start, c)?;
            self.i = end;
            return Ok(Some((start, Tok::Str(v))));
        }
        if c == '&' || c == '|' {
            return Err(self.fail(
                start,
                format!("a single `{c}` is not an operator; use `{c}{c}`"),
            ));
        }
        if self.when {
            let end = s[start..].find(ends_word).map_or(s.len(), |e| start + e);
            if end == start {
                // Unreachable while blanks are skipped above; never loop on an empty word.
                return Err(self.fail(
                    start,
                    format!("unexpected `{}`", printable_cut(&c.to_string(), 1)),
                ));
            }
            let end = self.indexes(start, end);
            let w = &s[start..end];
            self.i = end;
            if let Some(n) = number(w) {
                return Ok(Some((start, Tok::Num(n))));
            }
            return Ok(Some((start, Tok::Word(w.to_string()))));
        }
        let starts_number =
            c.is_ascii_digit() || (c == '-' && b.get(start + 1).is_some_and(u8::is_ascii_digit));
        if starts_number {
            let end = s[start + 1..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || "._+-".contains(ch)))
                .map_or(s.len(), |e| start + 1 + e);
            // `1e-3` keeps its sign; `1-2` is not a number.
            let w = &s[start..end];
            let n = number(w).ok_or_else(|| {
                self.fail(start, format!("`{}` is not a number", printable_cut(w, 40)))
            })?;
            self.i = end;
            return Ok(Some((start, Tok::Num(n))));
        }
        if c.is_ascii() && is_ident_start(c as u8) {
            let mut end = start + 1;
            while end < b.len() && (is_ident(b[end]) || b[end] == b'.') {
                end += 1;
            }
            let end = self.indexes(start, end);
            self.i = end;
            return Ok(Some((start, Tok::Word(s[start..end].to_string()))));
        }
        let hint = if c == '$' {
            " (a `${…}` left after interpolation: an unknown variable?)"
        } else {
            ""
        };
        Err(self.fail(
            start,
            format!(
                "unexpected `{}`; expected a field, a literal, an operator, `!` or `(`{hint}",
                printable_cut(&c.to_string(), 1)
            ),
        ))
    }

    /// Extend the word `start..end` over `[N]` / `['key']` steps that follow it directly, unless
    /// it is an operator word (`in[1]` is `in [1]`).
    fn indexes(&self, start: usize, mut end: usize) -> usize {
        let s = self.text;
        if keyword(&s[start..end]).is_some() || literal_word(&s[start..end]).is_some() {
            return end;
        }
        loop {
            let rest = &s[end..];
            let Some(r) = rest.strip_prefix('[') else {
                return end;
            };
            let len = if let Some(q) = r.chars().next().filter(|c| *c == '\'' || *c == '"') {
                match self.string(end + 1, q) {
                    Ok((_, e)) if s[e..].starts_with(']') => e + 1 - end,
                    _ => return end,
                }
            } else {
                let d = r.bytes().take_while(u8::is_ascii_digit).count();
                if d == 0 || !r[d..].starts_with(']') {
                    return end;
                }
                d + 2
            };
            end += len;
            // A step after an index: `a[0].b`.
            if !self.when {
                let b = s.as_bytes();
                while end < b.len() && (is_ident(b[end]) || b[end] == b'.') {
                    end += 1;
                }
            } else {
                end = s[end..].find(ends_word).map_or(s.len(), |e| end + e);
            }
        }
    }

    /// The string whose opening quote `q` is at `start`: its value and the offset after it.
    fn string(&self, start: usize, q: char) -> Result<(String, usize), ExprError> {
        let s = self.text;
        let mut out = String::new();
        let mut it = s[start + 1..].char_indices();
        while let Some((i, c)) = it.next() {
            match c {
                '\\' => match it.next() {
                    Some((_, e)) => match e {
                        '\\' | '\'' | '"' => out.push(e),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        e => {
                            out.push('\\');
                            out.push(e);
                        }
                    },
                    None => break,
                },
                c if c == q => return Ok((out, start + 1 + i + 1)),
                c => out.push(c),
            }
        }
        Err(self.fail(start, format!("unterminated string; add the closing `{q}`")))
    }
}

/// `w` as a JSON number when it is one (`-1`, `2.5`, `1e3`; not `+1`, `01`, `1.`, `inf`).
fn number(w: &str) -> Option<Value> {
    let b = w.as_bytes();
    if !b.first().is_some_and(|c| c.is_ascii_digit() || *c == b'-') {
        return None;
    }
    serde_json::from_str::<Value>(w)
        .ok()
        .filter(|v| v.is_number())
}

/// Parse a path word (`a.b[0]['k'].c`). Err: byte offset within the word and a message.
fn parse_path(w: &str) -> Result<Vec<PathSeg>, (usize, String)> {
    let mut segs = Vec::new();
    let b = w.as_bytes();
    let bad = |at: usize| {
        (
            at,
            format!(
                "`{}` is not a field path (e.g. `priority`, `item.meta.size`, `tags[0]`)",
                printable_cut(w, 40)
            ),
        )
    };
    let key_end = |from: usize| {
        let mut e = from;
        while e < b.len() && is_ident(b[e]) {
            e += 1;
        }
        e
    };
    let e = key_end(0);
    if e == 0 {
        return Err(bad(0));
    }
    segs.push(PathSeg::Key(w[..e].to_string()));
    let mut i = e;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let e = key_end(i + 1);
                if e == i + 1 {
                    return Err(bad(i));
                }
                segs.push(PathSeg::Key(w[i + 1..e].to_string()));
                i = e;
            }
            b'[' => {
                let r = &w[i + 1..];
                if let Some(q) = r.chars().next().filter(|c| *c == '\'' || *c == '"') {
                    let lx = Lexer {
                        text: w,
                        when: false,
                        i: 0,
                    };
                    let (key, e) = lx.string(i + 1, q).map_err(|_| bad(i))?;
                    if !w[e..].starts_with(']') {
                        return Err(bad(i));
                    }
                    segs.push(PathSeg::Key(key));
                    i = e + 1;
                } else {
                    let d = r.bytes().take_while(u8::is_ascii_digit).count();
                    let n = r[..d].parse::<usize>().map_err(|_| bad(i))?;
                    if !r[d..].starts_with(']') {
                        return Err(bad(i));
                    }
                    segs.push(PathSeg::Index(n));
                    i += d + 2;
                }
            }
            _ => return Err(bad(i)),
        }
    }
    Ok(segs)
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'t> {
    text: &'t str,
    when: bool,
    toks: Vec<(usize, Tok)>,
    pos: usize,
    depth: usize,
    regexes: usize,
}

type PResult = Result<Node, ExprError>;

impl<'t> Parser<'t> {
    fn new(text: &'t str, when: bool) -> Result<Self, ExprError> {
        let toks = Lexer::new(text, when)?.run()?;
        Ok(Parser {
            text,
            when,
            toks,
            pos: 0,
            depth: 0,
            regexes: 0,
        })
    }

    fn parse(mut self) -> Result<Expr, ExprError> {
        if self.toks.is_empty() {
            return Err(err(self.text, 0, "empty expression".into()));
        }
        let node = self.or()?;
        if let Some((at, t)) = self.toks.get(self.pos) {
            let msg = match t {
                Tok::Op(_) => "comparisons do not chain; use parentheses and `&&`".to_string(),
                Tok::Close => "unmatched `)`".to_string(),
                t => format!(
                    "unexpected {} after a complete expression; expected `&&`, `||` or the end",
                    t.describe()
                ),
            };
            return Err(err(self.text, *at, msg));
        }
        Ok(Expr { node })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.text.len(), |(o, _)| *o)
    }
    fn fail(&self, at: usize, msg: String) -> ExprError {
        err(self.text, at, msg)
    }
    /// The lowercased operator word at the cursor, if any.
    fn peek_kw(&self) -> Option<&'static str> {
        match self.peek() {
            Some(Tok::Word(w)) => keyword(w),
            _ => None,
        }
    }
    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "the end".to_string(), Tok::describe)
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.fail(
                self.at(),
                format!("expression nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> PResult {
        let mut xs = vec![self.and()?];
        while matches!(self.peek(), Some(Tok::OrOr)) || self.peek_kw() == Some("or") {
            self.pos += 1;
            xs.push(self.and()?);
        }
        Ok(if xs.len() == 1 {
            xs.pop().unwrap_or(Node::Lit(Value::Null))
        } else {
            Node::Or(xs)
        })
    }

    fn and(&mut self) -> PResult {
        let mut xs = vec![self.not()?];
        while matches!(self.peek(), Some(Tok::AndAnd)) || self.peek_kw() == Some("and") {
            self.pos += 1;
            xs.push(self.not()?);
        }
        Ok(if xs.len() == 1 {
            xs.pop().unwrap_or(Node::Lit(Value::Null))
        } else {
            Node::And(xs)
        })
    }

    fn not(&mut self) -> PResult {
        if matches!(self.peek(), Some(Tok::Bang)) || self.peek_kw() == Some("not") {
            self.enter()?;
            self.pos += 1;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(inner)));
        }
        self.test()
    }

    fn test(&mut self) -> PResult {
        let left = self.value()?;
        let at = self.at();
        match self.peek().cloned() {
            Some(Tok::Op(op)) => {
                self.pos += 1;
                let right = self.value()?;
                if let Some(Tok::Op(_)) = self.peek() {
                    return Err(self.fail(
                        self.at(),
                        "comparisons do not chain; use parentheses and `&&`".into(),
                    ));
                }
                Ok(Node::Cmp(Box::new(left), op, Box::new(right)))
            }
            Some(Tok::Word(w)) => match keyword(&w) {
                Some("in") => {
                    self.pos += 1;
                    self.list(left)
                }
                Some("not") => {
                    if !matches!(self.toks.get(self.pos + 1), Some((_, Tok::Word(w))) if w.eq_ignore_ascii_case("in"))
                    {
                        return Err(self.fail(at, "`not` here must be followed by `in`".into()));
                    }
                    self.pos += 2;
                    Ok(Node::Not(Box::new(self.list(left)?)))
                }
                Some(k @ ("contains" | "starts_with" | "ends_with")) => {
                    self.pos += 1;
                    let right = self.value()?;
                    Ok(Node::Text(Box::new(left), text_op(k), Box::new(right)))
                }
                Some("matches") => {
                    self.pos += 1;
                    let re = self.regex()?;
                    Ok(Node::Matches(Box::new(left), re))
                }
                Some("is_null") => {
                    self.pos += 1;
                    Ok(Node::Test(Box::new(left), TypeTest::Null))
                }
                Some("is_not_null") => {
                    self.pos += 1;
                    Ok(Node::Test(Box::new(left), TypeTest::NotNull))
                }
                Some("is") => {
                    self.pos += 1;
                    let negated = self.peek_kw() == Some("not");
                    if negated {
                        self.pos += 1;
                    }
                    match self.peek() {
                        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => {
                            self.pos += 1;
                            let t = if negated {
                                TypeTest::NotNull
                            } else {
                                TypeTest::Null
                            };
                            Ok(Node::Test(Box::new(left), t))
                        }
                        _ => Err(self.fail(
                            self.at(),
                            format!(
                                "expected `null` after `is{}`, found {}",
                                if negated { " not" } else { "" },
                                self.found()
                            ),
                        )),
                    }
                }
                _ => Ok(left),
            },
            _ => Ok(left),
        }
    }

    /// `[lit, …]` after `in`.
    fn list(&mut self, left: Node) -> PResult {
        if !matches!(self.peek(), Some(Tok::LBrack)) {
            return Err(self.fail(
                self.at(),
                format!("expected `[` after `in`, found {}", self.found()),
            ));
        }
        self.pos += 1;
        let mut xs = Vec::new();
        if matches!(self.peek(), Some(Tok::RBrack)) {
            self.pos += 1;
            return Ok(Node::In(Box::new(left), xs));
        }
        loop {
            let at = self.at();
            let item = match self.peek().cloned() {
                Some(Tok::Num(n)) => Node::Lit(n),
                Some(Tok::Str(s)) => Node::Lit(Value::String(s)),
                Some(Tok::Word(w)) if literal_word(&w).is_some() => {
                    Node::Lit(literal_word(&w).unwrap_or(Value::Null))
                }
                Some(Tok::Word(w)) if self.when && keyword(&w).is_none() => {
                    Node::Field(self.field(at, &w)?)
                }
                _ => {
                    return Err(self.fail(
                        at,
                        format!(
                            "expected a number, a quoted string, true, false or null in the \
                             list, found {}",
                            self.found()
                        ),
                    ))
                }
            };
            self.pos += 1;
            xs.push(item);
            match self.peek() {
                Some(Tok::Comma) => self.pos += 1,
                Some(Tok::RBrack) => {
                    self.pos += 1;
                    return Ok(Node::In(Box::new(left), xs));
                }
                _ => {
                    return Err(self.fail(
                        self.at(),
                        format!("expected `,` or `]` in the list, found {}", self.found()),
                    ))
                }
            }
        }
    }

    /// The quoted pattern after `matches` (or as its function argument), compiled.
    fn regex(&mut self) -> Result<Box<Regex>, ExprError> {
        let at = self.at();
        let Some(Tok::Str(p)) = self.peek().cloned() else {
            return Err(self.fail(
                at,
                format!(
                    "expected a quoted regex after `matches`, found {}",
                    self.found()
                ),
            ));
        };
        self.regexes += 1;
        if self.regexes > MAX_REGEXES {
            return Err(self.fail(
                at,
                format!("more than {MAX_REGEXES} regexes in one expression"),
            ));
        }
        let re = RegexBuilder::new(&p)
            .size_limit(REGEX_SIZE_LIMIT)
            .nest_limit((MAX_DEPTH / 2) as u32)
            .build()
            .map_err(|e| {
                let why = e.to_string();
                let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
                self.fail(
                    at,
                    format!(
                        "invalid regex `{}`: {}",
                        printable_cut(&p, 60),
                        printable_cut(&why, 120)
                    ),
                )
            })?;
        self.pos += 1;
        Ok(Box::new(re))
    }

    fn value(&mut self) -> PResult {
        self.enter()?;
        let v = self.value_inner();
        self.depth -= 1;
        v
    }

    fn value_inner(&mut self) -> PResult {
        let at = self.at();
        match self.peek().cloned() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(Node::Lit(n))
            }
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(Node::Lit(Value::String(s)))
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or()?;
                if !matches!(self.peek(), Some(Tok::Close)) {
                    return Err(self.fail(
                        self.at(),
                        format!(
                            "expected `)` to close the `(` at column {}, found {}",
                            err(self.text, at, String::new()).column,
                            self.found()
                        ),
                    ));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Word(w)) => {
                if let Some(v) = literal_word(&w) {
                    self.pos += 1;
                    return Ok(Node::Lit(v));
                }
                if matches!(self.toks.get(self.pos + 1), Some((_, Tok::Open))) {
                    return self.call(at, &w);
                }
                if let Some(k) = keyword(&w) {
                    if matches!(k, "and" | "or" | "not" | "in" | "is") {
                        return Err(self.fail(
                            at,
                            format!(
                                "expected a value before `{}` (a field named so is written \
                                 `item.{}`)",
                                printable_cut(&w, 40),
                                printable_cut(&w, 40)
                            ),
                        ));
                    }
                }
                let f = self.field(at, &w)?;
                self.pos += 1;
                Ok(Node::Field(f))
            }
            None => Err(self.fail(at, "expression ends too early; expected a value".into())),
            Some(t) => Err(self.fail(
                at,
                format!(
                    "expected a field, a literal, `!` or `(`, found {}",
                    t.describe()
                ),
            )),
        }
    }

    fn field(&self, at: usize, w: &str) -> Result<Field, ExprError> {
        if self.when {
            return Ok(Field {
                path: parse_path(w).unwrap_or_default(),
                word: Some(w.to_string()),
            });
        }
        let path = parse_path(w).map_err(|(o, m)| self.fail(at + o, m))?;
        Ok(Field { path, word: None })
    }

    /// `name(args)`; the cursor is on `name`, `(` follows.
    fn call(&mut self, at: usize, name: &str) -> PResult {
        const FUNCS: &[&str] = &[
            "contains",
            "starts_with",
            "ends_with",
            "matches",
            "is_null",
            "is_not_null",
            "is_number",
            "is_string",
            "is_bool",
            "is_array",
            "is_object",
            "length",
        ];
        let Some(f) = FUNCS.iter().copied().find(|f| f.eq_ignore_ascii_case(name)) else {
            return Err(self.fail(
                at,
                format!(
                    "unknown function `{}`; known: {}",
                    printable_cut(name, 40),
                    FUNCS.join(", ")
                ),
            ));
        };
        self.pos += 2;
        let mut args = vec![self.or()?];
        let mut regex = None;
        if matches!(self.peek(), Some(Tok::Comma)) {
            self.pos += 1;
            if f == "matches" {
                regex = Some(self.regex()?);
            } else {
                args.push(self.or()?);
            }
        }
        if !matches!(self.peek(), Some(Tok::Close)) {
            return Err(self.fail(
                self.at(),
                format!("expected `)` or `,` in `{f}(…)`, found {}", self.found()),
            ));
        }
        self.pos += 1;
        let want = match f {
            "contains" | "starts_with" | "ends_with" | "matches" => 2,
            "length" => args.len(),
            _ => 1,
        };
        let got = args.len() + usize::from(regex.is_some());
        if got != want {
            return Err(self.fail(at, format!("`{f}` takes {want} argument(s), found {got}")));
        }
        let mut args = args.into_iter().map(Box::new);
        let a = args
            .next()
            .unwrap_or_else(|| Box::new(Node::Lit(Value::Null)));
        let b = args.next();
        Ok(match (f, regex, b) {
            ("matches", Some(re), _) => Node::Matches(a, re),
            ("length", _, Some(n)) => Node::Cmp(Box::new(Node::Length(a)), Cmp::Eq, n),
            ("length", _, None) => Node::Length(a),
            (k @ ("contains" | "starts_with" | "ends_with"), _, Some(b)) => {
                Node::Text(a, text_op(k), b)
            }
            ("is_null", ..) => Node::Test(a, TypeTest::Null),
            ("is_not_null", ..) => Node::Test(a, TypeTest::NotNull),
            ("is_number", ..) => Node::Test(a, TypeTest::Number),
            ("is_string", ..) => Node::Test(a, TypeTest::String),
            ("is_bool", ..) => Node::Test(a, TypeTest::Bool),
            ("is_array", ..) => Node::Test(a, TypeTest::Array),
            _ => Node::Test(a, TypeTest::Object),
        })
    }
}

fn text_op(k: &str) -> TextOp {
    match k {
        "contains" => TextOp::Contains,
        "starts_with" => TextOp::StartsWith,
        _ => TextOp::EndsWith,
    }
}

#[cfg(test)]
mod tests;
