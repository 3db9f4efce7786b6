//! A publisher that drops and comes back within the grace period continues the
//! same playlists after an EXT-X-DISCONTINUITY, with MEDIA-SEQUENCE still
//! growing; after the end the window lingers, then is freed.

mod common;

use std::time::Duration;

use common::*;
use testkit::ffmpeg::TestSource;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_continues_the_playlist_after_a_discontinuity() {
    let server = start_server(&["re"], |c| {
        c.hls.reconnect_grace = Duration::from_secs(5);
        c.hls.linger_after_end = Duration::from_secs(3);
        // The window's own life: recorded, the URLs would play the replay
        // after the end instead (tests/replay.rs).
        c.recording.enabled = false;
    })
    .await;
    let url = format!("{}/hls/re/480p.m3u8", server.base());

    assert!(
        TestSource::new("854x480", 5.0)
            .gop(30)
            .realtime()
            .publish(&server.rtmp_url("re"))
            .wait()
            .await
            .unwrap()
            .success()
    );
    let first = parse_media(&get(&url).await.text());
    assert!(!first.ended, "still live during the grace period");
    let last_msn_before = first.segments.last().unwrap().msn;
    let map_before = first.segments[0].map.clone().unwrap();

    assert!(
        TestSource::new("854x480", 5.0)
            .gop(30)
            .realtime()
            .publish(&server.rtmp_url("re"))
            .wait()
            .await
            .unwrap()
            .success()
    );
    let second = parse_media(&get(&url).await.text());
    assert!(
        second.media_sequence >= first.media_sequence,
        "MEDIA-SEQUENCE never goes back"
    );
    let disc: Vec<&Seg> = second.segments.iter().filter(|s| s.discontinuity).collect();
    assert_eq!(disc.len(), 1, "one EXT-X-DISCONTINUITY:\n{}", second.text);
    assert!(
        disc[0].msn > last_msn_before,
        "the new publish continues after segment {last_msn_before}"
    );
    assert!(
        disc[0].pdt.is_some(),
        "PROGRAM-DATE-TIME after the discontinuity"
    );
    assert!(
        second
            .segments
            .iter()
            .all(|s| s.map.is_none() || s.map.as_ref() == Some(&map_before) || s.discontinuity)
    );

    // Nobody comes back: ENDLIST after the grace period, then the window is freed.
    assert!(
        eventually(Duration::from_secs(10), async || parse_media(
            &get(&url).await.text()
        )
        .ended)
        .await,
        "ENDLIST after the grace period"
    );
    assert_eq!(
        get(&url).await.status,
        200,
        "the ended window stays for late viewers"
    );
    assert!(
        eventually(Duration::from_secs(10), async || get(&url).await.status
            == 404)
        .await,
        "and is freed after the linger time"
    );
}
