//! The TCP listener: length-prefixed messages (RFC 1035 4.2.2) answered one
//! after the other per connection through [`DnsHandler::respond`]. At most
//! `max_connections` are open at once (more are closed at once), and a
//! connection that sends nothing for `idle` is closed.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hickory_server::net::xfer::Protocol;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use super::DnsHandler;

/// Limits of the TCP listener.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// A connection idle (no complete message) this long is closed.
    pub idle: Duration,
}

/// Accepts and serves connections until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    handler: DnsHandler,
    limits: TcpLimits,
    token: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
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
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(%src, "too many tcp connections: closed");
            drop(stream);
            continue;
        };
        let (handler, t) = (handler.clone(), token.clone());
        connections.spawn(async move {
            tokio::select! {
                () = t.cancelled() => {}
                () = connection(stream, src, &handler, limits.idle) => {}
            }
            drop(permit);
        });
    }
    connections.shutdown().await;
}

async fn connection(mut stream: TcpStream, src: SocketAddr, handler: &DnsHandler, idle: Duration) {
    let _ = stream.set_nodelay(true);
    loop {
        let message = match tokio::time::timeout(idle, read_message(&mut stream)).await {
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
        let write = tokio::time::timeout(idle, stream.write_all(&out)).await;
        if !matches!(write, Ok(Ok(()))) {
            return;
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
