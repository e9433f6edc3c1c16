//! The UDP serving loop: dedicated threads (one by default) blocking on the
//! socket, receive a batch → [`DnsHandler::respond_now`] each (response cache
//! first) → send the batch. Questions that must be forwarded go to the async
//! runtime through a bounded queue; when it is full they are dropped, so
//! overload sheds instead of queueing without bound. The thread checks the
//! cancellation token at least every [`POLL`].

use std::{
    net::{SocketAddr, UdpSocket},
    sync::Arc,
    time::Duration,
};

use hickory_server::{net::xfer::Protocol, server::Request};
use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{DnsHandler, Step};

#[cfg(target_os = "linux")]
mod batch;

/// How often the thread looks at the cancellation token when idle.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// Largest datagram read (larger ones are cut and fail to parse).
const RECV_BUFFER: usize = 4096;
/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`):
/// room to ride out bursts, a garbage flood among them.
const RECV_SOCKET_BUFFER: usize = 4 << 20;
/// Forwarded questions waiting for the runtime.
const FORWARD_QUEUE: usize = 1024;
/// Forwarded questions in flight at once.
const FORWARD_IN_FLIGHT: usize = 512;

type Forward = (Box<Request>, SocketAddr);

/// Serves `socket` on `workers` dedicated threads and forwards through a
/// task, all added to `tasks` and stopped by `token`.
///
/// # Errors
/// When the socket cannot be made blocking or cloned.
pub(crate) fn spawn<E: Send + 'static>(
    tasks: &mut JoinSet<Result<(), E>>,
    socket: UdpSocket,
    workers: usize,
    handler: DnsHandler,
    token: CancellationToken,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(POLL))?;
    if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(RECV_SOCKET_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the UDP receive buffer");
    }
    let sender = Arc::new(socket.try_clone()?);
    let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
    for _ in 1..workers.max(1) {
        let socket = socket.try_clone()?;
        let (h, t, tx) = (handler.clone(), token.clone(), tx.clone());
        tasks.spawn_blocking(move || {
            serve(&socket, &h, &tx, &t);
            Ok(())
        });
    }
    let (h, t) = (handler.clone(), token.clone());
    tasks.spawn_blocking(move || {
        serve(&socket, &h, &tx, &t);
        Ok(())
    });
    tasks.spawn(async move {
        forward_loop(rx, handler, sender, token).await;
        Ok(())
    });
    Ok(())
}

/// Answers one datagram from `src`: the bytes to send back, if any. A question
/// to forward goes to the runtime's queue (dropped when it is full).
fn answer(
    handler: &DnsHandler,
    forward: &mpsc::Sender<Forward>,
    request: &[u8],
    src: SocketAddr,
) -> Option<Vec<u8>> {
    if src.port() == 0 {
        return None;
    }
    match handler.respond_now(request, src, Protocol::Udp) {
        Step::Done(response) => response,
        Step::Forward(request) => {
            if forward.try_send((request, src)).is_err() {
                tracing::debug!(%src, "forwarding queue full: question dropped");
            }
            None
        }
    }
}

/// Whether a receive error is only the idle timeout or a signal.
fn is_idle(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// Receives up to [`batch::SIZE`] datagrams per system call (`recvmmsg`,
/// waiting for the first only) and sends their answers in one (`sendmmsg`):
/// under load the kernel is entered twice per batch instead of twice per
/// question, as Knot DNS does.
#[cfg(target_os = "linux")]
fn serve(
    socket: &UdpSocket,
    handler: &DnsHandler,
    forward: &mpsc::Sender<Forward>,
    token: &CancellationToken,
) {
    // The batch's buffers (64 KiB) are made when the first question is
    // queued: zeroing them writes every page, which a server nobody has
    // asked yet would otherwise hold.
    if !wait_for_first(socket, token) {
        return;
    }
    let mut batch = batch::Batch::new();
    while !token.is_cancelled() {
        if let Err(e) = batch.receive(socket) {
            if !is_idle(&e) {
                tracing::debug!(error = %e, "udp receive failed");
            }
            continue;
        }
        batch.answer_each(|request, src| answer(handler, forward, request, src));
        batch.send(socket);
    }
}

/// Blocks until a datagram is queued on `socket`, without taking it; false
/// when `token` is cancelled first.
#[cfg(target_os = "linux")]
fn wait_for_first(socket: &UdpSocket, token: &CancellationToken) -> bool {
    let mut probe = [0u8; 1];
    while !token.is_cancelled() {
        match socket.peek_from(&mut probe) {
            Ok(_) => return true,
            Err(e) if is_idle(&e) => {}
            // Left to the receive loop, which reports it and goes on.
            Err(_) => return true,
        }
    }
    false
}

/// One datagram per system call, where `recvmmsg` is not available.
#[cfg(not(target_os = "linux"))]
fn serve(
    socket: &UdpSocket,
    handler: &DnsHandler,
    forward: &mpsc::Sender<Forward>,
    token: &CancellationToken,
) {
    let mut buf = [0u8; RECV_BUFFER];
    while !token.is_cancelled() {
        let (len, src) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) => {
                if !is_idle(&e) {
                    tracing::debug!(error = %e, "udp receive failed");
                }
                continue;
            }
        };
        let Some(request) = buf.get(..len) else {
            continue;
        };
        if let Some(response) = answer(handler, forward, request, src)
            && let Err(e) = socket.send_to(&response, src)
        {
            tracing::debug!(error = %e, %src, "udp send failed");
        }
    }
}

async fn forward_loop(
    mut rx: mpsc::Receiver<Forward>,
    handler: DnsHandler,
    socket: Arc<UdpSocket>,
    token: CancellationToken,
) {
    let mut in_flight = JoinSet::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= FORWARD_IN_FLIGHT {
            tokio::select! {
                () = token.cancelled() => break,
                _ = in_flight.join_next() => continue,
            }
        }
        let next = tokio::select! {
            () = token.cancelled() => break,
            next = rx.recv() => next,
        };
        let Some((request, src)) = next else { break };
        let (handler, socket) = (handler.clone(), Arc::clone(&socket));
        in_flight.spawn(async move {
            let response = handler.finish_forward(&request).await;
            if let Err(e) = socket.send_to(&response, src) {
                tracing::debug!(error = %e, %src, "udp send failed");
            }
        });
    }
    in_flight.shutdown().await;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_the_first_question_leaves_it_queued_and_stops_on_cancel() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let token = CancellationToken::new();
        let canceller = {
            let token = token.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                token.cancel();
            })
        };
        assert!(
            !wait_for_first(&server, &token),
            "no question and a cancelled token: it gives up"
        );
        canceller.join().expect("canceller");

        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .send_to(b"first question", server.local_addr().expect("addr"))
            .expect("send");
        assert!(wait_for_first(&server, &CancellationToken::new()));
        let mut buf = [0u8; 64];
        let (len, from) = server.recv_from(&mut buf).expect("still queued");
        assert_eq!(&buf[..len], b"first question", "peeked, not taken");
        assert_eq!(from, client.local_addr().expect("addr"));
    }
}
