//! `prodigy dlq ls|show`.

use crate::cli::Args;
use crate::error::{Error, Exit, Result};

/// Run `prodigy dlq ls`.
pub fn ls(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("dlq ls: not implemented yet"))
}

/// Run `prodigy dlq show JOB_ID [ITEM_ID]`.
pub fn show(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("dlq show: not implemented yet"))
}
