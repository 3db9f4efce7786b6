//! The registry: every broadcast's renditions, their windows and the
//! snapshots held requests wait on; ending broadcasts. (Restoring windows at
//! start and saving them at a stop: [`super::restart`].)
//!
//! Each rendition publishes an immutable [`Snapshot`] (rendered playlists,
//! already gzipped) on a `tokio::sync::watch` channel after every part. Held
//! requests wait on that channel, so a part landing wakes all of them at once,
//! costs no thread per request, and no lock is held while writing responses.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::config::HlsConfig;
use super::directives::Position;
use super::held::HeldLimiter;
use super::playlist::{self, Report, Variant};
use super::saved::{RenditionFacts, Saved};
use super::sinks::{CounterSink, SegmentSink};
use super::spool::{Spool, Writer};
use super::uris::Uris;
use super::window::view::PlaylistSettings;
use super::window::{Window, WindowLimits};

/// Rendered playlists are gzipped at this level once per part, not per request.
const GZIP_LEVEL: u32 = 6;

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

/// One rendition of a broadcast.
pub struct Rendition {
    /// Name, e.g. `720p`.
    pub name: String,
    /// URI naming.
    pub uris: Uris,
    /// Position in the ladder.
    pub(super) order: usize,
    pub(super) window: Mutex<Window>,
    pub(super) facts: Mutex<RenditionFacts>,
    pub(super) snapshot: watch::Sender<Arc<Snapshot>>,
    /// Keeps the window on disk, when there is a spool.
    pub(super) saver: Option<Writer>,
}

impl Rendition {
    /// A rendition named `name` at `order` in the ladder, with its window.
    pub(super) fn new(
        name: String,
        generation: String,
        order: usize,
        window: Window,
        facts: RenditionFacts,
        saver: Option<Writer>,
    ) -> Rendition {
        Rendition {
            uris: Uris {
                rendition: name.clone(),
                generation,
            },
            name,
            order,
            window: Mutex::new(window),
            facts: Mutex::new(facts),
            snapshot: watch::Sender::new(Arc::new(Snapshot::default())),
            saver,
        }
    }

    /// Subscribes to its snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    /// Looks something up in the window.
    pub fn with_window<T>(&self, f: impl FnOnce(&Window) -> T) -> T {
        f(&self.window.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(super) fn facts(&self) -> RenditionFacts {
        self.facts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A broadcast's renditions and lifecycle.
pub struct Broadcast {
    /// Broadcast id.
    pub id: String,
    pub(super) renditions: RwLock<Vec<Arc<Rendition>>>,
    /// Bumped whenever renditions or their facts change; master requests wait on it.
    pub(super) changed: watch::Sender<u64>,
    pub(super) refresh: Mutex<()>,
    /// The last multivariant playlist served, and it gzipped.
    pub(super) multivariant: Mutex<(Bytes, Bytes)>,
    pub(super) ended_at: Mutex<Option<SystemTime>>,
    /// Where counters go for other origins, with several.
    pub(super) sink: Option<Arc<dyn CounterSink>>,
    /// Where complete segments are recorded, when they are.
    pub(super) recorder: Option<Arc<dyn SegmentSink>>,
    /// Recorded (the owner did not opt out); set by each publish.
    pub(super) recorded: AtomicBool,
}

impl Broadcast {
    /// Saves `r`'s complete segments on disk and its counters for other
    /// origins (once per segment; never waits).
    pub(super) fn save(&self, r: &Rendition) {
        self.record(r);
        if let Some(saver) = &r.saver {
            saver.save(Saved {
                order: r.order,
                generation: r.uris.generation.clone(),
                facts: r.facts(),
                state: r.with_window(|w| w.state()),
            });
        }
        if let Some(sink) = &self.sink {
            let counters =
                r.with_window(|w| w.counters(r.order, r.uris.generation.clone(), r.facts()));
            sink.save(&self.id, &r.name, counters);
        }
    }

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

    pub(super) fn get_or_add(
        &self,
        info: &transcoder::RenditionInfo,
        limits: WindowLimits,
        spool: Option<&Spool>,
    ) -> (Arc<Rendition>, bool) {
        let mut list = self.renditions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = list.iter().find(|r| r.name == info.name) {
            return (r.clone(), true);
        }
        // One generation for a window's renditions (a replay's runs, and
        // its directories on disk, are per generation).
        let generation = list
            .first()
            .map_or_else(new_generation, |r| r.uris.generation.clone());
        let r = Arc::new(Rendition::new(
            info.name.clone(),
            generation,
            list.len(),
            Window::new(limits, 1),
            RenditionFacts {
                resolution: (info.width, info.height),
                nominal_bps: u64::from(info.bitrate_kbps) * 1000 + 128_000,
                ..Default::default()
            },
            spool.and_then(|s| s.writer(&self.id, &info.name)),
        ));
        list.push(r.clone());
        self.changed.send_modify(|v| *v += 1);
        (r, false)
    }

    /// Re-renders every rendition's playlists (each reports on the others).
    pub(super) fn refresh(&self, settings: &PlaylistSettings) {
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

/// A URI generation no earlier window used: the time in milliseconds. The
/// renditions of one window share it.
pub(super) fn new_generation() -> String {
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
    pub(super) broadcasts: RwLock<HashMap<String, Arc<Broadcast>>>,
    /// Held-request accounting.
    pub held: HeldLimiter,
    /// Where parts and transcode outcomes are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where windows are kept across restarts.
    pub(super) spool: Option<Spool>,
    /// Cancelled when the server stops: held requests are answered at once.
    pub stopping: CancellationToken,
    /// Where counters go, with several origins (set once at start).
    pub(super) sink: OnceLock<Arc<dyn CounterSink>>,
    /// Where complete segments are recorded (set once at start).
    pub(super) recorder: OnceLock<Arc<dyn SegmentSink>>,
}

impl Hls {
    /// An empty registry; windows are kept in `spool` when given.
    pub fn new(
        config: HlsConfig,
        metrics: Arc<crate::metrics::Metrics>,
        spool: Option<Spool>,
    ) -> Arc<Hls> {
        let held = HeldLimiter::new(config.max_held_per_client, config.max_held_total);
        Arc::new(Hls {
            config,
            broadcasts: RwLock::default(),
            held,
            metrics,
            spool,
            stopping: CancellationToken::new(),
            sink: OnceLock::new(),
            recorder: OnceLock::new(),
        })
    }

    /// Sends every window's counters to `sink` from now on (several origins).
    pub fn share_counters(&self, sink: Arc<dyn CounterSink>) {
        let _ = self.sink.set(sink);
    }

    /// A broadcast, if it has been published.
    pub fn broadcast(&self, id: &str) -> Option<Arc<Broadcast>> {
        self.broadcasts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every broadcast this origin holds a window of (live or lingering).
    pub fn windows(&self) -> Vec<String> {
        self.broadcasts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub(super) fn broadcast_or_new(&self, id: &str) -> Arc<Broadcast> {
        let mut map = self.broadcasts.write().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned())
            .or_insert_with(|| {
                Arc::new(Broadcast {
                    id: id.to_owned(),
                    renditions: RwLock::default(),
                    changed: watch::Sender::new(0),
                    refresh: Mutex::default(),
                    multivariant: Mutex::default(),
                    ended_at: Mutex::new(None),
                    sink: self.sink.get().cloned(),
                    recorder: self.recorder.get().cloned(),
                    recorded: AtomicBool::new(true),
                })
            })
            .clone()
    }

    /// Adds EXT-X-ENDLIST to every rendition, then frees the broadcast after the linger time.
    pub fn end(self: &Arc<Self>, broadcast_id: &str) {
        let Some(broadcast) = self.broadcast(broadcast_id) else {
            // No window here (another origin held it, or a crash lost
            // it): a recording still ends.
            if let Some(sink) = self.recorder.get() {
                sink.ended(broadcast_id, false);
            }
            return;
        };
        if broadcast.ended_at().is_some() {
            return;
        }
        for r in broadcast.renditions() {
            r.window.lock().unwrap_or_else(|p| p.into_inner()).end();
            broadcast.record(&r);
            // Over: nothing to continue after a restart.
            if let Some(saver) = &r.saver {
                saver.remove();
            }
        }
        broadcast.record_end();
        let ended_at = SystemTime::now();
        *broadcast.ended_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(ended_at);
        broadcast.refresh(&self.config.playlist_settings());
        info!(broadcast = %broadcast_id, "playlists ended");
        let hls = self.clone();
        let id = broadcast_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(hls.config.linger_after_end).await;
            let mut map = hls.broadcasts.write().unwrap_or_else(|p| p.into_inner());
            // Unless a publish took it live again (and perhaps ended it again).
            if map.get(&id).is_some_and(|b| b.ended_at() == Some(ended_at)) {
                map.remove(&id);
                debug!(broadcast = %id, "window freed");
            }
        });
    }
}
