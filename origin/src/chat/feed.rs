//! What reaches this origin's rooms from elsewhere: the shared store's chat
//! feed (every origin's messages and moderation actions, in commit order),
//! and, whenever the feed starts listening, the gap it left.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::config::HISTORY_ON_JOIN;
use super::rooms::Rooms;
use crate::store::FeedEvent;
use crate::store::moderation::Action;
use crate::store::record::ChatMessage;

impl Rooms {
    /// A message from the feed, to this origin's members of its room.
    pub fn deliver(&self, broadcast: &str, m: ChatMessage) {
        if let Some(room) = self.room(broadcast) {
            room.post(m);
        }
    }

    /// A moderation action, to this origin's room of `broadcast` (see
    /// [`super::rooms::Room::apply`]).
    pub fn moderate(&self, broadcast: &str, action: &Action) {
        if let Some(room) = self.room(broadcast) {
            room.apply(action);
        }
    }

    /// `broadcast`'s room reads its moderation state again at the next send.
    pub fn stale(&self, broadcast: &str) {
        if let Some(room) = self.room(broadcast) {
            room.moderation.invalidate();
        }
    }

    /// Delivers the chat feed until it ends; whenever the feed starts
    /// listening (at first, and after it was lost), fills each room's gap
    /// from the store: messages stored and deleted meanwhile.
    pub async fn follow(self: Arc<Self>, mut feed: mpsc::Receiver<FeedEvent>) {
        while let Some(event) = feed.recv().await {
            match event {
                FeedEvent::Message(broadcast, m) => self.deliver(&broadcast, m),
                FeedEvent::Moderation(broadcast, a) => self.moderate(&broadcast, &a),
                FeedEvent::Resumed => self.fill_gaps().await,
            }
        }
    }

    async fn fill_gaps(&self) {
        for room in self.rooms() {
            // Actions taken while nobody listened are read at the next send.
            room.moderation.invalidate();
            match self.store.chat_history(&room.id, HISTORY_ON_JOIN).await {
                Ok(recent) => room.catch_up(recent),
                Err(err) => warn!(broadcast = %room.id, %err, "chat gap not filled"),
            }
        }
    }
}
