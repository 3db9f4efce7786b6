//! Several origins as one service, with real peers on loopback: a
//! PostgreSQL started by the test, two origins sharing it, ffmpeg publishing
//! to one of them, the nginx edge of `deploy/nginx-edge.conf` listing both,
//! and hls.js in Chromium playing through it.
//!
//! - Any origin serves any broadcast: the one that does not hold the window
//!   forwards to the one that does, byte for byte, held requests included;
//!   an unknown broadcast is a prompt 404 that an edge keeps for 1 s at most.
//! - One chat room: sessions on either origin get every message once, in
//!   the same order, and the same history.
//! - One viewer count: the sum over origins, on every origin; a stopped
//!   origin's viewers leave the sum within the expiry.
//! - Ending a broadcast through the origin that does not hold it ends it.
//! - PostgreSQL down for 10 s: playback through either origin goes on.
//! - A broadcast whose publisher stalls gets 503s for its held requests,
//!   and the edge keeps both origins in service for everything else.
//! - A stopping origin drains: not ready, still serving, then its chat
//!   sessions are closed with 1012 and it stops.

mod common;

use std::time::{Duration, Instant};

use common::chat::*;
use common::edge::Edge;
use common::*;
use serde_json::Value;
use testkit::ffmpeg::TestSource;
use testkit::postgres::TempPostgres;

/// Beats every 200 ms; a silent origin's viewers expire after 1 s; a
/// stop does not drain.
fn quick(c: &mut origin::config::Config) {
    c.cluster.heartbeat_interval = Duration::from_millis(200);
    c.cluster.viewers_expiry = Duration::from_secs(1);
    c.chat.count_interval = Duration::from_millis(200);
    c.cluster.drain = Duration::ZERO;
}

/// Two GETs at once.
async fn both(a: String, b: String) -> (Resp, Resp) {
    tokio::join!(get(&a), get(&b))
}

async fn api(base: &str, id: &str) -> Value {
    serde_json::from_slice(&get(&format!("{base}/api/broadcasts/{id}")).await.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_origin_serves_any_broadcast_byte_for_byte() {
    testkit::logs::capture("origin=info");
    let pg = TempPostgres::start();
    let a = start_server_on(Some(&pg.url), &[], quick).await;
    let b = start_server_on(Some(&pg.url), &[], quick).await;
    // Created through B, published to A.
    let c = create_broadcast(&b.base(), "Cluster").await;
    let mut ff = TestSource::new("854x480", 60.0)
        .gop(30)
        .realtime()
        .publish(&a.rtmp_url(&c.key));
    let master = |o: &TestServer| format!("{}/hls/{}/master.m3u8", o.base(), c.id);
    let media_a = first_media_playlist(&master(&a), Duration::from_secs(20)).await;
    let media_b = media_a.replace(&a.base(), &b.base());

    let (ma, mb) = both(master(&a), master(&b)).await;
    assert_eq!((ma.status, mb.status), (200, 200));
    assert_eq!(ma.body, mb.body, "the same multivariant playlist");
    assert_eq!(ma.header("cache-control"), mb.header("cache-control"));

    // A held request for the first part of the next segment, asked of both
    // at once: both are held until it exists, and answer the same bytes.
    for _ in 0..5 {
        let (msn, _) = parse_media(&get(&media_a).await.text()).last_position();
        let q = format!("?_HLS_msn={}&_HLS_part=0", msn + 1);
        let (pa, pb) = both(format!("{media_a}{q}"), format!("{media_b}{q}")).await;
        assert_eq!((pa.status, pb.status), (200, 200), "{}", pb.text());
        assert!(
            pb.text().contains(&format!("s{}.m4s", msn + 1))
                || parse_media(&pb.text()).last_position() >= (msn + 1, 0),
            "B's answer has the part asked for:\n{}",
            pb.text()
        );
        assert_eq!(
            pa.body, pb.body,
            "the same playlist for the same directives"
        );
    }

    // Parts, segments and init segments are forwarded as they are.
    let text = get(&media_a).await.text();
    let m = parse_media(&text);
    let part = m.all_parts().last().unwrap().uri.clone();
    let init = m.segments[0].map.clone().expect("EXT-X-MAP");
    for uri in [part, init, m.segments[0].uri.clone()] {
        let (fa, fb) = both(resolve(&media_a, &uri), resolve(&media_b, &uri)).await;
        assert_eq!((fa.status, fb.status), (200, 200), "{uri}");
        assert_eq!(fa.body, fb.body, "{uri}");
        assert_eq!(fb.header("content-type"), "video/mp4");
        assert_eq!(fb.header("cache-control"), fa.header("cache-control"));
    }

    // The thumbnail too; the API on B sees the broadcast live.
    assert!(
        eventually(Duration::from_secs(10), async || {
            let t = get(&format!(
                "{}/api/broadcasts/{}/thumbnail.jpg",
                b.base(),
                c.id
            ))
            .await;
            t.status == 200 && t.header("content-type") == "image/jpeg"
        })
        .await,
        "B forwards the thumbnail"
    );
    assert_eq!(api(&b.base(), &c.id).await["status"], "live");

    // An unknown broadcast: a prompt 404, kept by an edge for 1 s at most.
    let unknown = get(&format!("{}/hls/000000000000/master.m3u8", b.base())).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.header("cache-control"), "public, max-age=1");
    assert!(unknown.elapsed < Duration::from_secs(1));

    // A forged forwarding header gets no special treatment: B forwards it.
    let forged = request(
        "GET",
        &master(&b),
        &[("x-origin-forwarded-by", "127.0.0.1:1 00")],
    )
    .await;
    assert_eq!(forged.status, 200, "{}", forged.text());

    // Ended through B (which does not hold it): A ends the playlists and
    // disconnects the publisher.
    let r = request_json_as(
        "PATCH",
        &format!("{}/api/broadcasts/{}", b.base(), c.id),
        r#"{"status":"ended"}"#,
        Some(&c.token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        eventually(Duration::from_secs(5), async || get(&media_b)
            .await
            .text()
            .contains("#EXT-X-ENDLIST"))
        .await,
        "the holder ended the playlists"
    );
    let exited = tokio::time::timeout(Duration::from_secs(10), ff.wait()).await;
    assert!(exited.is_ok(), "the publisher was disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chat_room_and_one_viewer_count_across_origins() {
    testkit::logs::capture("origin=info");
    let pg = TempPostgres::start();
    let a = start_server_on(Some(&pg.url), &[], quick).await;
    let b = start_server_on(Some(&pg.url), &[], quick).await;
    let c = create_broadcast(&a.base(), "Cluster").await;

    // Counts: 50 sessions on A and 70 on B are 120 on both.
    let ws = |base: String, i: usize| {
        let url = format!(
            "{}/api/broadcasts/{}/chat?nick=v{i}&session=s{i}",
            base.replace("http://", "ws://"),
            c.id
        );
        async move { tokio_tungstenite::connect_async(url).await.unwrap().0 }
    };
    let on_a = futures_util::future::join_all((0..50).map(|i| ws(a.base(), i))).await;
    let on_b = futures_util::future::join_all((50..120).map(|i| ws(b.base(), i))).await;
    for o in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(5), async || api(&o.base(), &c.id).await
                ["viewer_count"]
                == 120)
            .await,
            "{} counts 120: {}",
            o.base(),
            api(&o.base(), &c.id).await
        );
    }

    // Chat: two on each origin say five things each, interleaved; every
    // member gets all twenty once, in the same order.
    let mut members = Vec::new();
    for (i, base) in [a.base(), a.base(), b.base(), b.base()].iter().enumerate() {
        members.push(chat(base, &c.id, &format!("m{i}"), &format!("m{i}"), None).await);
    }
    for round in 0..5 {
        for (i, m) in members.iter_mut().enumerate() {
            say(m, &format!("{i}-{round}")).await;
        }
    }
    let mut orders = Vec::new();
    for m in members.iter_mut() {
        let mut got = Vec::new();
        while got.len() < 20 {
            let v = next_of(m, "message").await;
            got.push((
                v["id"].as_u64().unwrap(),
                v["text"].as_str().unwrap().to_owned(),
            ));
        }
        let mut texts: Vec<&String> = got.iter().map(|(_, t)| t).collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), 20, "each message once: {got:?}");
        orders.push(got);
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "the same order everywhere: {orders:?}"
    );
    // No more arrive (no duplicates after a pause).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in members.iter_mut() {
        assert!(
            tokio::time::timeout(Duration::from_millis(300), next_of(m, "message"))
                .await
                .is_err(),
            "nothing twice"
        );
    }
    // History is the same on both.
    let mut ha = chat(&a.base(), &c.id, "late", "late-a", None).await;
    let mut hb = chat(&b.base(), &c.id, "late", "late-b", None).await;
    let (ha, hb) = (
        next_of(&mut ha, "history").await,
        next_of(&mut hb, "history").await,
    );
    assert_eq!(ha, hb);
    assert_eq!(ha["messages"].as_array().unwrap().len(), 20);

    // B stops (its 70 + 2 + 1 sessions with it): within the expiry, A counts its own.
    drop(on_b);
    b.shutdown.cancel();
    let stopped = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), async || api(&a.base(), &c.id).await
            ["viewer_count"]
            == 53)
        .await,
        "a stopped origin's viewers leave the count: {}",
        api(&a.base(), &c.id).await
    );
    eprintln!(
        "B's viewers left A's count {:?} after it stopped",
        stopped.elapsed()
    );
    drop(on_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_origins_behind_the_edge_play_in_hls_js_through_a_database_outage() {
    testkit::logs::capture("origin=info");
    let mut pg = TempPostgres::start();
    let a = start_server_on(Some(&pg.url), &[], quick).await;
    let b = start_server_on(Some(&pg.url), &[], quick).await;
    let edge = Edge::start(&[a.http, b.http]).await;
    let c = create_broadcast(&a.base(), "Cluster").await;
    let mut ff = TestSource::new("854x480", 70.0)
        .gop(30)
        .realtime()
        .publish(&a.rtmp_url(&c.key));
    let master = format!("http://{}/hls/{}/master.m3u8", edge.addr, c.id);
    first_media_playlist(&master, Duration::from_secs(20)).await;
    let media_b = first_media_playlist(
        &format!("{}/hls/{}/master.m3u8", b.base(), c.id),
        Duration::from_secs(5),
    )
    .await;
    let before = (
        metric(a.http, "origin_http_responses_total").await,
        metric(b.http, "origin_http_responses_total").await,
    );
    let player = hls_js(&master, 40);

    // 10 s into playback PostgreSQL stops for 10 s: B still forwards (it
    // remembers where the window is), and the playlist keeps advancing.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut during = chat(&b.base(), &c.id, "during", "during-b", None).await;
    pg.stop();
    let (start_msn, _) = parse_media(&get(&media_b).await.text()).last_position();
    let down = Instant::now();
    let (mut failures, mut polled) = (0, 2.0);
    while down.elapsed() < Duration::from_secs(10) {
        let r = get(&media_b).await;
        polled += 1.0;
        if r.status != 200 {
            failures += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (end_msn, _) = parse_media(&get(&media_b).await.text()).last_position();
    assert_eq!(failures, 0, "B served the playlist all along");
    assert!(
        end_msn >= start_msn + 8,
        "the playlist advanced while the database was away: {start_msn} -> {end_msn}"
    );
    let refused = request_json_as(
        "POST",
        &format!("{}/api/broadcasts", b.base()),
        r#"{"title":"t"}"#,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(refused.status, 503, "API writes wait for the database");
    // Chat says it cannot take messages now.
    say(&mut during, "lost?").await;
    let told = next_of(&mut during, "error").await;
    assert!(
        told["error"]
            .as_str()
            .unwrap()
            .contains("chat is unavailable"),
        "{told}"
    );
    pg.restart();
    assert!(
        eventually(Duration::from_secs(10), async || api(&b.base(), &c.id)
            .await["status"]
            == "live")
        .await,
        "what was stored before the outage is there"
    );

    let r = hls_js_report(player).await;
    eprintln!("hls.js through the edge and two origins: {r}");
    assert_eq!(r["fatal"].as_array().unwrap().len(), 0, "no fatal error");
    assert!(
        r["maxFreezeMs"].as_f64().unwrap() < 500.0,
        "no freeze through the outage: {r}"
    );
    assert!(
        r["currentTime"].as_f64().unwrap() > 30.0,
        "played to the end"
    );
    let after = (
        metric(a.http, "origin_http_responses_total").await,
        metric(b.http, "origin_http_responses_total").await,
    );
    // Less this test's own requests to B (and the two scrapes).
    let (via_a, via_b) = (after.0 - before.0 - 1.0, after.1 - before.1 - polled - 1.0);
    eprintln!("edge requests answered by A: {via_a}, by B: {via_b}");
    assert!(
        via_a > 50.0 && via_b > 50.0,
        "the edge's requests land on both origins"
    );

    // Everything is back: chat across origins works again by itself.
    let mut on_b = chat(&b.base(), &c.id, "after", "after-b", None).await;
    let mut on_a = chat(&a.base(), &c.id, "after", "after-a", None).await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            say(&mut on_a, "back").await;
            tokio::time::timeout(Duration::from_secs(1), message_arrives(&mut on_b, "back"))
                .await
                .unwrap_or(false)
        })
        .await,
        "chat crosses origins again after the outage"
    );
    ff.kill().await.ok();
    drop(edge);
}

/// A held request for a part that does not come gets 503 (RFC 8216bis
/// 6.2.5.2): that is about one broadcast, not about the origin. Through the
/// edge it reaches both origins (a 503 is retried on the next), and neither
/// may then be taken out of service for everything else: the API, the
/// pages, the playlists and the chat go on through the edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_broadcast_takes_no_origin_out_of_the_edge() {
    testkit::logs::capture("origin=info");
    let pg = TempPostgres::start();
    let waits = |c: &mut origin::config::Config| {
        quick(c);
        c.hls.reconnect_grace = Duration::from_secs(120);
    };
    let a = start_server_on(Some(&pg.url), &[], waits).await;
    let b = start_server_on(Some(&pg.url), &[], waits).await;
    let edge = Edge::start(&[a.http, b.http]).await;
    let c = create_broadcast(&a.base(), "Stalls").await;
    let mut ff = TestSource::new("854x480", 60.0)
        .gop(30)
        .realtime()
        .publish(&a.rtmp_url(&c.key));
    let master = format!("http://{}/hls/{}/master.m3u8", edge.addr, c.id);
    let media = first_media_playlist(&master, Duration::from_secs(20)).await;
    // The publisher drops: the broadcast stays live, waiting for it.
    ff.kill().await.ok();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (msn, _) = parse_media(&get(&media).await.text()).last_position();
    let next = format!("{media}?_HLS_msn={}&_HLS_part=0", msn + 1);
    let api = format!("http://{}/api/broadcasts/{}", edge.addr, c.id);
    let page = format!("http://{}/watch/{}", edge.addr, c.id);
    // Viewers keep asking, at different times, while the API is used.
    let viewers = futures_util::future::join_all((0..6u64).map(async |i| {
        tokio::time::sleep(Duration::from_millis(700 * i)).await;
        get(&next).await.status
    }));
    let others = async {
        let mut failed = Vec::new();
        for _ in 0..60 {
            for url in [&api, &page, &master] {
                let r = get(url).await;
                if r.status != 200 {
                    failed.push(format!("{url}: {} {}", r.status, r.text()));
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        failed
    };
    let (held, failed) = tokio::join!(viewers, others);
    assert!(
        held.iter().all(|s| *s == 503) && failed.is_empty(),
        "held, then 503: {held:?}; the rest went on: {} failed: {failed:?}",
        failed.len()
    );
    let mut member = chat(&format!("http://{}", edge.addr), &c.id, "m", "m", None).await;
    next_of(&mut member, "history").await;
    assert!(
        !edge.log().contains("no live upstreams"),
        "the edge kept its origins: {}",
        edge.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_origin_drains_then_closes_chat_with_1012() {
    testkit::logs::capture("origin=info");
    let pg = TempPostgres::start();
    const DRAIN: Duration = Duration::from_secs(2);
    let mut a = start_server_on(Some(&pg.url), &[], |c| {
        quick(c);
        c.cluster.drain = DRAIN;
    })
    .await;
    let base = a.base();
    let c = create_broadcast(&base, "Cluster").await;
    let mut member = chat(&base, &c.id, "stay", "stay", None).await;
    next_of(&mut member, "history").await;
    assert_eq!(get(&format!("{base}/readyz")).await.status, 200);

    a.shutdown.cancel();
    let asked = Instant::now();
    // Not ready at once, but everything is still served.
    assert_eq!(get(&format!("{base}/readyz")).await.status, 503);
    assert_eq!(get(&format!("{base}/healthz")).await.status, 200);
    let created = request_json_as(
        "POST",
        &format!("{base}/api/broadcasts"),
        r#"{"title":"d"}"#,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(created.status, 201, "the API still answers while draining");
    say(&mut member, "still here").await;
    assert!(message_arrives(&mut member, "still here").await, "chat too");
    assert!(asked.elapsed() < DRAIN, "all that within the drain");

    // Then chat sessions are told the service restarts, and the origin stops.
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt;
        loop {
            match member.inner.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                    return f.map(|f| u16::from(f.code));
                }
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(code, Some(1012), "service restart");
    assert!(asked.elapsed() >= DRAIN, "not before the drain was over");
    let stopped = tokio::time::timeout(Duration::from_secs(10), &mut a.task).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the origin stopped cleanly: {stopped:?}"
    );
}
