//! Tests of `prodigy stats` and `prodigy sessions`.
