//! The RTMP server: accepts connections, runs each in its own task, and turns
//! accepted publishes into [`Publish`] handles carrying demuxed media.
//!
//! ```text
//! TcpListener --accept--> connection task (one per peer, panics contained)
//!   handshake (deadline) -> ChunkGuard (limits) -> rml_rtmp ServerSession
//!   -> connect / publish (Authorizer, LiveSet) -> flv::Demuxer -> mpsc<MediaEvent>
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::auth::{Authorizer, LiveGuard, LiveSet, Refusal, fingerprint};
use crate::chunk::{ChunkGuard, Notice, split_after_commands};
use crate::config::IngestConfig;
use crate::error::Error;
use crate::flv::Demuxer;
use crate::media::{KeyframeRequests, MediaEvent, Metadata};

/// Size of each connection's socket read buffer.
const READ_BUFFER_LEN: usize = 64 << 10;

/// An accepted publish: the broadcast it feeds and its media, ending when the publisher leaves.
#[derive(Debug)]
pub struct Publish {
    /// The broadcast the stream key was granted.
    pub broadcast_id: String,
    /// The publisher's address.
    pub peer: SocketAddr,
    /// Demuxed media; `None` from `recv` means the publisher disconnected.
    pub media: mpsc::Receiver<MediaEvent>,
    /// Asks the publisher for a keyframe (RTMP publishers cannot be asked).
    pub keyframes: KeyframeRequests,
}

/// What the accept loop shares with its connection tasks.
struct Shared {
    config: IngestConfig,
    authorizer: Arc<dyn Authorizer>,
    publishes: mpsc::Sender<Publish>,
    live: LiveSet,
    shutdown: CancellationToken,
}

/// Accepts RTMP connections on `listener` until `shutdown`, sending each
/// authorized publish to `publishes`. `live` is shared with every other
/// ingest (WHIP), so a broadcast has one publisher whatever the protocol.
pub async fn run(
    config: IngestConfig,
    listener: TcpListener,
    authorizer: Arc<dyn Authorizer>,
    publishes: mpsc::Sender<Publish>,
    live: LiveSet,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    config.validate()?;
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let shared = Arc::new(Shared {
        config,
        authorizer,
        publishes,
        live,
        shutdown: shutdown.clone(),
    });
    info!(addr = %listener.local_addr()?, app = %shared.config.app, "rtmp ingest listening");
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(?err, "rtmp accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, max = shared.config.max_connections, "rtmp connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(
            async move {
                match Connection::new(stream, peer, shared).serve().await {
                    Ok(()) => debug!("rtmp connection closed"),
                    Err(Error::Shutdown) => debug!("rtmp connection closed for shutdown"),
                    Err(
                        err @ (Error::Io(_) | Error::IdleTimeout(_) | Error::HandshakeTimeout(_)),
                    ) => {
                        info!(%err, "rtmp connection ended")
                    }
                    Err(err) => warn!(%err, "rtmp connection closed on error"),
                }
                drop(permit);
            }
            .instrument(info_span!("rtmp", %peer)),
        );
    }
}

/// A live publish on a connection.
struct Publishing {
    media: mpsc::Sender<MediaEvent>,
    demux: Demuxer,
    _live: LiveGuard,
    frames: u64,
    metadata: Option<Metadata>,
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    guard: ChunkGuard,
    seen_connect: bool,
    publishing: Option<Publishing>,
    out: Vec<u8>,
    started: Instant,
}

/// Runs `f` on rml_rtmp, turning a panic into an error for this connection only.
fn contained<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, Error> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(Error::Session),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::LibraryPanic(msg))
        }
    }
}

impl Connection {
    fn new(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Self {
        let guard = ChunkGuard::new(shared.config.max_message_size, shared.config.max_amf_depth);
        Self {
            stream,
            peer,
            shared,
            guard,
            seen_connect: false,
            publishing: None,
            out: Vec::new(),
            started: Instant::now(),
        }
    }

    async fn serve(mut self) -> Result<(), Error> {
        let deadline = self.shared.config.handshake_timeout;
        let leftover = timeout(deadline, self.handshake())
            .await
            .map_err(|_| Error::HandshakeTimeout(deadline))??;
        let (mut session, initial) = contained(|| {
            ServerSession::new(ServerSessionConfig::new()).map_err(|e| format!("{e:?}"))
        })?;
        let mut pending: VecDeque<ServerSessionResult> = initial.into();
        self.input(&mut session, &leftover, &mut pending).await?;

        let mut buf = vec![0u8; READ_BUFFER_LEN];
        let idle = self.shared.config.idle_timeout;
        loop {
            if self.publishing.is_none() && self.started.elapsed() > idle {
                // Connected but never published: don't hold a slot forever.
                return Err(Error::IdleTimeout(idle));
            }
            let n = tokio::select! {
                _ = self.shared.shutdown.cancelled() => return Err(Error::Shutdown),
                r = timeout(idle, self.stream.read(&mut buf)) => {
                    r.map_err(|_| Error::IdleTimeout(idle))??
                }
            };
            if n == 0 {
                return Ok(());
            }
            let ended = self.input(&mut session, &buf[..n], &mut pending).await?;
            if ended {
                return Ok(());
            }
        }
    }

    /// Completes the server side of the handshake; returns bytes that followed it.
    async fn handshake(&mut self) -> Result<Vec<u8>, Error> {
        let mut hs = Handshake::new(PeerType::Server);
        let mut buf = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(Error::Handshake("peer closed during handshake".into()));
            }
            let result = contained(|| hs.process_bytes(&buf[..n]).map_err(|e| format!("{e:?}")))
                .map_err(|e| Error::Handshake(e.to_string()))?;
            match result {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.stream.write_all(&response_bytes).await?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.stream.write_all(&response_bytes).await?;
                    return Ok(remaining_bytes);
                }
            }
        }
    }

    /// Checks and processes bytes from the peer; returns true when the publish ended.
    async fn input(
        &mut self,
        session: &mut ServerSession,
        bytes: &[u8],
        pending: &mut VecDeque<ServerSessionResult>,
    ) -> Result<bool, Error> {
        let mut notices = Vec::new();
        self.guard.feed(bytes, &mut notices)?;
        for Notice::Command { name, .. } in &notices {
            if name == "connect" {
                self.seen_connect = true;
            } else if !self.seen_connect {
                return Err(Error::CommandBeforeConnect(name.clone()));
            }
        }
        let mut ended = false;
        for part in split_after_commands(bytes, &notices) {
            if !part.is_empty() {
                let results =
                    contained(|| session.handle_input(part).map_err(|e| format!("{e:?}")))?;
                pending.extend(results);
            }
            while let Some(result) = pending.pop_front() {
                match result {
                    ServerSessionResult::OutboundResponse(packet) => self.out.extend(packet.bytes),
                    ServerSessionResult::RaisedEvent(event) => {
                        ended |= self.event(session, event, pending).await?;
                    }
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.stream.write_all(&out).await?;
        }
        Ok(ended)
    }

    async fn event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
        pending: &mut VecDeque<ServerSessionResult>,
    ) -> Result<bool, Error> {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_name.trim_matches('/') != self.shared.config.app {
                    let r = contained(|| {
                        session
                            .reject_request(
                                request_id,
                                "NetConnection.Connect.Rejected",
                                "unknown application",
                            )
                            .map_err(|e| format!("{e:?}"))
                    })?;
                    self.flush_results(r).await?;
                    return Err(Error::UnknownApp(app_name));
                }
                let r = contained(|| {
                    session
                        .accept_request(request_id)
                        .map_err(|e| format!("{e:?}"))
                })?;
                pending.extend(r);
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                // OBS lets users paste keys with query strings; they are not part of the key.
                let key = stream_key.split('?').next().unwrap_or_default();
                let fp = fingerprint(key);
                let outcome = if self.publishing.is_some() {
                    Err(Refusal::AlreadyPublishing)
                } else {
                    match self.shared.authorizer.authorize(key).await {
                        Ok(grant) => match self.shared.live.claim(&grant.broadcast_id) {
                            Some(live) => Ok((grant, live)),
                            None => Err(Refusal::AlreadyLive),
                        },
                        Err(reason) => Err(reason),
                    }
                };
                match outcome {
                    Ok((grant, live)) => {
                        let (tx, rx) = mpsc::channel(self.shared.config.media_channel_capacity);
                        let publish = Publish {
                            broadcast_id: grant.broadcast_id.clone(),
                            peer: self.peer,
                            media: rx,
                            keyframes: KeyframeRequests::default(),
                        };
                        if self.shared.publishes.send(publish).await.is_err() {
                            return Err(Error::Shutdown);
                        }
                        info!(key = %fp, broadcast = %grant.broadcast_id, "publish accepted");
                        self.publishing = Some(Publishing {
                            media: tx,
                            demux: Demuxer::default(),
                            _live: live,
                            frames: 0,
                            metadata: None,
                        });
                        let r = contained(|| {
                            session
                                .accept_request(request_id)
                                .map_err(|e| format!("{e:?}"))
                        })?;
                        pending.extend(r);
                    }
                    Err(reason) => {
                        warn!(key = %fp, %reason, "publish rejected");
                        let r = contained(|| {
                            session
                                .reject_request(
                                    request_id,
                                    "NetStream.Publish.BadName",
                                    &reason.to_string(),
                                )
                                .map_err(|e| format!("{e:?}"))
                        })?;
                        self.flush_results(r).await?;
                        return Err(Error::PublishRejected(reason));
                    }
                }
            }
            ServerSessionEvent::PublishStreamFinished { .. } => return Ok(true),
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                let r = contained(|| {
                    session
                        .reject_request(
                            request_id,
                            "NetStream.Play.Failed",
                            "playback is served over HLS",
                        )
                        .map_err(|e| format!("{e:?}"))
                })?;
                self.flush_results(r).await?;
                return Err(Error::PlayNotSupported);
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                // Some muxers (GStreamer's flvmux) repeat onMetaData; pass on changes only.
                let metadata = metadata_of(&metadata);
                if let Some(p) = self.publishing.as_mut()
                    && p.metadata.as_ref() != Some(&metadata)
                {
                    p.metadata = Some(metadata.clone());
                    self.send(vec![MediaEvent::Metadata(metadata)]).await?;
                }
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.media(true, data, timestamp.value).await?;
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.media(false, data, timestamp.value).await?;
            }
            _ => {}
        }
        Ok(false)
    }

    async fn media(&mut self, video: bool, data: Bytes, ms: u32) -> Result<(), Error> {
        let Some(p) = self.publishing.as_mut() else {
            return Ok(()); // Media on a stream that is not publishing is ignored.
        };
        let mut events = Vec::with_capacity(2);
        if video {
            p.demux.video(data, ms, &mut events)?;
        } else {
            p.demux.audio(data, ms, &mut events)?;
        }
        p.frames += events.len() as u64;
        self.send(events).await
    }

    async fn send(&mut self, events: Vec<MediaEvent>) -> Result<(), Error> {
        let Some(p) = self.publishing.as_ref() else {
            return Ok(());
        };
        for event in events {
            if p.media.send(event).await.is_err() {
                // The consumer is gone (broadcast ended or server stopping).
                return Err(Error::Shutdown);
            }
        }
        Ok(())
    }

    async fn flush_results(&mut self, results: Vec<ServerSessionResult>) -> Result<(), Error> {
        for r in results {
            if let ServerSessionResult::OutboundResponse(packet) = r {
                self.out.extend(packet.bytes);
            }
        }
        let out = std::mem::take(&mut self.out);
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(p) = &self.publishing {
            info!(
                events = p.frames,
                dropped_before_config = p.demux.dropped_before_config,
                clamped_cts = p.demux.clamped_cts,
                "publish ended"
            );
        }
    }
}

fn metadata_of(m: &StreamMetadata) -> Metadata {
    Metadata {
        width: m.video_width,
        height: m.video_height,
        frame_rate: m.video_frame_rate,
        video_bitrate_kbps: m.video_bitrate_kbps,
        audio_bitrate_kbps: m.audio_bitrate_kbps,
        encoder: m.encoder.clone(),
    }
}

/// Runs untrusted post-handshake bytes through the same parse path as a
/// connection (chunk guard, rml_rtmp with every request accepted, FLV demux),
/// without sockets. For fuzzing; returns the number of media events produced.
#[doc(hidden)]
pub fn parse_untrusted(reads: &[&[u8]], config: &IngestConfig) -> Result<usize, Error> {
    let mut guard = ChunkGuard::new(config.max_message_size, config.max_amf_depth);
    let (mut session, _) =
        contained(|| ServerSession::new(ServerSessionConfig::new()).map_err(|e| format!("{e:?}")))?;
    let mut demux = Demuxer::default();
    let mut events = Vec::new();
    for read in reads {
        let mut notices = Vec::new();
        guard.feed(read, &mut notices)?;
        for part in split_after_commands(read, &notices) {
            let mut pending: VecDeque<_> =
                contained(|| session.handle_input(part).map_err(|e| format!("{e:?}")))?.into();
            while let Some(r) = pending.pop_front() {
                let ServerSessionResult::RaisedEvent(e) = r else {
                    continue;
                };
                match e {
                    ServerSessionEvent::ConnectionRequested { request_id, .. }
                    | ServerSessionEvent::PublishStreamRequested { request_id, .. } => pending
                        .extend(contained(|| {
                            session
                                .accept_request(request_id)
                                .map_err(|e| format!("{e:?}"))
                        })?),
                    ServerSessionEvent::VideoDataReceived {
                        data, timestamp, ..
                    } => demux.video(data, timestamp.value, &mut events)?,
                    ServerSessionEvent::AudioDataReceived {
                        data, timestamp, ..
                    } => demux.audio(data, timestamp.value, &mut events)?,
                    _ => {}
                }
            }
        }
    }
    Ok(events.len())
}
