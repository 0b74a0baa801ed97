//! prodigy: the global storage system of Prodigy, a workflow runner that executes AI and shell
//! agents in git worktrees.
//!
//! Everything a run produces lives under one root, `$PRODIGY_HOME` (default `~/.prodigy`). This
//! crate writes that tree crash-safely, shows what is in it, and reclaims space without ever
//! deleting live or resumable work. The binary is a thin wrapper around [`run`].
//!
//! Layout: [`cli`] turns argv into a command and touches no files; [`cmd`] has one module per
//! command; [`store`] owns the root and is the only place that deletes; [`clean`] is the engine
//! behind `prodigy clean`; [`run`] executes workflows (`prodigy run`); [`git`] runs git;
//! [`workflow`] is the workflow file format (parsing, `${…}` interpolation, work-item
//! selection) and runs nothing.
#![deny(missing_docs)]

pub mod bytes;
pub mod clean;
pub mod cli;
pub mod cmd;
pub mod duration;
pub mod error;
pub mod git;
pub mod heap;
pub mod mask;
pub mod procs;
pub mod run;
pub mod sort;
pub mod store;
pub mod workflow;

use std::ffi::OsString;

/// Run the program with `args` (including the program name) and return the exit code. The only
/// place an error becomes an exit code and a message on stderr.
pub fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let result = cli::parse(args).and_then(|c| match c {
        cli::Command::Help(text) => cmd::print(&text).map(|_| error::Exit::Ok),
        cli::Command::Version => {
            cmd::print(&format!("prodigy {}\n", env!("CARGO_PKG_VERSION"))).map(|_| error::Exit::Ok)
        }
        cli::Command::Run(o) => cmd::run::run(&o),
        cli::Command::Resume(o) => cmd::run::resume(&o),
        cli::Command::Validate(a) => cmd::validate::run(&a),
        cli::Command::Clean(a) => cmd::clean::run(&a, "clean"),
        cli::Command::WorktreeClean(a) => cmd::clean::run(&a, "worktree clean"),
        cli::Command::WorktreeLs(a) => cmd::worktree::ls(&a),
        cli::Command::WorktreeCleanOrphaned(a) => cmd::worktree::clean_orphaned(&a),
        cli::Command::Inspect(sub, a) => cmd::inspect(sub, &a),
    });
    match result {
        Ok(code) => code as u8,
        Err(e) => {
            // A workflow's every problem is one line each.
            for line in e.to_string().lines() {
                error::eprint_line(&format!("prodigy: {line}"));
            }
            e.exit() as u8
        }
    }
}
