//! Expressions of `when:` and `map.filter` (`workflow::expr`): any text either compiles, or
//! fails with one error whose offset is a character boundary inside the text, whose column
//! counts the characters before it, and whose message is one line without control characters;
//! never a panic, never a stack overflow (nesting is bounded when compiling). Whatever compiles
//! evaluates against a few fixed work items, and as `when` text, without panicking; `!(e)`
//! evaluates to the opposite of `e` whenever it compiles too, and so does `NOT (e)`.
//!
//! The first byte picks the form: even = filter ([`compile`]), odd = `when` ([`compile_when`]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::workflow::expr::{compile, compile_field, compile_when, eval_when, ExprError};
use serde_json::{json, Value};

fn check_err(text: &str, e: &ExprError) {
    assert!(e.offset <= text.len(), "{e:?}");
    assert!(text.is_char_boundary(e.offset), "{e:?}");
    assert_eq!(e.column, text[..e.offset].chars().count() + 1, "{e:?}");
    let m = e.to_string();
    assert!(!m.chars().any(char::is_control), "{m:?}");
    assert!(m.starts_with("column "), "{m}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let items: [Value; 5] = [
        json!(null),
        json!("src/main.rs"),
        json!({"id": 7, "name": "a.rs", "score": 5.0, "tags": ["a", "b"], "meta": {"n": null, "length": 2}}),
        json!({"a": [1, [2, {"b": "10"}]], "item": {"a": true}, "x": u64::MAX, "y": -1e308}),
        json!([0, "", false, {}]),
    ];
    let when = mode & 1 == 1;
    let compiled = if when {
        compile_when(text)
    } else {
        compile(text)
    };
    match compiled {
        Ok(e) => {
            let results: Vec<bool> = items.iter().map(|v| e.matches_item(v)).collect();
            for neg in [format!("!({text})"), format!("NOT ({text})")] {
                let c = if when {
                    compile_when(&neg)
                } else {
                    compile(&neg)
                };
                if let Ok(n) = c {
                    for (item, r) in items.iter().zip(&results) {
                        assert_eq!(n.matches_item(item), !r, "{neg} on {item}");
                    }
                }
            }
        }
        Err(e) => check_err(text, &e),
    }
    match eval_when(text) {
        Ok(_) => {}
        Err(e) => check_err(text, &e),
    }
    if let Err(e) = compile_field(text) {
        check_err(text, &e);
    }
});
