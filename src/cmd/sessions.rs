//! `prodigy sessions ls|show|rm`.

use crate::cli::Args;
use crate::error::{Error, Exit, Result};

/// Run `prodigy sessions ls`.
pub fn ls(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("sessions ls: not implemented yet"))
}

/// Run `prodigy sessions show ID`.
pub fn show(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("sessions show: not implemented yet"))
}

/// Run `prodigy sessions rm ID...`.
pub fn rm(_a: &Args) -> Result<Exit> {
    Err(Error::fatal("sessions rm: not implemented yet"))
}
