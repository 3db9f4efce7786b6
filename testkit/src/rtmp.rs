//! A raw RTMP client for tests: a real handshake (rml_rtmp's), rml_rtmp's
//! client session for well-formed commands, and raw writes for hostile ones.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// A TCP connection to `addr` that has completed the RTMP handshake.
pub async fn handshake(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
    stream.write_all(&c0c1).await.unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "server closed during handshake");
        match hs.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).await.unwrap()
            }
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                stream.write_all(&response_bytes).await.unwrap();
                return stream;
            }
        }
    }
}

/// A raw RTMP client: a real handshake and rml_rtmp's client session, plus raw writes.
pub struct RawClient {
    pub stream: TcpStream,
    pub session: ClientSession,
}

impl RawClient {
    /// Connects and completes the handshake.
    pub async fn handshake(addr: SocketAddr) -> RawClient {
        let stream = handshake(addr).await;
        let (session, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        RawClient { stream, session }
    }

    async fn send(&mut self, r: ClientSessionResult) {
        if let ClientSessionResult::OutboundResponse(p) = r {
            self.stream.write_all(&p.bytes).await.unwrap();
        }
    }

    /// Reads until `want` is raised; None if the server closed first.
    async fn await_event(
        &mut self,
        want: fn(&ClientSessionEvent) -> bool,
    ) -> Option<ClientSessionEvent> {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = timeout(Duration::from_secs(5), self.stream.read(&mut buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            for r in self.session.handle_input(&buf[..n]).ok()? {
                match r {
                    ClientSessionResult::OutboundResponse(p) => {
                        self.stream.write_all(&p.bytes).await.ok()?
                    }
                    ClientSessionResult::RaisedEvent(e) if want(&e) => return Some(e),
                    _ => {}
                }
            }
        }
    }

    /// connect("live") then publish(key); returns the publish outcome event.
    pub async fn connect_and_publish(&mut self, key: &str) -> Option<ClientSessionEvent> {
        let r = self.session.request_connection("live".into()).unwrap();
        self.send(r).await;
        self.await_event(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted))
            .await?;
        let r = self
            .session
            .request_publishing(key.into(), PublishRequestType::Live)
            .unwrap();
        self.send(r).await;
        self.await_event(|e| {
            matches!(
                e,
                ClientSessionEvent::PublishRequestAccepted
                    | ClientSessionEvent::UnhandleableAmf0Command { .. }
            )
        })
        .await
    }

    /// Sends one video message through the client session's serializer.
    pub async fn video(&mut self, body: &'static [u8], ms: u32) {
        let r = self
            .session
            .publish_video_data(
                Bytes::from_static(body),
                rml_rtmp::time::RtmpTimestamp::new(ms),
                false,
            )
            .unwrap();
        self.send(r).await;
    }
}

/// True when the server closes `stream` within `limit` (reads hit EOF or reset).
pub async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A raw type 0 chunk header on chunk stream `csid` for message stream 1.
pub fn chunk_header(csid: u8, msg_type: u8, len: u32) -> Vec<u8> {
    let l = len.to_be_bytes();
    vec![csid, 0, 0, 0, l[1], l[2], l[3], msg_type, 1, 0, 0, 0]
}
