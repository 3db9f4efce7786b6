//! Benchmark driver: transcodes an FLV file with the real transcoder, as N
//! simultaneous live streams paced in real time, and prints one JSON line of
//! results. `scripts/bench-transcode.sh` runs it beside ffmpeg.
//!
//! Usage: transcode_file FILE [--streams N] [--preset P] [--x264-threads N] [--as-fast-as-possible]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ingest::MediaEvent;
use ingest::flv::Demuxer;
use tokio::sync::mpsc;
use transcoder::TranscoderConfig;

fn flv_events(path: &str) -> Vec<MediaEvent> {
    let data = std::fs::read(path).expect("reading the input FLV");
    let mut demux = Demuxer::default();
    let mut out = vec![];
    let mut pos = 13;
    while pos + 11 <= data.len() {
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let ts = u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
        let Some(body) = data.get(pos + 11..pos + 11 + size) else {
            break;
        };
        let body = Bytes::copy_from_slice(body);
        let r = match data[pos] {
            8 => demux.audio(body, ts, &mut out),
            9 => demux.video(body, ts, &mut out),
            _ => Ok(()),
        };
        r.expect("the input must be H.264/AAC");
        pos += 11 + size + 4;
    }
    out
}

async fn one_stream(
    events: Arc<Vec<MediaEvent>>,
    config: Arc<TranscoderConfig>,
    realtime: bool,
) -> transcoder::Stats {
    let (tx, rx) = mpsc::channel(1024);
    let feeder = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for e in events.iter() {
            if realtime && let MediaEvent::Video(v) = e {
                tokio::time::sleep_until(start + v.dts).await;
            }
            if tx.send(e.clone()).await.is_err() {
                return;
            }
        }
    });
    let mut t = transcoder::start(config, rx, Default::default())
        .await
        .expect("transcode start");
    let drains: Vec<_> = t
        .renditions
        .drain(..)
        .map(|mut r| tokio::spawn(async move { while r.media.recv().await.is_some() {} }))
        .collect();
    let stats = t.task.await.unwrap().expect("transcode");
    for d in drains {
        d.await.unwrap();
    }
    feeder.await.unwrap();
    stats
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect(
            "usage: transcode_file FILE [--streams N] [--preset P] [--x264-threads N] [--as-fast-as-possible]",
        );
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let streams: usize = arg("--streams").map_or(1, |s| s.parse().unwrap());
    let realtime = !args.iter().any(|a| a == "--as-fast-as-possible");
    let mut config = TranscoderConfig::default();
    if let Some(p) = arg("--preset") {
        config.preset = p;
    }
    if let Some(t) = arg("--x264-threads") {
        config.x264_threads = t.parse().expect("--x264-threads takes a number");
    }
    let config = Arc::new(config);
    let events = Arc::new(flv_events(path));
    let input_seconds = events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Video(v) => Some(v.dts),
            _ => None,
        })
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    let started = Instant::now();
    let runs: Vec<_> = (0..streams)
        .map(|_| tokio::spawn(one_stream(events.clone(), config.clone(), realtime)))
        .collect();
    let mut stats = vec![];
    for r in runs {
        stats.push(r.await.unwrap());
    }
    let wall = started.elapsed();
    let frames_in: u64 = stats.iter().map(|s| s.frames_in).sum();
    let dropped: u64 = stats.iter().map(|s| s.dropped).sum();
    println!(
        "{{\"streams\":{streams},\"input_seconds\":{input_seconds:.3},\"wall_seconds\":{:.3},\"frames_in\":{frames_in},\"dropped\":{dropped},\"realtime\":{realtime}}}",
        wall.as_secs_f64()
    );
    // Give GStreamer's threads a moment to wind down before exit.
    tokio::time::sleep(Duration::from_millis(100)).await;
}
