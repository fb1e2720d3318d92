//! The intake's listener: HTTP/1.1 and HTTP/2 (cleartext or TLS) with the
//! limits a service open to every application needs.
//!
//! - At most [`Limits::max_connections`] connections at once; one over the
//!   cap is closed at once, so the ones within it keep being served.
//! - A request's headers must arrive within [`Limits::header_read_timeout`]
//!   (and a TLS handshake too), and may not exceed [`MAX_HEADER_BYTES`].
//! - The body is read only once the caller is authenticated, within a
//!   timeout of its own (see [`super::Intake`]).
//!
//! So a caller without a token holds at most a connection and its headers,
//! for a bounded time. On shutdown it stops accepting and lets requests in
//! progress finish, for at most [`DRAIN`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// The most bytes of request headers read.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long requests in progress get to finish after shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(10);

/// What one caller may hold of the intake.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a request's headers (or a TLS handshake) may take to arrive.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` within `limits`, over TLS when `tls` is set,
/// until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
    let acceptor = tls.map(TlsAcceptor::from);
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, most likely: wait a little.
                    warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            debug!(
                limit = limits.max_connections,
                "connection cap reached; closing a new connection"
            );
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        match &acceptor {
            None => {
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
                tokio::spawn(async move {
                    let _ = connection.await;
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let (acceptor, builder) = (acceptor.clone(), builder.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    let Ok(Ok(stream)) = handshake.await else {
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let _ = watcher.watch(connection).await;
                    drop(permit);
                });
            }
        }
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => warn!("requests still in progress after the drain; stopping"),
    }
}
