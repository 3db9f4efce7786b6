//! The WebRTC server's handle: HTTP handlers hand it WHIP and WHEP offers
//! through [`Webrtc`]; the [session task](crate::task) owns every str0m
//! [`Rtc`] on one UDP socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ingest::{KeyframeRequests, LiveSet, Publish};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::net::TcpType;
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

use crate::config::{IceServer, Transport, WebrtcConfig};
use crate::net::{Net, Sockets, serve_tcp};
use crate::session::{Command, Role, Session};
use crate::stats::{NoSeat, Seat, Stats};
use crate::task::Loop;
use crate::whep::{Feeds, Viewer};
use crate::whip::Publisher;

/// Commands queued to the session task.
const COMMAND_CAPACITY: usize = 256;

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
    /// Nothing to play: the broadcast is not live on this origin.
    #[error("this broadcast is not live")]
    NotLive,
    /// No such rendition.
    #[error("no rendition {0:?}; this broadcast has {1}")]
    NoRendition(String, String),
    /// The broadcast has its maximum of viewers over WebRTC.
    #[error("this broadcast has its maximum of {0} real-time viewers")]
    FullBroadcast(usize),
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

/// The handle HTTP handlers use.
#[derive(Clone)]
pub struct Webrtc {
    commands: mpsc::Sender<Command>,
    config: Arc<WebrtcConfig>,
    /// Host candidates put in every answer.
    candidates: Vec<Candidate>,
    local: SocketAddr,
    live: LiveSet,
    publishes: mpsc::Sender<Publish>,
    /// Live broadcasts' feeds, for viewers.
    feeds: Arc<Mutex<HashMap<String, Feeds>>>,
    /// What the server counts.
    pub stats: Arc<Stats>,
}

impl Webrtc {
    /// Starts the session task on `sockets` until `shutdown`. Accepted WHIP
    /// publishes go to `publishes`; `live` is shared with RTMP ingest.
    pub fn start(
        config: WebrtcConfig,
        sockets: Sockets,
        publishes: mpsc::Sender<Publish>,
        live: LiveSet,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Webrtc, JoinHandle<()>)> {
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = sockets.udp;
        socket.set_nonblocking(true)?;
        size_buffers(&socket, config.socket_buffer_bytes);
        let socket = UdpSocket::from_std(socket)?;
        let local = socket.local_addr()?;
        let local_tcp = sockets.tcp.as_ref().map(|l| l.local_addr()).transpose()?;
        let mut candidates = Vec::new();
        if config.transports.contains(&Transport::Udp) {
            candidates.extend(host_candidates(&config.advertised(local), Transport::Udp));
            info!(%local, advertised = ?config.advertised(local), "webrtc listening (udp)");
        }
        let tcp = match (sockets.tcp, local_tcp) {
            (Some(listener), Some(at)) if config.transports.contains(&Transport::Tcp) => {
                candidates.extend(host_candidates(&config.advertised(at), Transport::Tcp));
                Some(serve_tcp(listener, config.max_sessions, shutdown.clone())?)
            }
            _ => None,
        };
        let (commands, rx) = mpsc::channel(COMMAND_CAPACITY);
        let stats = Arc::new(Stats::default());
        let net = Net::new(socket, local, local_tcp);
        let (task, frames) = Loop::new(net, stats.clone(), config.connect_timeout);
        let task = tokio::spawn(task.run(rx, frames, tcp, shutdown));
        Ok((
            Webrtc {
                commands,
                config: Arc::new(config),
                candidates,
                local,
                live,
                publishes,
                feeds: Arc::default(),
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
        let offer = h264_offer(offer)?;
        self.room(None)?;
        let live = self.live.claim(broadcast).ok_or(OfferError::AlreadyLive)?;
        let (rtc, answer) = self.accept(offer, false)?;
        let seat = self.seat(None)?;
        let (id, tag) = (session_id(), session_id()[..12].to_owned());
        let (tx, media) = mpsc::channel(self.config.media_channel_capacity);
        let keyframes = {
            let (commands, id) = (self.commands.clone(), id.clone());
            KeyframeRequests::new(move || {
                let _ = commands.try_send(Command::Keyframe(id.clone()));
            })
        };
        let session = new_session(
            &id,
            broadcast,
            (rtc, seat),
            Role::Publisher(Box::new(Publisher::new(tx, live))),
            info_span!("whip", broadcast = %broadcast, session = %tag, %peer),
        );
        self.commands
            .send(Command::Add(Box::new(session), None))
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

    /// Accepts a WHEP offer for `rendition` (default: the largest) of
    /// `broadcast` from `peer`.
    pub async fn play(
        &self,
        broadcast: &str,
        rendition: Option<&str>,
        offer: &str,
        peer: SocketAddr,
    ) -> Result<Answer, OfferError> {
        let offer = h264_offer(offer)?;
        let feeds = self.feeds_of(broadcast)?;
        let rendition = self.rendition(&feeds, rendition)?;
        self.room(Some(broadcast))?;
        // Viewers are sent RTP made once per frame for all of them.
        let (rtc, answer) = self.accept(offer, true)?;
        let seat = self.seat(Some(&broadcast.into()))?;
        let (id, tag) = (session_id(), session_id()[..12].to_owned());
        let session = new_session(
            &id,
            broadcast,
            (rtc, seat),
            Role::Viewer(Viewer::new(broadcast, &rendition)),
            info_span!("whep", broadcast = %broadcast, %rendition, session = %tag, %peer),
        );
        self.commands
            .send(Command::Add(Box::new(session), Some(feeds)))
            .await
            .map_err(|_| OfferError::Stopping)?;
        Ok(Answer {
            sdp: answer.to_sdp_string(),
            etag: format!("\"{tag}\""),
            session: id,
        })
    }

    /// Switches viewer `id` to `rendition` at its next IDR; false if there is
    /// no such viewer.
    pub async fn switch(
        &self,
        broadcast: &str,
        id: &str,
        rendition: &str,
    ) -> Result<bool, OfferError> {
        let feeds = self.feeds_of(broadcast)?;
        let rendition = self.rendition(&feeds, Some(rendition))?;
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Switch(id.to_owned(), rendition.into(), tx))
            .await
            .map_err(|_| OfferError::Stopping)?;
        Ok(rx.await.unwrap_or(false))
    }

    /// A broadcast went live (again) here with these feeds; viewers follow.
    pub async fn live(&self, broadcast: &str, feeds: Feeds) {
        self.feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(broadcast.to_owned(), feeds.clone());
        let _ = self
            .commands
            .send(Command::Feeds(broadcast.into(), feeds))
            .await;
    }

    /// The publish with `feeds` ended here: no new viewers (those watching
    /// stay, and follow the next publish). A later publish's feeds stay.
    pub fn not_live(&self, broadcast: &str, feeds: &Feeds) {
        let mut all = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if all
            .get(broadcast)
            .is_some_and(|f| f.audio.same_channel(&feeds.audio))
        {
            all.remove(broadcast);
        }
    }

    /// A broadcast ended: nothing more to play, and its viewers are let go.
    pub async fn ended(&self, broadcast: &str) {
        self.feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(broadcast);
        let _ = self.commands.send(Command::Ended(broadcast.into())).await;
    }

    fn feeds_of(&self, broadcast: &str) -> Result<Feeds, OfferError> {
        self.feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(broadcast)
            .cloned()
            .ok_or(OfferError::NotLive)
    }

    fn rendition(&self, feeds: &Feeds, want: Option<&str>) -> Result<String, OfferError> {
        let names: Vec<&str> = feeds.renditions.iter().map(|(n, _)| n.as_str()).collect();
        match want {
            None => names
                .first()
                .map(|n| n.to_string())
                .ok_or(OfferError::NotLive),
            Some(w) if names.contains(&w) => Ok(w.to_owned()),
            Some(w) => Err(OfferError::NoRendition(w.to_owned(), names.join(", "))),
        }
    }

    /// Refuses early, before the work of answering, when a limit is
    /// reached (a viewer's, of `viewer_of`).
    fn room(&self, viewer_of: Option<&str>) -> Result<(), OfferError> {
        let (max, per) = self.limits();
        self.stats
            .seats
            .room_for(viewer_of, max, per)
            .map_err(|no| self.refusal(no))
    }

    /// Takes a session's place under the limits (a viewer's, of `viewer_of`).
    fn seat(&self, viewer_of: Option<&Arc<str>>) -> Result<Seat, OfferError> {
        let (max, per) = self.limits();
        self.stats
            .seats
            .take(viewer_of, max, per)
            .map_err(|no| self.refusal(no))
    }

    /// Sessions in all, and viewers per broadcast.
    fn limits(&self) -> (usize, usize) {
        (
            self.config.max_sessions,
            self.config.max_viewers_per_broadcast,
        )
    }

    fn refusal(&self, no: NoSeat) -> OfferError {
        match no {
            NoSeat::Server => OfferError::Full(self.config.max_sessions),
            NoSeat::Broadcast => OfferError::FullBroadcast(self.config.max_viewers_per_broadcast),
        }
    }

    /// A peer connection answering `offer`: ICE lite, H.264 and Opus, a host
    /// candidate per advertised address; in str0m's RTP mode (for viewers,
    /// sent RTP payloads made once per frame) when `rtp_mode`.
    fn accept(&self, offer: SdpOffer, rtp_mode: bool) -> Result<(Rtc, SdpAnswer), OfferError> {
        let mut rtc = Rtc::builder()
            .set_rtp_mode(rtp_mode)
            .set_ice_lite(true)
            // Per-media counters (NACKs) once a second, for the metrics.
            .set_stats_interval(Some(std::time::Duration::from_secs(1)))
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(Instant::now());
        for c in &self.candidates {
            rtc.add_local_candidate(c.clone());
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| OfferError::BadOffer(e.to_string()))?;
        Ok((rtc, answer))
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

/// Host candidates for `addrs` over `transport` (ICE-TCP ones passive: the
/// peer connects).
fn host_candidates(addrs: &[SocketAddr], transport: Transport) -> Vec<Candidate> {
    addrs
        .iter()
        .filter_map(|addr| {
            let c = match transport {
                Transport::Udp => Candidate::host(*addr, "udp"),
                Transport::Tcp => Candidate::builder()
                    .tcp()
                    .host(*addr)
                    .tcptype(TcpType::Passive)
                    .build(),
            };
            c.map_err(|err| warn!(%addr, %err, "cannot advertise this address"))
                .ok()
        })
        .collect()
}

/// Asks for `bytes` of receive and send buffer on `socket`; warns when the
/// kernel grants less (Linux reports double what it holds).
fn size_buffers(socket: &std::net::UdpSocket, bytes: usize) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(bytes);
    let _ = s.set_send_buffer_size(bytes);
    let granted = (
        s.recv_buffer_size().unwrap_or(0),
        s.send_buffer_size().unwrap_or(0),
    );
    if granted.0 < bytes || granted.1 < bytes {
        warn!(
            asked = bytes,
            receive = granted.0,
            send = granted.1,
            "the WebRTC socket got smaller buffers than configured; raise \
             net.core.rmem_max and net.core.wmem_max (sysctl) to avoid dropping \
             datagrams under load"
        );
    } else {
        info!(
            receive = granted.0,
            send = granted.1,
            "webrtc socket buffers"
        );
    }
}

/// An offer we can read that has H.264 video in it.
fn h264_offer(offer: &str) -> Result<SdpOffer, OfferError> {
    let offer =
        SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::BadOffer(e.to_string()))?;
    if !offer
        .to_sdp_string()
        .to_ascii_uppercase()
        .contains("H264/90000")
    {
        return Err(OfferError::Unsupported("H.264 video"));
    }
    Ok(offer)
}

fn new_session(
    id: &str,
    broadcast: &str,
    (rtc, seat): (Rtc, Seat),
    role: Role,
    span: tracing::Span,
) -> Session {
    let now = Instant::now();
    Session {
        id: id.to_owned(),
        broadcast: broadcast.into(),
        rtc,
        seat,
        role,
        created: now,
        connected: false,
        next: now,
        span,
        nacks: Default::default(),
        failed: false,
    }
}

/// 128 random bits in hex: a session's id is also its capability.
fn session_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}
