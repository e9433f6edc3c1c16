//! Batched datagram I/O: up to [`SIZE`] questions in with one `recvmmsg`,
//! their answers out with one `sendmmsg` (nix's safe wrappers; no buffer is
//! allocated per datagram).

use std::{
    io::{IoSlice, IoSliceMut},
    net::{SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd,
};

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

use super::RECV_BUFFER;

/// Datagrams taken from, or given to, the kernel in one system call.
pub(super) const SIZE: usize = 16;

/// Buffers for one batch: what came in, and the answers going out.
pub(super) struct Batch {
    buffers: Box<[[u8; RECV_BUFFER]; SIZE]>,
    /// Length and sender of each datagram received, in `buffers` order.
    received: Vec<(usize, Option<SockaddrStorage>)>,
    /// Answers waiting to be sent, each with its destination.
    replies: Vec<(Vec<u8>, SockaddrStorage)>,
    receive_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
}

impl Batch {
    pub(super) fn new() -> Self {
        // Zeroed by the allocator rather than built on the stack and copied;
        // the conversion cannot fail (SIZE elements), the fallback only
        // avoids a panic path.
        let buffers = vec![[0; RECV_BUFFER]; SIZE]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| Box::new([[0; RECV_BUFFER]; SIZE]));
        Self {
            buffers,
            received: Vec::with_capacity(SIZE),
            replies: Vec::with_capacity(SIZE),
            receive_headers: MultiHeaders::preallocate(SIZE, None),
            send_headers: MultiHeaders::preallocate(SIZE, None),
        }
    }

    /// Takes the datagrams queued, up to [`SIZE`]: on a blocking socket it
    /// first waits for one (up to the socket's read timeout); on a
    /// non-blocking one, none queued is `WouldBlock`.
    pub(super) fn receive(&mut self, socket: &impl AsRawFd) -> std::io::Result<()> {
        self.received.clear();
        let mut slices = self.buffers.each_mut().map(|b| [IoSliceMut::new(b)]);
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.receive_headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )?;
        for message in results {
            self.received.push((message.bytes, message.address));
        }
        Ok(())
    }

    /// Calls `answer` on each datagram received and keeps what it returns
    /// for [`Self::send`].
    pub(super) fn answer_each(
        &mut self,
        mut answer: impl FnMut(&[u8], SocketAddr) -> Option<Vec<u8>>,
    ) {
        for (buffer, (len, from)) in self.buffers.iter().zip(&self.received) {
            // A datagram without a sender address cannot be answered.
            let Some(from) = from else { continue };
            let (Some(request), Some(src)) = (buffer.get(..*len), socket_addr(from)) else {
                continue;
            };
            if let Some(reply) = answer(request, src) {
                self.replies.push((reply, *from));
            }
        }
    }

    /// Sends every answer kept, in as few `sendmmsg` calls as the kernel
    /// allows; one that cannot be sent is logged and skipped.
    pub(super) fn send(&mut self, socket: &impl AsRawFd) {
        let mut from = 0;
        while from < self.replies.len() {
            let pending = self.replies.get(from..).unwrap_or_default();
            let count = pending.len().min(SIZE);
            let slices: [[IoSlice<'_>; 1]; SIZE] =
                std::array::from_fn(|i| [IoSlice::new(pending.get(i).map_or(&[][..], |(b, _)| b))]);
            let addresses: [Option<SockaddrStorage>; SIZE] =
                std::array::from_fn(|i| pending.get(i).map(|(_, to)| *to));
            let (Some(slices), Some(addresses)) = (slices.get(..count), addresses.get(..count))
            else {
                break;
            };
            let no_control: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                socket.as_raw_fd(),
                &mut self.send_headers,
                slices,
                addresses,
                no_control,
                MsgFlags::empty(),
            ) {
                Ok(sent) => from += sent.count().max(1),
                Err(e) => {
                    tracing::debug!(error = %e, to = ?pending.first().and_then(|(_, to)| socket_addr(to)), "udp send failed");
                    from += 1;
                }
            }
        }
        self.replies.clear();
    }
}

/// The standard address of a socket address nix received (IPv4 or IPv6).
fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddrV4::from(*v4).into());
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddrV6::from(*v6).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{net::UdpSocket, time::Duration};

    #[test]
    fn a_batch_answers_each_datagram_to_its_own_sender() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let to = server.local_addr().expect("addr");
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            c.send_to(format!("question {i}").as_bytes(), to)
                .expect("send");
        }
        let mut batch = Batch::new();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            batch.receive(&server).expect("receive");
            batch.answer_each(|request, src| {
                seen.push(src);
                Some([b"answer to ", request].concat())
            });
            batch.send(&server);
        }
        for (i, c) in clients.iter().enumerate() {
            assert!(seen.contains(&c.local_addr().expect("addr")));
            let mut buf = [0u8; 64];
            let (n, from) = c.recv_from(&mut buf).expect("answer");
            assert_eq!(from, to);
            assert_eq!(&buf[..n], format!("answer to question {i}").as_bytes());
        }
    }
}
