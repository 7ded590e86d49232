//! `meow recipe`: check, dry-run, traces, list, reload — printing their answers, and checking
//! recipes when no daemon and no readable home are at hand.

use std::path::Path;

use anyhow::bail;
use meow_node::Node;
use meow_runtime::control::{Request, Response};
use smol::lock::Mutex;

use crate::cli::{Command, RecipeCmd};
use crate::cmd_home::Reply;

/// Checks or dry-runs recipes: inside a running daemon (which knows the contacts and plugins),
/// else on the home if its password is at hand without a prompt, else with nothing known.
pub fn local(home: &Path, pw_file: Option<&Path>, cmd: &Command, request: Request) -> anyhow::Result<Reply> {
    if let Some(answer) = meow_runtime::control::forward(home, &request)? {
        return crate::cmd_home::show(cmd, answer);
    }
    let can_open = std::env::var_os("MEOW_PASSWORD").is_some() || pw_file.is_some();
    let node = if can_open && Node::exists(home) {
        crate::util::password(pw_file, false)
            .ok()
            .and_then(|pw| Node::open(home, pw.as_bytes()).ok())
    } else {
        None
    };
    let answer = match node {
        Some(n) => smol::block_on(meow_runtime::handle_direct(&Mutex::new(n), request)),
        None => {
            let ctx = meow_recipe::CheckContext::default();
            match request {
                Request::RecipeCheck { files } => Ok(meow_runtime::home::recipe_check(
                    &files,
                    &ctx,
                    Some("contact names were not checked (no readable home; `meow run` checks them when it loads recipes)".into()),
                )),
                Request::RecipeTest { file, event, at_ms } => {
                    meow_runtime::home::recipe_test(&file, &event, &ctx, at_ms.unwrap_or_else(meow_net::now_ms))
                }
                other => bail!("internal: {other:?} is not a local recipe request"),
            }
        }
    };
    crate::cmd_home::show(cmd, answer.map_err(meow_runtime::control::ControlError::from))
}

/// Prints the answer to a recipe command.
pub fn show(r: &mut Reply, cmd: &RecipeCmd, resp: Response) -> anyhow::Result<()> {
    match (cmd, resp) {
        (_, Response::RecipeChecks { files, note }) => {
            let failed = files.iter().filter(|f| f.error.is_some()).count();
            for f in &files {
                match (&f.error, &f.recipe) {
                    (Some(e), _) => r.line(e),
                    (None, Some(name)) => r.line(format!(
                        "{}: ok ({name}, triggers: {}, {} actions)",
                        f.file,
                        f.triggers.join(", "),
                        f.actions
                    )),
                    (None, None) => r.line(format!("{}: ok", f.file)),
                }
            }
            if let Some(n) = note {
                r.note(format!("note: {n}"));
            }
            if failed > 0 {
                r.fail(format!("{failed} of {} recipe(s) have errors", files.len()));
            }
        }
        (_, Response::DryRun { recipe, report, errors }) => {
            r.out = format!("dry run of {recipe} (nothing is sent)\n{report}");
            if errors {
                r.fail("the dry run found errors");
            }
        }
        (RecipeCmd::Trace { name, json }, Response::Traces(list)) => {
            if *json {
                return r.json(&list);
            }
            if list.is_empty() {
                r.note(format!(
                    "no runs of {name:?} recorded (is it loaded by `meow run`? see `meow recipe list`)"
                ));
            }
            for t in list {
                let trig = t.trigger.get("kind").and_then(|k| k.as_str()).unwrap_or("?").to_owned();
                let detail = match (
                    t.trigger.get("sender").and_then(|s| s.as_str()),
                    t.trigger.get("text").and_then(|s| s.as_str()),
                ) {
                    (Some(s), Some(text)) => format!(" from {s}: {text:?}"),
                    _ => t
                        .trigger
                        .get("schedule")
                        .and_then(|s| s.as_str())
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default(),
                };
                r.line(format!(
                    "run {:x} at {}, {trig}{detail}",
                    t.run,
                    crate::util::format_time(t.started_ms)
                ));
                for (i, s) in t.steps.iter().enumerate() {
                    r.line(format!("  {}. {} -> {}", i + 1, s.what, s.outcome));
                }
                r.line(format!("  result: {}", t.result));
            }
        }
        (_, Response::Recipes(list)) => {
            if list.is_empty() {
                r.note("no recipes loaded (list them under `recipes:` in meow.yaml)");
            }
            for rv in list {
                r.line(format!(
                    "{:<20} triggers: {:<30} running now: {}",
                    rv.name,
                    rv.triggers.join(", "),
                    rv.running
                ));
            }
        }
        (_, Response::RecipesReloaded(names)) => match names.len() {
            0 => r.line("reloaded: no recipe file matches `recipes:` in meow.yaml, so none is loaded"),
            n => r.line(format!("reloaded {n} recipe(s): {}", names.join(", "))),
        },
        (_, other) => bail!("internal: unexpected answer {other:?}"),
    }
    Ok(())
}
