//! A publish's media on its way to the transcoder: forwarded (the hop that
//! lets ending a broadcast disconnect its publisher), counted in the
//! metrics, and measured for the streamer's health panel; and the
//! transcode's CPU use, sampled while it runs.

use std::sync::Arc;
use std::time::Duration;

use ingest::media::MediaEvent;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics::{BroadcastLabel, Metrics};

/// How often a transcode's real-time factor is measured.
const USAGE_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Passes a publish's media to its transcoder, counting video frames, until
/// the publisher leaves or `cancel` (then ingest sees its consumer gone and
/// closes the publisher's connection).
pub async fn forward(
    mut media: mpsc::Receiver<MediaEvent>,
    tx: mpsc::Sender<MediaEvent>,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    id: String,
) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = media.recv() => match e { Some(e) => e, None => return },
        };
        if let MediaEvent::Video(f) = &event {
            metrics.video_frame(&id, f.data.len());
        }
        health.on_media(&id, &event, std::time::Instant::now());
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// Keeps `origin_transcode_realtime_factor` for one transcode up to date
/// while it runs.
pub async fn sample_usage(
    usage: transcoder::usage::Usage,
    metrics: Arc<Metrics>,
    broadcast: String,
) {
    let label = BroadcastLabel { broadcast };
    let mut last = (usage.cpu_seconds(), usage.media_seconds());
    while !usage.is_done() {
        tokio::time::sleep(USAGE_SAMPLE_INTERVAL).await;
        let now = (usage.cpu_seconds(), usage.media_seconds());
        let media = now.1 - last.1;
        // CPU time falls when a restarted pipeline's threads exit; skip that sample.
        if media > 0.0 && now.0 >= last.0 {
            metrics
                .transcode_realtime_factor
                .get_or_create(&label)
                .set((now.0 - last.0) / media);
        }
        last = now;
    }
    metrics.transcode_realtime_factor.remove(&label);
}
