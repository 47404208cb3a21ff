//! The `smartplan` command: parses the command line and hands over to the library.

use std::process::ExitCode;

/// The server allocates and frees many short buffers per request (XML, base64, rows, HTML);
/// mimalloc's per-thread free lists serve them with less work than glibc's malloc (measured in
/// docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    smartplan::cli::main()
}
