//! The k8s-scheduler HTTP server binary: parses configuration and calls [`apiserver::run`].

#[tokio::main]
async fn main() {
    let config = match apiserver::config::Config::load() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Err(e) = apiserver::run(config).await {
        eprintln!("apiserver: error: {e:#}");
        std::process::exit(1);
    }
}
