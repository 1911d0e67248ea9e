//! The hello-web binary: reads its configuration from the environment and calls [`hello_web::run`].

#![forbid(unsafe_code)]

// One thread is plenty for an example app with a 64 MiB memory limit.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fetch") {
        // The probe client of the real-node tests (the image has no shell or curl).
        let result = match hello_web::fetch::parse_args(&args[1..]) {
            Ok((timeout, target)) => hello_web::fetch::fetch(timeout, &target).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(body) => print!("{body}"),
            Err(e) => {
                eprintln!("hello-web fetch: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let config = match hello_web::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hello-web: error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = hello_web::run(config).await {
        eprintln!("hello-web: error: {e}");
        std::process::exit(1);
    }
}
