//! `prodigy checkpoints ls|verify`.

use crate::cli::Args;
use crate::error::{Error, Exit, Result};

/// Run `prodigy checkpoints ls [JOB_ID]`.
pub fn ls(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("checkpoints ls: not implemented yet"))
}

/// Run `prodigy checkpoints verify`.
pub fn verify(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("checkpoints verify: not implemented yet"))
}
