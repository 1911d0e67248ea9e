#![forbid(unsafe_code)]

use clap::Parser;

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
