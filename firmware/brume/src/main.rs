//! `brume`: one multicall binary. The first argument picks the role; every process of
//! a running appliance is this same executable (see ARCHITECTURE.md).

mod angel;
mod config;
mod controller;
mod env;
mod handoff;
mod input;
mod listen;
mod logging;
mod serve;
mod worker;

use std::process::ExitCode;

const USAGE: &str = "\
brume: a crash-proof live-media appliance

USAGE:
    brume serve [--config PATH] [--listen ADDR:PORT] [--rtmp ADDR:PORT]
        Run everything: controller, listeners, inputs. Creates PATH with a demo
        stream if it does not exist.
    brume bench [shm|latency|fanout|all]
        Measure and print figures (see README).
    brume --version

Internal roles (started by brume itself): controller, listen, input.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = args.first().map(String::as_str).unwrap_or("");
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match role {
        "serve" => serve::main(rest),
        "controller" => controller::main(rest),
        "listen" => listen::main(rest),
        "input" => input::main(rest),
        "bench" => worker::bench::main(rest),
        "--version" | "-V" | "version" => {
            println!("brume {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        "--help" | "-h" | "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(role, error = %e, "exiting");
            eprintln!("brume {role}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Finds `--name VALUE` in `args`.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}
