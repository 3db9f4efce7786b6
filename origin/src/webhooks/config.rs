//! `[webhooks]`: where events go, and how hard to try.

use std::time::Duration;

use serde::Deserialize;
use serde_with::{As, DurationSeconds};

/// Events waiting per endpoint; past it, new events for that endpoint are
/// dropped (counted and logged), never waited for.
pub const DEFAULT_QUEUE: usize = 1000;
/// Tries per event, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// One try's limit, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait before the first retry; it doubles each time, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One receiver.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `http://` or `https://`.
    pub url: String,
    /// The shared secret the signature is made with: `whsec_` and base64
    /// (as Standard Webhooks' libraries expect), or any other string, whose
    /// bytes are the key.
    pub secret: String,
}

impl Endpoint {
    /// The HMAC key of its secret (`None`: `whsec_` and not base64).
    pub fn key(&self) -> Option<Vec<u8>> {
        key(&self.secret)
    }
}

/// The HMAC key of a secret: `whsec_` and base64, or the string's bytes (pure).
pub fn key(secret: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD.decode(b64).ok(),
        None => Some(secret.as_bytes().to_vec()),
    }
}

/// `[webhooks]`; see the `DEFAULT_*` constants.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Receivers; none by default.
    pub endpoints: Vec<Endpoint>,
    /// Events waiting per endpoint.
    pub queue: usize,
    /// Tries per event.
    pub max_attempts: u32,
    /// One try's limit.
    #[serde(rename = "timeout_secs", with = "As::<DurationSeconds<u64>>")]
    pub timeout: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            endpoints: Vec::new(),
            queue: DEFAULT_QUEUE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why `[webhooks]` cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Not an http(s) URL.
    #[error("endpoint url {0:?} must be an http:// or https:// URL")]
    Url(String),
    /// A guessable secret.
    #[error("the secret of {0} must be at least 16 characters")]
    Secret(String),
    /// `whsec_` and not base64.
    #[error("the secret of {0} starts with whsec_ but the rest is not base64")]
    SecretEncoding(String),
    /// Zeroes.
    #[error("queue, max_attempts and timeout_secs must be positive")]
    Limits,
}

impl WebhooksConfig {
    /// Checks every endpoint and the limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for e in &self.endpoints {
            let uri: Result<hyper::Uri, _> = e.url.parse();
            if !uri.is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            }) {
                return Err(ConfigError::Url(e.url.clone()));
            }
            if e.secret.chars().count() < 16 {
                return Err(ConfigError::Secret(e.url.clone()));
            }
            if e.key().is_none() {
                return Err(ConfigError::SecretEncoding(e.url.clone()));
            }
        }
        if self.queue == 0 || self.max_attempts == 0 || self.timeout.is_zero() {
            return Err(ConfigError::Limits);
        }
        Ok(())
    }
}
