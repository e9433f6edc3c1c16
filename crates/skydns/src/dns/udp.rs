//! The UDP serving loop, in unbound's shape: dedicated threads (one by
//! default), each running its own single-threaded async runtime. A thread
//! waits until the socket is readable, takes a batch of questions
//! (`recvmmsg`), answers each with [`DnsHandler::respond_now`] (response
//! cache first) and sends the answers in one `sendmmsg`. A question to
//! forward becomes a task on the same thread, so a cache miss costs no hop
//! between threads: the upstream's reply wakes the same event loop that waits
//! for clients. At most [`FORWARD_IN_FLIGHT`] forwarded questions are in
//! flight per thread; more are dropped, so overload sheds instead of
//! queueing without bound. Each thread stops when the token is cancelled.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::Arc,
};

use hickory_server::net::xfer::Protocol;
use tokio::{sync::oneshot, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{DnsHandler, Step};

#[cfg(target_os = "linux")]
mod batch;

/// Largest datagram read (larger ones are cut and fail to parse).
const RECV_BUFFER: usize = 4096;
/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`):
/// room to ride out bursts, a garbage flood among them.
const RECV_SOCKET_BUFFER: usize = 4 << 20;
/// Forwarded questions in flight at once on one thread.
const FORWARD_IN_FLIGHT: usize = 1024;
/// Batches taken in a row before the forwarding tasks get their turn.
#[cfg(target_os = "linux")]
const BATCHES_PER_TURN: usize = 8;

/// Serves `socket` on `workers` dedicated threads, each with its own
/// runtime, all added to `tasks` and stopped by `token`. Returns once every
/// thread has its runtime and socket.
///
/// # Errors
/// When the socket cannot be made non-blocking or cloned, or a thread cannot
/// make its runtime or register the socket with it.
pub(crate) async fn spawn<E: Send + 'static>(
    tasks: &mut JoinSet<Result<(), E>>,
    socket: UdpSocket,
    workers: usize,
    handler: DnsHandler,
    token: CancellationToken,
) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(RECV_SOCKET_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the UDP receive buffer");
    }
    let handler = Arc::new(handler);
    let mut started = Vec::new();
    for _ in 0..workers.max(1) {
        let socket = socket.try_clone()?;
        let (handler, token) = (Arc::clone(&handler), token.clone());
        let (ready, is_ready) = oneshot::channel();
        started.push(is_ready);
        tasks.spawn_blocking(move || {
            serve_thread(socket, &handler, &token, ready);
            Ok(())
        });
    }
    for is_ready in started {
        is_ready
            .await
            .map_err(|_| std::io::Error::other("a UDP thread ended before it started"))??;
    }
    Ok(())
}

/// One serving thread: makes its runtime and registers its socket (the
/// outcome goes to `ready`), then serves until `token` is cancelled.
fn serve_thread(
    socket: UdpSocket,
    handler: &Arc<DnsHandler>,
    token: &CancellationToken,
    ready: oneshot::Sender<std::io::Result<()>>,
) {
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            let socket = {
                let _entered = runtime.enter();
                tokio::net::UdpSocket::from_std(socket)?
            };
            Ok((runtime, Arc::new(socket)))
        });
    let (runtime, socket) = match setup {
        Ok(got) => {
            let _ = ready.send(Ok(()));
            got
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime.block_on(serve(socket, handler, token));
}

/// The questions a thread forwards: its tasks, bounded.
struct Forwards {
    tasks: JoinSet<()>,
    socket: Arc<tokio::net::UdpSocket>,
    handler: Arc<DnsHandler>,
}

impl Forwards {
    fn new(socket: &Arc<tokio::net::UdpSocket>, handler: &Arc<DnsHandler>) -> Self {
        Self {
            tasks: JoinSet::new(),
            socket: Arc::clone(socket),
            handler: Arc::clone(handler),
        }
    }

    /// Answers one datagram from `src`: the bytes to send back now, if any.
    /// A question to forward becomes a task that sends its own answer
    /// (dropped when [`FORWARD_IN_FLIGHT`] are in flight).
    fn answer(&mut self, request: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        if src.port() == 0 {
            return None;
        }
        match self.handler.respond_now(request, src, Protocol::Udp) {
            Step::Done(response) => response,
            Step::Forward(request) => {
                while self.tasks.try_join_next().is_some() {}
                if self.tasks.len() >= FORWARD_IN_FLIGHT {
                    tracing::debug!(%src, "too many forwarded questions in flight: question dropped");
                    return None;
                }
                let (handler, socket) = (Arc::clone(&self.handler), Arc::clone(&self.socket));
                self.tasks.spawn(async move {
                    let response = handler.finish_forward(&request).await;
                    if let Err(e) = socket.send_to(&response, src).await {
                        tracing::debug!(error = %e, %src, "udp send failed");
                    }
                });
                None
            }
        }
    }
}

/// Takes up to [`batch::SIZE`] datagrams per system call (`recvmmsg`) and
/// sends their answers in one (`sendmmsg`): under load the kernel is entered
/// twice per batch instead of twice per question, as Knot DNS does.
#[cfg(target_os = "linux")]
async fn serve(
    socket: Arc<tokio::net::UdpSocket>,
    handler: &Arc<DnsHandler>,
    token: &CancellationToken,
) {
    use tokio::io::Interest;

    let mut forwards = Forwards::new(&socket, handler);
    // The batch's buffers (64 KiB) are made when the first question comes:
    // zeroing them writes every page, which a server nobody has asked yet
    // would otherwise hold.
    let mut batch = None;
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            ready = socket.readable() => {
                if let Err(e) = ready {
                    tracing::debug!(error = %e, "udp socket not readable");
                    continue;
                }
            }
        }
        let batch = batch.get_or_insert_with(batch::Batch::new);
        let mut drained = false;
        for _ in 0..BATCHES_PER_TURN {
            match socket.try_io(Interest::READABLE, || batch.receive(&*socket)) {
                Ok(()) => {}
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::debug!(error = %e, "udp receive failed");
                    }
                    drained = true;
                    break;
                }
            }
            batch.answer_each(|request, src| forwards.answer(request, src));
            batch.send(&*socket);
        }
        if !drained {
            // Questions keep coming: let the forwarded ones answer too.
            tokio::task::yield_now().await;
        }
    }
    forwards.tasks.shutdown().await;
}

/// One datagram per system call, where `recvmmsg` is not available.
#[cfg(not(target_os = "linux"))]
async fn serve(
    socket: Arc<tokio::net::UdpSocket>,
    handler: &Arc<DnsHandler>,
    token: &CancellationToken,
) {
    let mut forwards = Forwards::new(&socket, handler);
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let received = tokio::select! {
            () = token.cancelled() => break,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, src) = match received {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let Some(request) = buf.get(..len) else {
            continue;
        };
        if let Some(response) = forwards.answer(request, src)
            && let Err(e) = socket.send_to(&response, src).await
        {
            tracing::debug!(error = %e, %src, "udp send failed");
        }
    }
    forwards.tasks.shutdown().await;
}
