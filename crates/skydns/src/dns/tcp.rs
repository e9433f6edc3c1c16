//! The TCP listener: length-prefixed messages (RFC 1035 4.2.2) answered one
//! after the other per connection through [`DnsHandler::respond`]. At most
//! `max_connections` are open at once: a new client beyond that closes the
//! oldest connection, so a crowd of idle connections cannot lock new clients
//! out; a connection that sends nothing for `idle` (`-rtimeout`) is closed,
//! and so is one that does not take an answer within `write` (`-wtimeout`).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use hickory_server::net::xfer::Protocol;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use super::DnsHandler;

/// One open connection: the token that closes it, and whether it has been
/// counted gone (by whichever side ends it first).
#[derive(Debug, Clone)]
struct Conn {
    token: CancellationToken,
    gone: Arc<AtomicBool>,
}

impl Conn {
    /// Closes it (if still open) and counts it gone exactly once.
    fn close(&self, live: &AtomicUsize) {
        self.token.cancel();
        if !self.gone.swap(true, Ordering::AcqRel) {
            live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Open connections, oldest first.
#[derive(Debug, Default)]
struct Open {
    live: Arc<AtomicUsize>,
    order: VecDeque<Conn>,
}

impl Open {
    /// Makes room for one more under `max` by closing the oldest, and
    /// returns the new connection.
    fn admit(&mut self, max: usize, parent: &CancellationToken) -> Conn {
        while self.live.load(Ordering::Acquire) >= max {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            oldest.close(&self.live);
        }
        if self.order.len() > max.saturating_mul(2) {
            self.order.retain(|c| !c.gone.load(Ordering::Acquire));
        }
        let conn = Conn {
            token: parent.child_token(),
            gone: Arc::new(AtomicBool::new(false)),
        };
        self.order.push_back(conn.clone());
        self.live.fetch_add(1, Ordering::AcqRel);
        conn
    }
}

/// Limits of the TCP listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLimits {
    /// Connections open at once; a new one beyond closes the oldest.
    pub max_connections: usize,
    /// A connection idle (no complete message) this long is closed (`-rtimeout`).
    pub idle: Duration,
    /// An answer not taken by the client within this is dropped with its
    /// connection (`-wtimeout`): a client that asks and never reads cannot
    /// hold a task and its buffers.
    pub write: Duration,
}

/// Accepts and serves connections until `token` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    handler: DnsHandler,
    limits: TcpLimits,
    token: CancellationToken,
) {
    let mut open = Open::default();
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, src) = match accepted {
            Ok(got) => got,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::debug!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let conn = open.admit(limits.max_connections, &token);
        let (handler, live) = (handler.clone(), Arc::clone(&open.live));
        connections.spawn(async move {
            tokio::select! {
                () = conn.token.cancelled() => {}
                () = connection(stream, src, &handler, limits) => {}
            }
            conn.close(&live);
        });
    }
    connections.shutdown().await;
}

async fn connection(
    mut stream: TcpStream,
    src: SocketAddr,
    handler: &DnsHandler,
    limits: TcpLimits,
) {
    let _ = stream.set_nodelay(true);
    loop {
        let message = match tokio::time::timeout(limits.idle, read_message(&mut stream)).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %src, "tcp read failed");
                return;
            }
        };
        let Some(response) = handler.respond(&message, src, Protocol::Tcp).await else {
            continue;
        };
        let Ok(len) = u16::try_from(response.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(response.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&response);
        match tokio::time::timeout(limits.write, stream.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %src, "tcp write failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%src, "tcp client did not take its answer within -wtimeout; closed");
                return;
            }
        }
    }
}

/// One length-prefixed message; `None` at a clean end of stream.
async fn read_message(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await?;
    Ok(Some(message))
}
