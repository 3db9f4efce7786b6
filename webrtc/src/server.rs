//! The WebRTC server: one UDP socket and one task for every session. HTTP
//! handlers hand it offers through [`Webrtc`]; the task owns every str0m
//! [`Rtc`], feeds it datagrams and time, and sends what it wants sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ingest::{KeyframeRequests, LiveSet, Publish};
use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn};

use crate::config::{IceServer, WebrtcConfig};
use crate::stats::Stats;
use crate::whip::Publisher;

/// Commands queued to the session task.
const COMMAND_CAPACITY: usize = 256;
/// Largest datagram read; WebRTC keeps packets under 1,500 bytes.
const DATAGRAM_BUFFER: usize = 2048;
/// The task looks at its sessions at least this often.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Why an offer was refused.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// The body is not an SDP offer str0m can read.
    #[error("the offer is not valid SDP: {0}")]
    BadOffer(String),
    /// The offer cannot carry what we take.
    #[error("the offer has no {0}; publish H.264 video (and Opus audio)")]
    Unsupported(&'static str),
    /// Another publisher (RTMP or WHIP) is live on the broadcast.
    #[error("this broadcast already has a live publisher")]
    AlreadyLive,
    /// The session limit is reached.
    #[error("this server has its maximum of {0} WebRTC sessions")]
    Full(usize),
    /// The server is stopping.
    #[error("the server is stopping")]
    Stopping,
}

/// What a client gets back for an accepted offer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The SDP answer.
    pub sdp: String,
    /// The session's id: its resource URL ends in it, and DELETE there ends it.
    pub session: String,
    /// The session's entity tag (RFC 9725 4.3.1).
    pub etag: String,
}

enum Command {
    Add(Box<Session>),
    Close(String, oneshot::Sender<bool>),
    Keyframe(String),
}

struct Session {
    id: String,
    broadcast: String,
    rtc: Rtc,
    publisher: Publisher,
    created: Instant,
    connected: bool,
    next: Instant,
    span: tracing::Span,
}

/// The handle HTTP handlers use.
#[derive(Clone)]
pub struct Webrtc {
    commands: mpsc::Sender<Command>,
    config: Arc<WebrtcConfig>,
    candidates: Vec<SocketAddr>,
    local: SocketAddr,
    live: LiveSet,
    publishes: mpsc::Sender<Publish>,
    /// What the server counts.
    pub stats: Arc<Stats>,
}

impl Webrtc {
    /// Starts the session task on `socket` until `shutdown`. Accepted WHIP
    /// publishes go to `publishes`; `live` is shared with RTMP ingest.
    pub fn start(
        config: WebrtcConfig,
        socket: std::net::UdpSocket,
        publishes: mpsc::Sender<Publish>,
        live: LiveSet,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Webrtc, JoinHandle<()>)> {
        str0m::crypto::from_feature_flags().install_process_default();
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket)?;
        let local = socket.local_addr()?;
        let candidates = config.advertised(local);
        info!(%local, advertised = ?candidates, "webrtc listening (udp)");
        let (commands, rx) = mpsc::channel(COMMAND_CAPACITY);
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(
            Loop {
                socket,
                local,
                sessions: HashMap::new(),
                routes: HashMap::new(),
                stats: stats.clone(),
                connect_timeout: config.connect_timeout,
            }
            .run(rx, shutdown),
        );
        Ok((
            Webrtc {
                commands,
                config: Arc::new(config),
                candidates,
                local,
                live,
                publishes,
                stats,
            },
            task,
        ))
    }

    /// The UDP address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// STUN/TURN servers to offer clients.
    pub fn ice_servers(&self) -> &[IceServer] {
        &self.config.ice_servers
    }

    /// Accepts a WHIP offer for `broadcast` (already authorized) from `peer`.
    pub async fn publish(
        &self,
        broadcast: &str,
        offer: &str,
        peer: SocketAddr,
    ) -> Result<Answer, OfferError> {
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::BadOffer(e.to_string()))?;
        let text = offer.to_sdp_string().to_ascii_uppercase();
        if !text.contains("H264/90000") {
            return Err(OfferError::Unsupported("H.264 video"));
        }
        let max = self.config.max_sessions;
        if self.stats.sessions.load(Ordering::Relaxed) >= max {
            return Err(OfferError::Full(max));
        }
        let live = self.live.claim(broadcast).ok_or(OfferError::AlreadyLive)?;
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(Instant::now());
        for addr in &self.candidates {
            match Candidate::host(*addr, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(err) => warn!(%addr, %err, "cannot advertise this address"),
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| OfferError::BadOffer(e.to_string()))?;
        let id = session_id();
        // What logs and the ETag show: not a part of the id, which is the
        // capability to end the session.
        let tag = session_id()[..12].to_owned();
        let (tx, media) = mpsc::channel(self.config.media_channel_capacity);
        let keyframes = {
            let (commands, id) = (self.commands.clone(), id.clone());
            KeyframeRequests::new(move || {
                let _ = commands.try_send(Command::Keyframe(id.clone()));
            })
        };
        let now = Instant::now();
        let session = Session {
            id: id.clone(),
            broadcast: broadcast.to_owned(),
            rtc,
            publisher: Publisher::new(tx, live),
            created: now,
            connected: false,
            next: now,
            span: info_span!("whip", broadcast = %broadcast, session = %tag, %peer),
        };
        self.commands
            .send(Command::Add(Box::new(session)))
            .await
            .map_err(|_| OfferError::Stopping)?;
        let publish = Publish {
            broadcast_id: broadcast.to_owned(),
            peer,
            media,
            keyframes,
        };
        if self.publishes.send(publish).await.is_err() {
            self.close(&id).await;
            return Err(OfferError::Stopping);
        }
        Ok(Answer {
            sdp: answer.to_sdp_string(),
            etag: format!("\"{tag}\""),
            session: id,
        })
    }

    /// Ends session `id`; false if there is no such session.
    pub async fn close(&self, id: &str) -> bool {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Close(id.to_owned(), tx))
            .await
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

/// 128 random bits in hex: a session's id is also its capability.
fn session_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Loop {
    socket: UdpSocket,
    local: SocketAddr,
    sessions: HashMap<String, Session>,
    /// Which session a remote address belongs to, once it has been seen.
    routes: HashMap<SocketAddr, String>,
    stats: Arc<Stats>,
    connect_timeout: Duration,
}

impl Loop {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        loop {
            let wake = self
                .sessions
                .values()
                .map(|s| s.next)
                .min()
                .unwrap_or_else(Instant::now)
                .min(Instant::now() + MAX_SLEEP);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => self.datagram(&buf[..n], source),
                    Err(err) => debug!(%err, "udp receive failed"),
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.tick();
        }
        for (_, mut s) in self.sessions.drain() {
            s.rtc.disconnect();
        }
        self.stats.sessions.store(0, Ordering::Relaxed);
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Add(s) => {
                let _e = s.span.enter();
                info!("webrtc session opened; waiting for ICE and DTLS");
                drop(_e);
                self.sessions.insert(s.id.clone(), *s);
                self.count();
            }
            Command::Close(id, reply) => {
                let found = self.sessions.contains_key(&id);
                if found {
                    self.remove(&id, "ended by its client (DELETE)");
                }
                let _ = reply.send(found);
            }
            Command::Keyframe(id) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.publisher.keyframe(&mut s.rtc, &self.stats);
                }
            }
        }
    }

    fn datagram(&mut self, data: &[u8], source: SocketAddr) {
        self.stats.datagrams_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, data) else {
            return;
        };
        let input = Input::Receive(Instant::now(), receive);
        let id = match self.routes.get(&source) {
            Some(id) if self.sessions.contains_key(id) => Some(id.clone()),
            _ => self
                .sessions
                .values()
                .find(|s| s.rtc.accepts(&input))
                .map(|s| s.id.clone()),
        };
        let Some(id) = id else {
            debug!(%source, "a datagram no session accepts");
            return;
        };
        self.routes.insert(source, id.clone());
        let s = self.sessions.get_mut(&id).expect("found above");
        if let Err(err) = s.rtc.handle_input(input) {
            let _e = s.span.enter();
            warn!(%err, "webrtc input failed; closing");
            s.rtc.disconnect();
        }
    }

    /// Drives every session's clock and sends what they want sent.
    fn tick(&mut self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for s in self.sessions.values_mut() {
            if s.next <= now
                && s.rtc.is_alive()
                && let Err(err) = s.rtc.handle_input(Input::Timeout(now))
            {
                let _e = s.span.enter();
                warn!(%err, "webrtc timeout handling failed; closing");
                s.rtc.disconnect();
            }
            if let Some(why) = drain(s, &self.socket, &self.stats) {
                gone.push((s.id.clone(), why));
            } else if !s.connected && now.duration_since(s.created) > self.connect_timeout {
                gone.push((s.id.clone(), "no ICE and DTLS connection in time"));
            } else if s.publisher.abandoned() {
                gone.push((s.id.clone(), "the publish was ended"));
            }
        }
        for (id, why) in gone {
            self.remove(&id, why);
        }
    }

    fn remove(&mut self, id: &str, why: &str) {
        if let Some(mut s) = self.sessions.remove(id) {
            s.rtc.disconnect();
            self.routes.retain(|_, v| v != id);
            let _e = s.span.enter();
            info!(
                why,
                dropped = s.publisher.dropped,
                broadcast = %s.broadcast,
                "webrtc session closed"
            );
        }
        self.count();
    }

    fn count(&self) {
        self.stats
            .sessions
            .store(self.sessions.len(), Ordering::Relaxed);
    }
}

/// Polls a session until it has nothing more to do now; `Some(reason)` when
/// it is over.
fn drain(s: &mut Session, socket: &UdpSocket, stats: &Stats) -> Option<&'static str> {
    loop {
        if !s.rtc.is_alive() {
            return Some("the connection closed");
        }
        match s.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                s.next = t;
                return None;
            }
            Ok(Output::Transmit(t)) => {
                stats
                    .bytes_out
                    .fetch_add(t.contents.len() as u64, Ordering::Relaxed);
                // UDP: a full send buffer drops the datagram, as the network would.
                let _ = socket.try_send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(e)) => match e {
                Event::Connected => {
                    s.connected = true;
                    let _e = s.span.enter();
                    info!(
                        after_ms = s.created.elapsed().as_millis() as u64,
                        "webrtc publisher connected"
                    );
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    return Some("ICE disconnected (the peer stopped answering)");
                }
                Event::MediaData(data) => s.publisher.media(&mut s.rtc, data, stats),
                _ => {}
            },
            Err(err) => {
                let _e = s.span.enter();
                warn!(%err, "webrtc session failed");
                return Some("the session failed");
            }
        }
    }
}
