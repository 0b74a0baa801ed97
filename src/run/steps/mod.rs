//! Actions and modifiers that run, one file each (run.md §8), driven by the one wait loop
//! through [`super::lane::Lane`]:
//!
//! | file | what |
//! |---|---|
//! | `command.rs` | `shell:` and `claude:`: the command line each runs |
//! | `write_file.rs` | `write_file:` (confined to the worktree, crash-safe) and `working_dir` checks |
//! | `foreach.rs` | `foreach:` (parallel iterations as sub-lanes of the wait loop) |
//! | `validate.rs` | `validate:` with `on_incomplete` and `${validation.*}`; a child module of `lane` (it drives the lane's frames), included from there |
//! | `capture.rs` | `capture`, `capture_format`, `capture_streams`, `output_file` |
//! | `outputs.rs` | step `id` + `outputs.NAME.file_pattern`, `setup.capture_outputs` |
//!
//! `when`, `on_success`, `on_failure`, `on_exit_code`, `commit_required`, `timeout` and step
//! `env` are decided in `lane.rs`, where a step's frames live.

pub(crate) mod capture;
pub(crate) mod command;
pub(crate) mod foreach;
pub mod outputs;
pub(crate) mod write_file;
