//! The chat feed: every origin holds one connection that `LISTEN`s on the
//! `chat` channel, to which each stored message (and each moderation action)
//! is notified in the same statement (transaction) that inserts it (so a message is stored and published in one
//! step, and the feed's order is the commit order, the same on every
//! origin). A lost connection is reopened with back-off, and every time
//! `LISTEN` takes (the first time included) is reported, so that the chat
//! fills the gap from the table.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{debug, info, warn};

use crate::store::FeedEvent;
use crate::store::moderation::Action;
use crate::store::record::ChatMessage;

/// The channel messages are notified on.
pub const CHANNEL: &str = "chat";
/// Events buffered between the listener and the chat.
const CAPACITY: usize = 4096;
/// First wait before reopening a lost connection; it doubles up to the max.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest wait between two reopening attempts.
const RETRY_MAX: Duration = Duration::from_secs(4);

/// A message's notification, as the insert builds it.
#[derive(Deserialize)]
struct Posted {
    broadcast: String,
    #[serde(flatten)]
    message: ChatMessage,
}

/// A moderation action's notification (see `store::moderation`).
#[derive(Deserialize)]
struct Moderated {
    broadcast: String,
    action: Action,
}

/// What a notification's payload says, by its `type`.
fn event(payload: &str) -> Result<FeedEvent, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(payload)?;
    Ok(if v["type"] == "moderation" {
        let m: Moderated = serde_json::from_value(v)?;
        FeedEvent::Moderation(m.broadcast, m.action)
    } else {
        let p: Posted = serde_json::from_value(v)?;
        FeedEvent::Message(p.broadcast, p.message)
    })
}

/// Starts the listener; it stops when the receiver is dropped.
pub fn follow(config: tokio_postgres::Config) -> mpsc::Receiver<FeedEvent> {
    let (tx, rx) = mpsc::channel(CAPACITY);
    tokio::spawn(async move {
        tokio::select! {
            _ = tx.closed() => {}
            _ = keep_listening(&config, &tx) => {}
        }
    });
    rx
}

/// Listens, and listens again after every loss, with back-off.
async fn keep_listening(config: &tokio_postgres::Config, tx: &mpsc::Sender<FeedEvent>) {
    let mut wait = RETRY_MIN;
    let mut lost = false;
    loop {
        let mut listening = false;
        match listen(config, tx, &mut listening).await {
            Ok(()) => return,
            // Said once per outage; the attempts in between are debug.
            Err(err) if listening || !lost => warn!(%err, "chat feed lost; reopening"),
            Err(err) => debug!(%err, "chat feed still lost"),
        }
        lost = true;
        if listening {
            wait = RETRY_MIN;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// One connection's life: `Ok` once the chat stopped following, `Err` when
/// the connection failed or closed. `listening` is set once `LISTEN` took.
async fn listen(
    config: &tokio_postgres::Config,
    tx: &mpsc::Sender<FeedEvent>,
    listening: &mut bool,
) -> Result<(), String> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    let (ntx, mut notes) = mpsc::channel(CAPACITY);
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            if let AsyncMessage::Notification(n) = m.map_err(|e| e.to_string())?
                && ntx.send(n).await.is_err()
            {
                return Ok(());
            }
        }
        Err("the connection closed".to_string())
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| e.to_string())?;
    *listening = true;
    // Also the first time: messages stored while this origin's rooms
    // existed but nobody listened yet (at start) are filled in the same way.
    info!("chat feed listening");
    if tx.send(FeedEvent::Resumed).await.is_err() {
        return Ok(());
    }
    while let Some(n) = notes.recv().await {
        match event(n.payload()) {
            Ok(e) => {
                if tx.send(e).await.is_err() {
                    return Ok(());
                }
            }
            Err(err) => warn!(%err, "chat feed: notification not understood"),
        }
    }
    drop(client);
    driver
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .and(Err("the connection closed".to_string()))
}
