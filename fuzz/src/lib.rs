//! Properties shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every target asserts properties of prodigy's parsers, not only that they do not panic; the
//! helpers here are the ones more than one target needs.

use prodigy::store::records::{check_no_duplicate_keys, parse, try_to_json_bytes};
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// If `data` parses as a `T`, it re-serializes (with the writer's own `try_to_json_bytes`) into
/// bytes that parse as a `T` again and re-serialize to the same JSON value: a record prodigy
/// read and rewrote is a record prodigy reads back unchanged. The rewrite is also free of
/// duplicate keys (so `check_no_duplicate_keys` accepts what prodigy itself writes).
/// Returns whether `data` parsed.
pub fn roundtrip<T>(data: &[u8]) -> bool
where
    T: Serialize + DeserializeOwned + fmt::Debug,
{
    let Ok(first) = parse::<T>(data) else {
        return false;
    };
    let once = try_to_json_bytes(&first)
        .unwrap_or_else(|e| panic!("parsed value does not serialize: {e}\nvalue: {first:?}"));
    assert_eq!(
        once.last(),
        Some(&b'\n'),
        "written file lacks its final newline"
    );
    let second: T = parse(&once).unwrap_or_else(|e| {
        panic!(
            "prodigy cannot read back what it wrote: {e}\nwritten: {}",
            String::from_utf8_lossy(&once)
        )
    });
    let twice = try_to_json_bytes(&second).expect("second serialization");
    let v1: Value = serde_json::from_slice(&once).expect("written bytes are JSON");
    let v2: Value = serde_json::from_slice(&twice).expect("rewritten bytes are JSON");
    assert_eq!(
        v1,
        v2,
        "rewrite is not stable\nfirst:  {}\nsecond: {}",
        String::from_utf8_lossy(&once),
        String::from_utf8_lossy(&twice)
    );
    if let Err(e) = check_no_duplicate_keys(&once) {
        panic!(
            "prodigy wrote a duplicate key: {e}\nwritten: {}",
            String::from_utf8_lossy(&once)
        );
    }
    true
}

/// Number of key/value pairs the JSON text really contains, over every object at any depth,
/// counted while streaming (so repeated keys are each counted), or `None` if it is not JSON.
pub fn raw_member_count(data: &[u8]) -> Option<u64> {
    struct V<'a>(&'a mut u64);
    impl<'de> Visitor<'de> for V<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            while a.next_element_seed(Seed(&mut *self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            while a.next_key::<IgnoredAny>()?.is_some() {
                *self.0 += 1;
                a.next_value_seed(Seed(&mut *self.0))?;
            }
            Ok(())
        }
    }
    struct Seed<'a>(&'a mut u64);
    impl<'de> serde::de::DeserializeSeed<'de> for Seed<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(V(self.0))
        }
    }
    let mut count = 0;
    let mut de = serde_json::Deserializer::from_slice(data);
    serde::de::DeserializeSeed::deserialize(Seed(&mut count), &mut de).ok()?;
    de.end().ok()?;
    Some(count)
}

/// Number of key/value pairs in every object of `v`, at any depth.
pub fn value_member_count(v: &Value) -> u64 {
    match v {
        Value::Object(m) => m.len() as u64 + m.values().map(value_member_count).sum::<u64>(),
        Value::Array(a) => a.iter().map(value_member_count).sum(),
        _ => 0,
    }
}

/// `check_no_duplicate_keys` accepts `data` exactly when it is JSON that `serde_json::Value`
/// parses without losing a member to a repeated key.
pub fn check_duplicate_keys_property(data: &[u8]) {
    let verdict = check_no_duplicate_keys(data);
    let value = serde_json::from_slice::<Value>(data);
    let Ok(value) = value else {
        assert!(
            verdict.is_err(),
            "check_no_duplicate_keys accepted text that is not JSON"
        );
        return;
    };
    let raw = raw_member_count(data).expect("Value parsed, so the counting pass parses too");
    let kept = value_member_count(&value);
    assert!(
        kept <= raw,
        "Value has more members ({kept}) than the text ({raw})"
    );
    let lossless = kept == raw;
    assert_eq!(
        verdict.is_ok(),
        lossless,
        "check_no_duplicate_keys said {verdict:?}, but the text has {raw} members and Value keeps {kept}"
    );
}
