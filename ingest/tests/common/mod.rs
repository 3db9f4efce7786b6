//! Helpers for ingest's integration tests: a server on 127.0.0.1:0, log capture,
//! real publishers (ffmpeg, GStreamer), and a scriptable raw RTMP client.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ingest::{IngestConfig, MediaEvent, Publish, StaticKeys};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

/// Everything the server logged in this test binary.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(buf.clone());
        tracing_subscriber::fmt()
            .with_env_filter("ingest=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buf
    });
}

/// The captured log text so far.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.get().unwrap().lock().unwrap()).into_owned()
}

/// A running ingest server.
pub struct Server {
    pub addr: SocketAddr,
    pub publishes: mpsc::Receiver<Publish>,
    pub shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Test settings: short timeouts so that hostile cases finish quickly.
pub fn test_config() -> IngestConfig {
    IngestConfig {
        handshake_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(4),
        ..IngestConfig::default()
    }
}

pub async fn start(keys: &[&str], config: IngestConfig) -> Server {
    init_logs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let auth = Arc::new(StaticKeys(keys.iter().map(|k| k.to_string()).collect()));
    tokio::spawn(ingest::run(config, listener, auth, tx, shutdown.clone()));
    Server {
        addr,
        publishes: rx,
        shutdown,
    }
}

impl Server {
    pub fn url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.addr)
    }

    /// The next accepted publish, within `limit`.
    pub async fn next_publish(&mut self, limit: Duration) -> Publish {
        timeout(limit, self.publishes.recv())
            .await
            .expect("no publish within the limit")
            .expect("server gone")
    }
}

/// An event and when it arrived.
pub type Timed = (Instant, MediaEvent);

/// Drains a publish until the publisher leaves or `limit` passes.
pub async fn collect(mut publish: Publish, limit: Duration) -> Vec<Timed> {
    let end = Instant::now() + limit;
    let mut out = vec![];
    while let Ok(Some(e)) = tokio::time::timeout_at(end, publish.media.recv()).await {
        out.push((Instant::now(), e));
    }
    out
}

/// ffmpeg publishing `seconds` of 30 fps testsrc2 + sine with a keyframe every 30 frames.
pub fn ffmpeg_publish(
    url: &str,
    seconds: u32,
    size: &str,
    realtime: bool,
) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if realtime {
        cmd.arg("-re");
    }
    cmd.args([
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={size}:rate=30"),
    ])
    .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
    .args(["-t", &seconds.to_string()])
    .args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-keyint_min",
        "30",
    ])
    .args(["-sc_threshold", "0", "-bf", "2", "-pix_fmt", "yuv420p"])
    .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv", url])
    .stdin(Stdio::null())
    .kill_on_drop(true);
    cmd.spawn()
        .expect("ffmpeg must be installed (scripts/check.sh installs it)")
}

/// A raw RTMP client: a real handshake and rml_rtmp's client session, plus raw writes.
pub struct RawClient {
    pub stream: TcpStream,
    pub session: ClientSession,
}

impl RawClient {
    /// Connects and completes the handshake.
    pub async fn handshake(addr: SocketAddr) -> RawClient {
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
                    break;
                }
            }
        }
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

/// Video frames of a publish, in order.
pub fn video_frames(events: &[Timed]) -> Vec<&ingest::VideoFrame> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            MediaEvent::Video(v) => Some(v),
            _ => None,
        })
        .collect()
}
