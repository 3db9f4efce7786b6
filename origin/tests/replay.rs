//! Replays against real peers: ffmpeg publishes, the real server records,
//! ffmpeg decodes the replay and stock hls.js in Chromium seeks in it;
//! retention on a real disk; a full disk (a real tmpfs) during a live
//! broadcast.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use testkit::ffmpeg::TestSource;
use testkit::wait::eventually;

async fn json_of(method: &str, url: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let r = request_json_as(method, url, body, token).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn broadcast(base: &str, id: &str) -> Value {
    json_of("GET", &format!("{base}/api/broadcasts/{id}"), "", None)
        .await
        .1
}

/// Waits until `id`'s record says `ended` and its replay is `ready`.
async fn wait_for_replay(base: &str, id: &str, limit: Duration) -> Value {
    let ready = eventually(limit, async || {
        let v = broadcast(base, id).await;
        v["status"] == "ended" && v["replay"]["state"] == "ready"
    })
    .await;
    let v = broadcast(base, id).await;
    assert!(ready, "the broadcast ended and its replay is ready: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_becomes_a_replay_that_ffmpeg_decodes_and_hls_js_seeks_in() {
    let server = start_server(&[], |c| c.hls.reconnect_grace = Duration::from_secs(1)).await;
    let base = server.base();
    let b = create_broadcast(&base, "Replay me").await;
    let published = TestSource::new("1280x720", 20.0)
        .gop(60)
        .realtime()
        .publish(&server.rtmp_url(&b.key))
        .wait()
        .await
        .unwrap();
    assert!(published.success());
    let v = wait_for_replay(&base, &b.id, Duration::from_secs(30)).await;
    let secs = v["replay"]["duration_secs"].as_f64().unwrap();
    assert!((17.0..=22.0).contains(&secs), "about 20 s recorded: {v}");

    // The same playback URL: a VOD multivariant playlist with the ladder.
    let master_url = format!("{base}/hls/{}/master.m3u8", b.id);
    let master = get(&master_url).await;
    assert_eq!(master.status, 200);
    assert_eq!(master.header("cache-control"), "public, max-age=10");
    let text = master.text();
    assert!(
        text.contains("720p.m3u8") && text.contains("480p.m3u8"),
        "{text}"
    );
    let mut first_segment = String::new();
    for r in ["720p", "480p"] {
        let media = get(&format!("{base}/hls/{}/{r}.m3u8", b.id)).await.text();
        assert!(media.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{media}");
        assert!(media.ends_with("#EXT-X-ENDLIST\n"), "{media}");
        assert!(!media.contains("#EXT-X-PART"), "parts are not recorded");
        let listed = listed_secs(&media);
        assert!((17.0..=22.0).contains(&listed), "{r} lists {listed} s");
        first_segment = media
            .lines()
            .find(|l| l.ends_with(".m4s"))
            .unwrap()
            .to_owned();
    }
    let errors = ffmpeg_decode_errors(&master_url).await;
    assert!(errors.trim().is_empty(), "ffmpeg reported errors: {errors}");

    // Stock hls.js seeks to the middle and plays on, in either rendition.
    let r = player_report("replay-play.mjs", &[&master_url]).await;
    eprintln!("hls.js: {r}");
    assert_eq!(r["fatal"], json!([]), "{r}");
    let duration = r["duration"].as_f64().unwrap();
    assert!((17.0..=22.0).contains(&duration), "{r}");
    let seeked = r["seekedTo"].as_f64().unwrap();
    assert!(
        (seeked - duration / 2.0).abs() < 1.0,
        "seeked to the middle: {r}"
    );
    assert!(
        r["playedAfterSeek"].as_f64().unwrap() >= 3.0,
        "played on after the seek: {r}"
    );
    // hls.js orders levels by bitrate.
    assert_eq!(r["heights"], json!([480, 720]), "both renditions: {r}");

    // The replay keeps the last thumbnail, and the directory lists it.
    let thumb = get(&format!("{base}/api/broadcasts/{}/thumbnail.jpg", b.id)).await;
    assert_eq!(
        (thumb.status, thumb.header("content-type")),
        (200, "image/jpeg")
    );
    let (_, found) = json_of(
        "GET",
        &format!("{base}/api/broadcasts?replay=ready&q=replay"),
        "",
        None,
    )
    .await;
    let hit = &found["broadcasts"][0];
    assert_eq!(
        (&hit["id"], &hit["replay"]["state"]),
        (&json!(b.id), &json!("ready")),
        "{found}"
    );

    // Only the owner deletes it; then its files are gone and its URLs say so.
    let url = format!("{base}/api/broadcasts/{}/replay", b.id);
    assert_eq!(json_of("DELETE", &url, "", None).await.0, 401);
    let (s, v) = json_of("DELETE", &url, "", Some(&b.token)).await;
    assert_eq!((s, &v["replay"]["state"]), (200, &json!("deleted")), "{v}");
    assert_eq!(get(&master_url).await.status, 410);
    assert_eq!(
        get(&format!("{base}/hls/{}/720p.m3u8", b.id)).await.status,
        410
    );
    let segment = get(&format!("{base}/hls/{}/{first_segment}", b.id)).await;
    assert_eq!(segment.status, 404, "{first_segment}");
    let left = testkit::files::under(&server._data.path().join("recordings").join(&b.id));
    let names: Vec<String> = left
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["deleted"], "only the mark is left");
    assert_eq!(json_of("DELETE", &url, "", Some(&b.token)).await.0, 404);

    // An owner who opts out gets no recording, and a live one cannot be deleted.
    let (s, v) = json_of(
        "POST",
        &format!("{base}/api/broadcasts"),
        &json!({"title": "Not kept", "recorded": false}).to_string(),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!((s, &v["recorded"]), (201, &json!(false)), "{v}");
    let (id, key, token) = (
        v["id"].as_str().unwrap().to_owned(),
        v["stream_key"].as_str().unwrap().to_owned(),
        v["owner_token"].as_str().unwrap().to_owned(),
    );
    let mut ff = TestSource::new("854x480", 6.0)
        .gop(60)
        .realtime()
        .publish(&server.rtmp_url(&key));
    assert!(
        eventually(Duration::from_secs(15), async || get(&format!(
            "{base}/hls/{id}/master.m3u8"
        ))
        .await
        .status
            == 200)
        .await
    );
    let (s, _) = json_of(
        "DELETE",
        &format!("{base}/api/broadcasts/{id}/replay"),
        "",
        Some(&token),
    )
    .await;
    assert_eq!(s, 409, "a live broadcast's replay cannot be deleted");
    assert!(ff.wait().await.unwrap().success());
    assert!(
        eventually(Duration::from_secs(15), async || broadcast(&base, &id)
            .await["status"]
            == "ended")
        .await
    );
    assert_eq!(broadcast(&base, &id).await["replay"], Value::Null);
    assert!(!server._data.path().join("recordings").join(&id).exists());
}

/// A recording an earlier run left: `bytes` of media, ended `ended_ago`.
fn fake_replay(root: &Path, id: &str, bytes: usize, ended_ago: Duration) {
    let dir = root.join(id).join("g0").join("240p");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("s1.m4s"), vec![0u8; bytes]).unwrap();
    let ended = std::time::SystemTime::now() - ended_ago;
    let secs = ended
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let line = json!({"msn": 1, "duration_us": 2_000_000, "pdt_ms": secs * 1000 - 2000, "init": 0, "bytes": bytes});
    std::fs::write(dir.join("index.jsonl"), format!("{line}\n")).unwrap();
    std::fs::write(root.join(id).join("ended"), secs.to_string()).unwrap();
}

const MB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_the_oldest_replay_first_and_never_the_live_recording() {
    let data = tempfile::tempdir().unwrap();
    let root = data.path().join("recordings");
    let hour = Duration::from_secs(3600);
    fake_replay(&root, "expired", 10_000, 40 * 24 * hour);
    fake_replay(&root, "older", 2 * MB, 2 * hour);
    fake_replay(&root, "newer", 2 * MB, hour);
    let data_dir = data.path().to_owned();
    let server = start_server(&[], move |c| {
        c.data_dir = data_dir;
        c.hls.reconnect_grace = Duration::from_secs(1);
        // 4.6 MB: the live broadcast (about 45 kB/s) pushes the total over
        // after about 13 s, and past the newer replay's share only after 50.
        c.recording.max_bytes = (4.6 * MB as f64) as u64;
        c.transcoder.renditions = vec![transcoder::ladder::RenditionSpec {
            name: "240p".into(),
            height: 240,
            bitrate_kbps: 200,
        }];
    })
    .await;
    // At start: only the expired one goes (30 days by default).
    assert!(
        eventually(Duration::from_secs(10), async || !root
            .join("expired")
            .exists())
        .await,
        "the replay past max_age is deleted at start"
    );
    assert!(root.join("older").exists() && root.join("newer").exists());
    let base = server.base();
    let live = create_broadcast(&base, "Live while retention runs").await;
    let mut ff = TestSource::new("426x240", 30.0)
        .gop(60)
        .realtime()
        .publish(&server.rtmp_url(&live.key));
    assert!(
        eventually(Duration::from_secs(35), async || !root
            .join("older")
            .exists())
        .await,
        "the oldest replay is deleted once the live recording pushes the total over the quota"
    );
    assert!(
        root.join("newer").exists(),
        "only as much as needed, oldest first"
    );
    assert!(root.join(&live.id).exists(), "never the live recording");
    let before = metric(server.http, "origin_recording_segments_total").await;
    assert!(
        eventually(Duration::from_secs(10), async || metric(
            server.http,
            "origin_recording_segments_total"
        )
        .await
            > before)
        .await,
        "the live recording goes on"
    );
    assert!(ff.wait().await.unwrap().success());
    let v = wait_for_replay(&base, &live.id, Duration::from_secs(20)).await;
    assert!(v["replay"]["duration_secs"].as_f64().unwrap() > 20.0, "{v}");
    assert!(root.join("newer").exists());
    assert_eq!(
        metric_labeled(
            server.http,
            "origin_replays_deleted_total",
            "reason=\"max_bytes\""
        )
        .await,
        1.0
    );
    assert_eq!(
        metric_labeled(
            server.http,
            "origin_replays_deleted_total",
            "reason=\"max_age\""
        )
        .await,
        1.0
    );
    // The operator deleting the broadcast deletes its replay too.
    let r = request_json_as(
        "DELETE",
        &format!("{base}/api/admin/broadcasts/{}", live.id),
        "",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        get(&format!("{base}/hls/{}/master.m3u8", live.id))
            .await
            .status,
        410
    );
    assert_eq!(
        testkit::files::under(&root.join(&live.id)),
        [root.join(&live.id).join("deleted")]
    );
}

/// A tmpfs of `size` mounted at `at` while it lives.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mounting a tmpfs needs root (the README's test command runs as root)"
        );
        Tmpfs(at.to_owned())
    }

    fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remounting the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_recording_while_live_playback_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_owned();
    let disk = Tmpfs::mount(&data_dir.join("recordings"), "600k");
    let server = start_server(&[], move |c| {
        c.data_dir = data_dir;
        c.hls.reconnect_grace = Duration::from_secs(1);
    })
    .await;
    let base = server.base();
    let b = create_broadcast(&base, "Disk full").await;
    let mut ff = TestSource::new("854x480", 40.0)
        .gop(60)
        .realtime()
        .publish(&server.rtmp_url(&b.key));
    let master = format!("{base}/hls/{}/master.m3u8", b.id);
    assert!(
        eventually(Duration::from_secs(15), async || get(&master).await.status
            == 200)
        .await
    );
    let player = hls_js(&master, 20);
    assert!(
        eventually(Duration::from_secs(15), async || metric(
            server.http,
            "origin_recording_paused"
        )
        .await
            == 1.0)
        .await,
        "a full disk pauses recording"
    );
    let report = hls_js_report(player).await;
    eprintln!("hls.js: {report}");
    assert_eq!(report["fatal"], json!([]), "{report}");
    let waits = report["stalls"]
        .as_u64()
        .unwrap()
        .max(report["waiting"].as_u64().unwrap());
    // As in players.rs: a debug build sharing 2 cores may run dry once briefly.
    assert!(waits <= 1, "live playback goes on: {report}");
    assert!(metric_labeled(server.http, "origin_recording_dropped_total", "disk_full").await > 0.0);

    // Room again: recording resumes by itself.
    disk.resize("64m");
    let before = metric(server.http, "origin_recording_segments_total").await;
    assert!(
        eventually(Duration::from_secs(10), async || metric(
            server.http,
            "origin_recording_paused"
        )
        .await
            == 0.0
            && metric(server.http, "origin_recording_segments_total").await
                > before)
        .await,
        "recording resumes when space returns"
    );
    assert!(ff.wait().await.unwrap().success());
    wait_for_replay(&base, &b.id, Duration::from_secs(20)).await;
    // The replay plays across what was not recorded.
    let media = get(&format!("{base}/hls/{}/480p.m3u8", b.id)).await.text();
    assert!(media.contains("#EXT-X-DISCONTINUITY\n"), "{media}");
    let errors = ffmpeg_decode_errors(&master).await;
    assert!(errors.trim().is_empty(), "ffmpeg reported errors: {errors}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_broadcast_loses_at_most_the_open_segment_and_the_replay_plays_across_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("origin.toml");
    std::fs::write(&config, "[hls]\nreconnect_grace_secs = 4\n").unwrap();
    let (http, rtmp) = (testkit::wait::free_addr(), testkit::wait::free_addr());
    let launch = || {
        Binary::start(rtmp, http, |c| {
            c.arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "warn");
        })
    };
    let p = launch().await;
    let base = p.base();
    let b = create_broadcast(&base, "Crash").await;
    let ff = TestSource::new("854x480", 60.0)
        .gop(60)
        .realtime()
        .publish(&p.rtmp_url(&b.key));
    let playlist = format!("{base}/hls/{}/480p.m3u8", b.id);
    assert!(
        eventually(Duration::from_secs(30), async || {
            let r = get(&playlist).await;
            r.status == 200
                && parse_media(&r.text())
                    .segments
                    .iter()
                    .filter(|s| !s.uri.is_empty())
                    .count()
                    >= 4
        })
        .await,
        "four complete segments live"
    );
    let served: Vec<String> = parse_media(&get(&playlist).await.text())
        .segments
        .into_iter()
        .filter(|s| !s.uri.is_empty())
        .map(|s| s.uri)
        .collect();
    // Within a segment's duration: the next segment is still open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.signal("KILL");
    drop(ff);
    drop(p);

    // The restarted server continues; the publisher comes back, then stops.
    let p = launch().await;
    let back = TestSource::new("854x480", 8.0)
        .gop(60)
        .realtime()
        .publish(&p.rtmp_url(&b.key))
        .wait()
        .await
        .unwrap();
    assert!(back.success());
    let v = wait_for_replay(&base, &b.id, Duration::from_secs(30)).await;
    eprintln!("replay: {v}");
    let replay = get(&playlist).await.text();
    for uri in &served {
        assert!(
            replay.contains(&format!("\n{uri}\n")),
            "{uri}, complete before the crash, is in the replay:\n{replay}"
        );
    }
    let generations: std::collections::HashSet<&str> = replay
        .lines()
        .filter(|l| l.ends_with(".m4s"))
        .filter_map(|l| l.split('/').nth(1))
        .collect();
    assert_eq!(
        generations.len(),
        2,
        "before and after the crash, as one replay:\n{replay}"
    );
    assert!(replay.contains("#EXT-X-DISCONTINUITY\n"), "{replay}");
    let errors = ffmpeg_decode_errors(&format!("{base}/hls/{}/master.m3u8", b.id)).await;
    assert!(errors.trim().is_empty(), "ffmpeg reported errors: {errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_broadcast_rewinds_a_minute_and_returns_to_live() {
    let server = start_server(&[], |c| c.hls.dvr_window = Duration::from_secs(120)).await;
    let base = server.base();
    let b = create_broadcast(&base, "Rewind").await;
    let _ff = TestSource::new("854x480", 130.0)
        .gop(60)
        .realtime()
        .publish(&server.rtmp_url(&b.key));
    let playlist = format!("{base}/hls/{}/480p.m3u8", b.id);
    // A player's first playlist, and a blocking delta reload at the live edge.
    let sizes = async || {
        let full = get(&playlist).await;
        if full.status != 200 {
            return (0, 0, 0.0);
        }
        let (msn, part) = parse_media(&full.text()).last_position();
        let reload = format!(
            "{playlist}?_HLS_msn={msn}&_HLS_part={}&_HLS_skip=YES",
            part + 1
        );
        let delta = get(&reload).await;
        assert_eq!(delta.status, 200);
        (full.body.len(), delta.body.len(), listed_secs(&full.text()))
    };
    // Before any segment has left memory (20 s), then with 75 s listed.
    assert!(eventually(Duration::from_secs(40), async || sizes().await.2 >= 15.0).await);
    let plain = sizes().await;
    assert!(
        plain.2 <= 21.0,
        "nothing out of memory listed yet: {plain:?}"
    );
    assert!(eventually(Duration::from_secs(90), async || sizes().await.2 >= 75.0).await);
    let long = sizes().await;
    eprintln!(
        "playlist bytes (full, blocking delta reload, seconds listed): {plain:?} without rewind lines, {long:?} with"
    );
    assert!(
        long.0 > 2 * plain.0,
        "the first playlist lists the rewind window"
    );
    assert!(
        long.1 <= plain.1 + 300,
        "a reload at the live edge does not grow: {} against {} bytes",
        long.1,
        plain.1
    );

    let master = format!("{base}/hls/{}/master.m3u8", b.id);
    let r = player_report("dvr-play.mjs", &[&master]).await;
    eprintln!("rewind: {r}");
    assert_eq!(r["fatal"], json!([]), "{r}");
    assert!(
        r["seekable"].as_f64().unwrap() >= 65.0,
        "a minute and more to seek in: {r}"
    );
    let live = r["live"].as_f64().unwrap();
    let rewound = r["rewound"].as_f64().unwrap();
    assert!(
        rewound >= live + 55.0,
        "playing about a minute behind, not pulled back: {r}"
    );
    assert!(
        r["playedRewound"].as_f64().unwrap() >= 3.0,
        "and playing there: {r}"
    );
    let back = r["back"].as_f64().unwrap();
    assert!(
        back <= live + 1.0,
        "back to live within 1 s of its latency: {r}"
    );
}
