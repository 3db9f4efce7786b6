//! [`Moderation`] in sled: the `moderation` tree maps `{broadcast}/{id}` to
//! a JSON action; senders are kept with their messages in `chat`.

use super::{Action, MAX_ACTIONS, Moderation, What};
use crate::store::StoreError;
use crate::store::embedded::{Kept, SledStore, entry_key};
use crate::store::record::{ChatMessage, now_rfc3339};

#[async_trait::async_trait]
impl Moderation for SledStore {
    async fn chat_message(
        &self,
        broadcast: &str,
        id: u64,
    ) -> Result<Option<ChatMessage>, StoreError> {
        match self.chat.get(entry_key(broadcast, id))? {
            Some(v) => Ok(Some(serde_json::from_slice::<Kept>(&v)?.into())),
            None => Ok(None),
        }
    }

    async fn act(&self, broadcast: &str, mut action: Action) -> Result<Action, StoreError> {
        action.id = self.db.generate_id()?;
        action.at = now_rfc3339();
        if let What::Delete { message, .. } = action.what {
            self.chat.remove(entry_key(broadcast, message))?;
        }
        self.actions.insert(
            entry_key(broadcast, action.id),
            serde_json::to_vec(&action)?,
        )?;
        self.db.flush_async().await?;
        Ok(action)
    }

    async fn actions(&self, broadcast: &str) -> Result<Vec<Action>, StoreError> {
        let mut v: Vec<Action> = self
            .actions
            .scan_prefix(format!("{broadcast}/"))
            .values()
            .rev()
            .take(MAX_ACTIONS)
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect::<Result<_, StoreError>>()?;
        v.reverse();
        Ok(v)
    }
}
