//! Work items of a MapReduce `map:` (run.md §2; 0.4.4 pipeline in
//! `prodigy-0.4.4-runner.md` §1.3): JSONPath selection, `filter`, `sort_by`, `distinct`,
//! `offset`, `max_items`, item ids. Order: json_path → filter → sort → distinct → offset →
//! max_items.
//!
//! Owns the JSONPath subset, `sort_by`, `distinct` and the id rules; `filter` is the expression
//! language of [`super::expr`] (the one `when:` uses). Pure functions on JSON values: it never
//! reads the input file, never runs the input command, never prints.
//!
//! **JSONPath subset** (no crate; run.md §2 allows a documented subset of RFC 9535): `$`, then
//! any of `.key`, `.*`, `['key']` / `["key"]` (with `\'`, `\"`, `\\` escapes), `[N]` (negative
//! counts from the end), `[*]`. Recursive descent `..`, filters `[?…]`, slices `[a:b]`, unions
//! `[a,b]` and functions are refused with a message. A path without a wildcard that selects
//! exactly one array yields that array's elements (`$.items` = `$.items[*]`).
//!
//! **Filter**: an expression of [`super::expr`] with fields resolved in the item
//! ([`super::expr::item_field`]): `score >= 5 AND path matches '\.rs$'`; an item is kept when
//! the expression is true.
//!
//! **Sort**: `FIELD [ASC|ASCENDING|DESC|DESCENDING] [NULLS FIRST|NULLS LAST]`, comma-separated,
//! keywords in any case (0.4.4 `data_pipeline/sorter.rs`); default `ASC NULLS LAST` (a missing
//! field is null; null placement ignores the direction). `FIELD` as in expressions (`item.`
//! prefix optional, `.key`, `[N]`). Stable. Values of different types order as false < true <
//! numbers < strings < arrays < objects; numbers numerically, strings bytewise.
//!
//! **Distinct** (`distinct: FIELD`; 0.4.4 parses it and ignores it): after sorting, keep the
//! first item of each value of `FIELD`. A missing field is null and all nulls are one value;
//! numbers are equal by value (`1` and `1.0`), a string never equals a number here (`"1"` is a
//! value of its own).

use serde_json::Value;
use std::cmp::Ordering;

use super::expr::{self, compile_field, item_field, PathSeg};
use super::MapSpec;
use crate::store::names::printable_cut;

/// One step of a compiled JSONPath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// `.key` or `['key']`.
    Key(String),
    /// `[N]`; negative counts from the end.
    Index(i64),
    /// `[*]` or `.*`: every element of an array, every value of an object.
    Wildcard,
}

/// A compiled path of the subset in the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    /// The steps after `$`.
    pub segments: Vec<Segment>,
}

const PATH_HELP: &str = "supported: `$`, `.key`, `['key']`, `[N]`, `[*]`";

/// Compile `p` (must start with `$`). Err: a message naming the unsupported or malformed part
/// and its byte offset.
pub fn compile_path(p: &str) -> Result<JsonPath, String> {
    let s = p.trim();
    let Some(mut rest) = s.strip_prefix('$') else {
        return Err(format!("`{p}` must start with `$` ({PATH_HELP})"));
    };
    let mut segments = Vec::new();
    let at = |rest: &str| s.len() - rest.len();
    while !rest.is_empty() {
        if rest.starts_with("..") {
            return Err(format!(
                "recursive descent `..` at offset {} is not supported ({PATH_HELP})",
                at(rest)
            ));
        }
        if let Some(r) = rest.strip_prefix('.') {
            if let Some(r2) = r.strip_prefix('*') {
                segments.push(Segment::Wildcard);
                rest = r2;
                continue;
            }
            let end = r
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(r.len());
            if end == 0 {
                return Err(format!(
                    "expected a key after `.` at offset {} in `{p}` ({PATH_HELP})",
                    at(rest)
                ));
            }
            segments.push(Segment::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let r = r.trim_start();
            if let Some(q) = r.chars().next().filter(|c| *c == '\'' || *c == '"') {
                let mut key = String::new();
                let mut chars = r[1..].char_indices();
                let mut close = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some((_, e)) => key.push(e),
                            None => break,
                        },
                        c if c == q => {
                            close = Some(i + 2);
                            break;
                        }
                        c => key.push(c),
                    }
                }
                let Some(close) = close else {
                    return Err(format!(
                        "unterminated quoted key at offset {} in `{p}`",
                        at(rest)
                    ));
                };
                let Some(r2) = r[close..].trim_start().strip_prefix(']') else {
                    return Err(format!(
                        "expected `]` after the quoted key at offset {} in `{p}` (unions are not \
                         supported; {PATH_HELP})",
                        at(rest)
                    ));
                };
                segments.push(Segment::Key(key));
                rest = r2;
            } else {
                let Some(end) = r.find(']') else {
                    return Err(format!("unterminated `[` at offset {} in `{p}`", at(rest)));
                };
                let inner = r[..end].trim();
                if inner == "*" {
                    segments.push(Segment::Wildcard);
                } else if let Ok(n) = inner.parse::<i64>() {
                    segments.push(Segment::Index(n));
                } else {
                    return Err(format!(
                        "`[{inner}]` at offset {} is not supported (filters, slices and unions \
                         are not; {PATH_HELP})",
                        at(rest)
                    ));
                }
                rest = &r[end + 1..];
            }
        } else {
            return Err(format!(
                "unexpected `{}` at offset {} in `{p}` ({PATH_HELP})",
                rest.chars().next().unwrap_or(' '),
                at(rest)
            ));
        }
    }
    Ok(JsonPath { segments })
}

impl JsonPath {
    /// The values the path selects from `input`, in document order (object values in the
    /// order serde_json keeps them).
    pub fn select<'v>(&self, input: &'v Value) -> Vec<&'v Value> {
        let mut cur = vec![input];
        for seg in &self.segments {
            let mut next = Vec::new();
            for v in cur {
                match (seg, v) {
                    (Segment::Key(k), Value::Object(o)) => next.extend(o.get(k)),
                    (Segment::Index(i), Value::Array(a)) => {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        if idx >= 0 {
                            next.extend(a.get(idx as usize));
                        }
                    }
                    (Segment::Wildcard, Value::Array(a)) => next.extend(a.iter()),
                    (Segment::Wildcard, Value::Object(o)) => next.extend(o.values()),
                    _ => {}
                }
            }
            cur = next;
        }
        cur
    }
}

/// The items `spec` selects from `input`, in order: `json_path` (None or empty: `input`'s
/// elements when it is an array, else `[input]`) → `filter` → `sort_by` → `distinct` →
/// `offset` → `max_items`. Err: a message about an invalid `json_path`, `filter`, `sort_by` or
/// `distinct` (prefixed `json_path: `, …; [`super::parse`] already refuses those). A path that selects nothing is
/// not an error: it yields zero items.
pub fn select(input: &Value, spec: &MapSpec) -> Result<Vec<Value>, String> {
    let mut items: Vec<Value> = match spec.json_path.as_deref().map(str::trim) {
        None | Some("") => match input {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        },
        Some(p) => {
            let path = compile_path(p).map_err(|e| format!("json_path: {e}"))?;
            let found = path.select(input);
            let wild = path.segments.contains(&Segment::Wildcard);
            match found.as_slice() {
                [Value::Array(a)] if !wild => a.clone(),
                _ => found.into_iter().cloned().collect(),
            }
        }
    };
    if let Some(f) = spec.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        let f = expr::compile(f).map_err(|e| format!("filter: {e}"))?;
        items.retain(|it| f.matches_item(it));
    }
    if let Some(s) = spec.sort_by.as_deref().filter(|s| !s.trim().is_empty()) {
        let keys = compile_sort(s).map_err(|e| format!("sort_by: {e}"))?;
        crate::sort::sort_by(&mut items, |a, b| compare_by(&keys, a, b));
    }
    if let Some(d) = spec.distinct.as_deref() {
        let path = compile_field(d).map_err(|e| format!("distinct: {e}"))?;
        keep_distinct(&mut items, &path);
    }
    let offset = spec.offset.unwrap_or(0).min(items.len());
    items.drain(..offset);
    if let Some(n) = spec.max_items {
        items.truncate(n);
    }
    Ok(items)
}

/// Items from the output of a `map.input` command: when the whole text is JSON, that value's
/// elements (an array) or the value itself; otherwise one JSON string per non-blank line (a
/// trailing `\r` is dropped, nothing else).
pub fn parse_input_text(text: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return match v {
            Value::Array(a) => a,
            other => vec![other],
        };
    }
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
        .map(|l| Value::String(l.to_string()))
        .collect()
}

/// The id of each item: its `id` field when that is a string or a number (numbers as their
/// JSON text, `7`, `1.5`), else its 0-based index as text. Err when two items have the same id:
/// ``work items 0 and 2 have the same id `a` ``.
pub fn item_ids(items: &[Value]) -> Result<Vec<String>, String> {
    let mut seen = std::collections::HashMap::new();
    let mut ids = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let id = match it.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => i.to_string(),
        };
        if let Some(first) = seen.insert(id.clone(), i) {
            return Err(format!(
                "work items {first} and {i} have the same id `{id}`; ids must be unique"
            ));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// `id` when it fits the name grammar (`store::names`, `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`),
/// else `item-{index}`: the form used in file and branch names.
pub fn file_id(id: &str, index: usize) -> String {
    if crate::store::names::is_valid_id_bytes(id.as_bytes()) {
        id.to_string()
    } else {
        format!("item-{index}")
    }
}

// ---------------------------------------------------------------------------------------------
// Sort and distinct

/// One key of a compiled `map.sort_by`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    /// The field compared ([`expr::compile_field`]).
    pub field: Vec<PathSeg>,
    /// `DESC`.
    pub descending: bool,
    /// `NULLS FIRST` (default: nulls last in both directions).
    pub nulls_first: bool,
}

/// Compile `sort_by` (module documentation). Err names the bad part.
pub fn compile_sort(s: &str) -> Result<Vec<SortKey>, String> {
    let mut keys = Vec::new();
    for part in s.split(',') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let Some((field, mut rest)) = words.split_first() else {
            return Err(format!("empty sort key in `{}`", printable_cut(s, 60)));
        };
        let mut key = SortKey {
            field: compile_field(field)
                .map_err(|e| format!("`{}`: {}", printable_cut(field, 40), e.message))?,
            descending: false,
            nulls_first: false,
        };
        if let Some(dir) = rest.first() {
            if ["desc", "descending"]
                .iter()
                .any(|d| dir.eq_ignore_ascii_case(d))
            {
                key.descending = true;
                rest = &rest[1..];
            } else if ["asc", "ascending"]
                .iter()
                .any(|d| dir.eq_ignore_ascii_case(d))
            {
                rest = &rest[1..];
            }
        }
        match rest {
            [] => {}
            [n, w] if n.eq_ignore_ascii_case("nulls") && w.eq_ignore_ascii_case("first") => {
                key.nulls_first = true
            }
            [n, w] if n.eq_ignore_ascii_case("nulls") && w.eq_ignore_ascii_case("last") => {}
            _ => {
                return Err(format!(
                    "`{}`: expected `FIELD [ASC|DESC] [NULLS FIRST|NULLS LAST]`",
                    printable_cut(part.trim(), 60)
                ))
            }
        }
        keys.push(key);
    }
    Ok(keys)
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(f64::NAN)
            .total_cmp(&y.as_f64().unwrap_or(f64::NAN)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            a.to_string().cmp(&b.to_string())
        }
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

fn field(item: &Value, path: &[PathSeg]) -> Value {
    item_field(item, path).unwrap_or(Value::Null)
}

fn compare_by(keys: &[SortKey], a: &Value, b: &Value) -> Ordering {
    for k in keys {
        let (x, y) = (field(a, &k.field), field(b, &k.field));
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) if k.nulls_first => Ordering::Less,
            (true, false) => Ordering::Greater,
            (false, true) if k.nulls_first => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) if k.descending => compare_values(&y, &x),
            (false, false) => compare_values(&x, &y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// `distinct`: keep the first item of each value of the field at `path` (a missing field is
/// null, and all nulls are one value); values are equal when their JSON is, numbers by value
/// (`1` and `1.0` are one value, `"1"` another).
fn keep_distinct(items: &mut Vec<Value>, path: &[PathSeg]) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|it| seen.insert(canonical(&field(it, path))));
}

/// A text that is equal for values `distinct` treats as equal: compact JSON (object keys
/// sorted, as serde_json keeps them) with every number written as its f64 value, integers
/// within ±2^53 without a fraction.
fn canonical(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
                    out.push_str(&(f as i64).to_string())
                }
                (_, _, f) => out.push_str(&format!("{:?}", f.unwrap_or(f64::NAN))),
            },
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    walk(x, out);
                }
                out.push(']');
            }
            Value::Object(o) => {
                out.push('{');
                for (i, (k, x)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    walk(x, out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    walk(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::MaxParallel;
    use serde_json::json;

    fn spec() -> MapSpec {
        MapSpec {
            input: "items.json".into(),
            json_path: None,
            filter: None,
            sort_by: None,
            max_items: None,
            offset: None,
            distinct: None,
            max_parallel: MaxParallel::Count(10),
            agent_template: Vec::new(),
        }
    }

    fn doc() -> Value {
        json!({"items": [
            {"id": 1, "file": "b.rs", "prio": 2, "meta": {"size": 10}},
            {"id": 2, "file": "a.rs", "prio": 5, "meta": {"size": 3}},
            {"id": 3, "file": "c.rs", "meta": {"size": 7}, "tags": ["x"]}
        ], "weird key": [1, 2]})
    }

    fn sel(path: &str, v: &Value) -> Vec<Value> {
        compile_path(path)
            .unwrap()
            .select(v)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn json_path_subset_selects() {
        let d = doc();
        assert_eq!(sel("$.items[*].id", &d), [json!(1), json!(2), json!(3)]);
        assert_eq!(sel("$['items'][1].file", &d), [json!("a.rs")]);
        assert_eq!(sel("$[\"weird key\"][-1]", &d), [json!(2)]);
        assert_eq!(sel("$.items[2].tags[0]", &d), [json!("x")]);
        assert_eq!(
            sel("$.items.*.meta.size", &d),
            [json!(10), json!(3), json!(7)]
        );
        assert_eq!(sel("$", &d), std::slice::from_ref(&d));
        assert!(sel("$.nope[*]", &d).is_empty());
        assert_eq!(
            compile_path("$['it\\'s']").unwrap().segments,
            [Segment::Key("it's".into())]
        );
    }

    #[test]
    fn json_path_refuses_what_it_does_not_support() {
        for (p, needle) in [
            ("$..id", "recursive descent"),
            ("$.items[?(@.id > 1)]", "not supported"),
            ("$.items[0:2]", "not supported"),
            ("$['a','b']", "unions"),
            ("items[*]", "must start with `$`"),
            ("$.items[", "unterminated"),
            ("$.", "expected a key"),
            ("$ items", "unexpected"),
        ] {
            let e = compile_path(p).unwrap_err();
            assert!(e.contains(needle), "{p}: {e}");
        }
    }

    #[test]
    fn select_runs_the_pipeline_in_order() {
        let d = doc();
        let mut s = spec();
        s.json_path = Some("$.items[*]".into());
        s.filter = Some("item.meta.size > 3".into());
        s.sort_by = Some("file DESC".into());
        let got = select(&d, &s).unwrap();
        assert_eq!(item_ids(&got).unwrap(), ["3", "1"]);
        s.offset = Some(1);
        s.max_items = Some(5);
        assert_eq!(item_ids(&select(&d, &s).unwrap()).unwrap(), ["1"]);
        s.offset = Some(9);
        assert!(select(&d, &s).unwrap().is_empty());
    }

    #[test]
    fn single_array_path_and_empty_path_yield_elements() {
        let d = doc();
        let mut s = spec();
        s.json_path = Some("$.items".into());
        assert_eq!(select(&d, &s).unwrap().len(), 3);
        s.json_path = Some(String::new());
        assert_eq!(select(&d, &s).unwrap(), std::slice::from_ref(&d));
        assert_eq!(select(&json!([1, 2]), &s).unwrap(), [json!(1), json!(2)]);
        s.max_items = Some(1);
        assert_eq!(select(&json!([1, 2]), &s).unwrap(), [json!(1)]);
    }

    #[test]
    fn filter_keeps_the_items_the_expression_is_true_for() {
        let items = doc()["items"].as_array().unwrap().clone();
        let pick = |f: &str| -> Vec<i64> {
            let f = expr::compile(f).unwrap_or_else(|e| panic!("{f}: {e}"));
            items
                .iter()
                .filter(|i| f.matches_item(i))
                .map(|i| i["id"].as_i64().unwrap())
                .collect()
        };
        assert_eq!(pick("prio >= 2 && prio < 5"), [1]);
        assert_eq!(pick("file == 'a.rs' || id == 3"), [2, 3]);
        assert_eq!(pick("!(file == \"a.rs\")"), [1, 3]);
        assert_eq!(pick("prio == null"), [3]);
        assert_eq!(pick("prio != null && item.meta.size <= 3"), [2]);
        assert_eq!(pick("tags"), [3]);
        assert_eq!(pick("tags[0] == 'x'"), [3]);
        assert_eq!(pick("prio > 'a'"), Vec::<i64>::new());
        assert_eq!(pick("id == 2.0"), [2]);
        assert_eq!(pick("id > -1 && id < 1e1"), [1, 2, 3]);
        assert_eq!(pick("a || b && c"), Vec::<i64>::new());
        assert_eq!(
            pick("file matches '^[ab]\\.rs$' AND id in [1, 2, 9]"),
            [1, 2]
        );
    }

    #[test]
    fn select_reports_a_bad_filter_with_its_column() {
        let mut s = spec();
        s.filter = Some("prio > > 1".into());
        assert_eq!(
            select(&doc(), &s).unwrap_err(),
            "filter: column 8: expected a field, a literal, `!` or `(`, found `>`"
        );
    }

    #[test]
    fn distinct_keeps_the_first_item_of_each_value_after_sorting() {
        let items = json!([
            {"id": "a", "k": 1, "p": 3},
            {"id": "b", "k": 1.0, "p": 9},
            {"id": "c", "k": "1", "p": 1},
            {"id": "d", "p": 5},
            {"id": "e", "k": null, "p": 7},
            {"id": "f", "k": {"x": [2, 2.0]}, "p": 0},
            {"id": "g", "k": {"x": [2.0, 2]}, "p": 2}
        ]);
        let ids = |s: &MapSpec| item_ids(&select(&items, s).unwrap()).unwrap();
        let mut s = spec();
        s.distinct = Some("k".into());
        assert_eq!(ids(&s), ["a", "c", "d", "f"]);
        s.sort_by = Some("p DESC".into());
        assert_eq!(ids(&s), ["b", "e", "g", "c"]);
        s.offset = Some(1);
        s.max_items = Some(2);
        assert_eq!(ids(&s), ["e", "g"]);
        s.distinct = Some("item.missing".into());
        assert_eq!(ids(&s), Vec::<String>::new());
        s.offset = None;
        assert_eq!(ids(&s), ["b"]);
    }

    #[test]
    fn sort_is_stable_with_nulls_and_directions() {
        let items = vec![
            json!({"n": "a", "p": 2}),
            json!({"n": "b"}),
            json!({"n": "c", "p": 10}),
            json!({"n": "d", "p": 2}),
        ];
        let order = |s: &str| -> Vec<String> {
            let keys = compile_sort(s).unwrap();
            let mut v = items.clone();
            v.sort_by(|a, b| compare_by(&keys, a, b));
            v.iter()
                .map(|i| i["n"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(order("p"), ["a", "d", "c", "b"]);
        assert_eq!(order("p DESC"), ["c", "a", "d", "b"]);
        assert_eq!(order("item.p desc nulls first"), ["b", "c", "a", "d"]);
        assert_eq!(order("p ASC, n DESC"), ["d", "a", "c", "b"]);
        assert!(compile_sort("p sideways")
            .unwrap_err()
            .contains("expected `FIELD"));
        assert!(compile_sort("p,").unwrap_err().contains("empty sort key"));
        assert_eq!(order("p descending, n ascending"), ["c", "a", "d", "b"]);
        assert_eq!(
            compile_sort("p, x..y").unwrap_err(),
            "`x..y`: `x..y` is not a field path (e.g. `priority`, `item.meta.size`, `tags[0]`)"
        );
    }

    #[test]
    fn input_text_is_json_or_lines() {
        assert_eq!(
            parse_input_text("[1, {\"a\": 2}]\n"),
            [json!(1), json!({"a": 2})]
        );
        assert_eq!(parse_input_text("{\"a\": 1}"), [json!({"a": 1})]);
        assert_eq!(
            parse_input_text("src/a.rs\r\n\n  \nsrc/b c.rs\n"),
            [json!("src/a.rs"), json!("src/b c.rs")]
        );
        assert!(parse_input_text("").is_empty());
    }

    #[test]
    fn ids_come_from_id_field_or_index_and_must_be_unique() {
        let items = [
            json!({"id": "a"}),
            json!({"id": 7}),
            json!("plain"),
            json!({"id": null}),
            json!({"id": 1.5}),
        ];
        assert_eq!(item_ids(&items).unwrap(), ["a", "7", "2", "3", "1.5"]);
        let dup = [json!({"id": "x"}), json!({}), json!({"id": "x"})];
        assert_eq!(
            item_ids(&dup).unwrap_err(),
            "work items 0 and 2 have the same id `x`; ids must be unique"
        );
        let clash = [json!({"id": "1"}), json!({})];
        assert!(item_ids(&clash).unwrap_err().contains("work items 0 and 1"));
    }

    #[test]
    fn file_id_falls_back_to_index() {
        assert_eq!(file_id("task-1.a_b", 0), "task-1.a_b");
        assert_eq!(file_id("../etc", 3), "item-3");
        assert_eq!(file_id("a/b", 4), "item-4");
        assert_eq!(file_id("", 5), "item-5");
        assert_eq!(file_id(".hidden", 6), "item-6");
        assert_eq!(file_id(&"x".repeat(129), 7), "item-7");
    }
}
