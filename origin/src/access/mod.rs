//! Who may go live: the admin token, the creation policy (`open`, `invite`,
//! `admin`), invite codes, and the per-address creation rate limit. The
//! operator API that uses it is `api::admin`.
//!
//! The admin token is either configured (`--admin-token`,
//! `ORIGIN_ADMIN_TOKEN`, `[access] admin_token`) or generated at the first
//! start, printed once to the log and kept only as its SHA-256 (in the
//! database every origin shares, so one token works on all of them).

pub mod config;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper::Request;
use tracing::{info, warn};

use self::config::{AccessConfig, Policy};
use crate::api::request::bearer;
use crate::error::HttpError;
use crate::store::StoreError;
use crate::store::admission::{Admission, Invite};
use crate::store::keys::{random_hex, same};
use crate::store::record::{now_rfc3339, rfc3339, sha256_hex};

/// Addresses the rate limiter remembers before it forgets idle ones.
const LIMITER_KEYS: usize = 10_000;

/// Who a creation was admitted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// The admin token.
    Admin,
    /// An invite code (its id).
    Invited(String),
    /// Anyone (policy `open`).
    Anyone,
}

/// The admin token's hash, the policy, the invites and the rate limit.
pub struct Access {
    config: AccessConfig,
    admin_hash: String,
    store: Arc<dyn Admission>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl Access {
    /// Resolves the admin token: the configured one, or the one generated at
    /// the first start (generated now, and logged once, if there is none).
    pub async fn start(
        config: AccessConfig,
        store: Arc<dyn Admission>,
    ) -> Result<Access, StoreError> {
        let admin_hash = match &config.admin_token {
            Some(t) => sha256_hex(t.trim()),
            None => {
                let token = format!("adm_{}", random_hex(24)?);
                let proposed = sha256_hex(&token);
                let stored = store.admin_hash(&proposed).await?;
                if stored == proposed {
                    warn!(
                        "generated the admin token {token} : it is shown only this once \
                         and stored hashed; keep it (or set --admin-token / ORIGIN_ADMIN_TOKEN)"
                    );
                } else {
                    info!("admin token: the one generated at the first start (stored hashed)");
                }
                stored
            }
        };
        let per_hour = NonZeroU32::new(config.creates_per_hour).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.create_burst).unwrap_or(NonZeroU32::MIN);
        info!(policy = config.creation.name(), "who may create broadcasts");
        Ok(Access {
            limiter: RateLimiter::keyed(Quota::per_hour(per_hour).allow_burst(burst)),
            config,
            admin_hash,
            store,
        })
    }

    /// Who may create broadcasts.
    pub fn policy(&self) -> Policy {
        self.config.creation
    }

    /// Whether the request carries the admin token.
    pub fn is_admin<B>(&self, req: &Request<B>) -> bool {
        bearer(req).is_ok_and(|t| same(&sha256_hex(t), &self.admin_hash))
    }

    /// 401 without a bearer token, 403 with another one.
    pub fn require_admin<B>(&self, req: &Request<B>) -> Result<(), HttpError> {
        bearer(req)?;
        if !self.is_admin(req) {
            return Err(HttpError::Forbidden("not the admin token".into()));
        }
        Ok(())
    }

    /// Whether `req`, from `peer`, with `invite` in its body, may create a
    /// broadcast now; an invite's use is spent here. The admin always may;
    /// everyone else counts against the rate limit first (every attempt, so
    /// that codes cannot be guessed).
    pub async fn admit<B>(
        &self,
        req: &Request<B>,
        peer: IpAddr,
        invite: Option<&str>,
    ) -> Result<Admitted, HttpError> {
        if req.headers().contains_key("authorization") {
            self.require_admin(req)?;
            return Ok(Admitted::Admin);
        }
        if self.config.creation == Policy::Admin {
            return Err(HttpError::Forbidden(
                "only the operator creates broadcasts on this server".into(),
            ));
        }
        if self.limiter.len() > LIMITER_KEYS {
            self.limiter.retain_recent();
        }
        if let Err(not_until) = self.limiter.check_key(&peer) {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            warn!(%peer, "broadcast creation rate-limited");
            return Err(HttpError::TooManyRequests(format!(
                "at most {} broadcasts per hour from one address; try again in {} s",
                self.config.creates_per_hour,
                wait.as_secs().max(1)
            )));
        }
        if self.config.creation == Policy::Open {
            return Ok(Admitted::Anyone);
        }
        let code = invite
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                HttpError::Forbidden("an invite code is needed to create a broadcast here".into())
            })?;
        match self.store.redeem(&sha256_hex(code), &now_rfc3339()).await? {
            Ok(i) => {
                info!(invite = %i.id, used = i.used, "invite code used");
                Ok(Admitted::Invited(i.id))
            }
            Err(refused) => {
                warn!(%peer, %refused, "broadcast creation refused");
                Err(HttpError::Forbidden(refused.to_string()))
            }
        }
    }

    /// A new invite code, usable `max_uses` times (`None`: any number) until
    /// `expires_in` from now (`None`: forever). The code is returned this
    /// once; only its hash is kept.
    pub async fn invite(
        &self,
        max_uses: Option<u32>,
        expires_in: Option<Duration>,
    ) -> Result<(Invite, String), StoreError> {
        let code = format!("inv_{}", random_hex(12)?);
        let invite = Invite {
            id: random_hex(4)?,
            code_hash: sha256_hex(&code),
            max_uses,
            used: 0,
            expires_at: expires_in.map(|d| rfc3339(std::time::SystemTime::now() + d)),
            created_at: now_rfc3339(),
        };
        self.store.add_invite(&invite).await?;
        info!(invite = %invite.id, ?max_uses, expires_at = ?invite.expires_at, "invite created");
        Ok((invite, code))
    }

    /// Every invite.
    pub async fn invites(&self) -> Result<Vec<Invite>, StoreError> {
        self.store.invites().await
    }

    /// Revokes invite `id`; whether there was one.
    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let found = self.store.revoke_invite(id).await?;
        if found {
            info!(invite = %id, "invite revoked");
        }
        Ok(found)
    }
}
