//! `prodigy events ls|show|follow`.

use crate::cli::Args;
use crate::error::{Error, Exit, Result};

/// Run `prodigy events ls`.
pub fn ls(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("events ls: not implemented yet"))
}

/// Run `prodigy events show JOB_ID`.
pub fn show(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("events show: not implemented yet"))
}

/// Run `prodigy events follow JOB_ID`.
pub fn follow(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("events follow: not implemented yet"))
}
