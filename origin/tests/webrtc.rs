//! WHIP (going live over WebRTC) against the real server: headless Chromium
//! with its fake camera and microphone goes live from the studio page and
//! hls.js plays the ladder made from it; the API's refusals and session
//! lifecycle are checked with offers made by str0m.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use testkit::ffmpeg::TestSource;
use testkit::wait::{eventually, eventually_some};
use tokio::io::AsyncBufReadExt;

/// An SDP offer as a WHIP client makes it: send-only video (`"h264"` or
/// `"vp8"`) and Opus audio.
fn offer(video: &str) -> String {
    use str0m::media::{Direction, MediaKind};
    str0m::crypto::from_feature_flags().install_process_default();
    let mut b = str0m::Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false);
    b = match video {
        "h264" => b.enable_h264(true),
        _ => b.enable_vp8(true),
    };
    let mut rtc = b.build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _) = api.apply().expect("changes to offer");
    offer.to_sdp_string()
}

/// A request with any body and content type, and an optional bearer token.
async fn send(method: &str, url: &str, ct: &str, body: &str, token: Option<&str>) -> Resp {
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if !ct.is_empty() {
        req = req.header("content-type", ct);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(body.to_owned().into()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
        elapsed: Duration::ZERO,
    }
}

/// ffmpeg publishing a `size` test source for `seconds` over RTMP to
/// broadcast `b`, once its multivariant playlist is up.
async fn rtmp_live(
    server: &TestServer,
    b: &Created,
    size: &str,
    seconds: f32,
) -> tokio::process::Child {
    let ffmpeg = TestSource::new(size, seconds)
        .realtime()
        .publish(&server.rtmp_url(&b.key));
    let base = server.base();
    let live = eventually(Duration::from_secs(20), async || {
        get(&format!("{base}/hls/{}/master.m3u8", b.id))
            .await
            .status
            == 200
    })
    .await;
    assert!(live, "the RTMP publish went live");
    ffmpeg
}

/// How many of offers sent at once were admitted (201); every other one
/// must be a 503 whose error names `limit`.
async fn admitted(
    offers: impl IntoIterator<Item = tokio::task::JoinHandle<Resp>>,
    limit: &str,
) -> usize {
    let mut n = 0;
    for r in futures_util::future::join_all(offers).await {
        let r = r.unwrap();
        match r.status {
            201 => n += 1,
            503 => assert!(error_of(&r).contains(limit), "{}", r.text()),
            other => panic!("{other}: {}", r.text()),
        }
    }
    n
}

fn error_of(r: &Resp) -> String {
    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn status_of(base: &str, id: &str) -> String {
    let r = get(&format!("{base}/api/broadcasts/{id}")).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_refuses_what_it_should_and_sessions_end_by_delete_or_timeout() {
    let server = start_server(&[], |c| {
        c.webrtc.connect_timeout = Duration::from_secs(2);
        c.webrtc.max_sessions = 2;
    })
    .await;
    let base = server.base();
    let a = create_broadcast(&base, "WHIP A").await;
    let b = create_broadcast(&base, "WHIP B").await;
    let whip = |id: &str| format!("{base}/api/broadcasts/{id}/whip");
    let good = offer("h264");

    // The CORS preflight a browser on another site sends first.
    let pre = send("OPTIONS", &whip(&a.id), "", "", None).await;
    assert_eq!(pre.status, 204);
    assert!(pre.header("access-control-allow-methods").contains("POST"));
    assert!(
        pre.header("access-control-allow-methods")
            .contains("DELETE")
    );
    assert!(
        pre.header("access-control-allow-headers")
            .contains("authorization")
    );

    // Who may publish.
    for (key, want) in [
        (None, 401),
        (Some("nope"), 401),
        (Some(b.key.as_str()), 401),
    ] {
        let r = send("POST", &whip(&a.id), "application/sdp", &good, key).await;
        assert_eq!(r.status, want, "key {key:?}: {}", r.text());
        assert!(!error_of(&r).is_empty());
    }
    // What may be offered.
    let r = send(
        "POST",
        &whip(&a.id),
        "application/json",
        &good,
        Some(&a.key),
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.text());
    let r = send(
        "POST",
        &whip(&a.id),
        "application/sdp",
        "v=0\r\nnonsense",
        Some(&a.key),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(error_of(&r).contains("not valid SDP"), "{}", r.text());
    let r = send(
        "POST",
        &whip(&a.id),
        "application/sdp",
        &offer("vp8"),
        Some(&a.key),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(error_of(&r).contains("H.264"), "{}", r.text());

    // An accepted offer.
    let r = send("POST", &whip(&a.id), "application/sdp", &good, Some(&a.key)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/sdp");
    let location = r.header("location").to_owned();
    assert!(
        location.starts_with(&format!("/api/broadcasts/{}/whip/", a.id)),
        "{location}"
    );
    assert!(!r.header("etag").is_empty());
    assert!(
        r.header("access-control-expose-headers")
            .contains("location")
    );
    let answer = str0m::change::SdpAnswer::from_sdp_string(&r.text()).expect("an SDP answer");
    let answer = answer.to_sdp_string().to_ascii_uppercase();
    assert!(
        answer.contains("H264/90000") && answer.contains("OPUS/48000"),
        "{answer}"
    );
    assert!(
        answer.contains("127.0.0.1"),
        "a host candidate on loopback: {answer}"
    );
    // UDP, and ICE-TCP as the fallback, on the same port.
    assert!(answer.contains(" UDP "), "{answer}");
    assert!(
        answer.contains(" TCP ") && answer.contains("TCPTYPE PASSIVE"),
        "{answer}"
    );
    assert_eq!(metric(server.http, "origin_webrtc_sessions").await, 1.0);

    // Garbage on the UDP port (STUN-, DTLS- and RTP-looking, and random) is
    // dropped; the session task carries on.
    let port: u16 = answer
        .lines()
        .find(|l| l.contains("TYP HOST"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok())
        .expect("a host candidate with a port");
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..3000usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = 1 + (seed as usize % 1400);
        let mut d: Vec<u8> = (0..len).map(|j| (seed >> (j % 56)) as u8).collect();
        d[0] = [0x00, 0x01, 0x16, 0x80, 0x90, 0xff][i % 6];
        let _ = junk.send_to(&d, ("127.0.0.1", port));
    }
    let r = send("POST", &whip(&b.id), "application/sdp", &good, Some(&b.key)).await;
    assert_eq!(
        r.status,
        201,
        "the session task still answers: {}",
        r.text()
    );
    send(
        "DELETE",
        &format!("{base}{}", r.header("location")),
        "",
        "",
        None,
    )
    .await;
    assert_eq!(metric(server.http, "origin_webrtc_sessions").await, 1.0);

    // One publisher per broadcast, whatever the protocol.
    let r = send("POST", &whip(&a.id), "application/sdp", &good, Some(&a.key)).await;
    assert_eq!(r.status, 409, "{}", r.text());
    // Trickle ICE is not offered.
    let r = send(
        "PATCH",
        &format!("{base}{location}"),
        "application/trickle-ice-sdpfrag",
        "",
        None,
    )
    .await;
    assert_eq!(r.status, 405);

    // DELETE ends the session once.
    let r = send("DELETE", &format!("{base}{location}"), "", "", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = send("DELETE", &format!("{base}{location}"), "", "", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(metric(server.http, "origin_webrtc_sessions").await, 0.0);

    // A session that never connects is dropped after the connect timeout,
    // and the broadcast is free again.
    let r = send("POST", &whip(&a.id), "application/sdp", &good, Some(&a.key)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let freed = eventually(Duration::from_secs(5), async || {
        metric(server.http, "origin_webrtc_sessions").await == 0.0
    })
    .await;
    assert!(freed, "the unconnected session was not dropped within 5 s");
    let r = send("POST", &whip(&b.id), "application/sdp", &good, Some(&b.key)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let b_session = r.header("location").to_owned();
    send("DELETE", &format!("{base}{b_session}"), "", "", None).await;

    // RTMP live first: WHIP is refused.
    let _ffmpeg = TestSource::new("320x240", 30.0)
        .realtime()
        .publish(&server.rtmp_url(&a.key));
    let live = eventually(Duration::from_secs(10), async || {
        status_of(&base, &a.id).await == "live"
    })
    .await;
    assert!(live, "the RTMP publish went live");
    let r = send("POST", &whip(&a.id), "application/sdp", &good, Some(&a.key)).await;
    assert_eq!(r.status, 409, "{}", r.text());

    // An ended broadcast takes no more publishes.
    let r = request_json_as(
        "PATCH",
        &format!("{base}/api/broadcasts/{}", b.id),
        r#"{"status":"ended"}"#,
        Some(&b.token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = send("POST", &whip(&b.id), "application/sdp", &good, Some(&b.key)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(error_of(&r).contains("ended"));

    // A burst of publishers to eight broadcasts at once: the session limit
    // (2 here) holds, and those refused are told why.
    let mut burst = Vec::new();
    for n in 0..8 {
        let c = create_broadcast(&base, &format!("WHIP burst {n}")).await;
        let good = good.clone();
        let url = whip(&c.id);
        burst.push(tokio::spawn(async move {
            send("POST", &url, "application/sdp", &good, Some(&c.key)).await
        }));
    }
    assert_eq!(admitted(burst, "maximum of 2").await, 2);
    assert_eq!(metric(server.http, "origin_webrtc_sessions").await, 2.0);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_whep_viewers_get_every_frame_and_vanished_ones_are_dropped_by_ice() {
    let server = start_server(&[], |_| {}).await;
    let base = server.base();
    let b = create_broadcast(&base, "Four real-time viewers").await;
    let _ffmpeg = rtmp_live(&server, &b, "640x360", 60.0).await;
    // str0m peers as the benchmark's load generator runs them: ICE, DTLS,
    // SRTP, NACKs and receiver reports, as a browser does.
    let packetized = metric(server.http, "origin_webrtc_frames_packetized_total").await;
    let watching = Instant::now();
    let report = loadgen::whep::run(loadgen::whep::WhepLoadConfig {
        base: base.clone(),
        broadcast: b.id.clone(),
        rendition: None,
        viewers: 4,
        duration: Duration::from_secs(6),
        ramp: Duration::from_secs(1),
        fps: 30.0,
        server_pid: None,
    })
    .await;
    let r = serde_json::to_value(&report).unwrap();
    assert_eq!(report.connected, 4, "{r}");
    // Loss on loopback, or a break the NACKs did not repair, is a bug.
    assert_eq!(report.frames_missing, 0, "{r}");
    assert!(report.fps[0] > 20.0, "{r}");
    assert!(report.audio_pps > 40.0, "Opus from the AAC: {r}");
    // One packetization per frame of the one rendition (a 360p source has
    // no other), not one per viewer: about 30 a second for four viewers.
    let packetized =
        metric(server.http, "origin_webrtc_frames_packetized_total").await - packetized;
    let seconds = watching.elapsed().as_secs_f64();
    assert!(
        packetized > 20.0 * (seconds - 2.0) && packetized < 40.0 * seconds,
        "{packetized} frames packetized in {seconds:.1} s"
    );
    // The viewers went silent without a DELETE: their sessions stay until
    // ICE gives up on them, then go.
    assert_eq!(metric(server.http, "origin_webrtc_viewers").await, 4.0);
    let gone = eventually(Duration::from_secs(40), async || {
        metric(server.http, "origin_webrtc_viewers").await == 0.0
    })
    .await;
    assert!(gone, "vanished viewers were not dropped");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_over_ice_tcp_where_udp_is_not_offered() {
    let server = start_server(&[], |c| {
        c.webrtc.transports = vec![webrtc::Transport::Tcp];
    })
    .await;
    let base = server.base();
    let b = create_broadcast(&base, "Over TCP").await;
    let _ffmpeg = rtmp_live(&server, &b, "640x360", 40.0).await;
    let whep = format!("{base}/api/broadcasts/{}/whep", b.id);
    let r = send("POST", &whep, "application/sdp", &offer("h264"), None).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let answer = r.text().to_ascii_uppercase();
    assert!(answer.contains("TCPTYPE PASSIVE"), "{answer}");
    assert!(!answer.contains(" UDP "), "no UDP candidate: {answer}");
    send(
        "DELETE",
        &format!("{base}{}", r.header("location")),
        "",
        "",
        None,
    )
    .await;

    // A browser finds the TCP candidate and plays through it.
    let report = whep_viewer(&base, &b.id, 10, None).await;
    assert_eq!(report["transport"], "tcp", "{report}");
    assert_watched(&report, 10.0, 28.0);
    // Junk on the TCP port is closed, and the server still answers.
    let port: u16 = answer
        .lines()
        .find(|l| l.contains("TCPTYPE PASSIVE"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok())
        .expect("a TCP candidate with a port");
    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    junk.write_all(&[0, 4, 0xde, 0xad, 0xbe, 0xef])
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), junk.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the junk connection was closed: {closed:?}"
    );
    let r = send("POST", &whep, "application/sdp", &offer("h264"), None).await;
    assert_eq!(r.status, 201, "{}", r.text());
    drop(server);
}

/// A WHEP viewer in headless Chromium (`player/tests/whep.mjs`) watching
/// `id` for `seconds`, switching renditions as `switch` says
/// (`"480p:480,720p:720"`); its report.
async fn whep_viewer(
    base: &str,
    id: &str,
    seconds: u32,
    switch: Option<&str>,
) -> serde_json::Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../player/tests/whep.mjs"
    ))
    .args([base, id, &seconds.to_string()]);
    if let Some(plan) = switch {
        cmd.args(["--switch", plan]);
    }
    let out = cmd
        .kill_on_drop(true)
        .output()
        .await
        .expect("node and the player's npm packages (scripts/deps.sh installs them)");
    assert!(out.status.success(), "whep.mjs failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a report line")).unwrap();
    eprintln!("whep viewer: {report}");
    report
}

/// What every WHEP viewer must have seen: pictures from the start at
/// `fps` or more, no freeze, audio with sound in it and little concealed,
/// and a session DELETE ended.
fn assert_watched(r: &serde_json::Value, seconds: f64, fps: f64) {
    assert_eq!(r["fatal"], serde_json::json!([]), "{r}");
    assert!(
        r["firstFrameMs"].as_u64().is_some_and(|ms| ms < 5000),
        "{r}"
    );
    assert!(
        r["framesDecoded"].as_f64().unwrap() > (seconds - 2.0) * fps,
        "{r}"
    );
    assert!(r["maxFreezeMs"].as_u64().unwrap() < 1000, "{r}");
    let audio = &r["audio"];
    assert!(
        audio["packetsReceived"].as_f64().unwrap() > seconds * 30.0,
        "{r}"
    );
    assert!(
        audio["totalAudioEnergy"].as_f64().unwrap() > 0.0,
        "silent audio: {r}"
    );
    let concealed = audio["concealedSamples"].as_f64().unwrap()
        / audio["totalSamplesReceived"].as_f64().unwrap().max(1.0);
    assert!(
        concealed < 0.05,
        "{:.0} % of the audio concealed: {r}",
        concealed * 100.0
    );
    assert_eq!(r["deleteStatus"], 200, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_over_rtmp_plays_over_whep_with_audio_and_switches_renditions() {
    let server = start_server(&[], |c| c.webrtc.max_viewers_per_broadcast = 3).await;
    let base = server.base();
    let rt = create_broadcast(&base, "Real time from RTMP").await;
    let whep = format!("{base}/api/broadcasts/{}/whep", rt.id);
    // Not live yet: nothing to play.
    let r = send("POST", &whep, "application/sdp", &offer("h264"), None).await;
    assert_eq!(r.status, 409, "{}", r.text());
    let _ffmpeg = rtmp_live(&server, &rt, "1280x720", 60.0).await;
    let r = send(
        "POST",
        &format!("{whep}?rendition=1080p"),
        "application/sdp",
        &offer("h264"),
        None,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(error_of(&r).contains("720p, 480p"), "{}", r.text());
    let report = whep_viewer(&base, &rt.id, 25, Some("480p:480,720p:720")).await;
    // ffmpeg's 30 fps, all of it.
    assert_watched(&report, 25.0, 28.0);
    // Offered both, the browser takes UDP.
    assert_eq!(report["transport"], "udp", "{report}");
    let switches = report["switches"].as_array().unwrap();
    assert_eq!(switches.len(), 2, "{report}");
    assert!(switches.iter().all(|s| s["ok"] == true), "{report}");
    assert!(
        report["codec"]
            .as_str()
            .unwrap_or_default()
            .contains("packetization-mode=1"),
        "{report}"
    );
    assert_eq!(metric(server.http, "origin_webrtc_viewers").await, 0.0);

    // A burst of 24 viewers: the per-broadcast limit (3 here) holds, and
    // those refused are told why. The three admitted never connect (their
    // connect timeout is 15 s), so they are still there when the broadcast
    // ends, and are let go at once.
    let burst = (0..24).map(|_| {
        let (whep, offer) = (whep.clone(), offer("h264"));
        tokio::spawn(async move { send("POST", &whep, "application/sdp", &offer, None).await })
    });
    assert_eq!(admitted(burst, "maximum of 3").await, 3);
    assert_eq!(metric(server.http, "origin_webrtc_viewers").await, 3.0);
    let r = request_json_as(
        "PATCH",
        &format!("{base}/api/broadcasts/{}", rt.id),
        r#"{"status":"ended"}"#,
        Some(&rt.token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let gone = eventually(Duration::from_secs(3), async || {
        metric(server.http, "origin_webrtc_viewers").await == 0.0
    })
    .await;
    assert!(gone, "the viewer's session closed with the broadcast");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_page_plays_in_real_time_and_falls_back_to_ll_hls() {
    let server = start_server(&[], |c| {
        c.webrtc.max_viewers_per_broadcast = 1;
    })
    .await;
    let base = server.base();
    let b = create_broadcast(&base, "Real time").await;
    let _ffmpeg = TestSource::new("1280x720", 90.0)
        .realtime()
        .publish(&server.rtmp_url(&b.key));
    let out = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../player/tests/watch-realtime.mjs"
        ))
        .args([base.as_str(), b.id.as_str()])
        .kill_on_drop(true)
        .output()
        .await
        .expect("node and the player's npm packages (scripts/deps.sh installs them)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a report line")).unwrap();
    eprintln!("watch page: {report}");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 10, "{report}");
    for s in steps {
        assert_eq!(s["ok"], true, "{s}: {report}");
    }
    drop(server);
}

/// The studio page (`player/tests/whip.mjs`), opened by an invite link,
/// going live with `args`; returns the script and its first line
/// (`{"live": true, "id": …}`).
async fn studio(
    base: &str,
    args: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    String,
) {
    let invite = request_json_as(
        "POST",
        &format!("{base}/api/admin/invites"),
        "{}",
        Some(ADMIN_TOKEN),
    )
    .await;
    let invite: serde_json::Value = serde_json::from_slice(&invite.body).unwrap();
    let mut studio = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../player/tests/whip.mjs"
        ))
        .arg(invite["link"].as_str().expect("an invite link"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node and the player's npm packages (scripts/deps.sh installs them)");
    let mut lines = tokio::io::BufReader::new(studio.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(40), lines.next_line())
        .await
        .expect("the studio went live or failed within 40 s")
        .unwrap()
        .expect("a line from the studio");
    let live: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(live["live"], true, "{first}");
    let id = live["id"].as_str().unwrap().to_owned();
    (studio, lines, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_publisher_that_vanishes_is_dropped_when_ice_gives_up() {
    let server = start_server(&[], |c| {
        c.hls.reconnect_grace = Duration::from_secs(2);
    })
    .await;
    let base = server.base();
    let (_studio, mut lines, id) = studio(&base, &["60", "--vanish"]).await;
    let gone = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(gone.contains("vanished"), "{gone}");
    let killed = Instant::now();
    assert_eq!(metric(server.http, "origin_webrtc_sessions").await, 1.0);
    let closed = eventually_some(Duration::from_secs(60), async || {
        (metric(server.http, "origin_webrtc_sessions").await == 0.0).then(|| killed.elapsed())
    })
    .await;
    let closed = closed.expect("the session was dropped within 60 s of the browser's death");
    eprintln!("session dropped {closed:?} after the browser was killed");
    let dropped = Instant::now();
    let ended = eventually_some(Duration::from_secs(30), async || {
        (status_of(&base, &id).await == "ended").then(|| dropped.elapsed())
    })
    .await;
    eprintln!("broadcast ended {ended:?} after the session was dropped");
    assert!(ended.is_some(), "the broadcast ended after the grace");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_studio_goes_live_from_the_browser_and_hls_js_plays_the_ladder() {
    let server = start_server(&[], |c| {
        c.hls.reconnect_grace = Duration::from_secs(3);
    })
    .await;
    let base = server.base();
    let (mut studio, mut lines, id) = studio(&base, &["60"]).await;

    // The directory lists it live.
    let listed = eventually(Duration::from_secs(10), async || {
        let r = get(&format!("{base}/api/broadcasts?status=live")).await;
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["broadcasts"]
            .as_array()
            .is_some_and(|all| all.iter().any(|b| b["id"] == id.as_str()))
    })
    .await;
    assert!(listed, "the directory lists the browser's broadcast live");

    // The ladder, with AAC made from the browser's Opus.
    let master_url = format!("{base}/hls/{id}/master.m3u8");
    let master = get(&master_url).await.text();
    assert!(master.contains("RESOLUTION=1280x720"), "{master}");
    assert!(master.contains("RESOLUTION=854x480"), "{master}");
    assert!(
        master.contains("mp4a.40.2"),
        "audio in the ladder: {master}"
    );

    // hls.js plays it and switches 720p → 480p → 720p.
    let player = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../player/tests/llhls-play.mjs"
        ))
        .args([master_url.as_str(), "25", "--switch"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let report = hls_js_report(player).await;
    eprintln!("hls.js: {report}");
    assert_eq!(report["fatal"], serde_json::json!([]), "{report}");
    let switches = report["switches"].as_array().unwrap();
    assert_eq!(switches.len(), 2, "{report}");
    assert!(switches.iter().all(|s| s["ok"] == true), "{report}");
    assert!(report["currentTime"].as_f64().unwrap() > 15.0, "{report}");
    assert!(metric(server.http, "origin_webrtc_bytes_total").await > 100_000.0);

    // A second page plays it over WHEP: the ladder made from the browser,
    // with the browser's own Opus.
    let report = whep_viewer(&base, &id, 15, Some("480p:480,720p:720")).await;
    // The browser encodes as fast as this busy machine lets it (about 20 fps).
    assert_watched(&report, 15.0, 10.0);
    assert!(
        report["switches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["ok"] == true),
        "{report}"
    );

    // "Stop" in the studio ends the session (DELETE) and, after the grace, the broadcast.
    let done = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the studio stopped")
        .unwrap()
        .expect("a second line from the studio");
    let done: serde_json::Value = serde_json::from_str(&done).unwrap();
    eprintln!("studio: {done}");
    assert_eq!(done["stopped"], true);
    assert!(
        done["stats"]["audio"]["packetsSent"].as_u64().unwrap() > 500,
        "{done}"
    );
    assert_eq!(studio.wait().await.unwrap().code(), Some(0));
    let ended = eventually(Duration::from_secs(10), async || {
        metric(server.http, "origin_webrtc_sessions").await == 0.0
            && status_of(&base, &id).await == "ended"
    })
    .await;
    assert!(ended, "session closed and broadcast ended after the grace");
    drop(server);
}
