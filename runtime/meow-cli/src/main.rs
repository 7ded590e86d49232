//! `meow`: the command-line front end of the MEOW runtime, server and tools.
//!
//! Each subcommand lives in its own module; this file parses arguments, sets up logging, sends
//! home commands to a running daemon when there is one, and turns every failure into one line on
//! stderr and a non-zero exit code.

mod bench;
mod cli;
mod cmd_demo;
mod cmd_home;
mod cmd_plugin;
mod cmd_recipe;
mod cmd_sensor;
mod cmd_server;
mod cmd_social;
mod run;
mod util;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use meow_node::{InitOptions, Node};
use meow_proto::crypto::KdfParams;
use smol::lock::Mutex;

use crate::cli::{Cli, Command, InitArgs, PluginCmd, RecipeCmd};
use crate::cmd_home::Reply;

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

/// Whether a command works on a home (and can be forwarded to a running daemon).
fn is_home_command(c: &Command) -> bool {
    matches!(
        c,
        Command::Servers(_)
            | Command::Invite(_)
            | Command::Accept(_)
            | Command::Contacts(_)
            | Command::Send(_)
            | Command::Inbox(_)
            | Command::Rotate(_)
            | Command::Plugin(PluginCmd::List(_) | PluginCmd::Reload { .. })
            | Command::Group(_)
            | Command::Broadcast { .. }
            | Command::BroadcastKey
            | Command::Directory(_)
            | Command::Recipe(RecipeCmd::Trace { .. } | RecipeCmd::List | RecipeCmd::Reload)
    )
}

/// Input a command needs from this process (files, stdin), read before forwarding.
fn client_data(c: &Command) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(match c {
        Command::Accept(a) => Some(cmd_home::read_card_arg(&a.card)?),
        Command::Servers(cli::ServersCmd::Add { card }) => Some(cmd_home::read_card_arg(card)?),
        Command::Send(a) if a.text == "-" => Some(
            std::io::read_to_string(std::io::stdin())
                .context("reading the message from stdin")?
                .into_bytes(),
        ),
        _ => None,
    })
}

/// The command line with `--out` paths made absolute (the daemon may run elsewhere).
fn forwarded_argv() -> Vec<String> {
    let mut argv: Vec<String> = std::env::args().collect();
    let cwd = std::env::current_dir().unwrap_or_default();
    for i in 0..argv.len() {
        if argv[i] == "--out" && i + 1 < argv.len() {
            argv[i + 1] = cwd.join(&argv[i + 1]).display().to_string();
        } else if let Some(p) = argv[i].strip_prefix("--out=") {
            argv[i] = format!("--out={}", cwd.join(p).display());
        }
    }
    argv
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let home = util::home_dir(cli.home.as_deref());
    let pw_file = cli.password_file.clone();
    if is_home_command(&cli.command) {
        let data = client_data(&cli.command)?;
        let req = run::control::Request {
            argv: forwarded_argv(),
            data: data.clone(),
        };
        if let Some(reply) = run::control::forward(&home, &req)? {
            return Ok(reply.emit());
        }
        let password = util::password(pw_file.as_deref(), false)?;
        let node = Mutex::new(Node::open(&home, password.as_bytes())?);
        return smol::block_on(dispatch_home(&node, cli.command, data, None)).map(Reply::emit);
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
        Command::Bench(cli::BenchCmd::Plugins { bundles, events, size }) => {
            bench::plugins::run(&bundles, events, size).map(|()| 0)
        }
        Command::Init(args) => init(&home, pw_file.as_deref(), args).map(|()| 0),
        Command::Run(args) => run_daemon(cli.home.as_deref(), pw_file.as_deref(), args).map(|()| 0),
        Command::Demo(args) => cmd_demo::run(args).map(|()| 0),
        Command::Sensor(args) => {
            let every = util::parse_duration(&args.every)?;
            let password = util::password(pw_file.as_deref(), false)?;
            let node = Mutex::new(Node::open(&home, password.as_bytes())?);
            let mut sim = cmd_sensor::Simulator::new(args.seed, args.hot_at);
            smol::block_on(cmd_sensor::run(&node, &args.to, every, args.count, &mut sim)).map(|()| 0)
        }
        Command::Plugin(PluginCmd::Build { sources, out }) => {
            for line in cmd_plugin::build(&sources, &out)? {
                println!("built {line}");
            }
            Ok(0)
        }
        Command::Recipe(RecipeCmd::Check { files }) => recipe_local(&home, pw_file.as_deref(), |ctx, note| {
            cmd_recipe::check(&files, ctx, note)
        }),
        Command::Recipe(RecipeCmd::Test { file, event }) => {
            recipe_local(&home, pw_file.as_deref(), |ctx, _| cmd_recipe::test(&file, &event, ctx))
        }
        Command::Plugin(PluginCmd::Pin { dir }) => {
            let hash = meow_plugin::pin(&dir)?;
            println!("pinned {} to sha256 {hash}", dir.display());
            Ok(0)
        }
        _ => bail!("internal: unhandled command"),
    }
}

/// Runs a home command against a node (directly, or inside the daemon for a socket client).
pub async fn dispatch_home(
    node: &Mutex<Node>,
    command: Command,
    data: Option<Vec<u8>>,
    daemon: Option<&Arc<run::Daemon>>,
) -> anyhow::Result<Reply> {
    let data_text = |d: Option<Vec<u8>>| String::from_utf8(d.unwrap_or_default()).context("input is not UTF-8 text");
    match command {
        Command::Servers(cli::ServersCmd::Add { .. }) => {
            cmd_home::servers(node, cli::ServersCmd::Add { card: data_text(data)? }).await
        }
        Command::Servers(cmd) => cmd_home::servers(node, cmd).await,
        Command::Invite(args) => cmd_home::invite(node, args).await,
        Command::Accept(args) => {
            let data = data.context("no card given")?;
            cmd_home::accept(node, args, data).await
        }
        Command::Contacts(args) => cmd_home::contacts(node, args).await,
        Command::Send(args) => {
            let text = if args.text == "-" {
                data_text(data)?
            } else {
                args.text.clone()
            };
            cmd_home::send(node, args, text).await
        }
        Command::Inbox(args) => cmd_home::inbox(node, args).await,
        Command::Rotate(args) => cmd_home::rotate(node, &args.name).await,
        Command::Group(cmd) => {
            cmd_social::group(node, cmd, data.map(|d| String::from_utf8_lossy(&d).into_owned())).await
        }
        Command::Broadcast { text } => cmd_social::broadcast(node, &text).await,
        Command::BroadcastKey => cmd_social::broadcast_key(node).await,
        Command::Directory(cmd) => cmd_social::directory(node, cmd).await,
        Command::Recipe(RecipeCmd::Trace { name, json }) => cmd_recipe::trace(node, &name, json).await,
        Command::Recipe(RecipeCmd::List) => {
            let d = daemon.context("no `meow run` is running on this home: recipes only run inside it")?;
            let mut r = Reply::default();
            match d.recipes.get() {
                Some(recipes) if !recipes.list().is_empty() => {
                    for (name, triggers, running) in recipes.list() {
                        r.out
                            .push_str(&format!("{name:<20} triggers: {triggers:<30} running now: {running}\n"));
                    }
                }
                _ => r.err = "no recipes loaded (list them under `recipes:` in meow.yaml)\n".into(),
            }
            Ok(r)
        }
        Command::Recipe(RecipeCmd::Reload) => {
            let d = daemon.context("no `meow run` is running on this home: recipes only run inside it")?;
            let names = d.reload_recipes().await?;
            let out = match names.len() {
                0 => "reloaded: no recipe file matches `recipes:` in meow.yaml, so none is loaded\n".to_owned(),
                n => format!("reloaded {n} recipe(s): {}\n", names.join(", ")),
            };
            Ok(Reply {
                out,
                ..Reply::default()
            })
        }
        Command::Recipe(RecipeCmd::Check { files }) => {
            let ctx = d_context(daemon).await;
            cmd_recipe::check(&files, &ctx, "")
        }
        Command::Recipe(RecipeCmd::Test { file, event }) => {
            let ctx = d_context(daemon).await;
            cmd_recipe::test(&file, &event, &ctx)
        }
        Command::Plugin(PluginCmd::List(args)) => {
            let d = daemon.context("no `meow run` is running on this home: plugins only run inside it")?;
            Ok(plugin_list(d, args.json))
        }
        Command::Plugin(PluginCmd::Reload { name }) => {
            let d = daemon.context("no `meow run` is running on this home: start it first")?;
            let version = d.reload(&name)?;
            Ok(Reply {
                out: format!("reloaded {name} (version {version})\n"),
                ..Reply::default()
            })
        }
        _ => bail!("this command does not work on a home"),
    }
}

/// What a running daemon knows for recipe checks.
async fn d_context(daemon: Option<&Arc<run::Daemon>>) -> meow_recipe::CheckContext {
    match daemon {
        Some(d) => meow_recipe::CheckContext {
            contacts: Some(d.node.lock().await.contacts().iter().map(|c| c.name.clone()).collect()),
            groups: None,
            plugins: Some(d.instances().into_iter().map(|(n, _, _)| n).collect()),
        },
        None => meow_recipe::CheckContext::default(),
    }
}

/// Recipe checks and dry runs: inside a running daemon (which knows the contacts and plugins),
/// else here, reading the home's contacts if the password is available without a prompt.
fn recipe_local(
    home: &Path,
    pw_file: Option<&Path>,
    f: impl FnOnce(&meow_recipe::CheckContext, &str) -> anyhow::Result<Reply>,
) -> anyhow::Result<u8> {
    let argv: Vec<String> = {
        let cwd = std::env::current_dir().unwrap_or_default();
        std::env::args()
            .map(|a| {
                if !a.starts_with('-') && Path::new(&a).exists() {
                    cwd.join(&a).display().to_string()
                } else {
                    a
                }
            })
            .collect()
    };
    if let Some(reply) = run::control::forward(home, &run::control::Request { argv, data: None })? {
        return Ok(reply.emit());
    }
    let can_open = std::env::var_os("MEOW_PASSWORD").is_some() || pw_file.is_some();
    let contacts = if can_open && Node::exists(home) {
        util::password(pw_file, false)
            .ok()
            .and_then(|pw| Node::open(home, pw.as_bytes()).ok())
            .map(|n| n.contacts().iter().map(|c| c.name.clone()).collect::<Vec<_>>())
    } else {
        None
    };
    let note = if contacts.is_some() {
        ""
    } else {
        "note: contact names were not checked (no readable home; `meow run` checks them when it loads recipes)"
    };
    let ctx = meow_recipe::CheckContext {
        contacts,
        groups: None,
        plugins: None,
    };
    Ok(f(&ctx, note)?.emit())
}

fn plugin_list(d: &run::Daemon, json: bool) -> Reply {
    let list = d.instances();
    let mut r = Reply::default();
    if json {
        let v: Vec<_> = list
            .iter()
            .map(|(n, p, s)| serde_json::json!({"instance": n, "plugin": p, "status": s}))
            .collect();
        r.out = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
    } else {
        for (n, p, s) in list {
            let state = if s.running { "running" } else { "restarting" };
            let last = s.last_stop.map(|l| format!(", last stopped: {l}")).unwrap_or_default();
            r.out.push_str(&format!(
                "{n:<16} {p:<20} {state}, {} events, {} restarts{last}\n",
                s.handled, s.restarts
            ));
        }
    }
    r
}

fn run_daemon(home: Option<&Path>, pw_file: Option<&Path>, args: cli::RunArgs) -> anyhow::Result<()> {
    let config_path = args
        .config
        .clone()
        .or_else(|| Some(PathBuf::from("meow.yaml")).filter(|p| p.exists()));
    let cfg = match &config_path {
        Some(p) => run::config::RunConfig::load(p)?,
        None => run::config::RunConfig::default(),
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
    let node = Node::open(&home, password.as_bytes())?;
    drop(password);
    smol::block_on(async {
        let running = run::start(&home, node, cfg, args.watch).await?;
        let plugins = running
            .daemon
            .instances()
            .iter()
            .map(|(n, p, _)| format!("{n} ({p})"))
            .collect::<Vec<_>>();
        let server = running
            .server
            .as_ref()
            .map(|s| s.local_addr().to_string())
            .unwrap_or_else(|| "none".into());
        tracing::info!(home = %home.display(), %server, "meow run ready; plugins: {}", if plugins.is_empty() { "none".to_owned() } else { plugins.join(", ") });
        running.wait_and_stop(&home).await
    })
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
