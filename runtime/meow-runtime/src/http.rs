//! The `http` capability: plugins' outbound HTTP requests, to the hosts `http.allow` in
//! meow.yaml names and no others, with a timeout and a cap on what is read back. One policy for
//! WASM (`meow:bot/http`) and Lua (`meow.http.request`). Redirects are not followed (a 3xx is
//! the answer): following one could leave the allowed hosts.
//!
//! ```yaml
//! http:
//!   allow: [api.example.com, "*.example.org", "127.0.0.1:8123"]   # a port: that port only;
//!                                                                 # none: 80 for http, 443 for https
//!   timeout: 10s          # the whole request (default 10s)
//!   max_response: 1MiB    # the body read back, and the body sent (default 1MiB)
//! ```

use std::io::Read;
use std::time::Duration;

use meow_plugin::{HostError, HttpRequest, HttpResponse};
use serde::Deserialize;
use ureq::http::Uri;

/// `http:` in meow.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Hosts plugins may call: `host`, `host:port` or `*.domain` (any host under it).
    pub allow: Vec<String>,
    /// The most a request may take, from connecting to the last byte (`10s`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// The largest body read back or sent (`1MiB`).
    #[serde(default = "default_max")]
    pub max_response: String,
}

fn default_timeout() -> String {
    "10s".into()
}

fn default_max() -> String {
    "1MiB".into()
}

/// One entry of `http.allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    /// A lowercase host, or with `wildcard` the domain under which any host is allowed.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl Allowed {
    fn parse(entry: &str) -> Result<Self, String> {
        let bad = || format!("{entry:?} is not host, host:port or *.domain");
        let (wildcard, rest) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        let uri: Uri = format!("http://{rest}/").parse().map_err(|_| bad())?;
        let authority = uri.authority().ok_or_else(bad)?;
        let bad_port = !port_parses(authority);
        if authority.as_str() != rest || authority.host().is_empty() || rest.contains('@') || bad_port {
            return Err(bad());
        }
        Ok(Self {
            host: authority.host().to_ascii_lowercase(),
            wildcard,
            port: authority.port_u16(),
        })
    }

    fn admits(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host_ok = if self.wildcard {
            host.strip_suffix(&self.host).is_some_and(|head| head.ends_with('.'))
        } else {
            host == self.host
        };
        host_ok && port == self.port.unwrap_or(default_port)
    }
}

/// Whether the authority's port, if it gives one, is a number that fits 16 bits (`http` reads
/// `host:99999` as a host with no port).
fn port_parses(authority: &ureq::http::uri::Authority) -> bool {
    authority.as_str().ends_with(authority.host()) || authority.port_u16().is_some()
}

/// Makes the requests plugins ask for, under the policy of meow.yaml.
pub struct HttpClient {
    allow: Vec<Allowed>,
    max: u64,
    timeout: Duration,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpClient({:?})", self.allow)
    }
}

/// Checks `http:` of meow.yaml; the error names the key.
pub fn check(s: &HttpSettings) -> Result<(), (String, String)> {
    for (i, entry) in s.allow.iter().enumerate() {
        Allowed::parse(entry).map_err(|e| (format!("http.allow[{i}]"), e))?;
    }
    meow_yaml::duration(&s.timeout).map_err(|e| ("http.timeout".into(), e))?;
    meow_yaml::size(&s.max_response).map_err(|e| ("http.max_response".into(), e))?;
    Ok(())
}

impl HttpClient {
    /// A client for checked settings ([`check`]).
    pub fn new(s: &HttpSettings) -> Self {
        let timeout = meow_yaml::duration(&s.timeout).unwrap_or(Duration::from_secs(10));
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .user_agent("meow")
            .build();
        Self {
            allow: s.allow.iter().filter_map(|e| Allowed::parse(e).ok()).collect(),
            max: meow_yaml::size(&s.max_response).unwrap_or(1 << 20),
            timeout,
            agent: config.into(),
        }
    }

    /// Whether `url` may be called; why not if it may not.
    pub fn permits(&self, url: &str) -> Result<(), HostError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| HostError::Invalid(format!("http: {url:?} is not a URL")))?;
        let default_port = match uri.scheme_str() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return Err(HostError::Invalid("http: only http:// and https:// URLs".into())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| HostError::Invalid(format!("http: {url:?} names no host")))?;
        let host = authority.host().to_ascii_lowercase();
        if !port_parses(authority) {
            return Err(HostError::Invalid(format!("http: {url:?} has a bad port")));
        }
        let port = authority.port_u16().unwrap_or(default_port);
        if self.allow.iter().any(|a| a.admits(&host, port, default_port)) {
            Ok(())
        } else {
            Err(HostError::Denied(format!(
                "http: {host}:{port} is not in http.allow of meow.yaml"
            )))
        }
    }

    /// Makes `request` for `instance` (blocking, at most the timeout).
    pub fn fetch(&self, instance: &str, request: HttpRequest) -> Result<HttpResponse, HostError> {
        self.permits(&request.url)?;
        if request.body.len() as u64 > self.max {
            return Err(HostError::Quota(format!(
                "http: a body of {} bytes is larger than http.max_response ({} bytes)",
                request.body.len(),
                self.max
            )));
        }
        let mut builder = ureq::http::Request::builder()
            .method(request.method.as_str())
            .uri(&request.url);
        for (name, value) in &request.headers {
            // The host is the URL's, checked above: a Host header naming another is refused.
            if name.eq_ignore_ascii_case("host") {
                return Err(HostError::Invalid("http: the Host header comes from the URL".into()));
            }
            builder = builder.header(name, value);
        }
        let host = request
            .url
            .parse::<Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned));
        let sent = if request.body.is_empty() {
            builder.body(()).map(|r| self.agent.run(r))
        } else {
            builder.body(request.body).map(|r| self.agent.run(r))
        };
        let answer = sent
            .map_err(|e| HostError::Invalid(format!("http: {e}")))?
            .map_err(|e| self.failure(e))?;
        let status = answer.status().as_u16();
        tracing::debug!(plugin = instance, host = ?host, status, "http request");
        let headers = answer
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        answer
            .into_body()
            .into_reader()
            .take(self.max + 1)
            .read_to_end(&mut body)
            .map_err(|e| HostError::Failed(format!("http: reading the answer: {e}")))?;
        if body.len() as u64 > self.max {
            return Err(HostError::Quota(format!(
                "http: the answer is larger than http.max_response ({} bytes)",
                self.max
            )));
        }
        Ok(HttpResponse { status, headers, body })
    }

    fn failure(&self, e: ureq::Error) -> HostError {
        match e {
            ureq::Error::Timeout(_) => HostError::Failed(format!(
                "http: no answer within {} s (http.timeout)",
                self.timeout.as_secs_f64()
            )),
            e => HostError::Failed(format!("http: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(allow: &[&str]) -> HttpClient {
        HttpClient::new(&HttpSettings {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            timeout: "2s".into(),
            max_response: "1KiB".into(),
        })
    }

    #[test]
    fn only_allowed_hosts_and_ports_pass() {
        let c = client(&["api.example.com", "*.example.org", "127.0.0.1:8123"]);
        for ok in [
            "https://api.example.com/v1?q=1",
            "http://API.example.com/",
            "https://a.example.org/x",
            "https://deep.a.example.org/",
            "http://127.0.0.1:8123/api/states",
        ] {
            assert_eq!(c.permits(ok), Ok(()), "{ok}");
        }
        for denied in [
            "https://example.org/",              // the wildcard's domain itself
            "https://evilexample.org/",          // not under it
            "https://api.example.com.evil.net/", // a suffix trick
            "https://api.example.com:8443/",     // another port
            "http://127.0.0.1/",                 // the listed port only
            "http://localhost:8123/",            // another name for it
            "https://user@evil.net/?api.example.com",
        ] {
            assert!(matches!(c.permits(denied), Err(HostError::Denied(_))), "{denied}");
        }
        for invalid in [
            "ftp://api.example.com/",
            "not a url",
            "/relative",
            "http://api.example.com:99999/",
        ] {
            assert!(matches!(c.permits(invalid), Err(HostError::Invalid(_))), "{invalid}");
        }
    }

    /// The `http:` block of docs/PLUGINS.md is a valid meow.yaml section, and a bad entry is
    /// refused with its key and line.
    #[test]
    fn the_guides_settings_load_and_a_bad_entry_names_its_line() {
        let guide = include_str!("../../../docs/PLUGINS.md");
        let at = guide.find("# meow.yaml\nhttp:").unwrap();
        let block = &guide[at..at + guide[at..].find("```").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meow.yaml");
        std::fs::write(&path, format!("version: 1\n{block}")).unwrap();
        let cfg = crate::config::RunConfig::load(&path).unwrap();
        let client = HttpClient::new(cfg.http.as_ref().unwrap());
        assert_eq!(client.permits("https://api.open-meteo.com/v1/forecast"), Ok(()));
        std::fs::write(&path, "version: 1\nhttp:\n  allow: [ok.org, \"https://x.org\"]\n").unwrap();
        let err = crate::config::RunConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("http.allow[1]") && err.contains("is not host, host:port or *.domain"),
            "{err}"
        );
    }

    #[test]
    fn a_denied_request_never_connects_and_bad_settings_name_their_key() {
        let c = client(&[]);
        let r = HttpRequest {
            method: "GET".into(),
            url: "http://127.0.0.1:9/".into(),
            headers: vec![],
            body: vec![],
        };
        assert!(matches!(c.fetch("t", r.clone()), Err(HostError::Denied(m)) if m.contains("127.0.0.1:9")));
        let allowed = client(&["127.0.0.1:9"]);
        let spoofed = HttpRequest {
            headers: vec![("HOST".into(), "internal.example".into())],
            ..r
        };
        assert!(matches!(allowed.fetch("t", spoofed), Err(HostError::Invalid(_))));
        let bad = HttpSettings {
            allow: vec!["http://x.org".into()],
            timeout: "10s".into(),
            max_response: "1MiB".into(),
        };
        assert_eq!(check(&bad).unwrap_err().0, "http.allow[0]");
        for entry in ["x.org/path", "a@b.org", "", "x.org:99999"] {
            assert!(Allowed::parse(entry).is_err(), "{entry:?}");
        }
    }
}
