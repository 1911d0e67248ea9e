#![forbid(unsafe_code)]

use clap::Parser;

/// mimalloc instead of glibc malloc: at 10,000 UserDeployments glibc's arenas keep tens of MiB of
/// freed list pages and apply responses resident (figures in docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Invalid or missing configuration: clap prints which variable and exits with status 2.
    let config = controller::config::Config::parse();
    controller::init_tracing();
    match controller::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "controller stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
