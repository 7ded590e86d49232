//! Templates (minijinja, Jinja syntax) and the variables each trigger provides.
//!
//! Every template is checked when the recipe loads: a variable its triggers do not provide is an
//! error then, not a surprise at 3 a.m. At run time undefined values are errors too (strict mode).

use std::collections::BTreeSet;

use chrono::{Datelike, Timelike};
use minijinja::{Environment, UndefinedBehavior, Value};

/// Steps one template or condition may take (`range(100000) | sum` fits; a test checks it): a
/// runaway loop ends with an error instead of holding the runtime's thread.
pub const TEMPLATE_FUEL: u64 = 200_000;

/// The environment all recipes render with.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env
}

/// Fields of `trigger` for each trigger kind.
pub fn trigger_fields(kind: crate::TriggerKind) -> &'static [&'static str] {
    use crate::TriggerKind;
    match kind {
        TriggerKind::Message => &[
            "kind",
            "sender",
            "text",
            "json",
            "captures",
            "id",
            "type",
            "automatic",
            "policy",
            "reply_to",
        ],
        TriggerKind::GroupMessage => &[
            "kind",
            "sender",
            "text",
            "json",
            "captures",
            "id",
            "type",
            "group",
            "automatic",
            "policy",
            "reply_to",
        ],
        TriggerKind::Schedule => &["kind", "time", "schedule"],
        TriggerKind::Startup => &["kind"],
        TriggerKind::ContactAdded => &["kind", "name", "via_directory"],
        TriggerKind::Broadcast => &["kind", "text", "server", "from_operator"],
        TriggerKind::Mqtt => &["kind", "topic", "payload", "json"],
        TriggerKind::Device => &["kind", "change", "device"],
    }
}

/// The fields a `command` trigger adds to a message's.
pub const COMMAND_FIELDS: [&str; 4] = ["command", "args", "args_text", "role"];

/// Fields of `now`.
const NOW_FIELDS: &[&str] = &["iso", "unix", "date", "time", "hour", "minute", "weekday"];
/// Functions and globals minijinja provides.
const GLOBALS: &[&str] = &["range", "dict", "namespace"];

/// What a recipe's templates may use.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `trigger.*` fields provided by at least one trigger.
    pub trigger: BTreeSet<&'static str>,
    /// `vars.*` names set by `get` actions.
    pub vars: BTreeSet<String>,
}

impl Scope {
    /// Checks the variables a template or expression uses; returns a message on the first
    /// unknown one.
    pub fn check(&self, used: impl IntoIterator<Item = String>) -> Result<(), String> {
        let mut used: Vec<String> = used.into_iter().collect();
        used.sort();
        for path in used {
            let mut parts = path.split('.');
            let root = parts.next().unwrap_or("");
            let field = parts.next();
            let ok = match (root, field) {
                ("trigger" | "now" | "recipe" | "vars", None) => true,
                ("trigger", Some(f)) => self.trigger.contains(f),
                ("now", Some(f)) => NOW_FIELDS.contains(&f),
                ("recipe", Some(f)) => f == "name",
                ("vars", Some(f)) => self.vars.contains(f),
                (g, _) => GLOBALS.contains(&g),
            };
            if !ok {
                let hint = match root {
                    "trigger" => format!(
                        "this recipe's triggers provide trigger.{{{}}}",
                        self.trigger.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                    "vars" if self.vars.is_empty() => "no `get` action sets any vars".to_owned(),
                    "vars" => format!(
                        "`get` actions set vars.{{{}}}",
                        self.vars.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    "now" => format!("now provides now.{{{}}}", NOW_FIELDS.join(", ")),
                    _ => "templates can use trigger, now, recipe and vars".to_owned(),
                };
                return Err(format!("unknown variable `{path}` ({hint})"));
            }
        }
        Ok(())
    }
}

/// Compiles a template and checks its variables.
pub fn check_template(env: &Environment<'static>, source: &str, scope: &Scope) -> Result<(), String> {
    let t = env
        .template_from_str(source)
        .map_err(|e| format!("template error: {}", e.detail().unwrap_or(&e.to_string())))?;
    scope.check(t.undeclared_variables(true))
}

/// A condition's expression: `{{ … }}` around it is optional.
pub fn expression_source(condition: &str) -> &str {
    let t = condition.trim();
    t.strip_prefix("{{")
        .and_then(|x| x.strip_suffix("}}"))
        .map(str::trim)
        .unwrap_or(t)
}

/// Compiles a condition and checks its variables.
pub fn check_expression(env: &Environment<'static>, condition: &str, scope: &Scope) -> Result<(), String> {
    let e = env
        .compile_expression(expression_source(condition))
        .map_err(|e| format!("expression error: {}", e.detail().unwrap_or(&e.to_string())))?;
    scope.check(e.undeclared_variables(true))
}

/// Renders a template with a context.
pub fn render(env: &Environment<'static>, source: &str, ctx: &serde_json::Value) -> Result<String, String> {
    env.render_str(source, Value::from(minijinja::value::Serde(ctx)))
        .map_err(|e| describe(&e))
}

/// Evaluates a condition.
pub fn truthy(env: &Environment<'static>, condition: &str, ctx: &serde_json::Value) -> Result<bool, String> {
    let e = env
        .compile_expression(expression_source(condition))
        .map_err(|e| describe(&e))?;
    e.eval(Value::from(minijinja::value::Serde(ctx)))
        .map(|v| v.is_true())
        .map_err(|e| describe(&e))
}

fn describe(e: &minijinja::Error) -> String {
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        return format!("the template took more than {TEMPLATE_FUEL} steps (a loop that does not end?)");
    }
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// The `now` variable for a moment (local time).
pub fn now_context(t: chrono::DateTime<chrono::Local>) -> serde_json::Value {
    serde_json::json!({
        "iso": t.to_rfc3339(),
        "unix": t.timestamp(),
        "date": t.format("%Y-%m-%d").to_string(),
        "time": t.format("%H:%M:%S").to_string(),
        "hour": t.hour(),
        "minute": t.minute(),
        "weekday": t.weekday().to_string(),
    })
}
