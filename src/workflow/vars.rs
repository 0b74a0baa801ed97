//! Workflow variables and `${…}` interpolation (run.md §2 "Variables"; 0.4.4 engine in
//! `prodigy-0.4.4-runner.md` §2).
//!
//! Owns the substitution rules only: which placeholders are replaced, which are left for the
//! shell, and which are errors. It knows no variable names (the executor fills [`Vars`]),
//! never reads the environment, and never quotes for the shell: values are substituted as
//! text, as in 0.4.4.
//!
//! Rules, in order, for each `$` in the text:
//! - `$$` and `\$` are copied as is (the `$` after them is not a placeholder).
//! - `${NAME}` / `${NAME.path}` / `${NAME[0].k}`: a known name is replaced by [`to_text`] of its
//!   value. `${NAME:-default}` uses `default` (as written, not interpolated) when the value is
//!   unknown or null — but an unknown *plain* `${NAME:-default}` is left for the shell, so
//!   `${PORT:-8080}` still sees an exported `PORT`. An unknown dotted or indexed name without
//!   a default is an error (`unknown variable `${a.b}``): 0.4.4 hands it to `sh`, which fails
//!   with "Bad substitution" after running nothing or half a command list. An unknown plain
//!   `${NAME}` is left exactly as written for the shell (environment variables keep working).
//!   A `${…}` whose inside is not a variable path (`${#x}`, `${x%y}`) is shell syntax and is
//!   left as is; an unterminated `${` is left as is.
//! - `$NAME` (identifier characters only): replaced when known (0.4.4 compatibility), else
//!   left as written.

use serde_json::Value;
use std::collections::BTreeMap;

/// Variables by name. Names may contain dots and are stored flat (`map.total`), and a value
/// may be any JSON (`item` is the whole work item).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vars {
    map: BTreeMap<String, Value>,
}

impl Vars {
    /// No variables.
    pub fn new() -> Self {
        Vars::default()
    }
    /// Set `name` (flat, e.g. `"map.total"`) to `v`, replacing any earlier value.
    pub fn set(&mut self, name: &str, v: Value) {
        self.map.insert(name.to_string(), v);
    }
    /// Set `name` to the JSON string `s`.
    pub fn set_str(&mut self, name: &str, s: &str) {
        self.set(name, Value::String(s.to_string()));
    }
    /// The value at `path`: the whole path when stored flat (`map.total`), else the longest
    /// stored name that is a prefix of `path` (ending before a `.` or `[`) and JSON navigation
    /// into its value by `.key` and `[N]` steps (`item.nested.k`, `item.list[0]`). `None` when
    /// nothing matches or the navigation leaves the value.
    pub fn get(&self, path: &str) -> Option<Value> {
        if let Some(v) = self.map.get(path) {
            return Some(v.clone());
        }
        let mut cut = path.len();
        while let Some(i) = path[..cut].rfind(['.', '[']) {
            cut = i;
            if let Some(v) = self.map.get(&path[..cut]) {
                return navigate(v, &path[cut..]).cloned();
            }
        }
        None
    }
    /// Forget `name` (flat).
    pub fn remove(&mut self, name: &str) {
        self.map.remove(name);
    }
    /// All variables, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.map.iter()
    }

    /// The variables whose value differs from `base`'s (set or changed since): what a
    /// checkpoint keeps of a phase's variables. A capture whose name shadows an `--arg` (or any
    /// variable the run started with) is kept too, or a resume would restore the old value.
    pub fn changed_from(&self, base: &Vars) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        for (k, v) in self.iter() {
            if base.get(k).as_ref() != Some(v) {
                m.insert(k.clone(), v.clone());
            }
        }
        m
    }
}

/// Follow `.key` and `[N]` steps from `v`; `None` on a malformed path or a missing step.
fn navigate<'v>(mut v: &'v Value, mut rest: &str) -> Option<&'v Value> {
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            if key.is_empty() {
                return None;
            }
            v = match v {
                Value::Object(o) => o.get(key)?,
                // `${list.0}` as well as `${list[0]}`.
                Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
                _ => return None,
            };
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let i: usize = r[..end].parse().ok()?;
            v = v.as_array()?.get(i)?;
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(v)
}

/// A value as substituted text: a string as is, null as empty, numbers and booleans as JSON
/// writes them, arrays and objects as compact JSON.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// True when `s` is a variable path: an identifier, then `.segment` (letters, digits, `_`,
/// `-`) and `[N]` steps.
fn is_var_path(s: &str) -> bool {
    let end = s.find(['.', '[']).unwrap_or(s.len());
    if !super::is_identifier(&s[..end]) {
        return false;
    }
    let mut rest = &s[end..];
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let e = r.find(['.', '[']).unwrap_or(r.len());
            if e == 0
                || !r[..e]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            {
                return false;
            }
            rest = &r[e..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(e) = r.find(']') else { return false };
            if e == 0 || !r[..e].bytes().all(|c| c.is_ascii_digit()) {
                return false;
            }
            rest = &r[e + 1..];
        } else {
            return false;
        }
    }
    true
}

/// Substitute the variables of `text` by the rules in the module documentation. `Err` is a
/// message naming the first unknown dotted or indexed variable, e.g.
/// ``unknown variable `${item.nmae}` ``.
pub fn interpolate(text: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['$', '\\']) {
        out.push_str(&rest[..i]);
        let at = &rest[i..];
        if at.starts_with("\\$") || at.starts_with("$$") {
            out.push_str(&at[..2]);
            rest = &at[2..];
        } else if let Some(after) = at.strip_prefix('\\') {
            out.push('\\');
            rest = after;
        } else if let Some(inner_start) = at.strip_prefix("${") {
            let Some(close) = inner_start.find('}') else {
                out.push_str(at);
                rest = "";
                break;
            };
            let inner = &inner_start[..close];
            let whole = &at[..close + 3];
            rest = &inner_start[close + 1..];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !is_var_path(name) {
                out.push_str(whole);
                continue;
            }
            let dotted = name.contains(['.', '[']);
            match (vars.get(name), default) {
                (Some(v), _) if !v.is_null() => out.push_str(&to_text(&v)),
                (Some(_), Some(d)) => out.push_str(d),
                (Some(v), None) => out.push_str(&to_text(&v)),
                (None, Some(d)) if dotted => out.push_str(d),
                (None, None) if dotted => return Err(format!("unknown variable `${{{name}}}`")),
                (None, _) => out.push_str(whole),
            }
        } else {
            let name_len = at[1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(at.len() - 1);
            let name = &at[1..1 + name_len];
            match vars.map.get(name) {
                Some(v) if super::is_identifier(name) => out.push_str(&to_text(v)),
                _ => out.push_str(&at[..1 + name_len]),
            }
            rest = &at[1 + name_len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set(
            "item",
            json!({"id": 7, "file": "src/a.rs", "nested": {"k": "deep"}, "list": ["x", "y"], "n": null}),
        );
        v.set("map.total", json!(3));
        v.set_str("shell.output", "out");
        v.set("flag", json!(true));
        v.set("nothing", Value::Null);
        v
    }

    #[test]
    fn nested_item_paths_resolve() {
        let v = vars();
        assert_eq!(
            interpolate(
                "${item.id} ${item.nested.k} ${item.list[1]} ${item.list.0}",
                &v
            )
            .unwrap(),
            "7 deep y x"
        );
    }

    #[test]
    fn flat_dotted_names_win_over_navigation() {
        let mut v = vars();
        v.set("map", json!({"total": 99}));
        assert_eq!(interpolate("${map.total}", &v).unwrap(), "3");
        assert_eq!(v.get("map.total"), Some(json!(3)));
    }

    #[test]
    fn whole_values_become_text() {
        let v = vars();
        assert_eq!(
            interpolate("${item.nested} ${item.list} ${flag} ${nothing}|", &v).unwrap(),
            r#"{"k":"deep"} ["x","y"] true |"#
        );
        let mut s = Vars::new();
        s.set_str("item", "alpha");
        assert_eq!(interpolate("${item}", &s).unwrap(), "alpha");
    }

    #[test]
    fn defaults_apply_to_unknown_dotted_and_null_values() {
        let v = vars();
        assert_eq!(interpolate("${item.missing:-none}", &v).unwrap(), "none");
        assert_eq!(interpolate("${item.n:-was-null}", &v).unwrap(), "was-null");
        assert_eq!(interpolate("${nothing:-d}", &v).unwrap(), "d");
        assert_eq!(interpolate("${item.id:-d}", &v).unwrap(), "7");
        assert_eq!(interpolate("${item.missing:-}", &v).unwrap(), "");
    }

    #[test]
    fn unknown_plain_names_are_left_for_the_shell() {
        let v = vars();
        assert_eq!(
            interpolate("echo $HOME ${HOME} ${PORT:-8080} $1", &v).unwrap(),
            "echo $HOME ${HOME} ${PORT:-8080} $1"
        );
    }

    #[test]
    fn unknown_dotted_or_indexed_name_is_an_error() {
        let v = vars();
        assert_eq!(
            interpolate("echo ${item.nmae}", &v).unwrap_err(),
            "unknown variable `${item.nmae}`"
        );
        assert_eq!(
            interpolate("${workflow.name}", &v).unwrap_err(),
            "unknown variable `${workflow.name}`"
        );
        assert_eq!(
            interpolate("${item.list[5]}", &v).unwrap_err(),
            "unknown variable `${item.list[5]}`"
        );
    }

    #[test]
    fn known_dollar_name_is_substituted() {
        let v = vars();
        assert_eq!(
            interpolate("$item;$flag-$flagx", &v).unwrap(),
            format!("{};true-$flagx", to_text(&v.get("item").unwrap()))
        );
    }

    #[test]
    fn escapes_shell_syntax_and_unterminated_are_left() {
        let v = vars();
        assert_eq!(
            interpolate("$$flag \\$flag \\${flag}", &v).unwrap(),
            "$$flag \\$flag \\${flag}"
        );
        assert_eq!(
            interpolate("${#x} ${x%y} ${ flag }", &v).unwrap(),
            "${#x} ${x%y} ${ flag }"
        );
        assert_eq!(interpolate("a ${flag", &v).unwrap(), "a ${flag");
        assert_eq!(interpolate("cost: 5$ \\n", &v).unwrap(), "cost: 5$ \\n");
        assert_eq!(interpolate("é${flag}ü", &v).unwrap(), "étrueü");
    }

    #[test]
    fn values_are_not_interpolated_again_or_quoted() {
        let mut v = Vars::new();
        v.set_str("a", "${b} $(rm -rf x) 'q'");
        v.set_str("b", "no");
        assert_eq!(interpolate("${a}", &v).unwrap(), "${b} $(rm -rf x) 'q'");
    }

    #[test]
    fn remove_and_iter() {
        let mut v = vars();
        v.remove("flag");
        assert_eq!(v.get("flag"), None);
        let names: Vec<&String> = v.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["item", "map.total", "nothing", "shell.output"]);
    }
}
