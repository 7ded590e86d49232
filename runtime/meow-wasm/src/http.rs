//! `wasi:http` for guests: JavaScript's `fetch`, Python's and Rust's wasi-http bindings send
//! their requests through the host's one HTTP policy (capability `http`, the allow-list of
//! meow.yaml, its timeout and its size cap), the same that serves `meow:bot/http.fetch` and Lua's
//! `meow.http.request`, never through a client of their own.
//!
//! A guest waits for its answer inside WASI (it subscribes to the response and polls): the one
//! wait this host allows, and only in a call that has sent a request (see [`Hooks::sent`]),
//! for at most the call's time budget.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use meow_plugin::{Host, HostError, HttpRequest, Level};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpHooks};

/// The largest request body a guest may send: the policy's own cap (`http.max_response`)
/// applies below it; this one bounds what is gathered before the policy sees the request.
const MAX_REQUEST_BODY: usize = 16 << 20;

/// What a store holds for `wasi:http`.
pub(crate) struct HttpState {
    pub(crate) ctx: WasiHttpCtx,
    pub(crate) hooks: Hooks,
}

impl HttpState {
    pub(crate) fn new(host: Host, call_ms: u64) -> Self {
        Self {
            ctx: WasiHttpCtx::new(),
            hooks: Hooks {
                host,
                sent: false,
                budget: Duration::from_millis(call_ms),
            },
        }
    }

    /// How long a poll may wait in the current call: the call's budget once it has sent a
    /// request, else not at all.
    pub(crate) fn may_wait(&self) -> Option<Duration> {
        self.hooks.sent.then_some(self.hooks.budget)
    }

    /// A call starts: it has sent nothing yet.
    pub(crate) fn new_call(&mut self) {
        self.hooks.sent = false;
    }
}

/// The hooks `wasmtime-wasi-http` calls: requests go to [`Host::http`].
pub(crate) struct Hooks {
    host: Host,
    /// Whether the current call has sent a request (and may therefore wait for it).
    sent: bool,
    budget: Duration,
}

type Sent = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for Hooks {
    /// The Host header comes from the URL the policy checked, set by the client; a guest cannot
    /// set one (it is among the forbidden headers).
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Sent,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, Sent), HttpError>> + Send> {
        self.sent = true;
        let host = self.host.clone();
        Box::new(async move {
            let request = gather(request).await?;
            let url = request.url.clone();
            let asker = host.clone();
            let answer = tokio::task::spawn_blocking(move || asker.http(request))
                .await
                .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
            let answer = answer.map_err(|e| {
                // The guest gets a WASI error code; the reason goes to the instance's log.
                host.log(Level::Warn, &format!("wasi:http request to {url}: {e}"));
                error_code(e)
            })?;
            let mut response = http::Response::builder().status(answer.status);
            for (name, value) in answer.headers {
                response = response.header(name, value);
            }
            let body = Full::new(Bytes::from(answer.body))
                .map_err(|never| match never {})
                .boxed_unsync();
            let response = response
                .body(body)
                .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
            Ok((response, Box::new(async { Ok(()) }) as Sent))
        })
    }
}

/// The request as the host's policy takes it, with its body read whole (up to
/// [`MAX_REQUEST_BODY`]).
async fn gather(request: http::Request<WasiBody>) -> Result<HttpRequest, HttpError> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|_| HttpError::HttpRequestBodySize(None))?
        .to_bytes();
    let mut headers = Vec::new();
    for (name, value) in &parts.headers {
        let value = value.to_str().map_err(|_| HttpError::HttpRequestHeaderSize {
            field_name: Some(name.as_str().to_owned()),
            field_size: None,
        })?;
        headers.push((name.as_str().to_owned(), value.to_owned()));
    }
    Ok(HttpRequest {
        method: parts.method.as_str().to_owned(),
        url: parts.uri.to_string(),
        headers,
        body: body.to_vec(),
    })
}

/// The WASI error code for a refusal or failure of the host's policy.
fn error_code(e: HostError) -> HttpError {
    match e {
        HostError::Denied(_) => HttpError::HttpRequestDenied,
        HostError::Quota(_) => HttpError::HttpResponseBodySize(None),
        HostError::Invalid(_) => HttpError::HttpRequestUriInvalid,
        e => HttpError::InternalError(Some(e.to_string())),
    }
}
