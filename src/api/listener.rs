//! The operator API's front door: at most [`MAX_CONNECTIONS`] connections open at once, and
//! each request answered within [`REQUEST_TIMEOUT`].
//!
//! Where it sits: under [`super::http::serve`]. A connection over the cap waits in the
//! kernel's accept queue until one closes, so a client that opens hundreds of connections
//! (or holds them open) cannot take the engine's memory or file descriptors; each accepted
//! connection carries its client's address ([`ClientAddr`]) for the sign-in brake. The live
//! feed (`/api/v1/live`, a stream that lasts as long as the dashboard) is the one route without
//! a request timeout.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::ApiError;

/// Connections open at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// A request not answered in this time gets `503` and its work is dropped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A TCP listener that holds a permit per open connection.
#[derive(Debug)]
pub struct Capped {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl Capped {
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

/// An accepted connection; its permit goes back when it closes.
#[derive(Debug)]
pub struct CappedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for Capped {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CappedStream, SocketAddr) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            // The semaphore is never closed; if it were, accept nothing more.
            return std::future::pending().await;
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    return (
                        CappedStream {
                            stream,
                            _permit: permit,
                        },
                        addr,
                    )
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "The API cannot accept a connection; retrying.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The client's address, as a request's `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, Capped>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, Capped>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// The middleware: every request but the live feed answered within [`REQUEST_TIMEOUT`].
pub(super) async fn deadline(req: Request, next: Next) -> Response {
    if req.uri().path() == "/api/v1/live" {
        return next.run(req).await;
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request was not answered within {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn connections_over_the_cap_wait_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(Capped::new(listener, 2), app).await });
        // Two idle connections take both permits.
        let a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let http = reqwest::Client::new();
        let third = tokio::time::timeout(
            Duration::from_millis(500),
            http.get(format!("http://{addr}/")).send(),
        )
        .await;
        assert!(third.is_err(), "a third connection was served: {third:?}");
        // One closes: the next is served.
        let mut a = a;
        a.shutdown().await.unwrap();
        drop(a);
        let served = tokio::time::timeout(
            Duration::from_secs(5),
            http.get(format!("http://{addr}/")).send(),
        )
        .await;
        assert_eq!(served.unwrap().unwrap().status(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_hangs_is_answered_503_and_the_live_feed_is_not_cut() {
        use tower::ServiceExt;
        let app = Router::new()
            .route("/slow", get(std::future::pending::<&'static str>))
            .route(
                "/api/v1/live",
                get(|| async {
                    tokio::time::sleep(REQUEST_TIMEOUT * 2).await;
                    "still here"
                }),
            )
            .layer(axum::middleware::from_fn(deadline));
        let get = |uri: &str| {
            Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let slow = app.clone().oneshot(get("/slow")).await.unwrap();
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(slow.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("not answered within 30 s"));
        let live = app.oneshot(get("/api/v1/live")).await.unwrap();
        assert_eq!(live.status(), StatusCode::OK);
    }
}
