//! The `prodigy` binary: everything is in the library; this only maps the exit code.

/// musl's allocator unmaps a page-sized group whenever its last block is freed; the clean engine's
/// batches made that happen tens of thousands of times a run (see `prodigy::heap`). musl only:
/// glibc keeps freed memory itself, and the cache in front of it pushed the RSS slope over target.
#[cfg(target_env = "musl")]
#[global_allocator]
static HEAP: prodigy::heap::SmallBlocks = prodigy::heap::SmallBlocks::new();

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(prodigy::run(std::env::args_os()))
}
