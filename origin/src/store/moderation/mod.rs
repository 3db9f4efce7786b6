//! What chat moderation keeps: every action (who, what, when) on a
//! broadcast's chat, in order, and each message's sender. A room's state
//! (who may not send, slow mode, which tokens moderate) is derived from the
//! actions ([`State::of`]), so that every origin sharing a database derives
//! the same. In sled ([`sled`]) or in PostgreSQL ([`postgres`], which also
//! announces each action on the chat feed).

mod postgres;
mod sled;

use super::StoreError;
pub use super::record::{Action, What};
use super::record::{Author, ChatMessage};

/// Actions kept per broadcast; past this, the oldest are read no more (a
/// ban that old is forgotten) and new ones are still taken.
pub const MAX_ACTIONS: usize = 10_000;

/// A sender who may not send: by session or by address, until a time
/// (`None`: banned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    /// The action that imposed it.
    pub action: u64,
    pub author: Author,
    pub until: Option<String>,
}

/// A moderator in office.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moderator {
    pub id: String,
    pub name: String,
    pub token_hash: String,
    /// RFC 3339.
    pub appointed_at: String,
}

/// A chat's moderation state, derived from its actions (pure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// On-demand slow mode, in seconds (0: off).
    pub slow_mode_secs: u32,
    /// Bans, and time-outs (expired ones included; see [`State::refusal`]).
    pub restrictions: Vec<Restriction>,
    pub moderators: Vec<Moderator>,
}

impl State {
    /// The state after `actions`, oldest first (pure).
    pub fn of(actions: &[Action]) -> State {
        let mut s = State::default();
        for a in actions {
            match &a.what {
                What::Delete { .. } => {}
                What::Timeout {
                    until,
                    author: Some(author),
                    ..
                } => s.restrictions.push(Restriction {
                    action: a.id,
                    author: author.clone(),
                    until: Some(until.clone()),
                }),
                What::Ban {
                    author: Some(author),
                    ..
                } => s.restrictions.push(Restriction {
                    action: a.id,
                    author: author.clone(),
                    until: None,
                }),
                What::Timeout { author: None, .. } | What::Ban { author: None, .. } => {}
                What::Lift { target } => s.restrictions.retain(|r| r.action != *target),
                What::SlowMode { seconds } => s.slow_mode_secs = *seconds,
                What::Appoint {
                    moderator,
                    name,
                    token_hash: Some(token_hash),
                } => s.moderators.push(Moderator {
                    id: moderator.clone(),
                    name: name.clone(),
                    token_hash: token_hash.clone(),
                    appointed_at: a.at.clone(),
                }),
                What::Appoint { .. } => {}
                What::Dismiss { moderator } => s.moderators.retain(|m| &m.id != moderator),
            }
        }
        s
    }

    /// Why `author` may not send at `now` (RFC 3339, as stored: string
    /// order is time order), if it may not: a ban holds for its session and
    /// its address, a time-out for its session and address until it ends.
    pub fn refusal(&self, author: &Author, now: &str) -> Option<String> {
        let hit =
            |r: &&Restriction| r.author.session == author.session || r.author.addr == author.addr;
        let active = self
            .restrictions
            .iter()
            .filter(hit)
            .filter(|r| r.until.as_deref().is_none_or(|u| u > now));
        let mut longest: Option<&str> = None;
        for r in active {
            match r.until.as_deref() {
                None => return Some("not sent: you are banned from this chat".into()),
                Some(u) if longest.is_none_or(|l| u > l) => longest = Some(u),
                Some(_) => {}
            }
        }
        longest.map(|u| {
            format!(
                "not sent: you are timed out of this chat until {} UTC",
                u.get(11..19).unwrap_or(u)
            )
        })
    }

    /// The moderator whose token has SHA-256 `token_hash`.
    pub fn moderator(&self, token_hash: &str) -> Option<&Moderator> {
        self.moderators.iter().find(|m| m.token_hash == token_hash)
    }
}

/// Moderation actions and the senders of messages.
#[async_trait::async_trait]
pub trait Moderation: Send + Sync {
    /// Message `id` of `broadcast` with its sender, if it is still kept.
    async fn chat_message(
        &self,
        broadcast: &str,
        id: u64,
    ) -> Result<Option<ChatMessage>, StoreError>;

    /// Keeps `action` (its id and time given here), removes a deleted
    /// message from the history in the same step, and (PostgreSQL) announces
    /// it to every origin's chat feed. The action as kept.
    async fn act(&self, broadcast: &str, action: Action) -> Result<Action, StoreError>;

    /// The last [`MAX_ACTIONS`] actions on `broadcast`, oldest first.
    async fn actions(&self, broadcast: &str) -> Result<Vec<Action>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author(session: &str, addr: &str) -> Author {
        Author {
            session: session.into(),
            addr: addr.into(),
        }
    }

    fn action(id: u64, what: What) -> Action {
        Action {
            id,
            at: "2026-06-01T00:00:00.000000Z".into(),
            by: "owner".into(),
            what,
        }
    }

    #[test]
    fn bans_hold_by_session_and_address_time_outs_end_and_lifts_undo() {
        let a = author("s1", "10.0.0.1");
        let timeout = |id, until: &str| {
            action(
                id,
                What::Timeout {
                    message: 1,
                    user: "u".into(),
                    minutes: 10,
                    until: until.into(),
                    author: Some(a.clone()),
                },
            )
        };
        let now = "2026-06-01T00:05:00.000000Z";
        let s = State::of(&[timeout(1, "2026-06-01T00:10:00.000000Z")]);
        let refused = s.refusal(&a, now).unwrap();
        assert!(
            refused.contains("timed out") && refused.contains("00:10:00"),
            "{refused}"
        );
        // The same address in another session, and the same session elsewhere.
        assert!(s.refusal(&author("s2", "10.0.0.1"), now).is_some());
        assert!(s.refusal(&author("s1", "10.0.0.2"), now).is_some());
        assert_eq!(s.refusal(&author("s2", "10.0.0.2"), now), None);
        // Over.
        assert_eq!(s.refusal(&a, "2026-06-01T00:10:00.000000Z"), None);
        let ban = action(
            2,
            What::Ban {
                message: 1,
                user: "u".into(),
                author: Some(a.clone()),
            },
        );
        let s = State::of(&[timeout(1, "2026-06-01T00:10:00.000000Z"), ban.clone()]);
        assert!(s.refusal(&a, now).unwrap().contains("banned"));
        let s = State::of(&[ban, action(3, What::Lift { target: 2 })]);
        assert_eq!(s.refusal(&a, now), None);
    }

    #[test]
    fn slow_mode_and_moderators_follow_the_latest_action() {
        let appoint = |id: u64, m: &str| {
            action(
                id,
                What::Appoint {
                    moderator: m.into(),
                    name: format!("name {m}"),
                    token_hash: Some(format!("hash {m}")),
                },
            )
        };
        let s = State::of(&[
            action(1, What::SlowMode { seconds: 30 }),
            appoint(2, "m1"),
            appoint(3, "m2"),
            action(
                4,
                What::Dismiss {
                    moderator: "m1".into(),
                },
            ),
            action(5, What::SlowMode { seconds: 0 }),
        ]);
        assert_eq!(s.slow_mode_secs, 0);
        assert_eq!(s.moderator("hash m1"), None);
        assert_eq!(s.moderator("hash m2").unwrap().name, "name m2");
    }

    #[test]
    fn the_public_form_has_no_sessions_addresses_or_token_hashes() {
        let ban = action(
            1,
            What::Ban {
                message: 1,
                user: "u".into(),
                author: Some(author("secret-session", "10.9.9.9")),
            },
        );
        let stored = serde_json::to_string(&ban).unwrap();
        assert!(stored.contains("secret-session"));
        assert_eq!(serde_json::from_str::<Action>(&stored).unwrap(), ban);
        let shown = serde_json::to_string(&ban.public()).unwrap();
        assert!(
            !shown.contains("secret-session") && !shown.contains("10.9.9.9"),
            "{shown}"
        );
        assert!(shown.contains("\"action\":\"ban\""), "{shown}");
        let appoint = action(
            2,
            What::Appoint {
                moderator: "m".into(),
                name: "n".into(),
                token_hash: Some("h".into()),
            },
        );
        assert!(
            !serde_json::to_string(&appoint.public())
                .unwrap()
                .contains("token_hash")
        );
    }
}
