//! Packaging one publish: each transcoded rendition's media events become
//! parts in its window.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::packager::{ClockAnchor, Output, Packager, PartFloor};
use super::registry::{Broadcast, Hls, Rendition};

impl Hls {
    /// Packages one publish's transcoded renditions until they end. A broadcast
    /// that already has windows continues them after a discontinuity (and an
    /// ended one is taken live again). Its complete segments are recorded
    /// if `recorded` (and there is a recording).
    pub async fn publish(
        self: &Arc<Self>,
        broadcast_id: &str,
        renditions: Vec<transcoder::RenditionOutput>,
        recorded: bool,
    ) {
        let broadcast = self.broadcast_or_new(broadcast_id);
        broadcast
            .recorded
            .store(recorded, std::sync::atomic::Ordering::Relaxed);
        *broadcast.ended_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let anchor = ClockAnchor::default();
        let mut limits = self.config.window_limits();
        // Rewinding reads old segments from the recording: none, no rewind.
        if !recorded || self.recorder.get().is_none() {
            limits.dvr = std::time::Duration::ZERO;
        }
        let mut tasks = Vec::new();
        for out in renditions {
            let (rendition, existed) = broadcast.get_or_add(&out.info, limits, self.spool.as_ref());
            let continuing = existed && rendition.with_window(|w| w.next_msn() > 1);
            {
                let mut window = rendition.window.lock().unwrap_or_else(|p| p.into_inner());
                window.resume();
                window.set_dvr(limits.dvr);
            }
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
    let (mut floor, mut told_short) = (PartFloor::new(hls.config.part_target), false);
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
                            if floor.see(&p) && !told_short {
                                told_short = true;
                                short_parts(&broadcast, &rendition, &floor, &packager);
                            }
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
                broadcast.save(&rendition);
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
    broadcast.save(&rendition);
    broadcast.refresh(&settings);
}

/// Says, once per publish and rendition, that this frame rate breaks RFC
/// 8216bis's floor on part lengths, which strict players may reject, and
/// which PART-TARGET would not.
fn short_parts(broadcast: &Broadcast, rendition: &Rendition, floor: &PartFloor, p: &Packager) {
    warn!(
        broadcast = %broadcast.id,
        rendition = %rendition.name,
        fps = p.frame_rate().map(|f| format!("{f:.3}")),
        part_ms = floor.shortest.map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0)),
        fitting_part_target_ms = p.frame_rate().and_then(|fps| floor.fitting_target_ms(fps)),
        "parts under 85% of PART-TARGET at this frame rate (RFC 8216bis 4.4.4.9); \
         set [hls] part_target_ms to fitting_part_target_ms"
    );
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
