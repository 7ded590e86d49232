//! `meow recipe`: check, dry-run, and read the traces of recipes.

use std::path::Path;

use anyhow::Context;
use meow_node::Node;
use meow_recipe::{CheckContext, Recipe, dry_run, sample_event};
use smol::lock::Mutex;

use crate::cmd_home::Reply;
use crate::run::recipes::traces;

/// Checks recipe files; `ctx` says what is known about the home.
pub fn check(files: &[std::path::PathBuf], ctx: &CheckContext, note: &str) -> anyhow::Result<Reply> {
    let mut r = Reply::default();
    let mut failed = 0;
    let mut names: std::collections::BTreeMap<String, std::path::PathBuf> = std::collections::BTreeMap::new();
    for f in files {
        match Recipe::load_file(f, ctx) {
            Ok(recipe) if names.contains_key(&recipe.name) => {
                failed += 1;
                r.out
                    .push_str(&format!("{}\n", name_taken(f, &recipe.name, &names[&recipe.name])));
            }
            Ok(recipe) => {
                names.insert(recipe.name.clone(), f.clone());
                let kinds: Vec<_> = recipe.trigger_kinds().into_iter().collect();
                r.out.push_str(&format!(
                    "{}: ok ({}, triggers: {}, {} actions)\n",
                    f.display(),
                    recipe.name,
                    kinds.join(", "),
                    recipe.action_count()
                ));
            }
            Err(e) => {
                failed += 1;
                r.out.push_str(&format!("{e}\n"));
            }
        }
    }
    if !note.is_empty() {
        r.err = format!("{note}\n");
    }
    if failed > 0 {
        r.code = 1;
        r.error = Some(format!("{failed} of {} recipe(s) have errors", files.len()));
    }
    Ok(r)
}

/// The error for a second recipe with a name already used: traces and run modes go by name.
pub fn name_taken(file: &Path, name: &str, first: &Path) -> String {
    format!(
        "{}: the recipe name {name:?} is taken by {} (traces and run modes go by name: rename one)",
        file.display(),
        first.display()
    )
}

/// Dry-runs a recipe against a sample event file.
pub fn test(file: &Path, event: &Path, ctx: &CheckContext) -> anyhow::Result<Reply> {
    let recipe = Recipe::load_file(file, ctx)?;
    let text = std::fs::read_to_string(event).with_context(|| format!("reading {}", event.display()))?;
    let (ev, schedule) = sample_event(&text, &event.display().to_string())?;
    let run = dry_run(&recipe, &ev, schedule);
    let mut r = Reply {
        out: format!("dry run of {} (nothing is sent)\n{run}", recipe.name),
        ..Reply::default()
    };
    if run.has_errors() {
        r.code = 1;
        r.error = Some("the dry run found errors".into());
    }
    Ok(r)
}

/// The last runs of a recipe.
pub async fn trace(node: &Mutex<Node>, name: &str, json: bool) -> anyhow::Result<Reply> {
    let vault = node.lock().await.vault();
    let list = traces(&vault, name)?;
    let mut r = Reply::default();
    if json {
        r.out = serde_json::to_string_pretty(&list)? + "\n";
        return Ok(r);
    }
    if list.is_empty() {
        r.err = format!("no runs of {name:?} recorded (is it loaded by `meow run`? see `meow recipe list`)\n");
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
        r.out.push_str(&format!(
            "run {:x} at {}, {trig}{detail}\n",
            t.run,
            crate::util::format_time(t.started_ms)
        ));
        for (i, s) in t.steps.iter().enumerate() {
            r.out.push_str(&format!("  {}. {} -> {}\n", i + 1, s.what, s.outcome));
        }
        r.out.push_str(&format!("  result: {}\n", t.result));
    }
    Ok(r)
}
