//! The session task: the UDP socket and ICE-TCP connections, every str0m
//! [`Rtc`], their clocks, and the frames on their way to viewers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::net::{Net, TcpEvent};
use crate::session::{Command, Role, Session};
use crate::stats::Stats;
use crate::timers::Timers;
use crate::whep::{Fanout, Feeds, Frame, Outgoing, forward};

/// Largest datagram read; WebRTC keeps packets under 1,500 bytes.
const DATAGRAM_BUFFER: usize = 2048;
/// How often the task looks over every session for those to let go (not
/// connected in time, publish ended).
const SWEEP: Duration = Duration::from_millis(100);
/// Datagrams read in one go once the socket is readable, before the task
/// looks at anything else: the peers' checks and feedback come first.
const READ_BATCH: usize = 256;
/// Frames queued from the feeds to the task.
const FRAME_CAPACITY: usize = 1024;

/// The task's state.
pub struct Loop {
    net: Net,
    pub stats: Arc<Stats>,
    pub connect_timeout: Duration,
    sessions: HashMap<String, Session>,
    /// When each session wants str0m woken.
    timers: Timers,
    /// Which session a remote address belongs to, once it has been seen.
    routes: HashMap<(Protocol, SocketAddr), String>,
    /// Broadcasts with viewers: the feeds' forwarders, stopped with the last.
    forwarding: HashMap<Arc<str>, CancellationToken>,
    frames: mpsc::Sender<Frame>,
    fanout: Fanout,
}

impl Loop {
    /// A task sending and receiving through `net`.
    pub fn new(
        net: Net,
        stats: Arc<Stats>,
        connect_timeout: Duration,
    ) -> (Self, mpsc::Receiver<Frame>) {
        let (frames, rx) = mpsc::channel(FRAME_CAPACITY);
        (
            Self {
                net,
                stats,
                connect_timeout,
                sessions: HashMap::new(),
                timers: Timers::default(),
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
        mut tcp: Option<mpsc::Receiver<TcpEvent>>,
        shutdown: CancellationToken,
    ) {
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        let mut sweep = Instant::now() + SWEEP;
        loop {
            let wake = self.timers.earliest().map_or(sweep, |t| t.min(sweep));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                Some(frame) = frames.recv() => self.frame(frame),
                Some(event) = next_tcp(&mut tcp) => self.tcp(event),
                r = self.net.udp.recv_from(&mut buf) => match r {
                    Ok((n, source)) => {
                        self.input(Protocol::Udp, &buf[..n], source);
                        self.read_waiting(&mut buf);
                    }
                    Err(err) => debug!(%err, "udp receive failed"),
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            self.wake_due(now);
            if now >= sweep {
                self.sweep(now);
                sweep = now + SWEEP;
            }
        }
        for (_, mut s) in self.sessions.drain() {
            s.guarded(|s| s.rtc.disconnect());
        }
        for (_, stop) in self.forwarding.drain() {
            stop.cancel();
        }
        self.net.close_all();
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
                let id = s.id.clone();
                self.sessions.insert(id.clone(), *s);
                self.settle(&id);
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
                    self.settle(&id);
                }
            }
        }
    }

    /// Reads the datagrams already waiting (up to [`READ_BATCH`]).
    fn read_waiting(&mut self, buf: &mut [u8]) {
        for _ in 0..READ_BATCH {
            match self.net.udp.try_recv_from(buf) {
                Ok((n, source)) => self.input(Protocol::Udp, &buf[..n], source),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(err) => {
                    debug!(%err, "udp receive failed");
                    return;
                }
            }
        }
    }

    fn tcp(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Opened {
                id,
                peer,
                writer,
                close,
            } => self.net.opened(id, peer, writer, close),
            TcpEvent::Packet(peer, data) => self.input(Protocol::Tcp, &data, peer),
            TcpEvent::Closed(peer, id) => {
                if self.net.closed(peer, id) {
                    self.routes.remove(&(Protocol::Tcp, peer));
                }
            }
        }
    }

    /// One packet from `source`, to the session it belongs to. A packet no
    /// session takes is dropped, and its ICE-TCP connection closed.
    fn input(&mut self, proto: Protocol, data: &[u8], source: SocketAddr) {
        self.stats.datagrams_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let local = self.net.local_for(proto);
        let input = Receive::new(proto, source, local, data)
            .ok()
            .map(|r| Input::Receive(Instant::now(), r));
        let id = input
            .as_ref()
            .and_then(|input| match self.routes.get(&(proto, source)) {
                Some(id) if self.sessions.contains_key(id) => Some(id.clone()),
                _ => self.sessions.values_mut().find_map(|s| {
                    (s.guarded(|s| s.rtc.accepts(input)) == Some(true)).then(|| s.id.clone())
                }),
            });
        let (Some(id), Some(input)) = (id, input) else {
            debug!(%source, ?proto, "a packet no session accepts");
            if proto == Protocol::Tcp {
                self.net.close(source);
            }
            return;
        };
        self.routes.insert((proto, source), id.clone());
        let s = self.sessions.get_mut(&id).expect("found above");
        s.guarded(|s| {
            if let Err(err) = s.rtc.handle_input(input) {
                let _e = s.span.enter();
                warn!(%err, "webrtc input failed; closing");
                s.rtc.disconnect();
            }
        });
        self.settle(&id);
    }

    /// Drives the clocks of the sessions that are due.
    fn wake_due(&mut self, now: Instant) {
        for id in self.timers.due(now) {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
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
            self.settle(&id);
        }
    }

    /// Sends what session `id` wants sent and handles its events; lets it go
    /// if it is over, or sets when it wants waking.
    fn settle(&mut self, id: &str) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let (net, stats) = (&self.net, &self.stats);
        let over = s.guarded(|s| drain(s, net, stats));
        if s.failed {
            self.remove(id, "the WebRTC library failed in this session");
        } else if let Some(Some(why)) = over {
            self.remove(id, why);
        } else {
            self.timers.set(id, s.next);
        }
    }

    /// Lets go of sessions that never connected, or whose publish ended.
    fn sweep(&mut self, now: Instant) {
        let gone: Vec<(String, &str)> = self
            .sessions
            .values()
            .filter_map(|s| {
                if !s.connected && now.duration_since(s.created) > self.connect_timeout {
                    Some((s.id.clone(), "no ICE and DTLS connection in time"))
                } else if matches!(&s.role, Role::Publisher(p) if p.abandoned()) {
                    Some((s.id.clone(), "the publish was ended"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in gone {
            self.remove(&id, why);
        }
    }

    fn remove(&mut self, id: &str, why: &str) {
        self.timers.forget(id);
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
        if matches!(out, Outgoing::Video { .. }) {
            self.stats.frames_packetized.fetch_add(1, Ordering::Relaxed);
        }
        let mut sent = Vec::new();
        for s in self.sessions.values_mut() {
            if s.connected && s.broadcast == broadcast && matches!(s.role, Role::Viewer(_)) {
                s.guarded(|s| {
                    if let Role::Viewer(v) = &mut s.role {
                        v.send(&mut s.rtc, &out);
                    }
                });
                sent.push(s.id.clone());
            }
        }
        for id in sent {
            self.settle(&id);
        }
    }
}

/// Polls a session until it has nothing more to do now; `Some(reason)` when
/// it is over.
fn drain(s: &mut Session, net: &Net, stats: &Stats) -> Option<&'static str> {
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
                // A full send buffer or queue drops it, as the network would.
                net.send(&t);
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

/// The next ICE-TCP event, or never when ICE-TCP is off.
async fn next_tcp(rx: &mut Option<mpsc::Receiver<TcpEvent>>) -> Option<TcpEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
