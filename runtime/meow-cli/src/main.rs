//! `meow`: the command-line front end of the MEOW runtime, server and tools.
//!
//! Each subcommand lives in its own module; this file parses arguments, sets up logging and turns
//! every failure into one line on stderr and a non-zero exit code.

mod bench;
mod cli;
mod cmd_home;
mod cmd_server;
mod util;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use meow_node::{InitOptions, Node};
use meow_proto::crypto::KdfParams;
use smol::lock::Mutex;

use crate::cli::{Cli, Command, InitArgs};
use crate::cmd_home::Reply;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Long-running commands log their progress; one-shot commands only warnings.
    let chatty = matches!(cli.command, Command::Server(_) | Command::Bench(_));
    util::init_logging(cli.verbose, cli.quiet, chatty);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("meow: {}", util::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let home = util::home_dir(cli.home.as_deref());
    let pw_file = cli.password_file.clone();
    let open = || -> anyhow::Result<Mutex<Node>> {
        let password = util::password(pw_file.as_deref(), false)?;
        let node = Node::open(&home, password.as_bytes())?;
        Ok(Mutex::new(node))
    };
    let reply = |f: anyhow::Result<Reply>| f.map(Reply::emit);
    match cli.command {
        Command::Server(args) => cmd_server::run(args).map(|()| 0),
        Command::Bench(cli::BenchCmd::Server(a)) => bench::server::run(bench::server::Workload {
            messages: a.messages,
            size: a.size,
            concurrency: a.concurrency,
            window: a.window,
            latency_rate: a.latency_rate,
            latency_secs: a.latency_secs,
            mailboxes: a.mailboxes,
            mosquitto: !a.no_mosquitto,
        })
        .map(|()| 0),
        Command::Init(args) => init(&home, pw_file.as_deref(), args).map(|()| 0),
        Command::Servers(cmd) => reply(smol::block_on(cmd_home::servers(&open()?, cmd))),
        Command::Invite(args) => reply(smol::block_on(cmd_home::invite(&open()?, args))),
        Command::Accept(args) => {
            let data = cmd_home::read_card_arg(&args.card)?;
            reply(smol::block_on(cmd_home::accept(&open()?, args, data)))
        }
        Command::Contacts(args) => reply(smol::block_on(cmd_home::contacts(&open()?, args))),
        Command::Send(args) => {
            let text = if args.text == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the message from stdin")?
            } else {
                args.text.clone()
            };
            reply(smol::block_on(cmd_home::send(&open()?, args, text)))
        }
        Command::Inbox(args) => reply(smol::block_on(cmd_home::inbox(&open()?, args))),
        Command::Rotate(args) => reply(smol::block_on(cmd_home::rotate(&open()?, &args.name))),
    }
}

fn init(home: &std::path::Path, pw_file: Option<&std::path::Path>, args: InitArgs) -> anyhow::Result<()> {
    if Node::exists(home) {
        anyhow::bail!("a home already exists at {}", home.display());
    }
    let password = util::password(pw_file, true)?;
    let kdf = KdfParams {
        memory_kib: args.kdf_memory_mib.max(1) * 1024,
        iterations: args.kdf_passes.max(1),
        parallelism: 1,
    };
    let node = Node::init(
        home,
        password.as_bytes(),
        InitOptions {
            kdf,
            display_name: args.name,
        },
    )?;
    println!("created a MEOW home at {}", home.display());
    eprintln!("user key fingerprint {}", node.user_public().fingerprint());
    eprintln!("next: add a server with `meow servers add <server card>`, then `meow invite NAME`");
    Ok(())
}
