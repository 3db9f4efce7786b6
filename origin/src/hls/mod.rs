//! LL-HLS: packaging renditions into CMAF parts, the live windows in memory,
//! and serving them.
//!
//! Layout:
//! - [`fmp4`]: init segments and parts (pure).
//! - [`packager`]: media events into parts and segments (pure).
//! - [`window`]: one rendition's live window (pure).
//! - [`playlist`]: media and multivariant playlists (pure).
//! - [`directives`]: `_HLS_*` parsing and hold decisions (pure).
//! - [`server`]: the HTTP side.
//! - [`spool`]: windows on disk, continued after a restart.
//!
//! Each rendition publishes an immutable [`Snapshot`] (rendered playlists,
//! already gzipped) on a `tokio::sync::watch` channel after every part. Held
//! requests wait on that channel, so a part landing wakes all of them at once,
//! costs no thread per request, and no lock is held while writing responses.

pub mod directives;
pub mod fmp4;
pub mod packager;
pub mod playlist;
pub mod server;
pub mod spool;
pub mod window;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::directives::Position;
use self::packager::{ClockAnchor, Output, Packager, PackagerSettings};
use self::playlist::{Report, Variant};
use self::window::{PlaylistSettings, Uris, Window, WindowLimits};

/// Default PART-TARGET. 200 ms parts put hls.js (which holds back
/// PART-HOLD-BACK = 3 parts) about 0.6 s behind the live edge.
pub const DEFAULT_PART_TARGET: Duration = Duration::from_millis(200);
/// Complete segments kept in each window (20 s at 1-s segments): long enough
/// that delta updates (CAN-SKIP-UNTIL = 6 x TD) have something to skip.
pub const DEFAULT_SEGMENTS_KEPT: usize = 20;
/// Segment bytes kept per rendition; the oldest segments go first past it.
pub const DEFAULT_MAX_WINDOW_BYTES: usize = 64 << 20;
/// How long an ended broadcast's window stays for late viewers.
pub const DEFAULT_LINGER_AFTER_END: Duration = Duration::from_secs(300);
/// How long a broadcast stays live (without ENDLIST) after its publisher
/// drops, waiting for a reconnect. OBS retries after 2 s by default.
pub const DEFAULT_RECONNECT_GRACE: Duration = Duration::from_secs(15);
/// Held (blocking) requests allowed per client address. Behind a CDN, edges
/// collapse identical requests, so an edge holds a few per rendition.
pub const DEFAULT_MAX_HELD_PER_CLIENT: usize = 256;
/// Held requests allowed in all.
pub const DEFAULT_MAX_HELD_TOTAL: usize = 100_000;
/// How long a stopping server waits, in all, for windows to reach the disk.
pub const SAVE_ON_STOP_LIMIT: Duration = Duration::from_secs(5);
/// Rendered playlists are gzipped at this level once per part, not per request.
const GZIP_LEVEL: u32 = 6;

/// LL-HLS settings.
#[derive(Debug, Clone)]
pub struct HlsConfig {
    /// PART-TARGET: the longest part.
    pub part_target: Duration,
    /// PART-HOLD-BACK; at least 3 x PART-TARGET.
    pub part_hold_back: Duration,
    /// Segment duration (the transcoder's keyframe interval).
    pub segment_target: Duration,
    /// Segments kept.
    pub segments_kept: usize,
    /// Bytes kept per rendition.
    pub max_window_bytes: usize,
    /// Window lifetime after the end.
    pub linger_after_end: Duration,
    /// Wait for a publisher to come back before ending.
    pub reconnect_grace: Duration,
    /// Held requests per client address.
    pub max_held_per_client: usize,
    /// Held requests in all.
    pub max_held_total: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            part_target: DEFAULT_PART_TARGET,
            part_hold_back: DEFAULT_PART_TARGET * 3,
            segment_target: transcoder::config::DEFAULT_KEYFRAME_INTERVAL,
            segments_kept: DEFAULT_SEGMENTS_KEPT,
            max_window_bytes: DEFAULT_MAX_WINDOW_BYTES,
            linger_after_end: DEFAULT_LINGER_AFTER_END,
            reconnect_grace: DEFAULT_RECONNECT_GRACE,
            max_held_per_client: DEFAULT_MAX_HELD_PER_CLIENT,
            max_held_total: DEFAULT_MAX_HELD_TOTAL,
        }
    }
}

impl HlsConfig {
    /// EXT-X-TARGETDURATION: the segment target rounded up to whole seconds.
    pub fn target_duration_secs(&self) -> u64 {
        self.segment_target.as_secs_f64().ceil().max(1.0) as u64
    }

    /// Requests still unsatisfied after 3 x TD get 503 [6.2.5.2].
    pub fn hold_timeout(&self) -> Duration {
        Duration::from_secs(3 * self.target_duration_secs())
    }

    /// CAN-SKIP-UNTIL: 6 x TD, the minimum the spec allows [4.4.3.8].
    pub fn can_skip_until(&self) -> Duration {
        Duration::from_secs(6 * self.target_duration_secs())
    }

    /// The largest part index a request may name.
    pub fn max_part_index(&self) -> u32 {
        let per_segment = self.segment_target.as_secs_f64() * 2.0 / self.part_target.as_secs_f64();
        per_segment.ceil() as u32 + 2
    }

    fn playlist_settings(&self) -> PlaylistSettings {
        PlaylistSettings {
            target_duration_secs: self.target_duration_secs(),
            part_target: self.part_target,
            part_hold_back: self.part_hold_back,
            can_skip_until: self.can_skip_until(),
        }
    }

    fn packager_settings(&self) -> PackagerSettings {
        PackagerSettings {
            part_target: self.part_target,
            segment_min: self.segment_target / 2,
            // Longest segment whose EXTINF still rounds to TARGETDURATION.
            segment_max: Duration::from_secs(self.target_duration_secs())
                + Duration::from_millis(490),
        }
    }

    fn window_limits(&self) -> WindowLimits {
        let td = self.target_duration_secs() as f64;
        let seg = self.segment_target.as_secs_f64();
        let listed = ((3.0 * td) / seg).ceil() as usize;
        WindowLimits {
            segments_kept: self.segments_kept,
            max_bytes: self.max_window_bytes,
            part_segments_listed: listed,
            part_segments_kept: 2 * listed + 1,
        }
    }

    /// Rejects settings that break the LL-HLS rules.
    pub fn validate(&self) -> Result<(), String> {
        if self.part_target < Duration::from_millis(50) || self.part_target > Duration::from_secs(2)
        {
            return Err("part_target must be between 50 ms and 2 s".into());
        }
        if self.part_hold_back < self.part_target * 3 {
            return Err("PART-HOLD-BACK must be at least 3 x PART-TARGET".into());
        }
        if self.segment_target < self.part_target * 2 {
            return Err("the segment target must hold at least two parts".into());
        }
        if (self.segments_kept as f64) * self.segment_target.as_secs_f64()
            <= self.can_skip_until().as_secs_f64()
        {
            return Err("segments_kept must cover more than CAN-SKIP-UNTIL (6 x TD)".into());
        }
        if self.max_held_per_client == 0 || self.max_held_total == 0 {
            return Err("held-request limits must be positive".into());
        }
        Ok(())
    }
}

/// What a rendition's playlist looks like right now.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Where the window stands; `None` until the first segment is complete.
    pub position: Option<Position>,
    /// Sequence number of the next part (the preload hint).
    pub next_part_seq: u64,
    /// The full playlist.
    pub full: Bytes,
    /// It, gzipped.
    pub full_gz: Bytes,
    /// The delta update (`_HLS_skip=YES`).
    pub delta: Bytes,
    /// It, gzipped.
    pub delta_gz: Bytes,
}

/// Codec facts of a rendition, for the multivariant playlist.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RenditionFacts {
    /// RFC 6381 codecs.
    pub codecs: String,
    /// Coded size.
    pub resolution: (u32, u32),
    /// Measured frame rate.
    pub frame_rate: f64,
    /// Configured bitrate (bits/s), used until segments are measured.
    pub nominal_bps: u64,
}

/// One rendition of a broadcast.
pub struct Rendition {
    /// Name, e.g. `720p`.
    pub name: String,
    /// URI naming.
    pub uris: Uris,
    /// Position in the ladder.
    order: usize,
    window: Mutex<Window>,
    facts: Mutex<RenditionFacts>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// Keeps the window on disk, when there is a spool.
    saver: Option<spool::Writer>,
}

impl Rendition {
    /// Subscribes to its snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    /// Looks something up in the window.
    pub fn with_window<T>(&self, f: impl FnOnce(&Window) -> T) -> T {
        f(&self.window.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Saves the window's complete segments (once per segment; never waits).
    fn save(&self) {
        if let Some(saver) = &self.saver {
            saver.save(spool::Saved {
                order: self.order,
                generation: self.uris.generation.clone(),
                facts: self.facts.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                state: self.with_window(|w| w.state()),
            });
        }
    }
}

/// A broadcast's renditions and lifecycle.
pub struct Broadcast {
    /// Broadcast id.
    pub id: String,
    renditions: RwLock<Vec<Arc<Rendition>>>,
    /// Bumped whenever renditions or their facts change; master requests wait on it.
    changed: watch::Sender<u64>,
    refresh: Mutex<()>,
    /// The last multivariant playlist served, and it gzipped.
    multivariant: Mutex<(Bytes, Bytes)>,
    publishes: Mutex<u64>,
    ended_at: Mutex<Option<SystemTime>>,
}

impl Broadcast {
    /// Renditions, in ladder order.
    pub fn renditions(&self) -> Vec<Arc<Rendition>> {
        self.renditions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A rendition by name.
    pub fn rendition(&self, name: &str) -> Option<Arc<Rendition>> {
        self.renditions().into_iter().find(|r| r.name == name)
    }

    /// Subscribes to rendition changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The multivariant playlist and it gzipped, once every rendition has a
    /// complete segment. It changes rarely: it is compressed when it does.
    pub fn multivariant(&self) -> Option<(Bytes, Bytes)> {
        let text = self.render_multivariant()?;
        let mut cached = self.multivariant.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 != text.as_bytes() {
            *cached = (Bytes::from(text.into_bytes()), Bytes::new());
            cached.1 = gzip(&cached.0);
        }
        Some(cached.clone())
    }

    fn render_multivariant(&self) -> Option<String> {
        let renditions = self.renditions();
        if renditions.is_empty() {
            return None;
        }
        let mut variants = Vec::new();
        for r in &renditions {
            r.snapshot.borrow().position?;
            let facts = r.facts.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let (peak, avg) = r
                .with_window(|w| w.bitrates())
                .unwrap_or((facts.nominal_bps, facts.nominal_bps));
            variants.push(Variant {
                uri: format!("{}.m3u8", r.name),
                bandwidth: peak,
                average_bandwidth: avg,
                codecs: facts.codecs,
                resolution: facts.resolution,
                frame_rate: facts.frame_rate,
            });
        }
        Some(playlist::render_multivariant(&variants))
    }

    /// When the broadcast ended, if it has.
    pub fn ended_at(&self) -> Option<SystemTime> {
        *self.ended_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_or_add(
        &self,
        info: &transcoder::RenditionInfo,
        limits: WindowLimits,
        spool: Option<&spool::Spool>,
    ) -> (Arc<Rendition>, bool) {
        let mut list = self.renditions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = list.iter().find(|r| r.name == info.name) {
            return (r.clone(), true);
        }
        let r = Arc::new(Rendition {
            name: info.name.clone(),
            uris: Uris {
                rendition: info.name.clone(),
                generation: new_generation(),
            },
            order: list.len(),
            window: Mutex::new(Window::new(limits, 1)),
            facts: Mutex::new(RenditionFacts {
                resolution: (info.width, info.height),
                nominal_bps: u64::from(info.bitrate_kbps) * 1000 + 128_000,
                ..Default::default()
            }),
            snapshot: watch::Sender::new(Arc::new(Snapshot::default())),
            saver: spool.and_then(|s| s.writer(&self.id, &info.name)),
        });
        list.push(r.clone());
        self.changed.send_modify(|v| *v += 1);
        (r, false)
    }

    /// Re-renders every rendition's playlists (each reports on the others).
    fn refresh(&self, settings: &PlaylistSettings) {
        let _serial = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let renditions = self.renditions();
        let positions: Vec<(String, Option<Position>)> = renditions
            .iter()
            .map(|r| (r.name.clone(), r.with_window(|w| w.position())))
            .collect();
        for r in &renditions {
            let reports: Vec<Report> = positions
                .iter()
                .filter(|(name, _)| *name != r.name)
                .filter_map(|(name, pos)| {
                    pos.map(|p| Report {
                        uri: format!("{name}.m3u8"),
                        last_msn: p.last_msn,
                        last_part: p.last_part,
                    })
                })
                .collect();
            let (pl, position, next_part_seq) = r.with_window(|w| {
                (
                    w.playlist(&r.uris, settings, reports),
                    w.position(),
                    w.next_part_seq(),
                )
            });
            let full = playlist::render(&pl, false);
            let delta = playlist::render(&pl, true);
            let snapshot = Snapshot {
                position,
                next_part_seq,
                full_gz: gzip(full.as_bytes()),
                delta_gz: gzip(delta.as_bytes()),
                full: full.into(),
                delta: delta.into(),
            };
            r.snapshot.send_replace(Arc::new(snapshot));
        }
    }
}

/// A URI generation no earlier window used: the time in milliseconds.
fn new_generation() -> String {
    format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    )
}

fn gzip(data: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail").into()
}

/// All broadcasts' LL-HLS state.
pub struct Hls {
    /// Settings.
    pub config: HlsConfig,
    broadcasts: RwLock<HashMap<String, Arc<Broadcast>>>,
    /// Held-request accounting.
    pub held: server::HeldLimiter,
    /// Told the id of every broadcast that ends.
    ended: Mutex<Option<mpsc::Sender<String>>>,
    /// Where parts and transcode outcomes are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where windows are kept across restarts.
    spool: Option<spool::Spool>,
    /// Cancelled when the server stops: held requests are answered at once.
    pub stopping: CancellationToken,
}

impl Hls {
    /// An empty registry; windows are kept in `spool` when given.
    pub fn new(
        config: HlsConfig,
        metrics: Arc<crate::metrics::Metrics>,
        spool: Option<spool::Spool>,
    ) -> Arc<Hls> {
        let held = server::HeldLimiter::new(config.max_held_per_client, config.max_held_total);
        Arc::new(Hls {
            config,
            broadcasts: RwLock::default(),
            held,
            ended: Mutex::new(None),
            metrics,
            spool,
            stopping: CancellationToken::new(),
        })
    }

    /// Brings back the windows saved by the last run, for every broadcast
    /// `keep` accepts; the others are deleted. A restored broadcast is live,
    /// waiting for its publisher, and ends after the reconnect grace if nobody
    /// comes back.
    pub async fn restore(self: &Arc<Self>, keep: impl Fn(&str) -> bool + Send + 'static) {
        let Some(spool) = self.spool.clone() else {
            return;
        };
        let mut restored = tokio::task::spawn_blocking(move || spool.load(keep))
            .await
            .unwrap_or_default();
        restored.sort_by_key(|r| (r.broadcast.clone(), r.saved.order));
        let settings = self.config.playlist_settings();
        let mut broadcasts: Vec<Arc<Broadcast>> = Vec::new();
        for r in restored {
            let broadcast = self.broadcast_or_new(&r.broadcast);
            // After a crash, parts (and perhaps segments and init segments)
            // past the saved state were served and are cached forever by edges
            // and players; continuing the numbering under the same URIs would
            // serve other bytes. A new generation makes every URI new.
            let generation = if r.saved.state.clean {
                r.saved.generation
            } else {
                let g = new_generation();
                info!(broadcast = %r.broadcast, rendition = %r.rendition, old = %r.saved.generation, new = %g, "window saved before an unclean stop; its URIs get a new generation");
                g
            };
            let window = Window::restore(self.config.window_limits(), r.saved.state);
            let rendition = Arc::new(Rendition {
                uris: Uris {
                    rendition: r.rendition.clone(),
                    generation,
                },
                order: r.saved.order,
                window: Mutex::new(window),
                facts: Mutex::new(r.saved.facts),
                snapshot: watch::Sender::new(Arc::new(Snapshot::default())),
                saver: self
                    .spool
                    .as_ref()
                    .and_then(|s| s.writer(&r.broadcast, &r.rendition)),
                name: r.rendition,
            });
            let segments = rendition.with_window(|w| w.position().map(|p| p.last_msn));
            info!(broadcast = %broadcast.id, rendition = %rendition.name, last_msn = ?segments, "window restored");
            broadcast
                .renditions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .push(rendition);
            if !broadcasts.iter().any(|b| b.id == broadcast.id) {
                broadcasts.push(broadcast);
            }
        }
        for b in broadcasts {
            b.refresh(&settings);
            b.changed.send_modify(|v| *v += 1);
            self.end_after_grace(b, 0);
        }
    }

    /// Stops for a restart: held requests are answered (503, retry), open
    /// segments are closed and every window is saved, so the next run
    /// continues the playlists. Nothing gets EXT-X-ENDLIST: the broadcasts are
    /// not over.
    pub async fn stop(self: &Arc<Self>) {
        self.stopping.cancel();
        let renditions: Vec<Arc<Rendition>> = self
            .broadcasts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|b| b.ended_at().is_none())
            .flat_map(|b| b.renditions())
            .collect();
        for r in &renditions {
            // Parts still coming from a transcode are refused from here on,
            // so the state saved is the last one served: a clean stop.
            r.window.lock().unwrap_or_else(|p| p.into_inner()).freeze();
            r.save();
        }
        // One deadline for all of them: the stop as a whole stays bounded.
        let deadline = tokio::time::Instant::now() + SAVE_ON_STOP_LIMIT;
        for r in &renditions {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Some(saver) = &r.saver
                && !saver.flush(left).await
            {
                warn!(rendition = %r.name, "window not saved in time");
            }
        }
    }

    /// Ends the broadcast unless another publish starts within the reconnect grace.
    fn end_after_grace(self: &Arc<Self>, broadcast: Arc<Broadcast>, session: u64) {
        let hls = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(hls.config.reconnect_grace).await;
            let current = *broadcast
                .publishes
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if current == session && broadcast.ended_at().is_none() {
                hls.end(&broadcast.id);
            }
        });
    }

    /// Where to report ended broadcasts (the API marks them ended).
    pub fn notify_ended(&self, tx: mpsc::Sender<String>) {
        *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// A broadcast, if it has been published.
    pub fn broadcast(&self, id: &str) -> Option<Arc<Broadcast>> {
        self.broadcasts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn broadcast_or_new(&self, id: &str) -> Arc<Broadcast> {
        let mut map = self.broadcasts.write().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned())
            .or_insert_with(|| {
                Arc::new(Broadcast {
                    id: id.to_owned(),
                    renditions: RwLock::default(),
                    changed: watch::Sender::new(0),
                    refresh: Mutex::default(),
                    multivariant: Mutex::default(),
                    publishes: Mutex::new(0),
                    ended_at: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Packages one publish's transcoded renditions until they end. A broadcast
    /// that already has windows continues them after a discontinuity.
    pub async fn publish(self: &Arc<Self>, broadcast_id: &str, transcode: transcoder::Transcode) {
        let broadcast = self.broadcast_or_new(broadcast_id);
        let session = {
            let mut n = broadcast
                .publishes
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        *broadcast.ended_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let anchor = ClockAnchor::default();
        let mut tasks = Vec::new();
        for out in transcode.renditions {
            let (rendition, existed) =
                broadcast.get_or_add(&out.info, self.config.window_limits(), self.spool.as_ref());
            let continuing = existed && rendition.with_window(|w| w.next_msn() > 1);
            // A publish after the end (without the API to refuse it) resumes the window.
            rendition
                .window
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .resume();
            tasks.push(tokio::spawn(package(
                self.clone(),
                broadcast.clone(),
                rendition,
                out.media,
                anchor.clone(),
                continuing,
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
        match transcode.task.await {
            Ok(Ok(stats)) => {
                let l = crate::metrics::BroadcastLabel {
                    broadcast: broadcast_id.to_owned(),
                };
                self.metrics
                    .transcode_dropped_frames
                    .get_or_create(&l)
                    .inc_by(stats.dropped);
                self.metrics
                    .transcode_restarts
                    .get_or_create(&l)
                    .inc_by(u64::from(stats.restarts));
                debug!(broadcast = %broadcast_id, ?stats, "transcode done")
            }
            Ok(Err(err)) => warn!(broadcast = %broadcast_id, %err, "transcode failed"),
            Err(err) => warn!(broadcast = %broadcast_id, %err, "transcode task failed"),
        }
        // End the windows unless the publisher comes back within the grace period.
        self.end_after_grace(broadcast, session);
    }

    /// Adds EXT-X-ENDLIST to every rendition, then frees the broadcast after the linger time.
    pub fn end(self: &Arc<Self>, broadcast_id: &str) {
        let Some(broadcast) = self.broadcast(broadcast_id) else {
            return;
        };
        for r in broadcast.renditions() {
            r.window.lock().unwrap_or_else(|p| p.into_inner()).end();
            // Over: nothing to continue after a restart.
            if let Some(saver) = &r.saver {
                saver.remove();
            }
        }
        *broadcast.ended_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(SystemTime::now());
        broadcast.refresh(&self.config.playlist_settings());
        info!(broadcast = %broadcast_id, "broadcast ended");
        if let Some(tx) = self
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.try_send(broadcast_id.to_owned());
        }
        let hls = self.clone();
        let id = broadcast_id.to_owned();
        let session = *broadcast
            .publishes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        tokio::spawn(async move {
            tokio::time::sleep(hls.config.linger_after_end).await;
            let mut map = hls.broadcasts.write().unwrap_or_else(|p| p.into_inner());
            if map
                .get(&id)
                .is_some_and(|b| *b.publishes.lock().unwrap_or_else(|p| p.into_inner()) == session)
            {
                map.remove(&id);
                debug!(broadcast = %id, "window freed");
            }
        });
    }
}

async fn package(
    hls: Arc<Hls>,
    broadcast: Arc<Broadcast>,
    rendition: Arc<Rendition>,
    mut media: mpsc::Receiver<ingest::MediaEvent>,
    anchor: ClockAnchor,
    continuing: bool,
) {
    let settings = hls.config.playlist_settings();
    let mut packager = Packager::new(hls.config.packager_settings(), anchor, continuing);
    let mut out = Vec::new();
    loop {
        let event = media.recv().await;
        let done = event.is_none();
        let result = match event {
            Some(e) => packager.push(e, &mut out),
            None => packager.flush(&mut out),
        };
        if let Err(err) = result {
            warn!(broadcast = %broadcast.id, rendition = %rendition.name, %err, "packaging failed");
        }
        if !out.is_empty() {
            // Codecs and frame rate only change with a segment (or an init segment).
            let new_segment = out.iter().any(|o| match o {
                Output::Init(_) => true,
                Output::Part(p) => p.new_segment.is_some(),
            });
            {
                let mut w = rendition.window.lock().unwrap_or_else(|p| p.into_inner());
                for o in out.drain(..) {
                    let r = match o {
                        Output::Init(data) => {
                            w.set_init(data);
                            Ok(())
                        }
                        Output::Part(p) => {
                            hls.metrics
                                .parts
                                .get_or_create(&crate::metrics::RenditionLabel {
                                    broadcast: broadcast.id.clone(),
                                    rendition: rendition.name.clone(),
                                })
                                .inc();
                            w.push(p).map(|_| ())
                        }
                    };
                    if let Err(err) = r {
                        debug!(rendition = %rendition.name, %err, "part not stored");
                    }
                }
            }
            if new_segment {
                update_facts(&rendition, &packager);
                // The segment before this one just completed.
                rendition.save();
            }
            broadcast.refresh(&settings);
            broadcast.changed.send_modify(|v| *v += 1);
        }
        if done {
            break;
        }
    }
    if packager.dropped_audio > 0 {
        warn!(
            broadcast = %broadcast.id,
            rendition = %rendition.name,
            dropped = packager.dropped_audio,
            "audio frames dropped while video stalled"
        );
    }
    // Close the open segment so that it can be served whole while we wait for a reconnect.
    rendition
        .window
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .finish_segment();
    rendition.save();
    broadcast.refresh(&settings);
}

/// Records codecs and frame rate for the multivariant playlist.
fn update_facts(rendition: &Rendition, packager: &Packager) {
    let Some(video) = packager.video_config() else {
        return;
    };
    let mut facts = rendition.facts.lock().unwrap_or_else(|p| p.into_inner());
    facts.codecs = match packager.audio_config() {
        Some(a) => format!("{},{}", video.codec_string(), a.codec_string()),
        None => video.codec_string(),
    };
    facts.resolution = (video.width, video.height);
    if let Some(fps) = packager.frame_rate().or(video.frame_rate) {
        facts.frame_rate = fps;
    }
}
