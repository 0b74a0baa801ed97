//! One module per command. Commands print; the engine and the store never do.

pub mod clean;

use crate::error::{Error, Result};
use std::io::Write;

/// Write `text` to stdout. A closed pipe or full disk is an error, never a panic.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| {
            Error::fatal(format!(
                "cannot write output: {}",
                crate::error::describe_io(&e)
            ))
        })
}
