//! [`Admission`] in sled: the `meta` tree keeps `admin_hash`, the `invites`
//! tree maps a code's hash to its JSON invite.

use super::{Admission, Invite, Refusal};
use crate::store::StoreError;
use crate::store::embedded::SledStore;

#[async_trait::async_trait]
impl Admission for SledStore {
    async fn admin_hash(&self, proposed: &str) -> Result<String, StoreError> {
        let meta = self.db.open_tree("meta")?;
        let stored = match meta.compare_and_swap("admin_hash", None::<&[u8]>, Some(proposed))? {
            Ok(()) => proposed.to_owned(),
            Err(e) => String::from_utf8_lossy(&e.current.unwrap_or_default()).into_owned(),
        };
        self.db.flush_async().await?;
        Ok(stored)
    }

    async fn add_invite(&self, invite: &Invite) -> Result<(), StoreError> {
        self.invites
            .insert(&invite.code_hash, serde_json::to_vec(invite)?)?;
        self.db.flush_async().await?;
        Ok(())
    }

    async fn invites(&self) -> Result<Vec<Invite>, StoreError> {
        self.invites
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    async fn revoke_invite(&self, id: &str) -> Result<bool, StoreError> {
        let _w = self.writes.lock().await;
        let Some(invite) = self.invites().await?.into_iter().find(|i| i.id == id) else {
            return Ok(false);
        };
        self.invites.remove(&invite.code_hash)?;
        self.db.flush_async().await?;
        Ok(true)
    }

    async fn redeem(
        &self,
        code_hash: &str,
        now: &str,
    ) -> Result<Result<Invite, Refusal>, StoreError> {
        let _w = self.writes.lock().await;
        let Some(v) = self.invites.get(code_hash)? else {
            return Ok(Err(Refusal::Unknown));
        };
        let mut invite: Invite = serde_json::from_slice(&v)?;
        if let Err(refused) = invite.check(now) {
            return Ok(Err(refused));
        }
        invite.used += 1;
        self.invites
            .insert(code_hash, serde_json::to_vec(&invite)?)?;
        self.db.flush_async().await?;
        Ok(Ok(invite))
    }
}
