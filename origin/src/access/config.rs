//! Who may go live: the creation policy, the admin token and the creation
//! rate limit, with their defaults. Read from the `[access]` table of the
//! config file; the admin token also from `--admin-token` /
//! `ORIGIN_ADMIN_TOKEN`.

use serde::Deserialize;

/// Broadcasts one client address may create per hour (the admin is exempt).
pub const DEFAULT_CREATES_PER_HOUR: u32 = 10;
/// How many of those it may create at once, before the hourly rate applies.
pub const DEFAULT_CREATE_BURST: u32 = 5;
/// An invite code lasts this long unless the operator says otherwise.
pub const DEFAULT_INVITE_EXPIRY_SECS: u64 = 7 * 24 * 3600;
/// Shortest admin token accepted from the configuration, in characters.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// Who may create a broadcast (`POST /api/broadcasts` without the admin
/// token; with it, creating always works).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Anyone who can reach the server (for development).
    Open,
    /// Whoever holds a valid invite code.
    #[default]
    Invite,
    /// Only the admin.
    Admin,
}

impl Policy {
    /// As the API and the config file spell it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Open => "open",
            Policy::Invite => "invite",
            Policy::Admin => "admin",
        }
    }
}

/// `[access]`; see the `DEFAULT_*` constants.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Who may create broadcasts.
    pub creation: Policy,
    /// The admin token. Without one, a token is generated at the first
    /// start, printed once to the log and stored hashed.
    pub admin_token: Option<String>,
    /// Broadcasts per client address per hour.
    pub creates_per_hour: u32,
    /// Broadcasts a client address may create at once.
    pub create_burst: u32,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            creation: Policy::default(),
            admin_token: None,
            creates_per_hour: DEFAULT_CREATES_PER_HOUR,
            create_burst: DEFAULT_CREATE_BURST,
        }
    }
}

/// Why `[access]` cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A guessable admin token.
    #[error("admin_token must be at least {MIN_ADMIN_TOKEN_CHARS} characters")]
    ShortToken,
    /// A rate of zero would refuse everyone but the admin.
    #[error("creates_per_hour and create_burst must be positive")]
    Rate,
}

impl AccessConfig {
    /// Rejects a short admin token and a zero rate.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.trim().chars().count() < MIN_ADMIN_TOKEN_CHARS)
        {
            return Err(ConfigError::ShortToken);
        }
        if self.creates_per_hour == 0 || self.create_burst == 0 {
            return Err(ConfigError::Rate);
        }
        Ok(())
    }
}
