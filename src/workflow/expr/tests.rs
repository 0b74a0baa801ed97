use super::*;
use serde_json::json;

fn item() -> Value {
    json!({
        "id": 7,
        "name": "src/main.rs",
        "score": 12.5,
        "prio": 5,
        "count": "10",
        "flag": true,
        "off": false,
        "none": null,
        "empty": "",
        "tags": ["a", "b", "c"],
        "meta": {"size": 3, "owner": {"name": "ann"}, "a b": 1, "length": 99},
        "list": [{"k": 1}, {"k": 2}],
        "and": "kw"
    })
}

/// The filter `f` against `item()`.
fn t(f: &str) -> bool {
    compile(f)
        .unwrap_or_else(|e| panic!("{f}: {e}"))
        .matches_item(&item())
}

fn e(f: &str) -> String {
    compile(f).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn comparison_operators() {
    for (f, want) in [
        ("prio == 5", true),
        ("prio = 5", true),
        ("prio != 5", false),
        ("prio < 6", true),
        ("prio <= 5", true),
        ("prio > 5", false),
        ("prio >= 5", true),
        ("name == 'src/main.rs'", true),
        ("name == \"src/main.rs\"", true),
        ("name < 't'", true),
        ("name > 'src/main.rs'", false),
        ("flag == true", true),
        ("off == false", true),
        ("flag != false", true),
        ("none == null", true),
        ("missing == null", true),
        ("missing != null", false),
        ("tags == tags", true),
        ("meta.owner == meta.owner", true),
        ("-1 < 0", true),
        ("1e3 == 1000", true),
    ] {
        assert_eq!(t(f), want, "{f}");
    }
}

#[test]
fn numbers_compare_as_numbers_and_numeric_strings_as_numbers() {
    // 0.4.4's filter never matched `prio == 5` against the integer 5: a bug we do not keep.
    assert!(t("prio == 5.0"));
    assert!(t("item.prio == 5"));
    assert!(t("score == 12.50"));
    assert!(t("score > 12"));
    assert!(t("id in [7.0]"));
    // A numeric string against a number compares as a number (0.4.4's `when` rule)...
    assert!(t("count == 10"));
    assert!(t("count > 9"));
    assert!(t("10.0 == count"));
    // ...but two strings compare as strings.
    assert!(!t("count == '10.0'"));
    assert!(t("count < '9'"));
    assert!(!t("name == 0"));
    assert!(!t("name > 0") && !t("name < 0"));
    // Large integers are compared exactly.
    let big = json!({"n": 9007199254740993u64});
    assert!(compile("n == 9007199254740993").unwrap().matches_item(&big));
    assert!(!compile("n == 9007199254740992").unwrap().matches_item(&big));
}

#[test]
fn mismatched_types_never_order() {
    for f in [
        "flag > false",
        "none < 1",
        "tags > 1",
        "missing >= 0",
        "missing <= 0",
    ] {
        assert!(!t(f), "{f}");
    }
}

#[test]
fn boolean_operators_words_and_symbols() {
    assert!(t("prio == 5 && flag"));
    assert!(t("prio == 5 AND flag"));
    assert!(t("prio == 5 and flag"));
    assert!(t("prio == 4 || flag"));
    assert!(t("prio == 4 OR flag"));
    assert!(t("prio == 4 Or flag"));
    assert!(!t("!flag"));
    assert!(!t("NOT flag"));
    assert!(t("not off"));
    assert!(t("!!flag"));
    assert!(t("!(prio == 4)"));
    assert!(t("NOT prio == 4"), "NOT binds looser than a comparison");
    assert!(t("!prio == 4"), "! binds looser than a comparison");
}

#[test]
fn precedence_and_parentheses() {
    // && binds tighter than ||.
    assert!(t("flag || off && off"));
    assert!(!t("(flag || off) && off"));
    assert!(t("off && off || flag"));
    assert!(!t("off && (off || flag)"));
    // ! applies to one operand of &&, not the rest (0.4.4's filter negated the whole rest).
    assert!(!t("!off && off"));
    assert!(t("!(off && off)"));
    assert!(t("NOT off AND flag OR off"));
    assert!(t("((((prio)))) == 5"));
}

#[test]
fn truthiness_of_values() {
    for (f, want) in [
        ("flag", true),
        ("off", false),
        ("none", false),
        ("missing", false),
        ("empty", false),
        ("prio", true),
        ("tags", true),
        ("meta", true),
        ("'false'", false),
        ("'0'", false),
        ("0", false),
        ("0.0", false),
        ("'no'", true),
    ] {
        assert_eq!(t(f), want, "{f}");
    }
}

#[test]
fn in_lists() {
    assert!(t("prio in [1, 5, 9]"));
    assert!(t("name IN ['x', 'src/main.rs']"));
    assert!(!t("name in []"));
    assert!(t("none in [null]"));
    assert!(t("missing in [null, 1]"));
    assert!(t("flag in [true]"));
    assert!(t("prio not in [1, 2]"));
    assert!(!t("prio NOT IN [5]"));
    assert!(
        t("count in [10]"),
        "a numeric string is in a list of numbers"
    );
}

#[test]
fn string_operators_and_functions() {
    assert!(t("name contains 'main'"));
    assert!(t("name CONTAINS 'main'"));
    assert!(!t("name contains 'Main'"));
    assert!(t("tags contains 'b'"));
    assert!(!t("tags contains 'z'"));
    assert!(t("name starts_with 'src/'"));
    assert!(t("name ends_with '.rs'"));
    assert!(!t("name ends_with '.py'"));
    assert!(t("contains(name, 'main')"));
    assert!(t("starts_with(item.name, 'src')"));
    assert!(t("ends_with(name, \".rs\")"));
    assert!(
        t("prio starts_with '5'"),
        "numbers are matched by their text"
    );
    assert!(!t("none contains ''") && !t("missing starts_with ''"));
    assert!(!t("meta contains 'size'"));
}

#[test]
fn matches_is_a_regex_search() {
    assert!(t("name matches '\\.rs$'"));
    assert!(t("name MATCHES '^src/'"));
    assert!(!t("name matches '^main'"));
    assert!(t("matches(name, 'ma+in')"));
    assert!(t("name matches \"(?i)MAIN\""));
    assert!(t("prio matches '^[0-9]+$'"));
    assert!(!t("missing matches '.*'"));
    assert!(!t("tags matches 'a'"));
    // `\d`, `\.` and friends reach the regex as written; `\\` is one backslash.
    assert!(compile("x matches '\\d+\\\\\\\\'")
        .unwrap()
        .matches_item(&json!({"x": "ab12\\"})));
}

#[test]
fn null_tests_in_every_form_0_4_4_uses() {
    for (f, want) in [
        ("is_null(none)", true),
        ("is_null(missing)", true),
        ("is_null(prio)", false),
        ("is_not_null(prio)", true),
        ("is_not_null(item.none)", false),
        ("none is_null", true),
        ("prio is_not_null", true),
        ("missing IS NULL", true),
        ("prio is not null", true),
        ("prio IS NULL", false),
        ("is_number(prio) && is_string(name) && is_bool(flag)", true),
        ("is_array(tags) && is_object(meta) && !is_array(meta)", true),
    ] {
        assert_eq!(t(f), want, "{f}");
    }
}

#[test]
fn length_as_function_and_as_a_field_suffix() {
    assert!(t("length(tags) == 3"));
    assert!(t("length(name) > 3"));
    assert!(t("LENGTH(meta) == 4"));
    assert!(t("length(tags, 3)"), "0.4.4's two-argument form");
    assert!(!t("length(tags, 2)"));
    assert!(t("tags.length == 3"));
    assert!(t("name.length == 11"));
    assert!(t("meta.length == 99"), "a real field named length wins");
    assert!(t("length(prio) == null"));
    assert!(t("missing.length == null"));
    // `length` not followed by `(` is a field.
    assert!(compile("length > 3")
        .unwrap()
        .matches_item(&json!({"length": 4})));
}

#[test]
fn fields_paths_and_the_item_prefix() {
    assert!(t("meta.size == 3"));
    assert!(t("item.meta.owner.name == 'ann'"));
    assert!(t("tags[1] == 'b'"));
    assert!(t("tags.2 == 'c'"));
    assert!(t("list[1].k == 2"));
    assert!(t("item.list[0]['k'] == 1"));
    assert!(t("meta['a b'] == 1"));
    assert!(
        t("item.and == 'kw'"),
        "a field named like a keyword takes `item.`"
    );
    assert!(t("tags[9] == null"));
    assert!(t("meta.size.deeper == null"));
    assert!(t("item.item == null"));
    // `item` alone is the whole item: a string item can be filtered.
    let s = json!("src/lib.rs");
    assert!(compile("item ends_with '.rs'").unwrap().matches_item(&s));
    assert!(compile("item == 'src/lib.rs'").unwrap().matches_item(&s));
}

#[test]
fn strings_quotes_and_escapes() {
    let v = json!({"s": "it's \"q\"\n\ttab\\"});
    let m = |f: &str| compile(f).unwrap().matches_item(&v);
    assert!(m("s == 'it\\'s \"q\"\\n\\ttab\\\\'"));
    assert!(m("s == \"it's \\\"q\\\"\\n\\ttab\\\\\""));
    assert!(m("s contains \"'\""));
    assert!(m("'' == ''"));
    assert!(m("'é' == \"é\""));
}

#[test]
fn literals_are_case_insensitive_words() {
    assert!(t("flag == TRUE"));
    assert!(t("off == False"));
    assert!(t("none == NULL"));
}

#[test]
fn resolver_sees_the_path_as_written() {
    let e = compile("build.success == true && tests.exit_code != 0").unwrap();
    let r = |p: &[PathSeg]| match path_text(p).as_str() {
        "build.success" => Some(json!(true)),
        "tests.exit_code" => Some(json!("1")),
        _ => None,
    };
    assert!(e.eval(&r));
    assert_eq!(
        path_text(&compile_field("a.b[2]['c d'].e").unwrap()),
        "a.b[2].c d.e"
    );
    assert!(!e.eval(&|_| None));
}

#[test]
fn errors_name_the_column_and_say_what_is_wrong() {
    for (f, want) in [
        ("", "column 1: empty expression"),
        ("   ", "column 1: empty expression"),
        (
            "prio >",
            "column 7: expression ends too early; expected a value",
        ),
        (
            "prio > > 1",
            "column 8: expected a field, a literal, `!` or `(`, found `>`",
        ),
        (
            "(prio > 1",
            "column 10: expected `)` to close the `(` at column 1, found the end",
        ),
        ("prio > 1)", "column 9: unmatched `)`"),
        (
            "prio > 1 prio",
            "column 10: unexpected `prio` after a complete expression; expected `&&`, `||` or \
             the end",
        ),
        (
            "a == 1 == 2",
            "column 8: comparisons do not chain; use parentheses and `&&`",
        ),
        (
            "file == 'a",
            "column 9: unterminated string; add the closing `'`",
        ),
        (
            "prio ~ 1",
            "column 6: unexpected `~`; expected a field, a literal, an operator, `!` or `(`",
        ),
        (
            "a & b",
            "column 3: a single `&` is not an operator; use `&&`",
        ),
        (
            "a | b",
            "column 3: a single `|` is not an operator; use `||`",
        ),
        (
            "x..y == 1",
            "column 2: `x..y` is not a field path (e.g. `priority`, `item.meta.size`, `tags[0]`)",
        ),
        ("1.2.3 == 1", "column 1: `1.2.3` is not a number"),
        ("01 == 1", "column 1: `01` is not a number"),
        ("x == 1e999", "column 6: `1e999` is not a number"),
        ("x in 1", "column 6: expected `[` after `in`, found `1`"),
        (
            "x in [1 2]",
            "column 9: expected `,` or `]` in the list, found `2`",
        ),
        (
            "x in [y]",
            "column 7: expected a number, a quoted string, true, false or null in the list, \
             found `y`",
        ),
        (
            "x matches y",
            "column 11: expected a quoted regex after `matches`, found `y`",
        ),
        ("x is 1", "column 6: expected `null` after `is`, found `1`"),
        (
            "x is not true",
            "column 10: expected `null` after `is not`, found `true`",
        ),
        ("x not 1", "column 3: `not` here must be followed by `in`"),
        (
            "and == 1",
            "column 1: expected a value before `and` (a field named so is written `item.and`)",
        ),
        (
            "frob(x)",
            "column 1: unknown function `frob`; known: contains, starts_with, ends_with, \
             matches, is_null, is_not_null, is_number, is_string, is_bool, is_array, \
             is_object, length",
        ),
        (
            "contains(x)",
            "column 1: `contains` takes 2 argument(s), found 1",
        ),
        (
            "is_null(x, y)",
            "column 1: `is_null` takes 1 argument(s), found 2",
        ),
        (
            "length(x y)",
            "column 10: expected `)` or `,` in `length(…)`, found `y`",
        ),
        (
            "x == ${y}",
            "column 6: unexpected `$`; expected a field, a literal, an operator, `!` or `(` (a \
             `${…}` left after interpolation: an unknown variable?)",
        ),
    ] {
        assert_eq!(e(f), want, "{f}");
    }
}

#[test]
fn error_columns_count_characters_and_offsets_bytes() {
    let err = compile("'ééé' == ~").unwrap_err();
    assert_eq!((err.offset, err.column), (12, 10));
}

#[test]
fn bad_regexes_are_positioned_one_line_errors() {
    assert_eq!(
        e("name == 'a' && name matches '(a'"),
        "column 29: invalid regex `(a`: found open group without closing ')'"
    );
    assert_eq!(
        e("matches(name, '[z-a]')"),
        "column 15: invalid regex `[z-a]`: invalid range in character class"
    );
    // A pattern that compiles past the size limit is refused, not built.
    let m = e("x matches '(((a{100}){100}){100})'");
    assert!(m.starts_with("column 11: invalid regex `"), "{m}");
    assert!(!m.contains('\n'), "{m}");
    // Nesting beyond the regex nest limit.
    let deep = format!("x matches '{}a{}'", "(".repeat(40), ")".repeat(40));
    assert!(e(&deep).starts_with("column 11: invalid regex"));
    // More than MAX_REGEXES patterns.
    let many = vec!["x matches 'a'"; MAX_REGEXES + 1].join(" || ");
    assert!(e(&many).ends_with(&format!(
        "more than {MAX_REGEXES} regexes in one expression"
    )));
    // A control character in the pattern is escaped in the message.
    let m = e("x matches '(\u{1b}[31m'");
    assert!(m.contains("`(\\u{1b}[31m`"), "{m}");
    assert!(!m.chars().any(char::is_control), "{m}");
}

#[test]
fn nesting_is_bounded_at_compile_time() {
    let ok = format!(
        "{}flag{}",
        "(".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH - 1)
    );
    assert!(t(&ok));
    let deep = format!("{}flag{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(deep.len() > MAX_LEN);
    assert_eq!(e(&deep), "column 1: expression is longer than 16384 bytes");
    let deep = format!("{}flag{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(
        e(&deep),
        "column 65: expression nests deeper than 64 levels"
    );
    let nots = format!("{}flag", "!".repeat(5000));
    assert!(e(&nots).ends_with("expression nests deeper than 64 levels"));
    let calls = format!("{}x{}", "length(".repeat(1000), ")".repeat(1000));
    assert!(e(&calls).ends_with("expression nests deeper than 64 levels"));
    // A long flat chain is fine: && and || are lists, not nested.
    let chain = vec!["flag"; 2000].join("&&");
    assert!(t(&chain));
}

#[test]
fn compile_field_takes_one_path() {
    assert_eq!(
        compile_field("item.meta['a b'][0]").unwrap(),
        [
            PathSeg::Key("item".into()),
            PathSeg::Key("meta".into()),
            PathSeg::Key("a b".into()),
            PathSeg::Index(0),
        ]
    );
    assert_eq!(
        compile_field("a b").unwrap_err().to_string(),
        "column 1: expected a field (e.g. `priority`, `item.meta.size`), found `a`"
    );
    assert_eq!(
        compile_field("").unwrap_err().to_string(),
        "column 1: expected a field (e.g. `priority`, `item.meta.size`)"
    );
    assert!(compile_field("true").is_err());
    assert!(compile_field("'x'").is_err());
}

#[test]
fn when_text_after_interpolation() {
    for (text, want) in [
        ("true", true),
        ("false", false),
        ("TRUE", true),
        ("1", true),
        ("0", false),
        ("", false),
        ("  ", false),
        ("true == true", true),
        ("false == true", false),
        ("0 != 0", false),
        ("1 != 0", true),
        ("success == success", true),
        ("failure == success", false),
        ("main == 'main'", true),
        ("'main' == \"main\"", true),
        ("feature/x-1 == 'main'", false),
        ("feature/x-1 == feature/x-1", true),
        ("v1.2.3 == v1.2.3", true),
        ("1.2.3 != 1.2.4", true),
        ("5 == 5.0", true),
        ("10 > 9", true),
        ("007 == 7", true),
        ("${unknown}", false),
        ("${unknown} == null", true),
        ("!false", true),
        ("NOT false AND 3 >= 3", true),
        ("prod in [prod, staging]", true),
        ("dev in [prod, staging]", false),
        ("hello contains ell", true),
        ("src/a.rs matches '\\.rs$'", true),
        ("'' == ''", true),
        ("(a == a) && (b != c)", true),
    ] {
        assert_eq!(
            eval_when(text).unwrap_or_else(|e| panic!("{text}: {e}")),
            want,
            "{text}"
        );
    }
}

#[test]
fn when_text_errors_are_positioned() {
    for (text, want) in [
        (
            "a b == c",
            "column 3: unexpected `b` after a complete expression; expected `&&`, `||` or the end",
        ),
        (
            "x == ",
            "column 6: expression ends too early; expected a value",
        ),
        (
            "'unterminated",
            "column 1: unterminated string; add the closing `'`",
        ),
        (
            "a == == b",
            "column 6: expected a field, a literal, `!` or `(`, found `==`",
        ),
    ] {
        assert_eq!(eval_when(text).unwrap_err().to_string(), want, "{text}");
    }
}

#[test]
fn when_words_resolve_through_the_resolver_first() {
    let e = compile_when("tests.exit_code != 0 && branch == main").unwrap();
    let r = |p: &[PathSeg]| match path_text(p).as_str() {
        "tests.exit_code" => Some(json!(1)),
        _ => None,
    };
    assert!(
        !e.eval(&r),
        "`branch` and `main` are unknown: their own text, unequal"
    );
    let r2 = |p: &[PathSeg]| match path_text(p).as_str() {
        "tests.exit_code" => Some(json!(1)),
        "branch" => Some(json!("main")),
        _ => None,
    };
    assert!(e.eval(&r2));
}

#[test]
fn real_prodigy_workflow_shapes() {
    // workflows/fix-files-mapreduce.yml (0.4.4 refused the infix `matches`).
    let f = compile("path matches '\\.rs$' && has_issues == true").unwrap();
    assert!(f.matches_item(&json!({"path": "src/a.rs", "has_issues": true})));
    assert!(!f.matches_item(&json!({"path": "src/a.py", "has_issues": true})));
    assert!(!f.matches_item(&json!({"path": "src/a.rs", "has_issues": false})));
    // workflows/debtmap-reduce.yml
    let f = compile("File.score >= 10 OR Function.unified_score.final_score >= 10").unwrap();
    assert!(f.matches_item(&json!({"File": {"score": 10}})));
    assert!(f.matches_item(&json!({"Function": {"unified_score": {"final_score": 12.5}}})));
    assert!(!f.matches_item(&json!({"File": {"score": 9.9}})));
    assert!(!f.matches_item(&json!({})));
    // workflows/mapreduce-example.yml
    let f = compile("severity == 'high' || severity == 'critical'").unwrap();
    assert!(f.matches_item(&json!({"severity": "critical"})));
    assert!(!f.matches_item(&json!({"severity": "low"})));
    // examples/capture-conditional-flow.yml: `when: "${tests_passed}"` after interpolation.
    assert!(eval_when("true").unwrap());
    assert!(!eval_when("false").unwrap());
    // workflows/environment-example.yml: `"${branch} == 'main'"`.
    assert!(eval_when("main == 'main'").unwrap());
    assert!(!eval_when("develop == 'main'").unwrap());
    // The forms of run.md §2: `${build.success} == true`, `${tests.exit_code} != 0`.
    assert!(eval_when("true == true").unwrap());
    assert!(eval_when("2 != 0").unwrap());
}

#[test]
fn evaluation_of_odd_values_does_not_panic() {
    let exprs = [
        "a == b",
        "a < b",
        "a contains b",
        "a matches 'x'",
        "length(a) > length(b)",
        "a.length == b.length",
        "a in [1, 'x', null, true]",
        "is_object(a) || is_array(b)",
    ];
    let values = [
        json!(null),
        json!({"a": [1, [2, {"c": 3}]], "b": {"a": 1}}),
        json!({"a": 1e308, "b": -1e308}),
        json!({"a": u64::MAX, "b": i64::MIN}),
        json!({"a": "1e999", "b": 1}),
        json!([1, 2]),
        json!("text"),
    ];
    for x in exprs {
        let e = compile(x).unwrap();
        for v in &values {
            e.matches_item(v);
        }
    }
}

#[test]
fn unicode_blanks_separate_tokens_in_both_forms() {
    // Found by fuzzing: a vertical tab ended a `when` word but was not skipped as a blank, so
    // the lexer produced empty words forever.
    assert!(eval_when("a\u{b}==\u{a0}a").unwrap());
    assert!(t("prio\u{b}==\u{2003}5"));
    assert_eq!(
        eval_when("tr2tru,`u\u{b}").unwrap_err().to_string(),
        "column 7: unexpected `,` after a complete expression; expected `&&`, `||` or the end"
    );
}
