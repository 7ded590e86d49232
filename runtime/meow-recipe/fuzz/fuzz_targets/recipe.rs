//! Recipe files: YAML parsing, every load-time check, key location for errors, and a dry run of
//! whatever loads (templates and conditions rendered). Must never panic or hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_recipe::{CheckContext, Recipe, TriggerEvent, TriggerKind, dry_run, message_event};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = meow_yaml::locate(text, "actions[1].send.to");
    let ctx = CheckContext {
        contacts: Some(vec!["owner".into(), "sensor".into()]),
        groups: Some(vec!["home".into()]),
        plugins: Some(vec!["echo".into()]),
    };
    let Ok(recipe) = Recipe::load(text, "fuzz.yaml", "fuzz", &ctx) else {
        return;
    };
    let events = [
        message_event(TriggerKind::Message, "sensor", r#"{"t": 31.5}"#, None, "1"),
        message_event(TriggerKind::GroupMessage, "owner", "hello", Some("home"), "2"),
        TriggerEvent::new(TriggerKind::Startup, serde_json::json!({})),
        TriggerEvent::new(TriggerKind::Schedule, serde_json::json!({})),
    ];
    for event in &events {
        let _ = dry_run(&recipe, event, event.kind == TriggerKind::Schedule, chrono::DateTime::UNIX_EPOCH.with_timezone(&chrono::Local));
    }
});
