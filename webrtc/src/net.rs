//! Where packets come in and go out: the one UDP socket, and ICE-TCP
//! (RFC 6544, passive) for networks that block UDP. A peer connects to the
//! TCP port with the same number as the UDP one; a connection carries RFC
//! 4571 frames (a 16-bit length, then one STUN, DTLS or SRTP packet), which
//! the session task takes as it takes datagrams.
//!
//! A connection is read by a task of its own and written by another through
//! a bounded queue: a slow reader loses packets, as it would on UDP, and
//! never holds up the session task. A connection whose first packets no
//! session accepts, or that stays silent for [`TCP_IDLE`], is closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use str0m::net::{Protocol, Transmit};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Packets queued to one ICE-TCP connection's writer.
const TCP_WRITE_QUEUE: usize = 512;
/// Packets from every ICE-TCP connection queued to the session task.
const TCP_READ_QUEUE: usize = 4096;
/// A connection with nothing received for this long is closed (ICE consent
/// checks come every 5 s or so).
pub const TCP_IDLE: Duration = Duration::from_secs(30);
/// Attempts at finding a port number free for both UDP and TCP when the
/// configured port is 0.
const BIND_ATTEMPTS: usize = 20;

/// The WebRTC sockets: UDP, and the ICE-TCP listener on the same port number.
#[derive(Debug)]
pub struct Sockets {
    /// Every peer's UDP.
    pub udp: std::net::UdpSocket,
    /// ICE-TCP, when it is on.
    pub tcp: Option<std::net::TcpListener>,
}

impl Sockets {
    /// Binds UDP at `addr` and, if `tcp`, TCP on the same address and port
    /// number. With port 0 a number free for both is found.
    pub fn bind(addr: SocketAddr, tcp: bool) -> std::io::Result<Sockets> {
        let mut last = None;
        for _ in 0..BIND_ATTEMPTS {
            let udp = std::net::UdpSocket::bind(addr)?;
            if !tcp {
                return Ok(Sockets { udp, tcp: None });
            }
            let port = udp.local_addr()?.port();
            match std::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
                Ok(l) => return Ok(Sockets { udp, tcp: Some(l) }),
                Err(e) if addr.port() == 0 => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no port free for UDP and TCP")))
    }
}

/// What the ICE-TCP side tells the session task.
#[derive(Debug)]
pub enum TcpEvent {
    /// A connection (numbered `id`) from this peer: packets for it go to
    /// `writer`; cancelling `close` closes it.
    Opened {
        id: u64,
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        close: CancellationToken,
    },
    /// One framed packet from a peer.
    Packet(SocketAddr, Vec<u8>),
    /// The peer's connection `id` is gone.
    Closed(SocketAddr, u64),
}

/// One ICE-TCP connection, as the session task holds it.
#[derive(Debug)]
struct TcpPeer {
    id: u64,
    writer: mpsc::Sender<Vec<u8>>,
    close: CancellationToken,
}

/// The session task's way out: UDP, or the peer's ICE-TCP connection.
#[derive(Debug)]
pub struct Net {
    /// The UDP socket.
    pub udp: UdpSocket,
    /// Its address.
    pub local: SocketAddr,
    /// The ICE-TCP listener's address, when it is on.
    pub local_tcp: Option<SocketAddr>,
    tcp: HashMap<SocketAddr, TcpPeer>,
}

impl Net {
    /// The session task's side of `udp` (and ICE-TCP at `local_tcp`).
    pub fn new(udp: UdpSocket, local: SocketAddr, local_tcp: Option<SocketAddr>) -> Self {
        Self {
            udp,
            local,
            local_tcp,
            tcp: HashMap::new(),
        }
    }

    /// Sends what a session wants sent; false if it could not go (a full
    /// queue or socket buffer drops it, as the network would).
    pub fn send(&self, t: &Transmit) -> bool {
        match t.proto {
            Protocol::Udp => self.udp.try_send_to(&t.contents, t.destination).is_ok(),
            Protocol::Tcp => self
                .tcp
                .get(&t.destination)
                .is_some_and(|p| p.writer.try_send(t.contents.to_vec()).is_ok()),
            _ => false,
        }
    }

    /// The local address packets from `proto` arrive at.
    pub fn local_for(&self, proto: Protocol) -> SocketAddr {
        match proto {
            Protocol::Tcp => self.local_tcp.unwrap_or(self.local),
            _ => self.local,
        }
    }

    /// Takes new connection `id`; an older one from the same address goes.
    pub fn opened(
        &mut self,
        id: u64,
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        close: CancellationToken,
    ) {
        if let Some(old) = self.tcp.insert(peer, TcpPeer { id, writer, close }) {
            old.close.cancel();
        }
    }

    /// Connection `id` from `peer` ended; a newer one from the same
    /// address stays. True if it was the one held.
    pub fn closed(&mut self, peer: SocketAddr, id: u64) -> bool {
        if self.tcp.get(&peer).is_some_and(|p| p.id == id) {
            self.close(peer);
            return true;
        }
        false
    }

    /// Closes (or forgets) the connection from `peer`.
    pub fn close(&mut self, peer: SocketAddr) {
        if let Some(p) = self.tcp.remove(&peer) {
            p.close.cancel();
        }
    }

    /// Closes every connection.
    pub fn close_all(&mut self) {
        for (_, p) in self.tcp.drain() {
            p.close.cancel();
        }
    }
}

/// Accepts ICE-TCP connections on `listener` (at most `max` at once) until
/// `shutdown`; their events go to the session task. Returns the receiving
/// end for it.
pub fn serve_tcp(
    listener: std::net::TcpListener,
    max: usize,
    shutdown: CancellationToken,
) -> std::io::Result<mpsc::Receiver<TcpEvent>> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    info!(local = %listener.local_addr()?, "webrtc listening (ice-tcp)");
    let (events, rx) = mpsc::channel(TCP_READ_QUEUE);
    let open = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        let mut next_id = 0u64;
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(err) => {
                        debug!(%err, "ice-tcp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if open.load(Ordering::Relaxed) >= max {
                warn!(%peer, max, "ice-tcp connection refused: too many open");
                continue;
            }
            let _ = stream.set_nodelay(true);
            open.fetch_add(1, Ordering::Relaxed);
            let (events, open, close) = (events.clone(), open.clone(), shutdown.child_token());
            next_id += 1;
            let id = next_id;
            tokio::spawn(async move {
                connection(id, stream, peer, events, close).await;
                open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    Ok(rx)
}

/// Runs one connection until it closes, is closed, or idles.
async fn connection(
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
    close: CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let (writer, mut queue) = mpsc::channel::<Vec<u8>>(TCP_WRITE_QUEUE);
    let opened = TcpEvent::Opened {
        id,
        peer,
        writer,
        close: close.clone(),
    };
    if events.send(opened).await.is_err() {
        return;
    }
    let writing = {
        let close = close.clone();
        tokio::spawn(async move {
            while let Some(packet) = tokio::select! {
                _ = close.cancelled() => None,
                p = queue.recv() => p,
            } {
                let Ok(len) = u16::try_from(packet.len()) else {
                    continue;
                };
                let mut framed = Vec::with_capacity(packet.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&packet);
                if write.write_all(&framed).await.is_err() {
                    break;
                }
            }
            close.cancel();
        })
    };
    let mut read = BufReader::new(read);
    loop {
        let frame = tokio::select! {
            _ = close.cancelled() => break,
            f = tokio::time::timeout(TCP_IDLE, read_frame(&mut read)) => f,
        };
        match frame {
            Ok(Ok(packet)) => {
                // A full queue drops the packet, as a full UDP buffer would.
                let _ = events.try_send(TcpEvent::Packet(peer, packet));
            }
            Ok(Err(err)) => {
                debug!(%peer, %err, "ice-tcp connection closed");
                break;
            }
            Err(_) => {
                debug!(%peer, "ice-tcp connection idle; closing");
                break;
            }
        }
    }
    close.cancel();
    let _ = writing.await;
    let _ = events.send(TcpEvent::Closed(peer, id)).await;
}

/// One RFC 4571 frame: a 16-bit big-endian length, then that many bytes.
async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = r.read_u16().await? as usize;
    let mut packet = vec![0u8; len];
    r.read_exact(&mut packet).await?;
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_by_their_length() {
        let mut input: &[u8] = &[0, 3, 1, 2, 3, 0, 0, 0, 1, 9, 0, 5, 1];
        assert_eq!(read_frame(&mut input).await.unwrap(), [1, 2, 3]);
        assert_eq!(read_frame(&mut input).await.unwrap(), Vec::<u8>::new());
        assert_eq!(read_frame(&mut input).await.unwrap(), [9]);
        // Cut short: an error, not a hang or a short packet.
        assert!(read_frame(&mut input).await.is_err());
    }

    #[tokio::test]
    async fn a_newer_connection_from_the_same_address_outlives_the_older() {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = udp.local_addr().unwrap();
        let mut net = Net::new(udp, local, None);
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let (w1, _r1) = mpsc::channel(1);
        let (w2, _r2) = mpsc::channel(1);
        let (c1, c2) = (CancellationToken::new(), CancellationToken::new());
        net.opened(1, peer, w1, c1.clone());
        net.opened(2, peer, w2, c2.clone());
        assert!(c1.is_cancelled(), "the older one is closed");
        assert!(!net.closed(peer, 1), "its end leaves the newer one");
        assert!(!c2.is_cancelled());
        assert!(net.closed(peer, 2));
        assert!(c2.is_cancelled());
    }

    #[test]
    fn udp_and_tcp_share_a_port_number() {
        let s = Sockets::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let tcp = s.tcp.as_ref().unwrap().local_addr().unwrap();
        assert_eq!(s.udp.local_addr().unwrap().port(), tcp.port());
        assert!(
            Sockets::bind("127.0.0.1:0".parse().unwrap(), false)
                .unwrap()
                .tcp
                .is_none()
        );
    }
}
