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
use tokio::sync::mpsc;
use transcoder::{RenditionOutput, TranscoderConfig};

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
}

/// Encodes `seconds` of testsrc2 (+ sine) at `size` with ffmpeg into an FLV file.
pub fn clip(dir: &Path, name: &str, size: &str, seconds: f32, extra: &[&str]) -> PathBuf {
    let path = dir.join(format!("{name}.flv"));
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-nostdin"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(extra)
        .args(["-c:a", "aac", "-f", "flv"])
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed");
    assert!(status.success());
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
