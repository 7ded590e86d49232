//! `wasi:http` for guests: JavaScript's `fetch`, Python's and Rust's wasi-http bindings send
//! their requests through the host's one HTTP policy (capability `http`, the allow-list of
//! meow.yaml, its timeout and its size cap), the same that serves `meow:bot/http.fetch` and Lua's
//! `meow.http.request`, never through a client of their own.
//!
//! A guest waits for its answer inside WASI (it subscribes to the response and polls): the one
//! wait this host allows, and only in a call that has sent a request (see [`Hooks::sent`]),
//! for at most what is left of the call's time budget. At most [`MAX_IN_FLIGHT`] requests of
//! one instance are in flight at once: each holds a thread while it waits for its answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use meow_plugin::{Host, HostError, HttpRequest, Level};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpHooks};

/// The largest request body a guest may send: the policy's own cap (`http.max_response`)
/// applies below it; this one bounds what is gathered before the policy sees the request.
const MAX_REQUEST_BODY: usize = 16 << 20;
/// Requests one instance may have in flight at once (each holds a thread while it waits).
pub(crate) const MAX_IN_FLIGHT: usize = 4;

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
                started: Instant::now(),
                in_flight: Arc::new(AtomicUsize::new(0)),
            },
        }
    }

    /// How long a poll may wait in the current call: what is left of the call's budget once
    /// it has sent a request, else not at all.
    pub(crate) fn may_wait(&self) -> Option<Duration> {
        let left = self.hooks.budget.saturating_sub(self.hooks.started.elapsed());
        self.hooks.sent.then_some(left)
    }

    /// A call starts: it has sent nothing yet, and has its whole budget.
    pub(crate) fn new_call(&mut self) {
        self.hooks.sent = false;
        self.hooks.started = Instant::now();
    }
}

/// One request in flight, counted until it is answered or dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more, unless [`MAX_IN_FLIGHT`] are already.
    fn start(count: &Arc<AtomicUsize>) -> Option<InFlight> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(count.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The hooks `wasmtime-wasi-http` calls: requests go to [`Host::http`].
pub(crate) struct Hooks {
    host: Host,
    /// Whether the current call has sent a request (and may therefore wait for it).
    sent: bool,
    budget: Duration,
    /// When the current call started.
    started: Instant,
    /// Requests not answered yet.
    in_flight: Arc<AtomicUsize>,
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
        let counted = InFlight::start(&self.in_flight);
        Box::new(async move {
            let Some(_counted) = counted else {
                host.log(
                    Level::Warn,
                    &format!(
                        "wasi:http: {MAX_IN_FLIGHT} requests already in flight; {} refused",
                        request.uri()
                    ),
                );
                return Err(HttpError::ConnectionLimitReached);
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_requests_are_capped_and_released() {
        let count = Arc::new(AtomicUsize::new(0));
        let held: Vec<InFlight> = (0..MAX_IN_FLIGHT).map(|_| InFlight::start(&count).unwrap()).collect();
        assert!(InFlight::start(&count).is_none(), "one more than the cap is refused");
        drop(held);
        assert_eq!(count.load(Ordering::Acquire), 0);
        assert!(InFlight::start(&count).is_some(), "answered requests make room");
    }
}
