//! Integration tests: the built `prodigy` binary against temporary PRODIGY_HOME trees, real git
//! repositories, the 0.4.4 fixture and generated trees. One test binary (ripgrep's layout).

mod acceptance;
mod archive;
mod common;
mod compress;
mod contract;
mod fixture;
mod inspect;
mod memory;
mod quota;
mod repo;
mod resume;
mod run;
mod safety;
mod sessions;
mod validate;
mod worktree;
