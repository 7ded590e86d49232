//! The `http` capability end to end: a Lua plugin calls a web server on 127.0.0.1 that meow.yaml
//! allows, and is denied one it does not allow (which never sees a connection), and an instance
//! without the capability is denied outright (issue 18). The same policy holds for a WASM
//! plugin's standard `wasi:http`: JavaScript's `fetch` (componentize-js).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::languages::{tool_or_skip, wait_for_all};
use crate::support::{Daemon, Setup, setup, wait_for_text};

/// A web server on 127.0.0.1 answering every request with the path it asked for; the count of
/// connections it accepted.
fn web_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("?").to_owned();
            let body = format!("you asked for {path}");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, accepted)
}

/// Lets the plugins of `s` call the web server on 127.0.0.1:`port` (and nothing else).
fn allow_http(s: &Setup, port: u16) {
    let yaml = std::fs::read_to_string(&s.config).unwrap();
    let allow = format!("http:\n  allow: [\"127.0.0.1:{port}\"]\n  timeout: 5s\n");
    std::fs::write(&s.config, format!("{yaml}{allow}")).unwrap();
}

const WEB: &str = r#"
function on_message(msg)
  local url = msg.text and msg.text:match("^fetch (%S+)$")
  if not url then return end
  local me = meow.node().instance
  local ok, r = pcall(meow.http.request, { url = url, headers = { ["X-Asked-By"] = msg.sender } })
  if ok then
    meow.reply(msg, me .. " status " .. r.status .. ": " .. r.body)
  else
    meow.reply(msg, me .. " error: " .. tostring(r))
  end
end
"#;

#[test]
fn a_plugin_calls_an_allowed_host_and_is_denied_the_others() {
    let (allowed, _) = web_server();
    let (other, other_accepted) = web_server();
    let s = setup(
        "http",
        "  - { name: web, plugin: \"{local}/web\", grant: [messaging, http] }\n  \
         - { name: noweb, plugin: \"{local}/web\", grant: [messaging] }\n",
    );
    s.lua_plugin("web", WEB, "messaging, http");
    allow_http(&s, allowed);
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();

    s.user
        .meow(&[
            "send",
            "bot",
            &format!("fetch http://127.0.0.1:{allowed}/weather?city=Lyon"),
        ])
        .ok();
    wait_for_text(&s.user, "the allowed call's answer", |t| {
        t == "web status 200: you asked for /weather?city=Lyon"
    });
    wait_for_text(&s.user, "the instance without the capability", |t| {
        t.starts_with("noweb error:") && t.contains("denied") && t.contains("http")
    });

    s.user
        .meow(&["send", "bot", &format!("fetch http://127.0.0.1:{other}/secret")])
        .ok();
    wait_for_text(&s.user, "the denial", |t| {
        t.starts_with("web error:") && t.contains(&format!("127.0.0.1:{other} is not in http.allow"))
    });
    assert_eq!(
        other_accepted.load(Ordering::SeqCst),
        0,
        "a denied host saw a connection"
    );
    assert_eq!(daemon.terminate(), 0);
}

/// A JavaScript plugin (meow:bot 0.2) that fetches the URL it is sent with the standard `fetch`
/// and answers with what came back, or the error.
const JS_FETCH: &str = r#"import { reply } from 'meow:bot/messaging@0.2.1';
export function start(config) {}
export async function handle(event) {
  if (event.tag !== 'message') return;
  const url = event.val.text;
  try {
    const r = await fetch(url, { headers: { 'X-Asked-By': event.val.sender } });
    reply(event.val.id, `js status ${r.status}: ${await r.text()}`);
  } catch (e) {
    reply(event.val.id, `js error: ${e}`);
  }
}
"#;

/// `fetch` in a JavaScript plugin goes through the host's policy: the allowed host answers,
/// the other one is refused before any connection, and the refusal's reason is in the log.
#[test]
fn javascript_fetch_goes_through_the_same_allow_list() {
    if !tool_or_skip("componentize-js", "npm install -g @bytecodealliance/componentize-js") {
        return;
    }
    let (allowed, _) = web_server();
    let (other, other_accepted) = web_server();
    let s = setup(
        "wasi-http",
        "  - { name: jsweb, plugin: jsweb, grant: [messaging, http] }\n",
    );
    let src = s.tmp.path().join("src/jsweb");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("bot.js"), JS_FETCH).unwrap();
    std::fs::write(
        src.join("plugin.yaml"),
        "name: jsweb\nversion: 0.1.0\nkind: wasm\nentry: jsweb.wasm\ncapabilities: [messaging, http]\n",
    )
    .unwrap();
    s.bot
        .meow_in(
            s.tmp.path(),
            &["plugin", "build", "src/jsweb", "--out", s.local().to_str().unwrap()],
        )
        .ok();
    allow_http(&s, allowed);
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();

    s.user
        .meow(&["send", "bot", &format!("http://127.0.0.1:{allowed}/forecast?days=3")])
        .ok();
    // (Long: the component's first compile takes a while.)
    wait_for_all(
        &s.user,
        &daemon,
        &["js status 200: you asked for /forecast?days=3".to_owned()],
    );
    s.user
        .meow(&["send", "bot", &format!("http://127.0.0.1:{other}/secret")])
        .ok();
    wait_for_text(&s.user, "fetch refused", |t| t.starts_with("js error:"));
    assert_eq!(
        other_accepted.load(Ordering::SeqCst),
        0,
        "a denied host saw a connection"
    );
    let log = daemon.log_text();
    assert!(
        log.contains(&format!("127.0.0.1:{other} is not in http.allow")),
        "the log says why:\n{log}"
    );
    assert_eq!(daemon.terminate(), 0);
}
