//! The `prodigy` binary: everything is in the library; this only maps the exit code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(prodigy::run(std::env::args_os()))
}
