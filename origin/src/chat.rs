//! Chat rooms over WebSocket, and viewer counts.
//!
//! A viewer is an open watch page: the page holds the room's WebSocket while
//! it is open, and sends a random session id, so the count is the number of
//! distinct sessions connected. It is exact behind any CDN (the socket comes
//! to the origin, HLS requests do not), and a closed tab leaves at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use hyper_tungstenite::HyperWebsocket;
use hyper_tungstenite::tungstenite::Message;
use serde::Deserialize;
use tokio::sync::broadcast;
use tracing::debug;

use crate::metrics::{BroadcastLabel, Metrics};
use crate::store::Store;
use crate::store::record::{ChatMessage, now_rfc3339};

/// Longest chat message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// Sustained messages per second per connection.
pub const MESSAGES_PER_SECOND: f64 = 1.0;
/// Messages a connection may send in a burst before the rate applies.
pub const MESSAGE_BURST: f64 = 5.0;
/// Longest nickname, in characters.
pub const MAX_NICK_CHARS: usize = 24;
/// WebSocket connections per room.
pub const MAX_CONNECTIONS_PER_ROOM: usize = 5000;
/// Messages sent to a client when it joins.
pub const HISTORY_ON_JOIN: usize = 50;
/// Largest WebSocket frame or message accepted from a client.
pub const MAX_FRAME_BYTES: usize = 8 << 10;
/// Errors a connection may cause before it is closed.
pub const MAX_VIOLATIONS: u32 = 20;
/// Messages buffered per room for slow clients before they miss some.
const ROOM_CHANNEL_CAPACITY: usize = 1024;

/// One room: its fan-out channel and who is in it.
pub struct Room {
    tx: broadcast::Sender<Arc<str>>,
    sessions: Mutex<(usize, HashMap<String, usize>)>,
}

/// Chat: the rooms, where messages are kept, and what is counted.
pub struct Chat {
    /// Every room.
    pub rooms: Rooms,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Chat {
    /// No rooms yet.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<Chat> {
        Arc::new(Chat {
            rooms: Rooms::default(),
            store,
            metrics,
        })
    }
}

/// Every room.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
}

/// Presence in a room; dropping it leaves.
pub struct Presence {
    room: Arc<Room>,
    /// The viewer session it counts as; `None` for the streamer, who is not a viewer.
    session: Option<String>,
}

impl Rooms {
    /// The room of `broadcast`, created on first use.
    pub fn room(&self, broadcast: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .entry(broadcast.to_owned())
            .or_insert_with(|| {
                Arc::new(Room {
                    tx: broadcast::channel(ROOM_CHANNEL_CAPACITY).0,
                    sessions: Mutex::default(),
                })
            })
            .clone()
    }

    /// Viewers of every room.
    pub fn all_viewers(&self) -> Vec<(String, u64)> {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .iter()
            .map(|(id, r)| (id.clone(), r.viewers()))
            .collect()
    }

    /// Distinct sessions watching `broadcast` now.
    pub fn viewers(&self, broadcast: &str) -> u64 {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms.get(broadcast).map_or(0, |r| r.viewers())
    }
}

impl Room {
    fn viewers(&self) -> u64 {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .len() as u64
    }

    /// Whether another connection fits.
    pub fn has_room(&self) -> bool {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).0 < MAX_CONNECTIONS_PER_ROOM
    }

    fn send_viewers(&self) -> u64 {
        let n = self.viewers();
        let _ = self
            .tx
            .send(format!("{{\"type\":\"viewers\",\"count\":{n}}}").into());
        n
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        {
            let mut s = self.room.sessions.lock().unwrap_or_else(|p| p.into_inner());
            s.0 -= 1;
            if let Some(session) = &self.session
                && let Some(n) = s.1.get_mut(session)
            {
                *n -= 1;
                if *n == 0 {
                    s.1.remove(session);
                }
            }
        }
        self.room.send_viewers();
    }
}

/// Checks a nickname: 1 to 24 letters, digits, spaces, `_`, `-` or `.`, any script.
pub fn nickname(n: &str) -> Result<String, String> {
    let n = n.trim();
    if n.is_empty() || n.chars().count() > MAX_NICK_CHARS {
        return Err(format!("nickname must be 1 to {MAX_NICK_CHARS} characters"));
    }
    if !n
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'))
    {
        return Err("nickname may contain letters, digits, spaces, '_', '-' and '.'".into());
    }
    Ok(n.to_string())
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// Token bucket for one connection's messages.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens
            + now.duration_since(self.at).as_secs_f64() * MESSAGES_PER_SECOND)
            .min(MESSAGE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn error_frame(msg: &str) -> Message {
    Message::text(serde_json::json!({"type": "error", "error": msg}).to_string())
}

/// Joins `room` as `session`; the caller has checked [`Room::has_room`].
/// The streamer's own connections are not counted as viewers.
pub fn join(chat: &Arc<Chat>, broadcast: &str, session: &str, viewer: bool) -> Presence {
    let room = chat.rooms.room(broadcast);
    {
        let mut s = room.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        if viewer {
            *s.1.entry(session.to_owned()).or_default() += 1;
        }
    }
    let n = room.send_viewers();
    let store = chat.store.clone();
    let id = broadcast.to_owned();
    tokio::spawn(async move {
        if let Err(err) = store.note_viewers(&id, n).await {
            debug!(broadcast = %id, %err, "peak viewers not recorded");
        }
    });
    Presence {
        room,
        session: viewer.then(|| session.to_owned()),
    }
}

/// Runs one chat connection until either side closes.
pub async fn serve(
    chat: Arc<Chat>,
    ws: HyperWebsocket,
    broadcast: String,
    user: String,
    streamer: bool,
    presence: Presence,
) {
    let Ok(mut ws) = ws.await else {
        return;
    };
    let mut rx = presence.room.tx.subscribe();
    let history = chat
        .store
        .chat_history(&broadcast, HISTORY_ON_JOIN)
        .await
        .unwrap_or_default();
    let hello = serde_json::json!({"type": "history", "messages": history}).to_string();
    let viewers = format!(
        "{{\"type\":\"viewers\",\"count\":{}}}",
        presence.room.viewers()
    );
    if ws.send(Message::text(hello)).await.is_err()
        || ws.send(Message::text(viewers)).await.is_err()
    {
        return;
    }
    let mut bucket = Bucket {
        tokens: MESSAGE_BURST,
        at: Instant::now(),
    };
    let mut violations = 0u32;
    loop {
        let out = tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    match accept(&chat, &broadcast, &user, streamer, t.as_str(), &mut bucket).await {
                        Ok(m) => {
                            chat.metrics
                                .chat_messages
                                .get_or_create(&BroadcastLabel { broadcast: broadcast.clone() })
                                .inc();
                            let _ = presence.room.tx.send(serde_json::to_string(&m).unwrap_or_default().into());
                            None
                        }
                        Err(e) => {
                            violations += 1;
                            Some(error_frame(&e))
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    violations += 1;
                    Some(error_frame("only JSON text frames are accepted"))
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => None,
                Some(Err(err)) => {
                    // Oversized frames, invalid UTF-8 and protocol errors end the connection.
                    debug!(%err, "chat connection error");
                    let _ = ws.send(error_frame(&err.to_string())).await;
                    break;
                }
            },
            b = rx.recv() => match b {
                Ok(text) => Some(Message::text(text.to_string())),
                Err(broadcast::error::RecvError::Lagged(n)) => Some(error_frame(&format!("missed {n} messages"))),
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        if let Some(m) = out
            && ws.send(m).await.is_err()
        {
            break;
        }
        if violations > MAX_VIOLATIONS {
            let _ = ws.send(error_frame("too many errors; closing")).await;
            break;
        }
    }
    let _ = ws.close(None).await;
}

async fn accept(
    chat: &Chat,
    broadcast: &str,
    user: &str,
    streamer: bool,
    text: &str,
    bucket: &mut Bucket,
) -> Result<ChatMessage, String> {
    let m: Incoming = serde_json::from_str(text).map_err(|e| format!("not a chat message: {e}"))?;
    if m.kind != "message" {
        return Err(format!("unknown message type {:?}", m.kind));
    }
    let body = m.text.unwrap_or_default();
    let body = body.trim();
    if body.is_empty() {
        return Err("message is empty".into());
    }
    if body.chars().count() > MAX_MESSAGE_CHARS {
        return Err(format!(
            "message is longer than {MAX_MESSAGE_CHARS} characters"
        ));
    }
    if body.chars().any(|c| c.is_control() && c != '\n') {
        return Err("message contains control characters".into());
    }
    if !bucket.take() {
        return Err(format!(
            "slow down: at most {MESSAGES_PER_SECOND} message per second (bursts of {MESSAGE_BURST})"
        ));
    }
    chat.store
        .add_chat(
            broadcast,
            ChatMessage {
                kind: "message".into(),
                id: 0,
                user: user.to_owned(),
                text: body.to_owned(),
                at: now_rfc3339(),
                streamer,
            },
        )
        .await
        .map_err(|e| format!("could not store the message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_allow_any_script_but_no_markup() {
        assert_eq!(nickname(" 민수 ").unwrap(), "민수");
        assert!(nickname("ann_b-c.d 2").is_ok());
        assert!(nickname("<script>").is_err());
        assert!(nickname("").is_err());
        assert!(nickname(&"x".repeat(MAX_NICK_CHARS + 1)).is_err());
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket {
            tokens: MESSAGE_BURST,
            at: Instant::now(),
        };
        let allowed = (0..20).filter(|_| b.take()).count();
        assert_eq!(allowed, MESSAGE_BURST as usize);
    }
}
