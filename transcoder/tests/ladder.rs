//! The transcoder against real input: an ffmpeg RTMP publish through the real
//! ingest, and ffmpeg-made clips fed directly.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ingest::{IngestConfig, MediaEvent, StaticKeys};
use testkit::ffmpeg::TestSource;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1080p_publish_with_irregular_keyframes_gives_aligned_720p_and_480p() {
    init_logs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ptx, mut prx) = mpsc::channel(4);
    let shutdown = CancellationToken::new();
    let keys = StaticKeys(["k".to_string()].into());
    tokio::spawn(ingest::run(
        IngestConfig::default(),
        listener,
        Arc::new(keys),
        ptx,
        ingest::LiveSet::default(),
        shutdown.clone(),
    ));
    // Source keyframes at 0, 2.3 and 4.1 s only: the output cadence must not care.
    let mut ff = TestSource::new("1920x1080", 6.0)
        .realtime()
        .extra(&[
            "-g",
            "1000",
            "-sc_threshold",
            "0",
            "-force_key_frames",
            "0,2.3,4.1",
        ])
        .publish(&format!("rtmp://{addr}/live/k"));
    let mut publish = tokio::time::timeout(LIMIT, prx.recv())
        .await
        .unwrap()
        .unwrap();

    // Record what ingest delivers while passing it on to the transcoder.
    let (tx, rx) = mpsc::channel(512);
    let recorder = tokio::spawn(async move {
        let mut seen = vec![];
        while let Some(e) = publish.media.recv().await {
            seen.push(e.clone());
            if tx.send(e).await.is_err() {
                break;
            }
        }
        seen
    });
    let mut t = transcoder::start(config(), rx, Default::default())
        .await
        .unwrap();
    let names: Vec<_> = t.renditions.iter().map(|r| r.info.name.clone()).collect();
    assert_eq!(names, ["720p", "480p"]);
    let mut thumbs = t.thumbnails.clone();
    let drains: Vec<_> = t
        .renditions
        .drain(..)
        .map(|r| tokio::spawn(drain(r, LIMIT)))
        .collect();
    assert!(ff.wait().await.unwrap().success());
    let input = recorder.await.unwrap();
    let stats = t.task.await.unwrap().unwrap();
    let mut outs = vec![];
    for d in drains {
        outs.push(d.await.unwrap());
    }
    let (r720, r480) = (&outs[0], &outs[1]);
    let jpeg = thumbs
        .borrow_and_update()
        .clone()
        .expect("a thumbnail was taken");
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "thumbnail is a JPEG");

    assert_eq!(
        keyframe_pts(r720),
        keyframe_pts(r480),
        "keyframes aligned across renditions"
    );
    assert!(keyframe_pts(r720).len() >= 5);
    check_rendition(r480, (854, 480), &input, &stats);
    check_rendition(r720, (1280, 720), &input, &stats);
    shutdown.cancel();
}

fn check_rendition(
    out: &[MediaEvent],
    size: (u32, u32),
    input: &[MediaEvent],
    stats: &transcoder::Stats,
) {
    let cfg = configs(out);
    assert_eq!(cfg.len(), 1, "one codec config");
    assert_eq!((cfg[0].width, cfg[0].height), size);
    assert!(matches!(
        out.iter()
            .find(|e| !matches!(e, MediaEvent::AudioConfig(_) | MediaEvent::Audio(_))),
        Some(MediaEvent::VideoConfig(_))
    ));
    let frames = video(out);
    let input_frames = video(input);
    assert_eq!(
        frames.len() as u64,
        input_frames.len() as u64 - stats.dropped - stats.skipped_for_keyframe,
        "every input frame comes out unless counted as dropped ({stats:?})"
    );
    let input_pts: BTreeSet<_> = input_frames.iter().map(|f| f.pts).collect();
    assert!(
        frames.iter().all(|f| input_pts.contains(&f.pts)),
        "output timestamps are the input's"
    );
    assert!(
        frames
            .windows(2)
            .all(|w| w[1].pts > w[0].pts && w[1].dts > w[0].dts),
        "monotonic"
    );
    assert!(frames.iter().all(|f| f.pts >= f.dts));
    // Keyframes sit on the first frame at or after every whole second.
    let keys = keyframe_pts(out);
    let first = frames[0].pts;
    let expected: BTreeSet<_> = (0..)
        .map(Duration::from_secs)
        .take_while(|b| *b <= frames.last().unwrap().pts)
        .filter_map(|b| frames.iter().map(|f| f.pts).find(|p| *p >= b.max(first)))
        .collect();
    assert_eq!(keys, expected, "IDRs on the 1-s cadence");
    assert_eq!(audio(out), audio(input), "audio passes through untouched");
}
