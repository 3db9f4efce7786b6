//! The web app in headless Chromium (playwright-core driving Debian's
//! chromium) against the real server: see player/tests/webapp.mjs.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_studio_directory_and_watch_pages_work_end_to_end() {
    let server = start_server(&[], |_| {}).await;
    // The default policy: the studio needs the operator's invite.
    let invite = request_json_as(
        "POST",
        &format!("{}/api/admin/invites", server.base()),
        "{}",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(invite.status, 201, "{}", invite.text());
    let invite: serde_json::Value = serde_json::from_slice(&invite.body).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../player/tests/webapp.mjs");
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(server.base())
        .arg(invite["link"].as_str().unwrap())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node must be installed");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the browser test failed: {stdout}");
    assert!(stdout.contains("\"ok\":true"), "{stdout}");
}
