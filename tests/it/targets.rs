//! A real HTTP target for tests that need to see what a call carried: it
//! listens on a free loopback port, records every request, answers with a
//! status the test sets, and stops when dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

/// A request as the target saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// Its path.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, parsed as JSON when it is JSON.
    pub body: serde_json::Value,
}

impl Seen {
    /// The value of header `name`, if any.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

#[derive(Clone)]
struct Shared {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Mutex<StatusCode>>,
    /// Whether answers echo the request's body (a careless target's error page).
    echo: Arc<AtomicBool>,
}

/// The target; `base` is its `http://127.0.0.1:PORT`.
pub struct Target {
    pub base: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

async fn record(State(shared): State<Shared>, uri: Uri, headers: HeaderMap, body: String) -> (StatusCode, String) {
    let echoed = if shared.echo.load(Ordering::Relaxed) {
        body.clone()
    } else {
        String::new()
    };
    shared.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    });
    (*shared.answer.lock().unwrap(), echoed)
}

impl Target {
    /// Starts a target that answers `answer` to every request.
    pub async fn start(answer: StatusCode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Shared {
            seen: Arc::default(),
            answer: Arc::new(Mutex::new(answer)),
            echo: Arc::default(),
        };
        let app = axum::Router::new().fallback(record).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { base, shared, server }
    }

    /// Answers `answer` from now on.
    pub fn answer(&self, answer: StatusCode) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    /// Answers with each request's body from now on.
    pub fn echo(&self) {
        self.shared.echo.store(true, Ordering::Relaxed);
    }

    /// Every request so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.server.abort();
    }
}
