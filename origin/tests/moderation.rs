//! Chat moderation over the API and the chat WebSocket, on both stores:
//! blocked terms (English and Korean, whatever the case, the width or the
//! Hangul form) refuse a message with an error to its sender only; the
//! owner and the moderators it appoints delete messages, time out and ban
//! senders (by session and by address), lift them and set slow mode; the
//! actions survive a restart and hold on every origin of one database.

mod common;

use common::chat::*;
use common::*;
use serde_json::{Value, json};

async fn patch(base: &str, id: &str, body: Value, token: &str) -> (u16, Value) {
    let r = request_json_as(
        "PATCH",
        &format!("{base}/api/broadcasts/{id}"),
        &body.to_string(),
        Some(token),
    )
    .await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn blocked_terms_refuse_messages_to_their_sender_only(db: Option<&str>) {
    let server = start_server_on(db, &[], |_| {}).await;
    let base = server.base();
    let b = create_broadcast(&base, "Terms").await;
    let other = create_broadcast(&base, "Other").await;
    let terms = json!({"blocked_terms": [" Spam ", "바보", "spam", ""]});
    assert_eq!(
        patch(&base, &b.id, terms.clone(), &other.token).await.0,
        403
    );
    let (s, v) = patch(&base, &b.id, terms, &b.token).await;
    assert_eq!(
        (s, &v["blocked_terms"]),
        (200, &json!(["Spam", "바보"])),
        "{v}"
    );
    let (s, v) = patch(
        &base,
        &b.id,
        json!({"blocked_terms": ["x".repeat(51)]}),
        &b.token,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    // The list is the owner's to see.
    let public: Value =
        serde_json::from_slice(&get(&format!("{base}/api/broadcasts/{}", b.id)).await.body)
            .unwrap();
    assert!(public.get("blocked_terms").is_none(), "{public}");

    let mut alice = chat(&base, &b.id, "alice", "s-alice", None).await;
    let mut bob = chat(&base, &b.id, "bob", "s-bob", None).await;
    for text in [
        "buy SPAM here",
        "ｓｐａｍ",
        "너 바보야",
        "\u{1107}\u{1161}\u{1107}\u{1169}", // 바보 in conjoining jamo
    ] {
        say(&mut alice, text).await;
        let e = next_of(&mut alice, "error").await;
        assert_eq!(
            e["error"], "not sent: your message contains a term blocked in this chat",
            "{text}"
        );
    }
    say(&mut alice, "hello 바다").await;
    assert_eq!(
        next_of(&mut bob, "message").await["text"],
        "hello 바다",
        "nothing blocked reached the room"
    );
    // The streamer is not held to the list.
    let mut host = chat(&base, &b.id, "host", "s-host", Some(&b.token)).await;
    say(&mut host, "no spam here, says the host").await;
    assert!(message_arrives(&mut bob, "no spam here, says the host").await);

    // Cleared: the room reads it again within its refresh.
    let (s, _) = patch(&base, &b.id, json!({"blocked_terms": []}), &b.token).await;
    assert_eq!(s, 200);
    tokio::time::sleep(origin::chat::cached::REFRESH).await;
    say(&mut alice, "spam is fine now").await;
    assert!(message_arrives(&mut bob, "spam is fine now").await);
}

/// `method` on `/api/broadcasts/{id}/{path}` with `token`: status and JSON.
async fn call(
    base: &str,
    method: &str,
    id: &str,
    path: &str,
    body: Value,
    token: Option<&str>,
) -> (u16, Value) {
    let url = format!("{base}/api/broadcasts/{id}/{path}");
    let r = request_json_as(method, &url, &body.to_string(), token).await;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

async fn act(base: &str, id: &str, body: Value, token: &str) -> (u16, Value) {
    call(base, "POST", id, "moderation", body, Some(token)).await
}

/// Slow mode set to `seconds` with `token`: the status.
async fn slow_mode(base: &str, id: &str, seconds: u32, token: &str) -> u16 {
    act(
        base,
        id,
        json!({"action": "slow_mode", "seconds": seconds}),
        token,
    )
    .await
    .0
}

/// Says `text` as `from` and returns its id, as `to` receives it.
async fn said(from: &mut Ws, to: &mut Ws, text: &str) -> u64 {
    say(from, text).await;
    loop {
        let m = next_of(to, "message").await;
        if m["text"] == text {
            return m["id"].as_u64().unwrap();
        }
    }
}

/// A refusal the sender is told of, and that `room` does not receive (the
/// next message it gets is what the host, exempt from everything, says
/// next, from a connection of its own: `(base, broadcast, owner token)`).
async fn refused(from: &mut Ws, room: &mut Ws, host: (&str, &str, &str), text: &str, why: &str) {
    say(from, text).await;
    let e = next_of(from, "error").await;
    assert!(
        e["error"].as_str().unwrap().contains(why),
        "{e} for {text:?}"
    );
    let (base, id, token) = host;
    let mut host = chat(base, id, "host", "s-host", Some(token)).await;
    say(&mut host, &format!("after {text}")).await;
    assert_ne!(
        next_of(room, "message").await["text"],
        text,
        "{text:?} reached the room"
    );
}

// Each viewer comes from its own loopback address: a ban holds against one.
const ALICE: [u8; 4] = [127, 0, 0, 2];
const CAROL: [u8; 4] = [127, 0, 0, 3];

async fn owners_and_moderators_delete_time_out_ban_and_slow_the_chat(db: Option<&str>) {
    // The binary, so that it can be stopped and started again on its data.
    let data = tempfile::tempdir().unwrap();
    let start = async || {
        Binary::start(free_addr(), free_addr(), |c| {
            c.env("ORIGIN_DATA_DIR", data.path())
                .env("RUST_LOG", "warn");
            if let Some(db) = db {
                c.env("ORIGIN_DATABASE_URL", db);
            }
        })
        .await
    };
    let server = start().await;
    let base = server.base();
    let b = create_broadcast(&base, "Moderated").await;
    let other = create_broadcast(&base, "Other").await;
    let (id, owner) = (b.id.as_str(), b.token.as_str());

    // Who may: 401 without a token, 403 with another broadcast's.
    for (method, path) in [
        ("POST", "moderation"),
        ("GET", "moderation"),
        ("POST", "moderators"),
        ("GET", "moderators"),
    ] {
        let body = json!({"action": "slow_mode", "seconds": 5, "name": "x"});
        assert_eq!(
            call(&base, method, id, path, body.clone(), None).await.0,
            401,
            "{method} {path}"
        );
        assert_eq!(
            call(&base, method, id, path, body, Some(&other.token))
                .await
                .0,
            403,
            "{method} {path}"
        );
    }
    assert_eq!(
        call(
            &base,
            "DELETE",
            id,
            "moderators/abc",
            json!({}),
            Some(&other.token)
        )
        .await
        .0,
        403
    );
    let (s, m) = call(
        &base,
        "POST",
        id,
        "moderators",
        json!({"name": "mia"}),
        Some(owner),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let mia = m["token"].as_str().unwrap().to_owned();
    assert_eq!(m["watch_url"], format!("/watch/{id}?mod={mia}"));
    // A moderator moderates; only the owner appoints.
    assert_eq!(
        call(
            &base,
            "POST",
            id,
            "moderators",
            json!({"name": "x"}),
            Some(&mia)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(&base, "GET", id, "moderators", Value::Null, Some(&mia))
            .await
            .0,
        403
    );
    assert_eq!(
        slow_mode(&base, &other.id, 5, &mia).await,
        403,
        "another broadcast's"
    );

    let mut alice = chat_from(&base, id, "alice", "s-alice", None, ALICE)
        .await
        .unwrap();
    let mut bob = chat(&base, id, "bob", "s-bob", None).await;
    let mut host = chat(&base, id, "host", "s-host", Some(owner)).await;

    // Deleted: gone from every page and from the history.
    let first = said(&mut alice, &mut bob, "first, to be deleted").await;
    let (s, a) = act(
        &base,
        id,
        json!({"action": "delete", "message": first}),
        &mia,
    )
    .await;
    assert_eq!(
        (s, &a["by"], &a["user"]),
        (201, &json!("mia"), &json!("alice")),
        "{a}"
    );
    assert_eq!(next_of(&mut bob, "deleted").await["ids"], json!([first]));
    let mut late = chat(&base, id, "late", "s-late", None).await;
    let history = next_of(&mut late, "history").await;
    assert!(
        !history.to_string().contains("first, to be deleted"),
        "{history}"
    );
    assert_eq!(
        act(
            &base,
            id,
            json!({"action": "delete", "message": first}),
            &mia
        )
        .await
        .0,
        404
    );
    assert_eq!(
        act(&base, id, json!({"action": "shout"}), owner).await.0,
        400
    );

    // Timed out: refused with a message, by session and by address, until lifted.
    let second = said(&mut alice, &mut bob, "second").await;
    assert_eq!(
        act(
            &base,
            id,
            json!({"action": "timeout", "message": second, "minutes": 0}),
            &mia
        )
        .await
        .0,
        400
    );
    // A week at most.
    let (s, v) = act(
        &base,
        id,
        json!({"action": "timeout", "message": second, "minutes": 10_081}),
        &mia,
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("minutes must be 1..=10080"))
    );
    let (s, timeout) = act(
        &base,
        id,
        json!({"action": "timeout", "message": second, "minutes": 5}),
        &mia,
    )
    .await;
    assert_eq!(s, 201, "{timeout}");
    refused(
        &mut alice,
        &mut bob,
        (&base, id, owner),
        "am I still here?",
        "timed out",
    )
    .await;
    let mut alice2 = chat_from(&base, id, "alice2", "s-alice-2", None, ALICE)
        .await
        .unwrap();
    refused(
        &mut alice2,
        &mut bob,
        (&base, id, owner),
        "a new tab",
        "timed out",
    )
    .await;
    let (s, st) = call(&base, "GET", id, "moderation", Value::Null, Some(&mia)).await;
    assert_eq!((s, &st["in_force"]), (200, &json!([timeout["id"]])), "{st}");
    let (s, _) = act(
        &base,
        id,
        json!({"action": "lift", "target": timeout["id"]}),
        owner,
    )
    .await;
    assert_eq!(s, 201);
    assert!(said(&mut alice, &mut bob, "back").await > second);
    // Nothing left to lift.
    let lift_again = json!({"action": "lift", "target": timeout["id"]});
    assert_eq!(act(&base, id, lift_again, owner).await.0, 404);

    // Banned: the session from another address, and another session from
    // the address; a viewer elsewhere is not. The streamer cannot be.
    let third = said(&mut alice, &mut bob, "third").await;
    let (s, ban) = act(&base, id, json!({"action": "ban", "message": third}), owner).await;
    assert_eq!((s, &ban["by"]), (201, &json!("owner")), "{ban}");
    refused(
        &mut alice2,
        &mut bob,
        (&base, id, owner),
        "still me",
        "banned",
    )
    .await;
    let mut moved = chat_from(&base, id, "alice", "s-alice", None, CAROL)
        .await
        .unwrap();
    refused(
        &mut moved,
        &mut bob,
        (&base, id, owner),
        "from elsewhere",
        "banned",
    )
    .await;
    let mut carol = chat_from(&base, id, "carol", "s-carol", None, CAROL)
        .await
        .unwrap();
    said(&mut carol, &mut bob, "carol is fine").await;
    let hosts = said(&mut host, &mut bob, "the host speaks").await;
    assert_eq!(
        act(&base, id, json!({"action": "ban", "message": hosts}), &mia)
            .await
            .0,
        400
    );

    // Slow mode, announced; moderators and the streamer are exempt.
    assert_eq!(slow_mode(&base, id, 3601, owner).await, 400);
    assert_eq!(slow_mode(&base, id, 60, &mia).await, 201);
    assert_eq!(
        next_of(&mut bob, "notice").await["text"],
        "Slow mode is on: one message per 60 s."
    );
    // Counted from a page's last message: a page that has said nothing yet.
    let mut dave = chat_from(&base, id, "dave", "s-dave", None, [127, 0, 0, 4])
        .await
        .unwrap();
    said(&mut dave, &mut bob, "one").await;
    refused(
        &mut dave,
        &mut bob,
        (&base, id, owner),
        "two",
        "slow mode: one message per 60 s",
    )
    .await;
    let mut mod_page = chat(&base, id, "mia", "s-mia", Some(&mia)).await;
    said(&mut mod_page, &mut bob, "mod one").await;
    said(&mut mod_page, &mut bob, "mod two").await;

    // The record: who, what, when, without sessions, addresses or token hashes.
    let (s, st) = call(&base, "GET", id, "moderation", Value::Null, Some(owner)).await;
    assert_eq!(
        (s, &st["slow_mode_secs"], &st["in_force"]),
        (200, &json!(60), &json!([ban["id"]])),
        "{st}"
    );
    let kinds: Vec<&str> = st["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["appoint", "delete", "timeout", "lift", "ban", "slow_mode"]
    );
    let text = st.to_string();
    for secret in ["s-alice", "127.0.0.2", "token_hash", "session"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    // Dismissed: the token stops working, for the API, for joining, and
    // for the page she has open.
    let (_, list) = call(&base, "GET", id, "moderators", Value::Null, Some(owner)).await;
    let mid = list["moderators"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        call(
            &base,
            "DELETE",
            id,
            &format!("moderators/{mid}"),
            json!({}),
            Some(owner)
        )
        .await
        .0,
        204
    );
    assert_eq!(slow_mode(&base, id, 0, &mia).await, 403);
    assert!(
        chat_from(&base, id, "mia", "s-mia-2", Some(&mia), [127, 0, 0, 1])
            .await
            .is_err()
    );
    // Her page, still open, is held like anyone's now (slow mode is on).
    refused(
        &mut mod_page,
        &mut bob,
        (&base, id, owner),
        "still exempt?",
        "slow mode",
    )
    .await;

    // At most 50 moderators per broadcast.
    let full = create_broadcast(&base, "Fifty moderators").await;
    for n in 1..=51 {
        let body = json!({"name": format!("m{n}")});
        let (s, v) = call(
            &base,
            "POST",
            &full.id,
            "moderators",
            body,
            Some(&full.token),
        )
        .await;
        assert_eq!(s, if n <= 50 { 201 } else { 409 }, "moderator {n}: {v}");
    }

    // A restart keeps all of it (sled on the same disk; PostgreSQL).
    drop((alice, alice2, bob, host, late, moved, carol, dave, mod_page));
    server.stop(std::time::Duration::from_secs(20)).await;
    let server = start().await;
    let base = server.base();
    let mut bob = chat(&base, id, "bob", "s-bob", None).await;
    let mut alice = chat_from(&base, id, "alice", "s-alice", None, ALICE)
        .await
        .unwrap();
    refused(
        &mut alice,
        &mut bob,
        (&base, id, owner),
        "after the restart",
        "banned",
    )
    .await;
    let (_, st) = call(&base, "GET", id, "moderation", Value::Null, Some(owner)).await;
    assert_eq!(st["slow_mode_secs"], 60, "{st}");
}

on_both_stores!(
    blocked_terms_refuse_messages_to_their_sender_only,
    owners_and_moderators_delete_time_out_ban_and_slow_the_chat
);

/// Two origins on one database: an action taken through one holds on the
/// other at once (the chat feed brings it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_taken_through_one_origin_hold_on_the_other() {
    let pg = testkit::postgres::TempPostgres::start();
    let a = start_server_on(Some(&pg.url), &[], |_| {}).await;
    let b = start_server_on(Some(&pg.url), &[], |_| {}).await;
    let bc = create_broadcast(&a.base(), "Two origins").await;
    let mut alice = chat_from(&b.base(), &bc.id, "alice", "s-alice", None, ALICE)
        .await
        .unwrap();
    let mut bob = chat(&b.base(), &bc.id, "bob", "s-bob", None).await;
    // Read once before the action, so that a cached state must be replaced.
    let first = said(&mut alice, &mut bob, "hello").await;
    let (s, _) = act(
        &a.base(),
        &bc.id,
        json!({"action": "delete", "message": first}),
        &bc.token,
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(next_of(&mut bob, "deleted").await["ids"], json!([first]));
    let second = said(&mut alice, &mut bob, "again").await;
    let (s, _) = act(
        &a.base(),
        &bc.id,
        json!({"action": "timeout", "message": second, "minutes": 1}),
        &bc.token,
    )
    .await;
    assert_eq!(s, 201);
    // Brought by the feed: well before the room's own 5-s refresh (its
    // state was read at the last send, just before the action).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    refused(
        &mut alice,
        &mut bob,
        (&b.base(), &bc.id, &bc.token),
        "on the other origin",
        "timed out",
    )
    .await;
}
