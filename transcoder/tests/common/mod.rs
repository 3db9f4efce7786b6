//! Helpers for the transcoder tests: ffmpeg-made FLV clips demuxed by ingest's
//! own demuxer, feeding and collecting.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ingest::MediaEvent;
use ingest::flv::Demuxer;
use testkit::ffmpeg::TestSource;
use tokio::sync::mpsc;
use transcoder::{RenditionOutput, TranscoderConfig};

/// Logs of the code under test, shown when a test fails.
pub fn init_logs() {
    testkit::logs::capture("info");
}

/// Writes `source` to `{name}.flv` in `dir`.
pub fn clip(dir: &Path, name: &str, source: TestSource) -> PathBuf {
    let path = dir.join(format!("{name}.flv"));
    source.write_flv(&path);
    path
}

/// Reads an FLV file's tags through ingest's demuxer, shifting timestamps by `offset_ms`.
pub fn flv_events(path: &Path, offset_ms: u32) -> Vec<MediaEvent> {
    let data = std::fs::read(path).unwrap();
    let mut demux = Demuxer::default();
    let mut out = vec![];
    let mut pos = 9 + 4; // header + PreviousTagSize0
    while pos + 11 <= data.len() {
        let kind = data[pos];
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let ts = u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
        let body = Bytes::copy_from_slice(&data[pos + 11..pos + 11 + size]);
        match kind {
            8 => demux.audio(body, ts + offset_ms, &mut out).unwrap(),
            9 => demux.video(body, ts + offset_ms, &mut out).unwrap(),
            _ => {}
        }
        pos += 11 + size + 4;
    }
    out
}

/// Feeds events in real time (by their timestamps) into a channel.
pub async fn feed_realtime(events: Vec<MediaEvent>, tx: mpsc::Sender<MediaEvent>) {
    let start = tokio::time::Instant::now();
    let mut first: Option<Duration> = None;
    for e in events {
        let t = match &e {
            MediaEvent::Video(v) => Some(v.dts),
            MediaEvent::Audio(a) => Some(a.pts),
            _ => None,
        };
        if let Some(t) = t {
            let f = *first.get_or_insert(t);
            tokio::time::sleep_until(start + t.saturating_sub(f)).await;
        }
        if tx.send(e).await.is_err() {
            return;
        }
    }
}

/// Drains a rendition output until it closes (bounded).
pub async fn drain(mut out: RenditionOutput, limit: Duration) -> Vec<MediaEvent> {
    let end = tokio::time::Instant::now() + limit;
    let mut v = vec![];
    while let Ok(Some(e)) = tokio::time::timeout_at(end, out.media.recv()).await {
        v.push(e);
    }
    v
}

pub fn video(events: &[MediaEvent]) -> Vec<&ingest::VideoFrame> {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Video(v) => Some(v),
            _ => None,
        })
        .collect()
}

pub fn keyframe_pts(events: &[MediaEvent]) -> BTreeSet<Duration> {
    video(events)
        .into_iter()
        .filter(|f| f.keyframe)
        .map(|f| f.pts)
        .collect()
}

pub fn audio(events: &[MediaEvent]) -> Vec<(Duration, Bytes)> {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Audio(a) => Some((a.pts, a.data.clone())),
            _ => None,
        })
        .collect()
}

pub fn configs(events: &[MediaEvent]) -> Vec<ingest::AvcConfig> {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::VideoConfig(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

pub fn config() -> Arc<TranscoderConfig> {
    Arc::new(TranscoderConfig {
        // A 1-s thumbnail cadence so short tests see one.
        thumbnail_interval: Duration::from_secs(1),
        ..TranscoderConfig::default()
    })
}
