//! `meow`: the command-line front end of the MEOW runtime, server and tools.
//!
//! Each subcommand lives in its own module; this file parses arguments, sets up logging, turns
//! home commands into typed requests for the runtime library (sent to a running daemon when
//! there is one), and turns every failure into one line on stderr and a non-zero exit code.

mod bench;
mod cli;
mod cmd_demo;
mod cmd_device;
mod cmd_file;
mod cmd_home;
mod cmd_plugin;
mod cmd_recipe;
mod cmd_sensor;
mod cmd_server;
mod cmd_social;
mod plugin_new;
mod util;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use meow_node::{InitOptions, Node};
use meow_proto::crypto::KdfParams;
use meow_runtime::{Engines, RunConfig, Runtime};
use smol::lock::Mutex;

use crate::cli::{Cli, Command, InitArgs, PluginCmd, RecipeCmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Long-running commands log their progress; one-shot commands only warnings.
    let chatty = matches!(cli.command, Command::Server(_) | Command::Bench(_) | Command::Run(_));
    util::init_logging(cli.verbose, cli.quiet, chatty);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("meow: {}", util::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The plugin engines of this program: Lua, and WASM with its compile cache in the home.
pub fn engines(home: &Path) -> Engines {
    let cache = home.join("cache").join("wasm");
    Engines::new()
        .with(meow_plugin::Kind::Lua, || Ok(Arc::new(meow_lua::LuaEngine)))
        .with(meow_plugin::Kind::Wasm, move || {
            let engine = meow_wasm::WasmEngine::new(Some(cache.clone())).map_err(|e| e.to_string())?;
            // Compiling in a child process returns the compiler's memory when it exits.
            let engine = match std::env::current_exe() {
                Ok(me) => engine.compile_in_child(vec![me.into(), "plugin".into(), "compile-wasm".into()]),
                Err(_) => engine,
            };
            Ok(Arc::new(engine) as Arc<dyn meow_plugin::Engine>)
        })
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let home = util::home_dir(cli.home.as_deref());
    let pw_file = cli.password_file.clone();
    let compartment_file = cli.compartment_password_file.clone();
    if let Command::Recipe(RecipeCmd::Check { .. } | RecipeCmd::Test { .. }) = &cli.command
        && let Some(request) = cmd_home::request(&cli.command, compartment_file.as_deref())?
    {
        return Ok(cmd_recipe::local(&home, pw_file.as_deref(), &cli.command, request)?.emit());
    }
    if let Command::Servers(cli::ServersCmd::Discover(args)) = &cli.command {
        return cmd_server::discover(args).map(|()| 0);
    }
    if let Some(request) = cmd_home::request(&cli.command, compartment_file.as_deref())? {
        let compartment = util::saved_compartment_password(compartment_file.as_deref())?
            .map(|p| meow_runtime::control::Password(p.to_string()));
        let answer = cmd_home::call(&home, pw_file.as_deref(), compartment, request)?;
        return Ok(cmd_home::show(&cli.command, answer)?.emit());
    }
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
        Command::Bench(cli::BenchCmd::Group { members, size, rounds }) => {
            bench::group::run(members, size, rounds).map(|()| 0)
        }
        Command::Bench(cli::BenchCmd::Vault { rounds, tries }) => {
            bench::vault::run(rounds as usize, tries as usize).map(|()| 0)
        }
        Command::Bench(cli::BenchCmd::Devices {
            contacts,
            messages,
            runs,
            synced,
        }) => bench::devices::run(bench::devices::Workload {
            contacts,
            messages,
            runs,
            synced,
        })
        .map(|()| 0),
        Command::Bench(cli::BenchCmd::Lora { readings }) => bench::lora::run(readings).map(|()| 0),
        Command::Bench(cli::BenchCmd::Matriochka {
            runs,
            senders,
            relays,
            seconds,
            packets,
        }) => bench::matriochka::run(bench::matriochka::Workload {
            runs: runs as usize,
            senders,
            relays: relays.max(3),
            seconds,
            packets,
        })
        .map(|()| 0),
        Command::Bench(cli::BenchCmd::Plugins { bundles, events, size }) => {
            bench::plugins::run(&bundles, events, size).map(|()| 0)
        }
        Command::Init(args) => init(&home, pw_file.as_deref(), args).map(|()| 0),
        Command::Run(args) => run_daemon(
            cli.home.as_deref(),
            pw_file.as_deref(),
            compartment_file.as_deref(),
            args,
        )
        .map(|()| 0),
        Command::Demo(args) => cmd_demo::run(args).map(|()| 0),
        Command::Sensor(args) => {
            let every = util::parse_duration(&args.every)?;
            let password = util::password(pw_file.as_deref(), false)?;
            let node = Mutex::new(Node::open(&home, password.as_bytes())?);
            let mut sim = cmd_sensor::Simulator::new(args.seed, args.hot_at);
            let link = args
                .link
                .as_deref()
                .map(|l| l.parse::<meow_net::port::LinkAddress>().map_err(anyhow::Error::msg))
                .transpose()
                .context("--link")?;
            smol::block_on(cmd_sensor::run(
                &node,
                &args.to,
                every,
                args.count,
                &mut sim,
                link.as_ref(),
            ))
            .map(|()| 0)
        }
        Command::Plugin(PluginCmd::New { name, lang, dir }) => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            for file in plugin_new::scaffold(&name, lang, &dir)? {
                println!("wrote {}", file.display());
            }
            println!("{}", plugin_new::next_steps(&name, lang, &dir));
            Ok(0)
        }
        Command::Plugin(PluginCmd::CompileWasm { input, output }) => {
            meow_wasm::compile_file(&input, &output)?;
            Ok(0)
        }
        Command::Plugin(PluginCmd::Build {
            sources,
            out,
            js_engine,
        }) => {
            for line in cmd_plugin::build(&sources, &out, js_engine)? {
                println!("built {line}");
            }
            Ok(0)
        }
        Command::Doctor(args) => doctor(&home, pw_file.as_deref(), args),
        Command::Device(cli::DeviceCmd::Link { qr, wait }) => {
            cmd_device::link(&home, pw_file.as_deref(), qr, Duration::from_secs(wait)).map(|()| 0)
        }
        Command::Device(cli::DeviceCmd::Join {
            card,
            name,
            wait,
            vault,
        }) => cmd_device::join(
            &home,
            pw_file.as_deref(),
            (&card, &name),
            Duration::from_secs(wait),
            &vault,
        )
        .map(|()| 0),
        Command::Plugin(PluginCmd::Pin { dir }) => {
            let hash = meow_plugin::pin(&dir)?;
            println!("pinned {} to sha256 {hash}", dir.display());
            Ok(0)
        }
        _ => bail!("internal: unhandled command"),
    }
}

fn run_daemon(
    home: Option<&Path>,
    pw_file: Option<&Path>,
    compartment_file: Option<&Path>,
    args: cli::RunArgs,
) -> anyhow::Result<()> {
    let config_path = args
        .config
        .clone()
        .or_else(|| Some(PathBuf::from("meow.yaml")).filter(|p| p.exists()));
    let cfg = match &config_path {
        Some(p) => RunConfig::load(p)?,
        None => RunConfig::default(),
    };
    let home = match (home, &cfg.home) {
        (Some(h), _) => h.to_owned(),
        (None, Some(h)) => cfg.resolve(h),
        (None, None) => util::home_dir(None),
    };
    if !Node::exists(&home) {
        bail!("no MEOW home at {} (create one with `meow init`)", home.display());
    }
    let password = util::password(pw_file, false)?;
    let mut node = Node::open(&home, password.as_bytes())?;
    drop(password);
    if let Some(pw) = util::saved_compartment_password(compartment_file)? {
        tracing::warn!(
            "a saved compartment password defeats hidden contacts: whoever holds this device holds it too \
             (docs/HIDDEN.md); prefer `meow unlock` once the daemon runs"
        );
        node.unlock(pw.as_bytes()).context("the compartment password")?;
    }
    smol::block_on(async {
        let running = Runtime::builder(&home, node, cfg)
            .engines(engines(&home))
            .watch(args.watch)
            .start()
            .await?;
        let plugins: Vec<String> = running
            .instances()
            .iter()
            .map(|i| format!("{} ({})", i.instance, i.plugin))
            .collect();
        let server = running
            .server_address()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "none".into());
        tracing::info!(home = %home.display(), %server, "meow run ready; plugins: {}", if plugins.is_empty() { "none".to_owned() } else { plugins.join(", ") });
        running.run_until_stopped().await?;
        Ok(())
    })
}

fn doctor(home: &Path, pw_file: Option<&Path>, args: cli::DoctorArgs) -> anyhow::Result<u8> {
    let password = match &args.server {
        Some(_) => None,
        None if !Node::exists(home) => bail!(
            "no MEOW home at {} (give --home, or --server DIR for a server)",
            home.display()
        ),
        None => Some(util::password(pw_file, false)?),
    };
    let check = |accept: bool| -> anyhow::Result<(Vec<String>, Vec<String>)> {
        Ok(match (&args.server, &password) {
            (Some(dir), _) => {
                let r = meow_server::doctor::check(dir, accept)?;
                (r.found, r.problems)
            }
            (None, pw) => {
                let pw = pw.as_ref().map(|p| p.as_bytes()).unwrap_or_default();
                let r = meow_node::doctor::check(home, pw, accept)?;
                (r.found, r.problems)
            }
        })
    };
    let what = match &args.server {
        Some(dir) => format!("the server data in {}", dir.display()),
        None => format!("the home at {}", home.display()),
    };
    let (found, problems) = check(args.accept_loss)?;
    println!("checked {what}");
    for f in &found {
        println!("  {f}");
    }
    for p in &problems {
        println!("  problem: {p}");
    }
    if problems.is_empty() {
        println!("no problem found");
        return Ok(0);
    }
    if args.accept_loss {
        // What accepting cannot fix (a journal the engine cannot read) is still there.
        let (_, left) = check(false)?;
        if left.is_empty() {
            println!("the loss is accepted: the data opens as it is now");
            return Ok(0);
        }
        eprintln!(
            "meow: {} problem(s) remain that accepting cannot fix: restore from a backup",
            left.len()
        );
        return Ok(1);
    }
    eprintln!(
        "meow: {} problem(s) found: restore from a backup, or accept the loss with `meow doctor --accept-loss`",
        problems.len()
    );
    Ok(1)
}

/// The options of a new home from its command line.
pub fn init_options(vault: &cli::VaultArgs, display_name: Option<String>) -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            memory_kib: vault.kdf_memory_mib.max(1) * 1024,
            iterations: vault.kdf_passes.max(1),
            parallelism: 1,
        },
        display_name,
        decoys: !vault.no_decoys,
    }
}

fn init(home: &std::path::Path, pw_file: Option<&std::path::Path>, args: InitArgs) -> anyhow::Result<()> {
    if Node::exists(home) {
        anyhow::bail!("a home already exists at {}", home.display());
    }
    let password = util::password(pw_file, true)?;
    let node = Node::init(home, password.as_bytes(), init_options(&args.vault, args.name))?;
    println!("created a MEOW home at {}", home.display());
    eprintln!("user key fingerprint {}", node.user_public().fingerprint());
    eprintln!("next: add a server with `meow servers add <server card>`, then `meow invite NAME`");
    Ok(())
}
