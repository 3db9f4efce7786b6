//! One chat connection: the history on join, the room's frames out, the
//! client's messages in (checked, rate-limited, stored, then posted to the
//! room), and a clear close code when the room is full (1013), the client
//! reads too slowly (4001) or the server stops (1012).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper_tungstenite::HyperWebsocket;
use hyper_tungstenite::tungstenite::Message;
use hyper_tungstenite::tungstenite::protocol::CloseFrame;
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::config::{
    ChatConfig, MAX_MESSAGE_CHARS, MAX_NICK_CHARS, MAX_VIOLATIONS, MESSAGE_BURST,
    MESSAGES_PER_SECOND,
};
use super::frames;
use super::rooms::{Bucket, Presence, Room, RoomFull, Rooms};
use crate::metrics::{BroadcastLabel, ChatCloseLabel, Metrics};
use crate::store::moderation::{Moderation, State};
use crate::store::record::{Author, ChatMessage, now_rfc3339};
use crate::store::{Store, StoreError};

/// Close code for a client that fell more than the backlog behind.
pub const CLOSE_TOO_SLOW: u16 = 4001;
/// A frame that cannot be written within this long (the client stopped
/// reading and its socket buffers are full) drops the connection: a stuck
/// writer would otherwise keep its place in the room forever.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Chat: its rooms, where messages are kept, and what is counted.
pub struct Chat {
    /// Every room.
    pub rooms: Arc<Rooms>,
    /// Settings.
    pub config: Arc<ChatConfig>,
    store: Arc<dyn Store>,
    /// Moderation actions and messages' senders.
    pub moderation: Arc<dyn Moderation>,
    metrics: Arc<Metrics>,
    /// Messages reach the rooms through the store's feed (several origins),
    /// not straight from the connection that accepted them.
    fed: bool,
    /// Cancelled when the server stops: connections close with 1012.
    stop: CancellationToken,
}

impl Chat {
    /// No rooms yet. `fed`: messages come back through the feed of a store
    /// shared by several origins (see [`Rooms::follow`]).
    pub fn new(
        config: ChatConfig,
        store: Arc<dyn Store>,
        moderation: Arc<dyn Moderation>,
        metrics: Arc<Metrics>,
        fed: bool,
        stop: CancellationToken,
    ) -> Arc<Chat> {
        let config = Arc::new(config);
        Arc::new(Chat {
            rooms: Rooms::new(config.clone(), store.clone()),
            config,
            store,
            moderation,
            metrics,
            fed,
            stop,
        })
    }

    /// The moderation state of the chat of `room`, as it last read it.
    pub async fn moderation_state(&self, room: &Room) -> Arc<State> {
        room.moderation
            .get(async { Ok(State::of(&self.moderation.actions(&room.id).await?)) })
            .await
    }

    /// The moderation state of `broadcast`'s chat, read now.
    pub async fn moderation_now(&self, broadcast: &str) -> Result<State, StoreError> {
        Ok(State::of(&self.moderation.actions(broadcast).await?))
    }

    /// An action just taken through this origin: to its room at once when
    /// there is no feed (a shared database's feed brings it to every
    /// origin's room, this one's included; until it does, this origin's
    /// room reads its state again at the next send, so that the one who
    /// acted is never contradicted here).
    pub fn announce(&self, broadcast: &str, action: &crate::store::moderation::Action) {
        if self.fed {
            self.rooms.stale(broadcast);
        } else {
            self.rooms.moderate(broadcast, action);
        }
    }

    fn closed(&self, reason: &'static str) {
        self.metrics
            .chat_closed
            .get_or_create(&ChatCloseLabel { reason })
            .inc();
    }
}

/// Who is connecting.
pub struct Member {
    /// Nickname (checked with [`nickname`]).
    pub user: String,
    /// The broadcast's owner (not counted as a viewer, exempt from slow mode).
    pub streamer: bool,
    /// The id of the moderator whose token it joined with (exempt from slow
    /// mode, time-outs and bans while in office, like the streamer).
    pub moderator: Option<String>,
    /// The page's session id and the client's address: what time-outs and
    /// bans hold against. Distinct sessions are the viewer count.
    pub author: Author,
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

type Socket = hyper_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Writes `m`; false if the client is gone or does not take it within
/// [`SEND_TIMEOUT`].
async fn send(ws: &mut Socket, m: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, ws.send(m)).await,
        Ok(Ok(()))
    )
}

fn close(code: CloseCode, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Runs one chat connection of `member` in the room of `broadcast` until
/// either side closes. `place` is the room's answer to the join: refused
/// connections are told why and closed.
pub async fn serve(
    chat: Arc<Chat>,
    ws: HyperWebsocket,
    broadcast: String,
    member: Member,
    place: Result<Presence, RoomFull>,
) {
    let Ok(mut ws) = ws.await else {
        return;
    };
    let presence = match place {
        Ok(p) => p,
        Err(full) => {
            chat.closed("full");
            send(&mut ws, close(CloseCode::Again, full.to_string())).await;
            return;
        }
    };
    let room = presence.room.clone();
    let (hello, mut rx) = room.subscribe(chat.store.as_ref()).await;
    if !send(&mut ws, hello).await || !send(&mut ws, frames::viewers(room.viewers())).await {
        return;
    }
    let mut own = Bucket::new(MESSAGES_PER_SECOND, MESSAGE_BURST);
    let mut last_sent: Option<Instant> = None;
    let mut violations = 0u32;
    loop {
        let out = tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let sender = Sender { chat: &chat, room: &room, member: &member, broadcast: &broadcast };
                    match sender.accept(t.as_str(), &mut own, &mut last_sent).await {
                        Ok(()) => None,
                        Err(e) => {
                            violations += 1;
                            Some(frames::error(&e))
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    violations += 1;
                    Some(frames::error("only JSON text frames are accepted"))
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => None,
                Some(Err(err)) => {
                    // Oversized frames, invalid UTF-8 and protocol errors end the connection.
                    debug!(%err, "chat connection error");
                    send(&mut ws, frames::error(&err.to_string())).await;
                    break;
                }
            },
            _ = chat.stop.cancelled() => {
                // The page reconnects (with jitter), to another origin if
                // this one is going away for good.
                chat.closed("restart");
                send(&mut ws, close(CloseCode::Restart, "service restart".into())).await;
                return;
            }
            f = rx.recv() => match f {
                Ok(frame) => Some(frame),
                Err(RecvError::Lagged(n)) => {
                    chat.closed("slow");
                    debug!(broadcast = %broadcast, missed = n, "chat reader too slow; closed");
                    let reason = format!("too slow: fell {n} frames behind the room");
                    send(&mut ws, close(CloseCode::Library(CLOSE_TOO_SLOW), reason)).await;
                    return;
                }
                Err(RecvError::Closed) => break,
            },
        };
        if let Some(m) = out
            && !send(&mut ws, m).await
        {
            return;
        }
        if violations > MAX_VIOLATIONS {
            chat.closed("errors");
            send(&mut ws, frames::error("too many errors; closing")).await;
            break;
        }
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, ws.close(None)).await;
    drop(presence);
}

/// Someone sending a message.
struct Sender<'a> {
    chat: &'a Chat,
    room: &'a Room,
    member: &'a Member,
    broadcast: &'a str,
}

impl Sender<'_> {
    /// Checks, rate-limits and stores one client frame, and posts it to the room.
    async fn accept(
        &self,
        text: &str,
        own: &mut Bucket,
        last_sent: &mut Option<Instant>,
    ) -> Result<(), String> {
        let m: Incoming =
            serde_json::from_str(text).map_err(|e| format!("not a chat message: {e}"))?;
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
        // The streamer, and moderators while in office (one dismissed since
        // it joined is held like anyone), are exempt from what follows.
        let mut exempt = self.member.streamer;
        if !exempt {
            let state = self.chat.moderation_state(self.room).await;
            exempt = (self.member.moderator.as_ref())
                .is_some_and(|id| state.moderators.iter().any(|m| &m.id == id));
            if !exempt && let Some(refused) = state.refusal(&self.member.author, &now_rfc3339()) {
                return Err(refused);
            }
            let slow = Duration::from_secs(state.slow_mode_secs.into());
            if !exempt && last_sent.is_some_and(|t| t.elapsed() < slow) {
                return Err(format!(
                    "slow mode: one message per {} s",
                    state.slow_mode_secs
                ));
            }
        }
        if !self.member.streamer {
            let store = self.chat.store.as_ref();
            let terms = self
                .room
                .terms
                .get(super::terms::read(store, self.broadcast))
                .await;
            if super::terms::blocked(body, &terms) {
                return Err(super::terms::REFUSED.into());
            }
        }
        let config = &self.chat.config;
        let viewers = self.chat.rooms.viewers(self.broadcast);
        let slow_mode = !exempt && viewers as usize > config.slow_mode_above;
        if slow_mode && last_sent.is_some_and(|t| t.elapsed() < config.slow_mode_interval) {
            return Err(format!(
                "slow mode: one message per {} s in a room this size",
                config.slow_mode_interval.as_secs()
            ));
        }
        if !own.take() {
            return Err(format!(
                "slow down: at most {MESSAGES_PER_SECOND} message per second (bursts of {MESSAGE_BURST})"
            ));
        }
        // This origin's share first (no database work for a flood), then
        // the room's, counted in the store over every origin.
        if !self
            .room
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(StoreError::RoomBusy.to_string());
        }
        *last_sent = Some(Instant::now());
        let stored = self
            .chat
            .store
            .add_chat(
                self.broadcast,
                ChatMessage {
                    author: Some(self.member.author.clone()),
                    ..ChatMessage::new(&self.member.user, body, self.member.streamer)
                },
                Some(config.room_rate()),
            )
            .await
            .map_err(|e| match e {
                StoreError::RoomBusy => e.to_string(),
                StoreError::Database(_) => {
                    "chat is unavailable for a moment (the database is away); try again".into()
                }
                e => format!("could not store the message: {e}"),
            })?;
        self.chat
            .metrics
            .chat_messages
            .get_or_create(&BroadcastLabel {
                broadcast: self.broadcast.to_owned(),
            })
            .inc();
        if !self.chat.fed {
            self.room.post(stored);
        }
        Ok(())
    }
}

/// Enters `member` into the room of `broadcast`; the answer goes to [`serve`].
pub fn join(chat: &Arc<Chat>, broadcast: &str, member: &Member) -> Result<Presence, RoomFull> {
    let session = (!member.streamer).then_some(member.author.session.as_str());
    chat.rooms.enter(broadcast, session)
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
}
