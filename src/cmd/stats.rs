//! `prodigy stats`.

use crate::cli::Args;
use crate::error::{Error, Exit, Result};

/// Run `prodigy stats`.
pub fn run(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("stats: not implemented yet"))
}
