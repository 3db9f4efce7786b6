//! Who may go live, over HTTP on both stores: the admin token's 401/403,
//! invite codes (uses, expiry, revocation), the policies, the per-address
//! rate limit, unlisted broadcasts, and the operator's end and delete.

mod common;

use std::time::Duration;

use common::*;
use origin::access::config::Policy;
use serde_json::{Value, json};
use testkit::ffmpeg::TestSource;

/// `method url` with a JSON body and a bearer token; the status and JSON.
async fn call(method: &str, url: &str, body: Value, token: Option<&str>) -> (u16, Value) {
    let r = request_json_as(method, url, &body.to_string(), token).await;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

async fn invite(base: &str, body: Value) -> Value {
    let (s, v) = call(
        "POST",
        &format!("{base}/api/admin/invites"),
        body,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

async fn listed(base: &str, query: &str) -> Vec<String> {
    let (s, v) = call(
        "GET",
        &format!("{base}/api/broadcasts{query}"),
        Value::Null,
        None,
    )
    .await;
    assert_eq!(s, 200);
    ids(&v)
}

fn ids(v: &Value) -> Vec<String> {
    v["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_operator_api_needs_the_admin_token_and_invites_admit_creators(db: Option<&str>) {
    // The rate limit has a test of its own.
    let server = start_server_on(db, &[], |c| c.access.create_burst = 100).await;
    let base = server.base();
    let (_, access) = call("GET", &format!("{base}/api/access"), Value::Null, None).await;
    assert_eq!(access, json!({"creation": "invite"}), "the default policy");

    // Every operator route: 401 without a token, 403 with another one.
    for (method, path) in [
        ("POST", "invites"),
        ("GET", "invites"),
        ("DELETE", "invites/x"),
        ("GET", "broadcasts"),
        ("POST", "broadcasts/x/end"),
        ("DELETE", "broadcasts/x"),
    ] {
        let url = format!("{base}/api/admin/{path}");
        let (s, v) = call(method, &url, json!({}), None).await;
        assert_eq!(s, 401, "{method} {path}: {v}");
        assert!(error_of(&v).contains("Bearer"), "{v}");
        let (s, v) = call(method, &url, json!({}), Some("not-the-admin-token")).await;
        assert_eq!(
            (s, error_of(&v)),
            (403, "not the admin token"),
            "{method} {path}"
        );
    }
    // Creating: an owner's token is not the admin's; no code, a wrong code.
    let owned = create_broadcast(&base, "mine").await;
    let create = format!("{base}/api/broadcasts");
    let (s, v) = call("POST", &create, json!({"title": "t"}), Some(&owned.token)).await;
    assert_eq!((s, error_of(&v)), (403, "not the admin token"));
    let (s, v) = call("POST", &create, json!({"title": "t"}), None).await;
    assert_eq!(s, 403);
    assert!(error_of(&v).contains("invite code is needed"), "{v}");
    let (s, v) = call(
        "POST",
        &create,
        json!({"title": "t", "invite": "inv_0"}),
        None,
    )
    .await;
    assert_eq!((s, error_of(&v)), (403, "unknown or revoked invite code"));

    // A code for two broadcasts: two, then no more.
    let two = invite(&base, json!({"max_uses": 2})).await;
    let code = two["code"].as_str().unwrap();
    assert!(code.starts_with("inv_"), "{two}");
    assert_eq!(
        two["link"].as_str().unwrap(),
        format!("{base}/studio?invite={code}")
    );
    assert!(two["expires_at"].is_string(), "a week by default: {two}");
    // A malformed body spends no use.
    let (s, _) = call("POST", &create, json!({"title": " ", "invite": code}), None).await;
    assert_eq!(s, 400);
    for n in 0..2 {
        let (s, v) = call(
            "POST",
            &create,
            json!({"title": format!("i{n}"), "invite": code}),
            None,
        )
        .await;
        assert_eq!(s, 201, "{v}");
        assert!(v["owner_token"].is_string() && v["stream_key"].is_string());
    }
    let (s, v) = call(
        "POST",
        &create,
        json!({"title": "i2", "invite": code}),
        None,
    )
    .await;
    assert_eq!(
        (s, error_of(&v)),
        (403, "this invite code has been used up")
    );

    // Listing shows uses, never codes; revoking stops an unlimited code.
    let any = invite(&base, json!({"max_uses": null, "expires_in_secs": null})).await;
    assert!(
        any["max_uses"].is_null() && any["expires_at"].is_null(),
        "{any}"
    );
    let (s, v) = call(
        "GET",
        &format!("{base}/api/admin/invites"),
        Value::Null,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(s, 200);
    let list = v["invites"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|i| i.get("code").is_none() && i.get("link").is_none())
    );
    let used = list.iter().find(|i| i["id"] == two["id"]).unwrap();
    assert_eq!(
        (used["used"].as_u64(), used["max_uses"].as_u64()),
        (Some(2), Some(2))
    );
    let revoke = format!("{base}/api/admin/invites/{}", any["id"].as_str().unwrap());
    let (s, _) = call("DELETE", &revoke, Value::Null, Some(ADMIN_TOKEN)).await;
    assert_eq!(s, 204);
    let (s, _) = call("DELETE", &revoke, Value::Null, Some(ADMIN_TOKEN)).await;
    assert_eq!(s, 404);
    let (s, v) = call(
        "POST",
        &create,
        json!({"title": "t", "invite": any["code"]}),
        None,
    )
    .await;
    assert_eq!((s, error_of(&v)), (403, "unknown or revoked invite code"));
    // A bare POST (the README's curl) makes a one-use code for a week.
    let bare = request(
        "POST",
        &format!("{base}/api/admin/invites"),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    )
    .await;
    assert_eq!(bare.status, 201, "{}", bare.text());
    let bare: Value = serde_json::from_slice(&bare.body).unwrap();
    assert_eq!(bare["max_uses"], 1);
    assert!(
        bare["link"]
            .as_str()
            .unwrap()
            .contains("/studio?invite=inv_")
    );
    // Bad invites are refused with the reason.
    for bad in [
        json!({"max_uses": 0}),
        json!({"expires_in_secs": 0}),
        json!({"uses": 1}),
    ] {
        let (s, v) = call(
            "POST",
            &format!("{base}/api/admin/invites"),
            bad.clone(),
            Some(ADMIN_TOKEN),
        )
        .await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
}

async fn unlisted_broadcasts_play_by_link_and_the_operator_ends_and_deletes(db: Option<&str>) {
    let server = start_server_on(db, &[], |_| {}).await;
    let base = server.base();
    let shown = create_broadcast(&base, "Shown 공개").await;
    let (s, hidden) = call(
        "POST",
        &format!("{base}/api/broadcasts"),
        json!({"title": "Hidden 비공개", "unlisted": true}),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!((s, &hidden["unlisted"]), (201, &json!(true)));
    let id = hidden["id"].as_str().unwrap();
    let token = hidden["owner_token"].as_str().unwrap();
    // Left out of the directory and search; found by its link.
    assert_eq!(listed(&base, "").await, [shown.id.as_str()]);
    assert!(listed(&base, "?q=Hidden").await.is_empty());
    assert!(
        listed(&base, "?q=%EB%B9%84%EA%B3%B5%EA%B0%9C")
            .await
            .is_empty()
    );
    let (s, v) = call(
        "GET",
        &format!("{base}/api/broadcasts/{id}"),
        Value::Null,
        None,
    )
    .await;
    assert_eq!((s, v["title"].as_str()), (200, Some("Hidden 비공개")));
    // The operator sees every broadcast.
    let (_, all) = call(
        "GET",
        &format!("{base}/api/admin/broadcasts"),
        Value::Null,
        Some(ADMIN_TOKEN),
    )
    .await;
    let mut all = ids(&all);
    all.sort();
    let mut want = vec![shown.id.clone(), id.to_owned()];
    want.sort();
    assert_eq!(all, want);

    // It plays by the link while unlisted.
    let mut publisher = TestSource::new("320x180", 60.0)
        .realtime()
        .publish(&server.rtmp_url(hidden["stream_key"].as_str().unwrap()));
    let playlist = format!("{base}/hls/{id}/master.m3u8");
    assert!(
        eventually(Duration::from_secs(20), async || get(&playlist)
            .await
            .status
            == 200)
        .await,
        "the unlisted broadcast plays"
    );
    assert!(listed(&base, "?status=live").await.is_empty());
    // The owner lists it.
    let (s, v) = call(
        "PATCH",
        &format!("{base}/api/broadcasts/{id}"),
        json!({"unlisted": false}),
        Some(token),
    )
    .await;
    assert_eq!((s, &v["unlisted"]), (200, &json!(false)));
    assert_eq!(listed(&base, "?status=live").await, [id.to_owned()]);

    // A live broadcast is ended before it is deleted.
    let one = format!("{base}/api/admin/broadcasts/{id}");
    let (s, v) = call("DELETE", &one, Value::Null, Some(ADMIN_TOKEN)).await;
    assert_eq!(s, 409, "{v}");
    assert!(error_of(&v).contains("end it first"), "{v}");
    let (s, v) = call(
        "POST",
        &format!("{one}/end"),
        Value::Null,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ended")));
    let (s, _) = call("DELETE", &one, Value::Null, Some(ADMIN_TOKEN)).await;
    assert_eq!(s, 204);
    let (s, _) = call(
        "GET",
        &format!("{base}/api/broadcasts/{id}"),
        Value::Null,
        None,
    )
    .await;
    assert_eq!(s, 404, "deleted");
    let (s, _) = call("DELETE", &one, Value::Null, Some(ADMIN_TOKEN)).await;
    assert_eq!(s, 404);
    // Its key publishes no more.
    publisher.kill().await.ok();
    let _ = publisher.wait().await;
    let mut again = TestSource::new("320x180", 3.0)
        .publish(&server.rtmp_url(hidden["stream_key"].as_str().unwrap()));
    let status = tokio::time::timeout(Duration::from_secs(20), again.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "a deleted broadcast's key is refused");
    assert_eq!(listed(&base, "").await, [shown.id.as_str()]);
}

on_both_stores!(
    the_operator_api_needs_the_admin_token_and_invites_admit_creators,
    unlisted_broadcasts_play_by_link_and_the_operator_ends_and_deletes,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_is_rate_limited_per_address_and_the_admin_is_exempt() {
    let server = start_server(&[], |c| {
        c.access.creation = Policy::Open;
        c.access.create_burst = 2;
        c.access.creates_per_hour = 2;
    })
    .await;
    let create = format!("{}/api/broadcasts", server.base());
    for n in 0..2 {
        let (s, v) = call("POST", &create, json!({"title": format!("o{n}")}), None).await;
        assert_eq!(s, 201, "open: anyone creates: {v}");
    }
    let r = request_json("POST", &create, r#"{"title":"o2"}"#).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), "1");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        error_of(&v).starts_with("at most 2 broadcasts per hour from one address; try again in "),
        "{v}"
    );
    let (s, _) = call(
        "POST",
        &create,
        json!({"title": "admin"}),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(s, 201, "the admin is exempt");
    let (_, all) = call("GET", &create, Value::Null, None).await;
    assert_eq!(ids(&all).len(), 3, "the refused one was not created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_admin_refuses_everyone_but_the_admin() {
    let server = start_server(&[], |c| c.access.creation = Policy::Admin).await;
    let base = server.base();
    let code = invite(&base, json!({})).await["code"].clone();
    let create = format!("{base}/api/broadcasts");
    let (s, v) = call("POST", &create, json!({"title": "t", "invite": code}), None).await;
    assert_eq!(
        (s, error_of(&v)),
        (403, "only the operator creates broadcasts on this server")
    );
    let (_, access) = call("GET", &format!("{base}/api/access"), Value::Null, None).await;
    assert_eq!(access["creation"], "admin");
    create_broadcast(&base, "by the admin").await;
}
