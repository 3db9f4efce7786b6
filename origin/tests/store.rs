//! One store interface, two implementations: the same checks run against
//! sled on disk and a real PostgreSQL (started by the test, on a free port).
//! Two origins on one PostgreSQL derive the same stream keys. While
//! PostgreSQL is down, API writes answer 503 and everything recovers by
//! itself when it is back, with nothing acknowledged lost.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;

use origin::store::admission::{Admission, Invite, Refusal};
use origin::store::embedded::SledStore;
use origin::store::keys::is_owner;
use origin::store::postgres::PgStore;
use origin::store::record::{ChatMessage, NewBroadcast, Status, now_rfc3339, rfc3339, sha256_hex};
use origin::store::{
    Beat, Claim, Edit, FeedEvent, MAX_CHAT_HISTORY, Node, RoomRate, Shared, Store, StoreError,
};
use testkit::postgres::TempPostgres;

fn message(text: &str) -> ChatMessage {
    ChatMessage::new("u", text, false)
}

/// What every store must do.
async fn conformance(store: &dyn Store) {
    // Create, read, find by key.
    let c = store
        .create(NewBroadcast {
            title: "Title".into(),
            description: "Desc".into(),
            unlisted: false,
            recorded: false,
        })
        .await
        .unwrap();
    assert_eq!(c.record.status, Status::Ready);
    assert!(!c.record.recorded, "the owner opted out of the replay");
    assert!(c.stream_key.starts_with("live_") && c.stream_key.len() == 37);
    assert_eq!(store.stream_key(&c.record, &c.owner_token), c.stream_key);
    assert!(is_owner(&c.record, &c.owner_token));
    assert_eq!(store.get(&c.record.id).await.unwrap(), c.record);
    assert_eq!(
        store.by_key(&c.stream_key).await.unwrap().unwrap().id,
        c.record.id
    );
    assert!(store.by_key("live_nope").await.unwrap().is_none());
    assert!(matches!(store.get("nope").await, Err(StoreError::NotFound)));
    let other = store.create(NewBroadcast::titled("Other")).await.unwrap();
    let mut ids: Vec<String> = store
        .all()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    let mut want = vec![c.record.id.clone(), other.record.id.clone()];
    want.sort();
    assert_eq!(ids, want);

    // Edits move modified_at only when something changes.
    let same = store
        .edit(
            &c.record.id,
            Edit {
                title: Some("Title".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(same.modified_at, c.record.modified_at);
    let edited = store
        .edit(
            &c.record.id,
            Edit {
                title: Some("New".into()),
                description: Some("D2".into()),
                unlisted: None,
                blocked_terms: Some(vec!["스팸".into(), "Spam".into()]),
                recorded: Some(true),
            },
        )
        .await
        .unwrap();
    assert!(edited.recorded);
    assert!(store.get(&c.record.id).await.unwrap().recorded);
    assert_eq!(
        (edited.title.as_str(), edited.description.as_str()),
        ("New", "D2")
    );
    assert_eq!(edited.blocked_terms, ["스팸", "Spam"]);
    assert_eq!(
        store.get(&c.record.id).await.unwrap().blocked_terms,
        ["스팸", "Spam"]
    );
    assert!(edited.modified_at > c.record.modified_at);
    assert!(matches!(
        store.edit("nope", Edit::default()).await,
        Err(StoreError::NotFound)
    ));

    // Status: live stamps started_at once; ended stamps ended_at; repeats change nothing.
    let live = store.set_status(&c.record.id, Status::Live).await.unwrap();
    assert_eq!(live.status, Status::Live);
    let started = live.started_at.clone().unwrap();
    let again = store.set_status(&c.record.id, Status::Live).await.unwrap();
    assert_eq!(again, live, "setting the status it has changes nothing");
    let ended = store.set_status(&c.record.id, Status::Ended).await.unwrap();
    assert_eq!(ended.status, Status::Ended);
    assert!(ended.ended_at.is_some());
    let relive = store.set_status(&c.record.id, Status::Live).await.unwrap();
    assert_eq!(relive.started_at.unwrap(), started, "started_at is kept");
    assert!(matches!(
        store.set_status("nope", Status::Live).await,
        Err(StoreError::NotFound)
    ));

    // Peaks only rise.
    store.note_viewers(&c.record.id, 7).await.unwrap();
    store.note_viewers(&c.record.id, 3).await.unwrap();
    assert_eq!(store.get(&c.record.id).await.unwrap().peak_viewers, 7);
    assert!(matches!(
        store.note_viewers("nope", 1).await,
        Err(StoreError::NotFound)
    ));

    // Rotation: the old key stops working at once, the new one is derivable.
    let new = store
        .rotate_key(&c.record.id, &c.owner_token)
        .await
        .unwrap();
    assert_ne!(new, c.stream_key);
    assert!(store.by_key(&c.stream_key).await.unwrap().is_none());
    let r = store.by_key(&new).await.unwrap().unwrap();
    assert_eq!(store.stream_key(&r, &c.owner_token), new);

    // Chat: ids increase, history is the last n in order, old ones are pruned.
    let a = store
        .add_chat(&c.record.id, message("m0"), None)
        .await
        .unwrap();
    let b = store
        .add_chat(&c.record.id, message("m1"), None)
        .await
        .unwrap();
    assert!(b.id > a.id);
    store
        .add_chat(&other.record.id, message("elsewhere"), None)
        .await
        .unwrap();
    for i in 2..(MAX_CHAT_HISTORY + 150) {
        store
            .add_chat(&c.record.id, message(&format!("m{i}")), None)
            .await
            .unwrap();
    }
    let last: Vec<String> = store
        .chat_history(&c.record.id, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    let n = MAX_CHAT_HISTORY + 150;
    assert_eq!(last, [n - 3, n - 2, n - 1].map(|i| format!("m{i}")));
    let all = store.chat_history(&c.record.id, 10_000).await.unwrap();
    assert!(
        all.len() <= MAX_CHAT_HISTORY + 100 && all.len() >= MAX_CHAT_HISTORY,
        "pruned to about {MAX_CHAT_HISTORY}: {}",
        all.len()
    );
    assert_eq!(
        store.chat_history(&other.record.id, 10).await.unwrap()[0].text,
        "elsewhere"
    );

    // A room's rate: `max` in the window, then busy; other rooms unaffected.
    let rate = Some(RoomRate {
        max: 3,
        per: Duration::from_secs(60),
    });
    let quiet = store
        .create(NewBroadcast::titled("q"))
        .await
        .unwrap()
        .record
        .id;
    for i in 0..3 {
        store
            .add_chat(&quiet, message(&format!("r{i}")), rate)
            .await
            .unwrap();
    }
    assert!(matches!(
        store.add_chat(&quiet, message("r3"), rate).await,
        Err(StoreError::RoomBusy)
    ));
    assert_eq!(
        store.chat_history(&quiet, 10).await.unwrap().len(),
        3,
        "not stored"
    );
    store
        .add_chat(&other.record.id, message("o"), rate)
        .await
        .unwrap();
    // Messages older than the window do not count.
    let short = Some(RoomRate {
        max: 3,
        per: Duration::from_millis(200),
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.add_chat(&quiet, message("r4"), short).await.unwrap();

    // Unlisted: stored, and changeable (modified_at moves).
    let hidden = store
        .create(NewBroadcast {
            title: "h".into(),
            unlisted: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(store.get(&hidden.record.id).await.unwrap().unlisted);
    let listed = store
        .edit(
            &hidden.record.id,
            Edit {
                unlisted: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!listed.unlisted && listed.modified_at > hidden.record.modified_at);

    // Delete: the record, its key and its chat go; others stay.
    store.delete(&c.record.id).await.unwrap();
    assert!(matches!(
        store.get(&c.record.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store.by_key(&new).await.unwrap().is_none(),
        "its key is gone"
    );
    assert!(
        store
            .chat_history(&c.record.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.delete(&c.record.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.get(&other.record.id).await.unwrap().id,
        other.record.id
    );
    assert_eq!(
        store
            .chat_history(&other.record.id, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    store.ping().await.unwrap();
    store.flush().await.unwrap();
}

fn invite(id: &str, code: &str, max_uses: Option<u32>, expires_at: Option<String>) -> Invite {
    Invite {
        id: id.into(),
        code_hash: sha256_hex(code),
        max_uses,
        used: 0,
        expires_at,
        created_at: now_rfc3339(),
    }
}

/// What every store must do for admission: the admin hash is set once;
/// invites are spent by their uses and their expiry, and revoked.
async fn admission_conformance(a: &dyn Admission) {
    assert_eq!(a.admin_hash("first").await.unwrap(), "first");
    assert_eq!(a.admin_hash("second").await.unwrap(), "first", "set once");
    let now = now_rfc3339();
    let soon = rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    let past = rfc3339(std::time::SystemTime::now() - Duration::from_secs(1));
    a.add_invite(&invite("one", "c1", Some(1), Some(soon)))
        .await
        .unwrap();
    a.add_invite(&invite("any", "c2", None, None))
        .await
        .unwrap();
    a.add_invite(&invite("old", "c3", None, Some(past)))
        .await
        .unwrap();
    let spent = a.redeem(&sha256_hex("c1"), &now).await.unwrap().unwrap();
    assert_eq!((spent.id.as_str(), spent.used), ("one", 1));
    assert_eq!(
        a.redeem(&sha256_hex("c1"), &now).await.unwrap(),
        Err(Refusal::UsedUp)
    );
    for _ in 0..3 {
        a.redeem(&sha256_hex("c2"), &now).await.unwrap().unwrap();
    }
    assert_eq!(
        a.redeem(&sha256_hex("c3"), &now).await.unwrap(),
        Err(Refusal::Expired)
    );
    assert_eq!(
        a.redeem(&sha256_hex("c4"), &now).await.unwrap(),
        Err(Refusal::Unknown)
    );
    let mut all = a.invites().await.unwrap();
    all.sort_by(|x, y| x.id.cmp(&y.id));
    let uses: Vec<(&str, u32)> = all.iter().map(|i| (i.id.as_str(), i.used)).collect();
    assert_eq!(uses, [("any", 3), ("old", 0), ("one", 1)]);
    assert!(a.revoke_invite("any").await.unwrap());
    assert!(!a.revoke_invite("any").await.unwrap());
    assert_eq!(
        a.redeem(&sha256_hex("c2"), &now).await.unwrap(),
        Err(Refusal::Unknown)
    );
}

#[tokio::test]
async fn sled_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    conformance(&store).await;
    admission_conformance(&store).await;
    drop(store);
    // The admin hash and the invites survive reopening.
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.admin_hash("third").await.unwrap(), "first");
    assert_eq!(store.invites().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_store_contract_and_origins_share_keys() {
    let pg = TempPostgres::start();
    // Two origins start at once: one migrates, both get the same secret.
    let (a, b) = tokio::join!(PgStore::open(&pg.url), PgStore::open(&pg.url));
    let (a, b) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    conformance(a.as_ref()).await;
    admission_conformance(a.as_ref()).await;
    // Two origins spend one single-use code at once: one of them gets it.
    b.add_invite(&invite("race", "c5", Some(1), None))
        .await
        .unwrap();
    let (now, hash) = (now_rfc3339(), sha256_hex("c5"));
    let (x, y) = tokio::join!(a.redeem(&hash, &now), b.redeem(&hash, &now));
    let mut got = [x.unwrap().is_ok(), y.unwrap().is_ok()];
    got.sort();
    assert_eq!(got, [false, true]);
    assert_eq!(
        b.admin_hash("other").await.unwrap(),
        "first",
        "one token for all"
    );
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (a, b);
    let c = a.create(NewBroadcast::titled("shared")).await.unwrap();
    let seen_by_b = b.get(&c.record.id).await.unwrap();
    assert_eq!(
        b.stream_key(&seen_by_b, &c.owner_token),
        c.stream_key,
        "every origin derives the same key"
    );
    assert_eq!(
        b.by_key(&c.stream_key).await.unwrap().unwrap().id,
        c.record.id
    );
    // A restart of an origin opens the migrated database as it is.
    drop(a);
    let again = PgStore::open(&pg.url).await.unwrap();
    assert_eq!(again.get(&c.record.id).await.unwrap(), c.record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_down_writes_get_503_and_everything_recovers() {
    let mut pg = TempPostgres::start();
    let server = start_server_on(Some(&pg.url), &[], |_| {}).await;
    let base = server.base();
    let create = async || {
        request_json_as(
            "POST",
            &format!("{base}/api/broadcasts"),
            r#"{"title":"t"}"#,
            Some(ADMIN_TOKEN),
        )
        .await
    };
    let before = create().await;
    assert_eq!(before.status, 201);
    let id = serde_json::from_slice::<serde_json::Value>(&before.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    pg.stop();
    let refused = create().await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("database is unavailable"),
        "{}",
        refused.text()
    );
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(
        get(&format!("{base}/readyz")).await.status,
        503,
        "not ready"
    );
    assert_eq!(get(&format!("{base}/healthz")).await.status, 200, "alive");

    pg.restart();
    assert!(
        eventually(Duration::from_secs(10), async || create().await.status
            == 201)
        .await,
        "writes work again by themselves"
    );
    assert_eq!(get(&format!("{base}/readyz")).await.status, 200);
    let kept = get(&format!("{base}/api/broadcasts/{id}")).await;
    assert_eq!(kept.status, 200, "what was acknowledged before is there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_who_holds_what_the_viewers_everywhere_and_the_chat_feed() {
    let mut pg = TempPostgres::start();
    let (a, b) = tokio::join!(PgStore::open(&pg.url), PgStore::open(&pg.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let node = |id: &str| Node {
        id: id.into(),
        url: format!("http://{id}:8080"),
    };
    let (na, nb) = (node("a"), node("b"));
    let x = a.create(NewBroadcast::titled("x")).await.unwrap().record.id;

    // Ownership: a restored window does not take a broadcast someone holds;
    // a new publish does, and the epoch goes up with every new holder.
    let claim = |epoch, taken_over| Some(Claim { epoch, taken_over });
    assert_eq!(a.claim(&x, &na, false).await.unwrap(), claim(1, false));
    assert_eq!(
        a.claim(&x, &na, true).await.unwrap(),
        claim(1, false),
        "same holder"
    );
    assert_eq!(b.claim(&x, &nb, false).await.unwrap(), None);
    assert_eq!(b.owner(&x).await.unwrap(), Some(na.clone()));
    // Counters are written under the holder's epoch only.
    assert!(
        a.save_counters(&x, "720p", &na, 1, "{\"n\":1}")
            .await
            .unwrap()
    );
    assert!(
        !b.save_counters(&x, "720p", &nb, 1, "{\"n\":2}")
            .await
            .unwrap()
    );
    assert_eq!(b.claim(&x, &nb, true).await.unwrap(), claim(2, true));
    assert_eq!(a.owner(&x).await.unwrap(), Some(nb.clone()));
    assert_eq!(
        b.counters(&x).await.unwrap(),
        vec![("720p".to_owned(), "{\"n\":1}".to_owned())],
        "the new holder reads what the old one wrote"
    );
    // The old holder is fenced off, whatever epoch it thinks it has.
    assert!(
        !a.save_counters(&x, "720p", &na, 1, "{\"n\":3}")
            .await
            .unwrap()
    );
    assert!(
        !a.save_counters(&x, "720p", &na, 2, "{\"n\":3}")
            .await
            .unwrap()
    );
    assert!(
        b.save_counters(&x, "720p", &nb, 2, "{\"n\":4}")
            .await
            .unwrap()
    );
    // A beat releases only the beating origin's windows, and tells an
    // origin that still thinks it holds one that it lost it.
    let (expiry, grace) = (Duration::from_secs(1), Duration::from_secs(3600));
    let echo = a
        .beat(
            &na,
            &Beat {
                held: vec![(x.clone(), 1)],
                ..Default::default()
            },
            expiry,
            grace,
        )
        .await
        .unwrap();
    assert_eq!(echo.lost, vec![x.clone()]);
    assert_eq!(
        a.owner(&x).await.unwrap(),
        Some(nb.clone()),
        "and takes nothing back"
    );
    a.beat(&na, &Beat::default(), expiry, grace).await.unwrap();
    assert_eq!(a.owner(&x).await.unwrap(), Some(nb.clone()));

    // Viewers: each origin sees the others' sum, not its own.
    let beat = |held: &[&str], viewers: u64| Beat {
        held: held.iter().map(|s| (s.to_string(), 2)).collect(),
        viewers: vec![(x.clone(), viewers)],
    };
    b.beat(&nb, &beat(&[&x], 70), expiry, grace).await.unwrap();
    let echo = a.beat(&na, &beat(&[], 50), expiry, grace).await.unwrap();
    assert_eq!(echo.viewers_elsewhere.get(&x), Some(&70));
    let echo = b.beat(&nb, &beat(&[&x], 70), expiry, grace).await.unwrap();
    assert_eq!(echo.viewers_elsewhere.get(&x), Some(&50));
    assert!(echo.ended.is_empty());
    // Ended through any origin: the holder hears it on its next beat.
    a.set_status(&x, Status::Ended).await.unwrap();
    let echo = b.beat(&nb, &beat(&[&x], 70), expiry, grace).await.unwrap();
    assert_eq!(echo.ended, vec![x.clone()]);
    // An origin that stops beating stops counting after the expiry.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let echo = b.beat(&nb, &beat(&[&x], 70), expiry, grace).await.unwrap();
    assert_eq!(echo.viewers_elsewhere.get(&x), None, "a's count expired");
    // A window no longer held is released.
    b.beat(&nb, &Beat::default(), expiry, grace).await.unwrap();
    assert_eq!(a.owner(&x).await.unwrap(), None);
    // Claimed again, it starts above every epoch counters were written under.
    assert_eq!(a.claim(&x, &na, true).await.unwrap(), claim(3, false));

    // The sweeper: a live broadcast whose holder stopped beating longer than
    // the grace ago ends, in one origin's beat only.
    let z = a.create(NewBroadcast::titled("z")).await.unwrap().record.id;
    a.set_status(&z, Status::Live).await.unwrap();
    a.claim(&z, &na, true).await.unwrap();
    let short = Duration::from_millis(500);
    let echo = b.beat(&nb, &Beat::default(), expiry, short).await.unwrap();
    assert!(echo.swept.is_empty(), "its holder beat just now");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (nc, none) = (node("c"), Beat::default());
    let (ea, eb) = tokio::join!(
        a.beat(&nc, &none, expiry, short),
        b.beat(&nb, &none, expiry, short)
    );
    let mut swept = ea.unwrap().swept;
    swept.extend(eb.unwrap().swept);
    assert_eq!(swept, vec![z.clone()], "ended once");
    let ended = b.get(&z).await.unwrap();
    assert_eq!(ended.status, Status::Ended);
    assert!(ended.ended_at.is_some());
    assert_eq!(b.owner(&z).await.unwrap(), None, "its window is freed");
    let again = b.beat(&nb, &Beat::default(), expiry, short).await.unwrap();
    assert!(again.swept.is_empty());
    assert_eq!(
        b.get(&z).await.unwrap().ended_at,
        ended.ended_at,
        "ended once"
    );

    // A room's rate counts the messages of every origin.
    let rate = Some(RoomRate {
        max: 2,
        per: Duration::from_secs(60),
    });
    let y = a.create(NewBroadcast::titled("y")).await.unwrap().record.id;
    a.add_chat(&y, message("via a"), rate).await.unwrap();
    b.add_chat(&y, message("via b"), rate).await.unwrap();
    assert!(matches!(
        a.add_chat(&y, message("one too many"), rate).await,
        Err(StoreError::RoomBusy)
    ));

    // The feed: a message stored by one origin reaches another's feed, with
    // its id; after the database comes back the feed says so.
    let mut feed = b.follow_chat();
    // LISTEN takes a moment; store until one comes through.
    let mut got = None;
    for i in 0..50 {
        let stored = a
            .add_chat(&x, message(&format!("m{i}")), None)
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_millis(200), feed.recv()).await {
            // Listening (the first time): messages before it are in the table.
            Ok(Some(FeedEvent::Resumed)) => continue,
            Ok(Some(e)) => {
                got = Some((stored, e));
                break;
            }
            _ => {}
        }
    }
    let (stored, event) = got.expect("the feed delivers");
    match event {
        FeedEvent::Message(broadcast, m) => {
            assert_eq!(broadcast, x);
            assert!(m.id <= stored.id && m.text.starts_with('m'), "{m:?}");
        }
        other => panic!("{other:?}"),
    }
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), feed.recv()).await {}
    pg.stop();
    pg.restart();
    let resumed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(FeedEvent::Resumed) = feed.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(resumed.is_ok(), "the feed reports it is back");
    let after = a.add_chat(&x, message("after"), None).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), feed.recv()).await;
    assert!(
        matches!(next, Ok(Some(FeedEvent::Message(_, ref m))) if m.id == after.id),
        "{next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_seals_one_replay_of_what_every_origin_recorded() {
    use origin::store::recordings::{Recordings, RunRow, SegmentRow};
    let pg = TempPostgres::start();
    let db = PgStore::open(&pg.url).await.unwrap();
    let node = |id: &str| Node {
        id: id.into(),
        url: format!("http://{id}:8080"),
    };
    let x = db
        .create(NewBroadcast::titled("x"))
        .await
        .unwrap()
        .record
        .id;
    let y = db
        .create(NewBroadcast::titled("y"))
        .await
        .unwrap()
        .record
        .id;
    let run = |b: &str, g: &str| RunRow {
        broadcast: b.into(),
        rendition: "720p".into(),
        generation: g.into(),
        facts: "{}".into(),
    };
    let segment = |b: &str, g: &str, msn: u64| SegmentRow {
        broadcast: b.into(),
        rendition: "720p".into(),
        generation: g.into(),
        msn,
        entry: format!("{{\"msn\":{msn}}}"),
        duration_secs: 2.0,
    };
    let msns = |index: &origin::store::recordings::ReplayIndex| {
        let mut m: Vec<u64> = index.segments.iter().map(|s| s.msn).collect();
        m.sort();
        m
    };
    // Origin a recorded g1, then b took over and recorded g2; a told msn 2 twice.
    for (n, g, range) in [("a", "g1", 1..=2), ("b", "g2", 3..=4), ("a", "g1", 2..=2)] {
        let segments: Vec<SegmentRow> = range.map(|m| segment(&x, g, m)).collect();
        db.add_recorded(&node(n), &[run(&x, g)], &segments)
            .await
            .unwrap();
    }
    let state = db.replay_state(&x).await.unwrap().unwrap();
    assert!(!state.ended && !state.deleted);
    assert!(
        db.replay_index(&x).await.unwrap().segments.is_empty(),
        "no replay before it is sealed"
    );
    assert_eq!(
        db.run_holder(&x, "720p", "g1").await.unwrap(),
        Some(node("a"))
    );
    assert_eq!(
        db.run_holder(&x, "720p", "g2").await.unwrap(),
        Some(node("b"))
    );
    let (all, since) = db.replays_changed(None).await.unwrap();
    assert_eq!(all.len(), 1);

    // Sealed: what was told until then is the replay, and stays it.
    db.seal(&x, Some(b"jpeg")).await.unwrap();
    let state = db.replay_state(&x).await.unwrap().unwrap();
    assert!(state.ended);
    assert_eq!(state.duration_secs, 8.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    db.add_recorded(&node("a"), &[run(&x, "g1")], &[segment(&x, "g1", 5)])
        .await
        .unwrap();
    db.seal(&x, None).await.unwrap();
    let index = db.replay_index(&x).await.unwrap();
    assert_eq!(msns(&index), [1, 2, 3, 4], "told after the seal: not added");
    assert_eq!(index.runs.len(), 2);
    // An origin that comes back at another address is fetched from there.
    let moved = Node {
        id: "a".into(),
        url: "http://a2:8080".into(),
    };
    db.add_recorded(&moved, &[run(&x, "g1")], &[segment(&x, "g1", 5)])
        .await
        .unwrap();
    assert_eq!(db.run_holder(&x, "720p", "g1").await.unwrap(), Some(moved));
    assert_eq!(msns(&db.replay_index(&x).await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(
        db.replay_thumbnail(&x).await.unwrap().as_deref(),
        Some(&b"jpeg"[..])
    );
    let (changed, _) = db.replays_changed(since).await.unwrap();
    assert_eq!(changed.len(), 1, "the seal is a change");
    assert!(changed[0].1.ended);

    // A broadcast that ended with no origin to seal its replay: sealed
    // once it has been over for the settling time.
    db.add_recorded(&node("b"), &[run(&y, "g3")], &[segment(&y, "g3", 1)])
        .await
        .unwrap();
    db.set_status(&y, Status::Live).await.unwrap();
    assert!(
        db.seal_stragglers(Duration::ZERO).await.unwrap().is_empty(),
        "live"
    );
    db.set_status(&y, Status::Ended).await.unwrap();
    assert!(
        db.seal_stragglers(Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        db.seal_stragglers(Duration::ZERO).await.unwrap(),
        vec![y.clone()]
    );

    // Deleted: its rows go, a mark stays, and nothing told later comes back.
    assert!(db.delete_replay(&x).await.unwrap());
    assert!(!db.delete_replay(&x).await.unwrap(), "deleted already");
    assert!(db.replay_state(&x).await.unwrap().unwrap().deleted);
    db.add_recorded(&node("a"), &[run(&x, "g1")], &[segment(&x, "g1", 6)])
        .await
        .unwrap();
    assert!(db.replay_index(&x).await.unwrap().segments.is_empty());
    assert_eq!(db.run_holder(&x, "720p", "g1").await.unwrap(), None);
    assert_eq!(db.replay_thumbnail(&x).await.unwrap(), None);
    assert_eq!(
        db.deleted_among(&[x.clone(), y.clone(), "z".into()])
            .await
            .unwrap(),
        vec![x.clone()]
    );

    // A seal and an addition at the same moment: one waits for the other,
    // so that the replay every origin reads is the same, whenever it reads.
    let (raw, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let pending = Duration::from_millis(300);
    for (n, w) in ["w1", "w2"].iter().enumerate() {
        let w = db.create(NewBroadcast::titled(w)).await.unwrap().record.id;
        db.add_recorded(&node("a"), &[run(&w, "g")], &[segment(&w, "g", 1)])
            .await
            .unwrap();
        let lock = if n == 0 { "FOR UPDATE" } else { "FOR SHARE" };
        raw.batch_execute(&format!(
            "BEGIN; SELECT 1 FROM recordings WHERE broadcast_id = '{w}' {lock}"
        ))
        .await
        .unwrap();
        if n == 0 {
            // Another origin's seal under way: the addition waits, then
            // adds nothing.
            let (b, runs, rows) = (node("b"), [run(&w, "h")], [segment(&w, "h", 2)]);
            let adding = db.add_recorded(&b, &runs, &rows);
            tokio::pin!(adding);
            assert!(
                tokio::time::timeout(pending, &mut adding).await.is_err(),
                "an addition waits for a seal under way"
            );
            raw.batch_execute(&format!(
                "UPDATE recordings SET ended_at = now() WHERE broadcast_id = '{w}'; COMMIT"
            ))
            .await
            .unwrap();
            adding.await.unwrap();
            let index = db.replay_index(&w).await.unwrap();
            assert_eq!(msns(&index), [1], "added after the seal: nothing");
            assert_eq!(index.runs.len(), 1, "not even its run");
        } else {
            // Another origin's addition under way: the seal waits, and
            // counts what it added.
            raw.batch_execute(&format!(
                "INSERT INTO recording_segments \
                 (broadcast_id, rendition, generation, msn, entry, duration_secs) \
                 VALUES ('{w}', '720p', 'g', 2, '{{\"msn\":2}}', 2.0)"
            ))
            .await
            .unwrap();
            let sealing = db.seal(&w, None);
            tokio::pin!(sealing);
            assert!(
                tokio::time::timeout(pending, &mut sealing).await.is_err(),
                "a seal waits for an addition under way"
            );
            raw.batch_execute("COMMIT").await.unwrap();
            sealing.await.unwrap();
            assert_eq!(msns(&db.replay_index(&w).await.unwrap()), [1, 2]);
            assert_eq!(
                db.replay_state(&w).await.unwrap().unwrap().duration_secs,
                4.0,
                "the length counts it"
            );
        }
    }
}
