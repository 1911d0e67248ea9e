#![forbid(unsafe_code)]

use clap::Parser;

// One thread: the controller waits on the API almost all the time (about 6 ms of CPU per new
// UserDeployment), and a single thread keeps one malloc arena; with a worker per core the RSS at
// 10,000 UserDeployments was 4 MiB higher (docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
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
