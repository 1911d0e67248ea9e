//! The guestbook binary: reads its configuration from the environment and calls [`guestbook::run`].

#![forbid(unsafe_code)]

// One thread is plenty for an example app.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let config = match guestbook::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("guestbook: error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = guestbook::run(config).await {
        eprintln!("guestbook: error: {e}");
        std::process::exit(1);
    }
}
