//! Chat moderation over the API and the chat WebSocket, on both stores:
//! blocked terms (English and Korean, whatever the case, the width or the
//! Hangul form) refuse a message with an error to its sender only.

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
    tokio::time::sleep(origin::chat::terms::REFRESH).await;
    say(&mut alice, "spam is fine now").await;
    assert!(message_arrives(&mut bob, "spam is fine now").await);
}

on_both_stores!(blocked_terms_refuse_messages_to_their_sender_only);
