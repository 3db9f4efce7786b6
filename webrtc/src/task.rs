//! The session task: one UDP socket, every str0m [`Rtc`], their clocks, and
//! the frames on their way to viewers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::session::{Command, Role, Session};
use crate::stats::Stats;
use crate::whep::{Fanout, Feeds, Frame, forward};

/// Largest datagram read; WebRTC keeps packets under 1,500 bytes.
const DATAGRAM_BUFFER: usize = 2048;
/// The task looks at its sessions at least this often.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Frames queued from the feeds to the task.
const FRAME_CAPACITY: usize = 1024;

/// The task's state.
pub struct Loop {
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub stats: Arc<Stats>,
    pub connect_timeout: Duration,
    sessions: HashMap<String, Session>,
    /// Which session a remote address belongs to, once it has been seen.
    routes: HashMap<SocketAddr, String>,
    /// Broadcasts with viewers: the feeds' forwarders, stopped with the last.
    forwarding: HashMap<Arc<str>, CancellationToken>,
    frames: mpsc::Sender<Frame>,
    fanout: Fanout,
}

impl Loop {
    /// A task on `socket`.
    pub fn new(
        socket: UdpSocket,
        local: SocketAddr,
        stats: Arc<Stats>,
        connect_timeout: Duration,
    ) -> (Self, mpsc::Receiver<Frame>) {
        let (frames, rx) = mpsc::channel(FRAME_CAPACITY);
        (
            Self {
                socket,
                local,
                stats,
                connect_timeout,
                sessions: HashMap::new(),
                routes: HashMap::new(),
                forwarding: HashMap::new(),
                frames,
                fanout: Fanout::default(),
            },
            rx,
        )
    }

    /// Runs until `shutdown` or until every handle is gone.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut frames: mpsc::Receiver<Frame>,
        shutdown: CancellationToken,
    ) {
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
                Some(frame) = frames.recv() => self.frame(frame),
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => self.datagram(&buf[..n], source),
                    Err(err) => debug!(%err, "udp receive failed"),
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.tick();
        }
        for (_, mut s) in self.sessions.drain() {
            s.guarded(|s| s.rtc.disconnect());
        }
        for (_, stop) in self.forwarding.drain() {
            stop.cancel();
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Add(s, feeds) => {
                let _e = s.span.enter();
                info!("webrtc session opened; waiting for ICE and DTLS");
                drop(_e);
                if let Some(feeds) = feeds
                    && !self.forwarding.contains_key(&s.broadcast)
                {
                    self.follow(s.broadcast.clone(), &feeds);
                }
                self.sessions.insert(s.id.clone(), *s);
            }
            Command::Feeds(broadcast, feeds) => {
                if let Some(old) = self.forwarding.remove(&broadcast) {
                    old.cancel();
                    self.follow(broadcast, &feeds);
                }
            }
            Command::Ended(broadcast) => {
                let viewers: Vec<String> = self
                    .sessions
                    .values()
                    .filter(|s| s.broadcast == broadcast && matches!(s.role, Role::Viewer(_)))
                    .map(|s| s.id.clone())
                    .collect();
                for id in viewers {
                    self.remove(&id, "the broadcast ended");
                }
            }
            Command::Switch(id, rendition, reply) => {
                let found = match self.sessions.get_mut(&id).map(|s| &mut s.role) {
                    Some(Role::Viewer(v)) => {
                        v.switch_to = (v.rendition != rendition).then_some(rendition);
                        true
                    }
                    _ => false,
                };
                let _ = reply.send(found);
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
                    let stats = &self.stats;
                    s.guarded(|s| {
                        if let Role::Publisher(p) = &mut s.role {
                            p.keyframe(&mut s.rtc, stats);
                        }
                    });
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
            _ => self.sessions.values_mut().find_map(|s| {
                (s.guarded(|s| s.rtc.accepts(&input)) == Some(true)).then(|| s.id.clone())
            }),
        };
        let Some(id) = id else {
            debug!(%source, "a datagram no session accepts");
            return;
        };
        self.routes.insert(source, id.clone());
        let s = self.sessions.get_mut(&id).expect("found above");
        s.guarded(|s| {
            if let Err(err) = s.rtc.handle_input(input) {
                let _e = s.span.enter();
                warn!(%err, "webrtc input failed; closing");
                s.rtc.disconnect();
            }
        });
    }

    /// Drives every session's clock and sends what they want sent.
    fn tick(&mut self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for s in self.sessions.values_mut() {
            s.guarded(|s| {
                if s.next <= now
                    && s.rtc.is_alive()
                    && let Err(err) = s.rtc.handle_input(Input::Timeout(now))
                {
                    let _e = s.span.enter();
                    warn!(%err, "webrtc timeout handling failed; closing");
                    s.rtc.disconnect();
                }
            });
            let (socket, stats) = (&self.socket, &self.stats);
            let over = s.guarded(|s| drain(s, socket, stats));
            if s.failed {
                gone.push((s.id.clone(), "the WebRTC library failed in this session"));
            } else if let Some(Some(why)) = over {
                gone.push((s.id.clone(), why));
            } else if !s.connected && now.duration_since(s.created) > self.connect_timeout {
                gone.push((s.id.clone(), "no ICE and DTLS connection in time"));
            } else if matches!(&s.role, Role::Publisher(p) if p.abandoned()) {
                gone.push((s.id.clone(), "the publish was ended"));
            }
        }
        for (id, why) in gone {
            self.remove(&id, why);
        }
    }

    fn remove(&mut self, id: &str, why: &str) {
        if let Some(mut s) = self.sessions.remove(id) {
            s.guarded(|s| s.rtc.disconnect());
            self.routes.retain(|_, v| v != id);
            let _e = s.span.enter();
            match &s.role {
                Role::Publisher(p) => info!(why, dropped = p.dropped, "webrtc publisher closed"),
                Role::Viewer(v) => info!(
                    why,
                    frames = v.frames_sent,
                    keyframe_requests = v.keyframe_requests,
                    "webrtc viewer closed"
                ),
            }
            drop(_e);
            let watched = self
                .sessions
                .values()
                .any(|o| o.broadcast == s.broadcast && matches!(o.role, Role::Viewer(_)));
            if !watched && let Some(stop) = self.forwarding.remove(&s.broadcast) {
                stop.cancel();
                self.fanout.forget(&s.broadcast);
            }
        }
    }

    /// Subscribes to a broadcast's feeds for its viewers.
    fn follow(&mut self, broadcast: Arc<str>, feeds: &Feeds) {
        let stop = CancellationToken::new();
        forward(&broadcast, feeds, self.frames.clone(), stop.clone());
        self.forwarding.insert(broadcast, stop);
    }

    /// One feed event: converted once, sent to every connected viewer of it.
    fn frame(&mut self, frame: Frame) {
        let broadcast = frame.broadcast.clone();
        let Some(out) = self.fanout.convert(frame) else {
            return;
        };
        for s in self.sessions.values_mut() {
            if s.connected && s.broadcast == broadcast {
                s.guarded(|s| {
                    if let Role::Viewer(v) = &mut s.role {
                        v.send(&mut s.rtc, &out);
                    }
                });
            }
        }
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
                        "webrtc peer connected"
                    );
                }
                Event::MediaAdded(m) => {
                    if let Role::Viewer(v) = &mut s.role {
                        v.added(&mut s.rtc, m.mid, m.kind);
                    }
                }
                Event::MediaIngressStats(m) => {
                    let old = s.nacks.insert((m.mid, true), m.nacks).unwrap_or(0);
                    stats
                        .nacks_sent
                        .fetch_add(m.nacks.saturating_sub(old), Ordering::Relaxed);
                }
                Event::MediaEgressStats(m) => {
                    let old = s.nacks.insert((m.mid, false), m.nacks).unwrap_or(0);
                    stats
                        .nacks_received
                        .fetch_add(m.nacks.saturating_sub(old), Ordering::Relaxed);
                }
                Event::KeyframeRequest(_) => {
                    if let Role::Viewer(v) = &mut s.role {
                        v.keyframe_requested();
                        stats
                            .viewer_keyframe_requests
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    return Some("ICE disconnected (the peer stopped answering)");
                }
                Event::MediaData(data) => {
                    if let Role::Publisher(p) = &mut s.role {
                        p.media(&mut s.rtc, data, stats);
                    }
                }
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
