//! `meow`: the command-line front end of the MEOW runtime, server and tools.
//!
//! Each subcommand lives in its own module; this file parses arguments, sets up logging and turns
//! every failure into one line on stderr and a non-zero exit code.

mod bench;
mod cli;
mod cmd_server;
mod util;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    util::init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Server(args) => cmd_server::run(args),
        Command::Bench(cli::BenchCmd::Server(a)) => bench::server::run(bench::server::Workload {
            messages: a.messages,
            size: a.size,
            concurrency: a.concurrency,
            window: a.window,
            latency_rate: a.latency_rate,
            latency_secs: a.latency_secs,
            mailboxes: a.mailboxes,
            mosquitto: !a.no_mosquitto,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meow: {}", util::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
