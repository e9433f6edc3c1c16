//! Serving the router on a bound listener, plain or TLS, within the
//! [`ApiLimits`], until the cancellation token fires.

use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio_util::sync::CancellationToken;

use super::limits::{self, ApiLimits};
use crate::Error;

/// Serves `app` on `listener` (over TLS when `tls` is given) until `token`
/// is cancelled, then drains in-flight requests for up to five seconds. At most `limits.max_connections`
/// connections (more are closed on accept), and a request's header block
/// must arrive within `limits.header_read_timeout` of the connection's start
/// or of the previous response (which also closes idle keep-alive
/// connections).
///
/// # Errors
/// [`Error::Io`] when serving fails.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<RustlsConfig>,
    token: CancellationToken,
    limits: ApiLimits,
) -> Result<(), Error> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let stop_task = tokio::spawn(async move {
        token.cancelled().await;
        stopper.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let connections = limits::ConnectionLimit::new(limits.max_connections);
    let make = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = match tls {
        None => {
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(connections)
                .handle(handle)
                .first_request_timeout(limits.header_read_timeout)
                .http1_only();
            server
                .http_builder()
                .http1()
                .header_read_timeout(limits.header_read_timeout);
            server.serve(make).await
        }
        Some(config) => {
            let acceptor = RustlsAcceptor::new(config).acceptor(connections);
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle)
                .first_request_timeout(limits.header_read_timeout);
            server
                .http_builder()
                .http1()
                .header_read_timeout(limits.header_read_timeout);
            server
                .http_builder()
                .http2()
                .max_concurrent_streams(MAX_H2_STREAMS)
                .keep_alive_interval(limits.header_read_timeout)
                .keep_alive_timeout(limits.header_read_timeout);
            server.serve(make).await
        }
    };
    stop_task.abort();
    served?;
    Ok(())
}

/// Concurrent requests on one HTTP/2 connection (TLS only).
const MAX_H2_STREAMS: u32 = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::app;

    async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(within, s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    #[tokio::test]
    async fn serve_closes_slow_headers_and_connections_beyond_the_cap() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ApiLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_millis(300),
            ..ApiLimits::default()
        };
        let token = CancellationToken::new();
        let server = tokio::spawn(serve(listener, app().await, None, token.clone(), limits));
        let mut slow1 = tokio::net::TcpStream::connect(addr).await.expect("c1");
        slow1.write_all(b"GET /health HT").await.expect("part");
        let mut slow2 = tokio::net::TcpStream::connect(addr).await.expect("c2");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = tokio::net::TcpStream::connect(addr).await.expect("c3");
        assert!(
            closed_within(&mut third, Duration::from_millis(200)).await,
            "a connection beyond the cap is closed at once"
        );
        assert!(
            closed_within(&mut slow1, Duration::from_secs(2)).await,
            "headers too slow"
        );
        assert!(
            closed_within(&mut slow2, Duration::from_secs(2)).await,
            "idle too long"
        );
        let mut ok = tokio::net::TcpStream::connect(addr).await.expect("c4");
        ok.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut reply = Vec::new();
        ok.read_to_end(&mut reply).await.expect("reply");
        assert!(
            reply.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        token.cancel();
        server.await.expect("task").expect("served");
    }
}
