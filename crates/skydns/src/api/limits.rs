//! Limits that keep the HTTP API answering under abuse: a cap on open
//! connections, time limits on reading a request (slowloris), and a
//! per-client rate limit on writes.
//!
//! - [`ApiLimits`] holds the numbers (generous defaults, see
//!   `docs/security.md`).
//! - [`ConnectionLimit`] is an axum-server acceptor: a connection beyond the
//!   cap is closed at once, so file descriptors stay bounded.
//! - [`WriteLimiter`] is a token bucket per client address; a write beyond
//!   it gets 429 with a JSON error and `Retry-After`.
//! - `read_body` reads a write's body within a time limit (408), so a
//!   client that sends headers and then trickles the body cannot hold a
//!   handler forever.
//!
//! The request-level checks run in the API's one middleware (`gate.rs`).

use std::{
    future::{Ready, ready},
    io,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use axum_server::accept::Accept;
use dashmap::DashMap;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use super::MAX_BODY;

/// Most HTTP connections open at once (default of [`ApiLimits::max_connections`]).
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a client has to send a request's header block, counted from the
/// connection's start or from the end of the previous response; also the
/// idle keep-alive timeout.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a write's body once the headers are in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Writes (PUT/PATCH/DELETE) per second allowed to one client address.
pub const WRITE_RATE: u32 = 100_000;
/// Writes one client address may send in a burst above [`WRITE_RATE`].
pub const WRITE_BURST: u32 = 200_000;
/// Client addresses tracked by the rate limiter before idle ones are dropped.
const MAX_TRACKED_CLIENTS: usize = 65_536;

/// The API's limits. [`Default`] gives the documented constants, sized so
/// that 64 concurrent clients at well above 50,000 requests/s from one
/// address are never throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Most connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Header read timeout, also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Time to receive a write's body.
    pub body_read_timeout: Duration,
    /// Writes per second per client address (0: no rate limit).
    pub write_rate: u32,
    /// Burst of writes per client address.
    pub write_burst: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            write_rate: WRITE_RATE,
            write_burst: WRITE_BURST,
        }
    }
}

/// An acceptor that holds one of a fixed number of slots for each
/// connection, and closes a connection at once when none is free.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    max: usize,
}

impl ConnectionLimit {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

impl<I, S> Accept<I, S> for ConnectionLimit {
    type Stream = Limited<I>;
    type Service = S;
    type Future = Ready<io::Result<(Limited<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        ready(match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => Ok((
                Limited {
                    io: stream,
                    _permit: permit,
                },
                service,
            )),
            Err(_) => {
                tracing::debug!(
                    max = self.max,
                    "HTTP connection closed: the connection limit is reached"
                );
                Err(io::Error::other("HTTP connection limit reached"))
            }
        })
    }
}

/// A connection holding a slot of a [`ConnectionLimit`] until it is dropped.
#[derive(Debug)]
pub struct Limited<I> {
    io: I,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Limited<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Limited<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per client address (IPv4 address, or IPv6 /64) for writes.
#[derive(Debug)]
pub struct WriteLimiter {
    rate: f64,
    burst: f64,
    buckets: DashMap<IpAddr, Bucket>,
    last_prune: Mutex<Instant>,
}

impl WriteLimiter {
    /// `rate` writes per second with bursts of `burst` per client; `rate` 0
    /// disables the limit.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: DashMap::new(),
            last_prune: Mutex::new(Instant::now()),
        }
    }

    /// Takes one token for `client`; `Err(wait)` says how long until the
    /// next one.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        if self.buckets.len() >= MAX_TRACKED_CLIENTS {
            self.prune(now);
        }
        let mut bucket = self.buckets.entry(key(client)).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// Drops clients whose bucket has refilled (idle ones), at most once a
    /// second, so the map stays bounded by the clients active recently.
    fn prune(&self, now: Instant) {
        {
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if now.saturating_duration_since(*last) < Duration::from_secs(1) {
                return;
            }
            *last = now;
        }
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }

    /// Client addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// IPv4 addresses are limited one by one; IPv6 clients by /64, since one
/// host usually owns a whole /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

/// PUT, PATCH, DELETE and POST: the requests that are rate-limited and
/// whose bodies are read in time.
pub(super) fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::PUT | Method::PATCH | Method::DELETE | Method::POST
    )
}

/// A JSON error answer, in the shape of every other API error.
fn json_error(status: StatusCode, error: String, field: Option<&str>) -> Response {
    let body = skydns_api::ApiError {
        error,
        field: field.map(str::to_string),
    };
    (status, axum::Json(body)).into_response()
}

/// Takes a write token for the request's client; `Err` is the 429 answer
/// (JSON error and `Retry-After`) for a write beyond the client's rate.
#[allow(
    clippy::result_large_err,
    reason = "the error is the answer itself, built once on a path that ends the request"
)]
pub(super) fn admit_write(limiter: &WriteLimiter, req: &Request) -> Result<(), Response> {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |c| c.0.ip());
    limiter.check(client, Instant::now()).map_err(|wait| {
        let mut resp = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many writes from {client}: at most {} per second (burst {}); retry later",
                limiter.rate, limiter.burst
            ),
            None,
        );
        let secs = wait.as_secs().max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    })
}

/// Reads the request's body within `timeout` (408 otherwise) and at most
/// [`MAX_BODY`] bytes (413), and gives the request back with the body
/// buffered; `Err` is the error answer.
#[allow(
    clippy::result_large_err,
    reason = "the error is the answer itself, built once on a path that ends the request"
)]
pub(super) async fn read_body(req: Request, timeout: Duration) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => Err(json_error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} s",
                timeout.as_secs_f64()
            ),
            Some("body"),
        )),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|inner| inner.is::<http_body_util::LengthLimitError>())
                || e.into_inner().is::<http_body_util::LengthLimitError>();
            Err(if too_large {
                json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is larger than {MAX_BODY} bytes"),
                    Some("body"),
                )
            } else {
                json_error(
                    StatusCode::BAD_REQUEST,
                    "request body could not be read".to_string(),
                    Some("body"),
                )
            })
        }
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, Body::from(bytes))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = WriteLimiter::new(10, 5);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check(ip, t0).is_ok());
        }
        let wait = limiter.check(ip, t0).expect_err("burst used up");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another client is not affected.
        assert!(limiter.check("10.0.0.2".parse().expect("ip"), t0).is_ok());
        // 100 ms later one token is back.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.check(ip, t1).is_ok());
        assert!(limiter.check(ip, t1).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2::ffff".parse().expect("ip");
        assert_eq!(key(a), key(b));
        let m: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(key(m), "10.0.0.1".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn idle_clients_are_pruned() {
        let limiter = WriteLimiter::new(1000, 10);
        let t0 = Instant::now();
        for i in 0..100u8 {
            assert!(limiter.check(IpAddr::from([10, 0, 0, i]), t0).is_ok());
        }
        assert_eq!(limiter.tracked(), 100);
        limiter.prune(t0 + Duration::from_secs(2));
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let limiter = WriteLimiter::new(0, 0);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.check(ip, t0).is_ok());
        }
    }
}
