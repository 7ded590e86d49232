//! Every sample recipe in recipes/ loads and dry-runs; broken recipes fail with their place.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use meow_recipe::{CheckContext, DryRun, Recipe, Rendered, TriggerEvent, TriggerKind, message_event, sample_event};

/// A dry run at a fixed time: the same event at the same time gives the same report.
fn dry_run(recipe: &Recipe, event: &TriggerEvent, schedule: bool) -> DryRun {
    meow_recipe::dry_run(recipe, event, schedule, at("2026-12-02T08:30:00"))
}

fn at(local: &str) -> chrono::DateTime<chrono::Local> {
    chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S")
        .unwrap()
        .and_local_timezone(chrono::Local)
        .unwrap()
}

fn samples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../recipes");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

fn home() -> CheckContext {
    CheckContext {
        contacts: Some(vec!["sensor".into(), "owner".into(), "alice".into()]),
        groups: Some(vec![]),
        plugins: Some(vec![]),
    }
}

/// A home with these contacts, the group `friends` and the plugin instance `echo`.
fn with_friends_and_echo(contacts: &[&str]) -> CheckContext {
    CheckContext {
        contacts: Some(contacts.iter().map(|c| (*c).to_owned()).collect()),
        groups: Some(vec!["friends".into()]),
        plugins: Some(vec!["echo".into()]),
    }
}

fn events() -> Vec<(TriggerEvent, bool)> {
    vec![
        (
            message_event(TriggerKind::Message, "sensor", r#"{"t": 31.5, "h": 40}"#, None, "1"),
            false,
        ),
        (
            message_event(TriggerKind::Message, "alice", "fwd call me back", None, "2"),
            false,
        ),
        (message_event(TriggerKind::Message, "alice", "hello", None, "3"), false),
        (TriggerEvent::new(TriggerKind::Schedule, serde_json::json!({})), true),
    ]
}

#[test]
fn every_sample_recipe_loads_and_dry_runs() {
    let files = samples();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let recipe = Recipe::load_file(&file, &home()).unwrap_or_else(|e| panic!("{e}"));
        let mut matched = 0;
        for (event, schedule) in events() {
            let run = dry_run(&recipe, &event, schedule);
            assert!(!run.has_errors(), "{}: {run}", file.display());
            matched += usize::from(run.trigger.is_some());
        }
        assert!(matched > 0, "{} matched none of the sample events", file.display());
    }
}

fn load(name: &str) -> Recipe {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../recipes")
        .join(name);
    Recipe::load_file(&file, &home()).unwrap()
}

#[test]
fn the_sensor_alert_fires_only_over_the_threshold() {
    let r = load("sensor-alert.yaml");
    let hot = dry_run(
        &r,
        &message_event(TriggerKind::Message, "sensor", r#"{"t":31.5,"h":40}"#, None, "1"),
        false,
    );
    assert!(hot.would_run());
    match &hot.actions[0] {
        Ok(Rendered::Send { to, text }) => {
            assert_eq!(to, "owner");
            assert!(text.starts_with("ALERT: 31.5 °C reported by sensor"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let mild = dry_run(
        &r,
        &message_event(TriggerKind::Message, "sensor", r#"{"t":21.0}"#, None, "2"),
        false,
    );
    assert!(!mild.would_run());
    assert!(mild.actions.is_empty());
    let other = dry_run(
        &r,
        &message_event(TriggerKind::Message, "alice", r#"{"t":40}"#, None, "3"),
        false,
    );
    assert!(other.trigger.is_none(), "only the sensor triggers it");
}

#[test]
fn forward_uses_captures_and_summary_reads_vars() {
    let run = dry_run(
        &load("forward.yaml"),
        &message_event(TriggerKind::Message, "alice", "fwd the door is open", None, "1"),
        false,
    );
    assert_eq!(
        run.actions[0],
        Ok(Rendered::Send {
            to: "owner".into(),
            text: "alice asks to forward: the door is open".into()
        })
    );
    let run = dry_run(
        &load("daily-summary.yaml"),
        &TriggerEvent::new(TriggerKind::Schedule, serde_json::json!({})),
        true,
    );
    match &run.actions[1] {
        Ok(Rendered::Send { text, .. }) => assert!(text.ends_with("last temperature alert: none today"), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_runaway_template_loop_ends_with_an_error() {
    let text = "version: 1\ntriggers:\n  - startup: {}\nconditions:\n  - \"{{ range(100000) | sum > 0 }}\"\nactions:\n  - log: { text: \"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\" }\n";
    let recipe = Recipe::load(text, "loop.yaml", "loop", &home()).unwrap();
    let run = dry_run(
        &recipe,
        &TriggerEvent::new(TriggerKind::Startup, serde_json::json!({})),
        false,
    );
    let (_, condition) = &run.conditions[0];
    assert_eq!(condition, &Ok(true), "a 100 000-item sum fits the budget");
    let err = run.actions[0].as_ref().unwrap_err();
    assert!(err.contains("the template took more than 200000 steps"), "{err}");
}

/// The YAML blocks of docs/RECIPES.md, each with the `## ` section it sits in.
fn guide_blocks() -> Vec<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/RECIPES.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (mut section, mut block, mut out) = (String::new(), None::<String>, Vec::new());
    for line in doc.lines() {
        match &mut block {
            Some(b) if line.starts_with("```") => {
                out.push((section.clone(), std::mem::take(b)));
                block = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None if line == "```yaml" => block = Some(String::new()),
            None if line.starts_with("## ") => section = line.to_owned(),
            None => {}
        }
    }
    out
}

/// Every YAML example of the recipes guide loads: whole recipes as they are, trigger, condition
/// and action snippets inside a minimal recipe, the sample event through the dry-run reader.
#[test]
fn every_example_in_the_recipes_guide_loads() {
    let ctx = with_friends_and_echo(&["sensor", "owner"]);
    let (mut recipes, mut snippets) = (0, 0);
    for (section, block) in guide_blocks() {
        let text = if block.starts_with("# meow.yaml") {
            continue;
        } else if section == "## Tools" {
            sample_event(&block, "guide").unwrap_or_else(|e| panic!("{e}\n{block}"));
            continue;
        } else if block.contains("version: 1") {
            recipes += 1;
            block.clone()
        } else if section == "## Triggers" {
            let triggers = if block.starts_with("triggers:") {
                block.clone()
            } else {
                format!("triggers:\n{block}")
            };
            format!("version: 1\n{triggers}actions:\n  - log: {{ text: x }}\n")
        } else if section == "## Conditions" {
            format!("version: 1\ntriggers:\n  - message: {{}}\n{block}actions:\n  - log: {{ text: x }}\n")
        } else if section == "## Actions" {
            format!("version: 1\ntriggers:\n  - message: {{}}\nactions:\n{block}")
        } else {
            panic!("a YAML block in section {section:?} that this test does not know:\n{block}");
        };
        snippets += 1;
        Recipe::load(&text, "guide.yaml", "guide", &ctx).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
    assert!(recipes >= 1 && snippets >= 15, "{recipes} recipes, {snippets} snippets");
}

fn error_of(text: &str) -> String {
    Recipe::load(text, "recipes/alert.yaml", "alert", &home())
        .unwrap_err()
        .to_string()
}

#[test]
fn broken_recipes_name_file_line_column_and_key() {
    let unknown_contact = "version: 1\ntriggers:\n  - message: { from: sensor }\nactions:\n  - log: { text: hi }\n  - send:\n      to: bob\n      text: hello\n";
    assert_eq!(
        error_of(unknown_contact),
        "recipes/alert.yaml:7:7: actions[1].send.to: unknown contact \"bob\""
    );
    // In flow style, and past an earlier `to:` key of the same file.
    let flow = "version: 1\ntriggers:\n  - message: { from: sensor }\nactions:\n  - send: { to: owner, text: a }\n  - send: { text: b, to: bob }\n";
    assert_eq!(
        error_of(flow),
        "recipes/alert.yaml:6:22: actions[1].send.to: unknown contact \"bob\""
    );

    let unknown_key = "version: 1\ntriggers:\n  - message: { from: sensor }\nactions:\n  - send: { to: owner, text: hi, colour: red }\n";
    let e = error_of(unknown_key);
    assert!(e.starts_with("recipes/alert.yaml:5:"), "{e}");
    assert!(e.contains("actions[0]") && e.contains("unknown field `colour`"), "{e}");

    let bad_var = "version: 1\ntriggers:\n  - schedule: { every: 10m }\nactions:\n  - send: { to: owner, text: \"{{ trigger.text }}\" }\n";
    let e = error_of(bad_var);
    assert!(
        e.contains("actions[0].send.text: unknown variable `trigger.text`"),
        "{e}"
    );
    assert!(e.contains("trigger.{kind, schedule, time}"), "{e}");

    let bad_delay = "version: 1\ntriggers:\n  - startup: {}\nactions:\n  - delay: soon\n";
    assert!(error_of(bad_delay).contains("actions[0].delay: invalid duration"));

    let bad_yaml = "version: 1\ntriggers: [\nactions:\n";
    let e = error_of(bad_yaml);
    assert!(e.starts_with("recipes/alert.yaml:"), "{e}");

    let bad_mode = "version: 1\nmode: sometimes\ntriggers:\n  - startup: {}\nactions:\n  - log: { text: x }\n";
    let e = error_of(bad_mode);
    assert!(e.starts_with("recipes/alert.yaml:2:7: mode:"), "{e}");

    let no_schedule_kind =
        "version: 1\ntriggers:\n  - schedule: { every: 10m, at: \"08:00\" }\nactions:\n  - log: { text: x }\n";
    assert!(error_of(no_schedule_kind).contains("triggers[0].schedule: give exactly one of every, cron or at"));
}

#[test]
fn sample_event_files_are_read() {
    let (ev, schedule) = sample_event("message: { from: sensor, text: '{\"t\": 33}' }\n", "ev.yaml").unwrap();
    assert!(!schedule);
    let run = dry_run(&load("sensor-alert.yaml"), &ev, false);
    assert!(run.would_run());
    assert!(
        sample_event("mesage: {}\n", "ev.yaml")
            .unwrap_err()
            .to_string()
            .starts_with("ev.yaml:1:1")
    );
}

#[test]
fn group_broadcast_schedule_and_contact_triggers() {
    let ctx = with_friends_and_echo(&["owner", "bob"]);
    let text = r#"
version: 1
name: many
mode: queued
triggers:
  - group_message: { group: friends, contains: dinner }
  - broadcast: { contains: flood }
  - schedule: { cron: "0 9 * * 1-5" }
  - contact_added: {}
actions:
  - group_send: { group: friends, text: "{{ trigger.kind }}: {{ trigger.text | default('') }}" }
  - call: { plugin: echo, text: "{{ trigger.kind }}" }
  - directory_publish: { description: "hello", tags: [a] }
"#;
    let r = Recipe::load(text, "many.yaml", "many", &ctx).unwrap();
    let ev = message_event(TriggerKind::GroupMessage, "bob", "Dinner at 8?", Some("friends"), "1");
    let run = dry_run(&r, &ev, false);
    assert_eq!(
        run.actions[0],
        Ok(Rendered::GroupSend {
            group: "friends".into(),
            text: "group_message: Dinner at 8?".into()
        })
    );
    let other_group = message_event(TriggerKind::GroupMessage, "bob", "dinner", Some("work"), "2");
    assert!(dry_run(&r, &other_group, false).trigger.is_none());
    let flood = TriggerEvent::new(
        TriggerKind::Broadcast,
        serde_json::json!({"text": "FLOOD warning", "server": "home", "from_operator": true}),
    );
    assert!(dry_run(&r, &flood, false).would_run());
    let added = TriggerEvent::new(
        TriggerKind::ContactAdded,
        serde_json::json!({"name": "carol", "via_directory": true}),
    );
    assert!(dry_run(&r, &added, false).would_run());
    assert_eq!(r.schedules().len(), 1);
    assert!(r.schedules()[0].next_after(chrono_now()).is_some());

    let bad_group = text.replace("group: friends, contains", "group: family, contains");
    assert!(
        Recipe::load(&bad_group, "g.yaml", "g", &ctx)
            .unwrap_err()
            .to_string()
            .contains("triggers[0].group_message.group: unknown group \"family\"")
    );
    let bad_plugin = text.replace("plugin: echo", "plugin: nope");
    assert!(
        Recipe::load(&bad_plugin, "p.yaml", "p", &ctx)
            .unwrap_err()
            .to_string()
            .contains("actions[1].call.plugin: unknown plugin instance \"nope\"")
    );
    let reply_on_schedule = "version: 1\ntriggers:\n  - schedule: { every: 1m }\nactions:\n  - reply: { text: hi }\n";
    assert!(
        Recipe::load(reply_on_schedule, "r.yaml", "r", &ctx)
            .unwrap_err()
            .to_string()
            .contains("reply needs every trigger to be a message trigger")
    );
}

fn chrono_now() -> chrono::DateTime<chrono::Local> {
    chrono::Local::now()
}

#[test]
fn messages_from_other_bots_start_no_run_unless_the_trigger_asks() {
    let ctx = CheckContext::default();
    let mut ev = message_event(TriggerKind::Message, "bob", "hello", None, "1");
    ev.fields.insert("automatic".into(), serde_json::Value::Bool(true));
    let plain = Recipe::load(
        "version: 1\ntriggers: [message: {}]\nactions: [reply: {text: 'hi'}]\n",
        "plain.yaml",
        "plain",
        &ctx,
    )
    .unwrap();
    assert!(
        plain.matches(&ev).is_none(),
        "an automatic message is ignored by default"
    );
    assert!(
        plain
            .matches(&message_event(TriggerKind::Message, "bob", "hello", None, "2"))
            .is_some()
    );
    let opted = Recipe::load(
        "version: 1\ntriggers: [message: {automatic: true}]\nactions: [reply: {text: '{{ trigger.automatic }}'}]\n",
        "opted.yaml",
        "opted",
        &ctx,
    )
    .unwrap();
    let vars = opted.matches(&ev).expect("the trigger asks for automatic messages");
    assert_eq!(vars["automatic"], serde_json::Value::Bool(true));
}

#[test]
fn a_dry_run_is_the_same_at_the_same_time() {
    let r = Recipe::load(
        "version: 1\nname: greet\ntriggers: [message: {}]\nconditions: [\"{{ now.hour < 12 }}\"]\nactions:\n  - reply: { text: \"good morning, it is {{ now.time }}\" }\n",
        "greet.yaml",
        "greet",
        &CheckContext::default(),
    )
    .unwrap();
    let ev = message_event(TriggerKind::Message, "alice", "hi", None, "1");
    let morning = meow_recipe::dry_run(&r, &ev, false, at("2026-12-02T08:30:00"));
    assert_eq!(
        morning.to_string(),
        meow_recipe::dry_run(&r, &ev, false, at("2026-12-02T08:30:00")).to_string()
    );
    assert!(
        morning.to_string().contains("good morning, it is 08:30:00"),
        "{morning}"
    );
    let evening = meow_recipe::dry_run(&r, &ev, false, at("2026-12-02T19:00:00"));
    assert!(!evening.would_run(), "{evening}");
}

#[test]
fn mqtt_triggers_match_topic_filters_and_bad_filters_are_refused() {
    use meow_recipe::mqtt_event;
    let recipe = |topic: &str| {
        Recipe::load(
            &format!(
                "version: 1\ntriggers:\n  - mqtt: {{ topic: \"{topic}\" }}\nactions:\n  - log: {{ text: \"{{{{ trigger.topic }}}} {{{{ trigger.json.state }}}}\" }}\n"
            ),
            "recipes/door.yaml",
            "door",
            &home(),
        )
    };
    let r = recipe("home/+/state").unwrap();
    assert_eq!(r.mqtt_topics(), vec!["home/+/state".to_owned()]);
    assert!(r.uses_mqtt());
    let t = r
        .matches(&mqtt_event("home/door/state", br#"{"state": "open"}"#))
        .unwrap();
    assert_eq!(
        (t["topic"].as_str(), t["json"]["state"].as_str()),
        (Some("home/door/state"), Some("open"))
    );
    for other in ["home/door", "home/door/state/x", "garden/door/state"] {
        assert!(r.matches(&mqtt_event(other, b"x")).is_none(), "{other}");
    }
    let all = recipe("home/#").unwrap();
    for topic in ["home", "home/a", "home/a/b/c"] {
        assert!(all.matches(&mqtt_event(topic, b"x")).is_some(), "{topic}");
    }
    assert!(
        recipe("#")
            .unwrap()
            .matches(&mqtt_event("$SYS/broker/load", b"1"))
            .is_none()
    );
    for bad in ["home/#/x", "home/a+", "", "ho#me"] {
        let err = recipe(bad).unwrap_err().to_string();
        assert!(err.contains("triggers[0].mqtt.topic"), "{bad:?}: {err}");
    }
}

/// A `command` trigger runs for its name with enough arguments from a contact of its role, and
/// gives the template the command, the arguments and the role; a dry run takes the role too.
#[test]
fn a_command_trigger_needs_its_name_its_role_and_its_arguments() {
    let text = "version: 1\ntriggers:\n  - command: { name: lights, usage: \"<room> on|off\", role: admin, min_args: 2 }\n\
                actions:\n  - reply: { text: \"{{ trigger.command }} {{ trigger.args[0] }}={{ trigger.args[1] }} ({{ trigger.role }}, {{ trigger.args_text }})\" }\n";
    let recipe = Recipe::load(text, "lights.yaml", "lights", &home()).unwrap();
    assert_eq!(recipe.commands()[0].name, "lights");
    let run = |sample: &str| {
        let (event, _) = sample_event(sample, "sample").unwrap();
        meow_recipe::dry_run(&recipe, &event, false, chrono::Local::now())
    };
    let ran = run("message: { from: owner, text: \"/Lights kitchen off\", role: admin }");
    assert_eq!(
        ran.actions,
        vec![Ok(Rendered::Reply {
            text: "lights kitchen=off (admin, kitchen off)".into()
        })]
    );
    assert!(run("message: { from: owner, text: \"/lights kitchen off\", role: owner }").would_run());
    for refused in [
        "message: { from: owner, text: \"/lights kitchen off\" }",
        "message: { from: owner, text: \"/lights kitchen\", role: admin }",
        "message: { from: owner, text: \"/lightsout kitchen off\", role: admin }",
        "message: { from: owner, text: \"lights kitchen off\", role: admin }",
    ] {
        assert!(!run(refused).would_run(), "{refused}");
    }
    let help = "version: 1\ntriggers:\n  - command: { name: help }\nactions:\n  - log: { text: x }\n";
    let e = Recipe::load(help, "help.yaml", "help", &home())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("triggers[0].command.name") && e.contains("/help is the runtime's"),
        "{e}"
    );
}
