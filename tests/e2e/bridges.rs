//! The `http` capability end to end: a Lua plugin calls a web server on 127.0.0.1 that meow.yaml
//! allows, and is denied one it does not allow (which never sees a connection), and an instance
//! without the capability is denied outright (issue 18).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{Daemon, setup, wait_for_text};

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
    let yaml = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!("{yaml}http:\n  allow: [\"127.0.0.1:{allowed}\"]\n  timeout: 5s\n"),
    )
    .unwrap();
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
