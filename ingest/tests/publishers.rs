//! Real publishers (ffmpeg, GStreamer rtmp2sink) through the real server.

mod common;

use std::time::Duration;

use common::*;
use ingest::MediaEvent;
use testkit::ffmpeg::TestSource;

fn assert_well_formed(events: &[Timed], expect_frames: usize, gop: usize) {
    let first_video_cfg = events
        .iter()
        .position(|(_, e)| matches!(e, MediaEvent::VideoConfig(_)))
        .expect("no AVC sequence header");
    let first_video = events
        .iter()
        .position(|(_, e)| matches!(e, MediaEvent::Video(_)))
        .expect("no video");
    assert!(first_video_cfg < first_video, "config must precede frames");
    let first_audio_cfg = events
        .iter()
        .position(|(_, e)| matches!(e, MediaEvent::AudioConfig(_)))
        .expect("no AAC sequence header");
    let first_audio = events
        .iter()
        .position(|(_, e)| matches!(e, MediaEvent::Audio(_)))
        .expect("no audio");
    assert!(first_audio_cfg < first_audio);

    let frames = video_frames(events);
    assert_eq!(frames.len(), expect_frames, "video frame count");
    let keyframes: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keyframes[0], 0, "stream starts with a keyframe");
    assert!(
        keyframes.windows(2).all(|w| w[1] - w[0] == gop),
        "keyframe cadence {keyframes:?}"
    );
    assert!(
        frames.windows(2).all(|w| w[1].dts > w[0].dts),
        "dts strictly increasing"
    );
    assert!(frames.iter().all(|f| f.pts >= f.dts), "pts >= dts");
    assert!(
        frames.iter().any(|f| f.pts > f.dts),
        "B-frames give positive composition offsets"
    );

    let audio: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match e {
            MediaEvent::Audio(a) => Some(a.pts),
            _ => None,
        })
        .collect();
    assert!(
        audio.windows(2).all(|w| w[1] > w[0]),
        "audio pts increasing"
    );
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e, MediaEvent::Discontinuity))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_and_is_demuxed() {
    let mut server = start(&["ffkey"], test_config()).await;
    let mut ff = TestSource::new("640x360", 4.0)
        .gop(30)
        .bframes(2)
        .publish(&server.url("ffkey"));
    let publish = server.next_publish(Duration::from_secs(20)).await;
    assert_eq!(publish.broadcast_id, "ffkey");
    let events = collect(publish, Duration::from_secs(30)).await;
    assert!(ff.wait().await.unwrap().success(), "ffmpeg failed");

    assert!(matches!(events[0].1, MediaEvent::Metadata(ref m) if m.width == Some(640)));
    let cfg = events
        .iter()
        .find_map(|(_, e)| match e {
            MediaEvent::VideoConfig(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((cfg.width, cfg.height), (640, 360));
    let aac = events
        .iter()
        .find_map(|(_, e)| match e {
            MediaEvent::AudioConfig(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((aac.sample_rate_hz, aac.channels), (48000, 1));
    assert_well_formed(&events, 120, 30);
    let frames = video_frames(&events);
    // 30 fps on RTMP's millisecond clock: frame 30 is at 1000 ms after frame 0.
    assert_eq!(frames[30].dts - frames[0].dts, Duration::from_millis(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_rtmp2sink_publishes_and_is_demuxed() {
    let mut server = start(&["gstkey"], test_config()).await;
    let pipeline = format!(
        "videotestsrc num-buffers=90 ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc key-int-max=30 bframes=2 speed-preset=ultrafast ! h264parse ! flvmux name=m streamable=true \
         ! rtmp2sink location={} \
         audiotestsrc num-buffers=140 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 \
         ! avenc_aac ! aacparse ! m.",
        server.url("gstkey")
    );
    let mut gst = tokio::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .kill_on_drop(true)
        .spawn()
        .expect("gst-launch-1.0 must be installed");
    let publish = server.next_publish(Duration::from_secs(20)).await;
    let events = collect(publish, Duration::from_secs(30)).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), gst.wait()).await;
    assert_well_formed(&events, 90, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_tee_without_a_global_header_is_demuxed_from_in_band_parameter_sets() {
    // The tee muxer sends an empty AVC sequence header and puts SPS/PPS in the keyframes.
    let mut server = start(&["teekey"], test_config()).await;
    let url = format!("[f=flv]{}", server.url("teekey"));
    let mut ff = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-t",
            "2",
            "-map",
            "0:v",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-f",
            "tee",
            &url,
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let publish = server.next_publish(Duration::from_secs(20)).await;
    let events = collect(publish, Duration::from_secs(30)).await;
    assert!(ff.wait().await.unwrap().success());
    let cfg = events
        .iter()
        .find_map(|(_, e)| match e {
            MediaEvent::VideoConfig(c) => Some(c.clone()),
            _ => None,
        })
        .expect("a configuration from in-band SPS/PPS");
    assert_eq!((cfg.width, cfg.height), (320, 240));
    assert_eq!(video_frames(&events).len(), 60);
}
