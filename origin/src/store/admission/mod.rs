//! What deciding who may go live keeps: the admin token's hash and the
//! invite codes (by the hash of the code; a code is shown once, when it is
//! made). In sled ([`sled`]) or in PostgreSQL ([`postgres`]), so that every
//! origin sharing a database honours the same codes.

mod postgres;
mod sled;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// An invite code, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// Names the code in the operator API (the code itself is not kept).
    pub id: String,
    /// SHA-256 of the code.
    pub code_hash: String,
    /// How many broadcasts it may create; `None`: no limit.
    pub max_uses: Option<u32>,
    /// How many it has created.
    pub used: u32,
    /// RFC 3339 (fixed width, UTC); `None`: never expires.
    pub expires_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// Why an invite code cannot create a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such code (or it was revoked).
    #[error("unknown or revoked invite code")]
    Unknown,
    /// Past its expiry.
    #[error("this invite code has expired")]
    Expired,
    /// Every use is spent.
    #[error("this invite code has been used up")]
    UsedUp,
}

impl Invite {
    /// Whether it may create one more broadcast at `now` (RFC 3339, as
    /// stored: string order is time order) (pure).
    pub fn check(&self, now: &str) -> Result<(), Refusal> {
        if self.expires_at.as_deref().is_some_and(|e| e <= now) {
            return Err(Refusal::Expired);
        }
        if self.max_uses.is_some_and(|m| self.used >= m) {
            return Err(Refusal::UsedUp);
        }
        Ok(())
    }
}

/// The admin token's hash and the invite codes.
#[async_trait::async_trait]
pub trait Admission: Send + Sync {
    /// The stored hash of the generated admin token; `proposed` becomes it
    /// if there is none yet (the first start of the first origin).
    async fn admin_hash(&self, proposed: &str) -> Result<String, StoreError>;

    /// Keeps a new invite.
    async fn add_invite(&self, invite: &Invite) -> Result<(), StoreError>;

    /// Every invite, expired and used-up ones included.
    async fn invites(&self) -> Result<Vec<Invite>, StoreError>;

    /// Forgets invite `id`; whether there was one.
    async fn revoke_invite(&self, id: &str) -> Result<bool, StoreError>;

    /// Uses the code with hash `code_hash` once, if it may be used at `now`
    /// (atomically: two origins cannot both spend its last use).
    async fn redeem(
        &self,
        code_hash: &str,
        now: &str,
    ) -> Result<Result<Invite, Refusal>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(max_uses: Option<u32>, used: u32, expires_at: Option<&str>) -> Invite {
        Invite {
            id: "i".into(),
            code_hash: "h".into(),
            max_uses,
            used,
            expires_at: expires_at.map(str::to_owned),
            created_at: "2026-01-01T00:00:00.000000Z".into(),
        }
    }

    #[test]
    fn an_invite_is_spent_by_its_uses_and_its_expiry() {
        let now = "2026-06-01T00:00:00.000000Z";
        assert_eq!(invite(Some(1), 0, None).check(now), Ok(()));
        assert_eq!(invite(Some(1), 1, None).check(now), Err(Refusal::UsedUp));
        assert_eq!(invite(None, 1_000_000, None).check(now), Ok(()));
        let later = Some("2026-06-01T00:00:00.000001Z");
        assert_eq!(invite(Some(2), 1, later).check(now), Ok(()));
        assert_eq!(invite(None, 0, Some(now)).check(now), Err(Refusal::Expired));
    }
}
