#![doc = include_str!("../README.md")]

mod story;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("smartplan: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let data_dir = match (args.get(1).map(String::as_str), args.get(2)) {
                (Some("--data-dir"), Some(dir)) => std::path::PathBuf::from(dir),
                (None, _) => std::path::PathBuf::from("smartplan-data"),
                _ => {
                    eprintln!("usage: smartplan demo [--data-dir DIR]");
                    return ExitCode::from(2);
                }
            };
            match runtime.block_on(story::run(&data_dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("smartplan: the demo stopped: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("--help" | "-h" | "help") | None => {
            println!(
                "usage: smartplan demo\n\n  demo    walk the SmartPlan story and print each step"
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("smartplan: unknown command {other:?}; try `smartplan demo`");
            ExitCode::from(2)
        }
    }
}
