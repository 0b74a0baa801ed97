//! Actions and modifiers that run, one file each (run.md §8), driven by the one wait loop
//! through [`super::lane::Lane`].

pub(crate) mod foreach;
pub mod outputs;
