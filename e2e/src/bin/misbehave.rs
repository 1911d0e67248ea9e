//! A container that fails on purpose, for the real-node tests of the controller's diagnosis
//! (`hack/test` packs it as the image `localhost/k8s-scheduler-test/misbehave:1`):
//!
//! - `misbehave exit CODE`: prints a few lines, the last one naming the code, and exits with it;
//! - `misbehave eat MIB`: allocates and touches MIB mebibytes, one at a time, then sleeps (a
//!   container over its memory limit is killed on the way).

use std::io::Write;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| -> u64 {
        args.get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage(&format!("argument {} must be a number", i + 1)))
    };
    match args.first().map(String::as_str) {
        Some("exit") => {
            let code = number(1);
            println!("misbehave: starting");
            println!("misbehave: reading configuration");
            eprintln!("misbehave: configuration is incomplete: SETTING is not set");
            eprintln!("misbehave: exiting with code {code}");
            std::process::exit(i32::try_from(code).unwrap_or(1));
        }
        Some("eat") => {
            let mib = number(1);
            let mut held: Vec<Vec<u8>> = Vec::new();
            for i in 1..=mib {
                // Touch every page, so the memory is really used, not only reserved.
                held.push(vec![1u8; 1 << 20]);
                if i % 16 == 0 {
                    println!("misbehave: holding {i} MiB");
                    let _ = std::io::stdout().flush();
                }
            }
            println!("misbehave: holding {mib} MiB; sleeping");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
                std::hint::black_box(&held);
            }
        }
        _ => usage("expected `exit CODE` or `eat MIB`"),
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("misbehave: {problem}; usage: misbehave exit CODE | misbehave eat MIB");
    std::process::exit(64)
}
