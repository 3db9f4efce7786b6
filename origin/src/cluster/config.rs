//! Cluster settings, with their defaults: who this origin is to the others,
//! how often it beats, when a silent origin's viewers stop counting, and how
//! many requests it forwards at once.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_with::{As, DurationMilliSeconds, DurationSeconds};

use crate::store::Node;

/// How often an origin refreshes its holdings and viewer counts in the
/// database and reads the others' counts (one round trip each time).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Viewer counts an origin has not refreshed for this long no longer count:
/// a crashed origin's viewers leave the total within it.
pub const DEFAULT_VIEWERS_EXPIRY: Duration = Duration::from_secs(5);
/// Requests this origin forwards to others at once (each holds a socket);
/// more get 503 with Retry-After.
pub const DEFAULT_PROXY_MAX_REQUESTS: usize = 4096;
/// Longest wait for another origin's response head. A held playlist request
/// is answered within the hold timeout (3 target durations); this is above it.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(10);

/// On SIGTERM, how long an origin of several answers `/readyz` with 503
/// while still serving everything, before it stops: two health-check
/// intervals of a balancer (HAProxy's default is 2 s), so that new
/// publishers, viewers and API calls go elsewhere first.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(4);

/// How long a request for a window whose holder cannot be reached waits
/// for another origin to take the broadcast over (its publisher reconnects
/// through the RTMP balancer), checking four times a second, before a 503.
/// Below an edge's read timeout for playlists (10 s in `deploy/`).
pub const DEFAULT_FAILOVER_WAIT: Duration = Duration::from_secs(8);

/// Cluster settings; see the `DEFAULT_*` constants. Read from the `[cluster]`
/// table of the config file; `--node-id` and `--advertise-url` override the
/// file. Only used with `--database-url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique among the origins sharing the database; defaults to the host
    /// and port of the advertised URL.
    pub node_id: Option<String>,
    /// The base URL (`http://host:port`) other origins proxy this one's
    /// broadcasts to; defaults to `http://` and the HTTP listen address,
    /// which must then be a specific address, not `0.0.0.0`.
    pub advertise_url: Option<String>,
    /// Least time between two beats.
    #[serde(
        rename = "heartbeat_interval_ms",
        with = "As::<DurationMilliSeconds<u64>>"
    )]
    pub heartbeat_interval: Duration,
    /// Age after which another origin's viewer counts are ignored.
    #[serde(rename = "viewers_expiry_secs", with = "As::<DurationSeconds<u64>>")]
    pub viewers_expiry: Duration,
    /// Forwarded requests in flight.
    pub proxy_max_requests: usize,
    /// Wait for a forwarded response's head.
    #[serde(rename = "proxy_timeout_secs", with = "As::<DurationSeconds<u64>>")]
    pub proxy_timeout: Duration,
    /// Not ready, still serving, before a stop.
    #[serde(rename = "drain_secs", with = "As::<DurationSeconds<u64>>")]
    pub drain: Duration,
    /// Wait for a take-over when a window's holder is unreachable.
    #[serde(rename = "failover_wait_secs", with = "As::<DurationSeconds<u64>>")]
    pub failover_wait: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: None,
            advertise_url: None,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            viewers_expiry: DEFAULT_VIEWERS_EXPIRY,
            proxy_max_requests: DEFAULT_PROXY_MAX_REQUESTS,
            proxy_timeout: DEFAULT_PROXY_TIMEOUT,
            drain: DEFAULT_DRAIN,
            failover_wait: DEFAULT_FAILOVER_WAIT,
        }
    }
}

/// Why cluster settings cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not `http://host:port` with nothing after it.
    #[error("advertise_url must look like http://host:port (no path), not {0:?}")]
    AdvertiseUrl(String),
    /// Other origins cannot reach `0.0.0.0`.
    #[error(
        "with --database-url, set --advertise-url (the URL other origins reach this one at) or listen on a specific address"
    )]
    NoAdvertiseUrl,
    /// Empty, or with characters that do not belong in a name.
    #[error("node_id must be 1 to 64 characters of [A-Za-z0-9._:-]")]
    NodeId,
    /// Beats under 100 ms, or an expiry under two beats.
    #[error("heartbeat_interval must be at least 100 ms and viewers_expiry at least two of them")]
    Timing,
    /// Nothing could be forwarded.
    #[error("proxy_max_requests and proxy_timeout must be positive")]
    Proxy,
}

impl ClusterConfig {
    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.advertise_url {
            check_url(url)?;
        }
        if let Some(id) = &self.node_id {
            check_node_id(id)?;
        }
        if self.heartbeat_interval < Duration::from_millis(100)
            || self.viewers_expiry < 2 * self.heartbeat_interval
        {
            return Err(ConfigError::Timing);
        }
        if self.proxy_max_requests == 0 || self.proxy_timeout.is_zero() {
            return Err(ConfigError::Proxy);
        }
        Ok(())
    }
}

impl ClusterConfig {
    /// This origin as the others reach it, given the HTTP address it
    /// listens on (for the defaults).
    pub fn node(&self, http: SocketAddr) -> Result<Node, ConfigError> {
        let url = match &self.advertise_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if http.ip().is_unspecified() => return Err(ConfigError::NoAdvertiseUrl),
            None => format!("http://{http}"),
        };
        check_url(&url)?;
        let id = match &self.node_id {
            Some(id) => id.clone(),
            None => url.trim_start_matches("http://").to_owned(),
        };
        check_node_id(&id)?;
        Ok(Node { id, url })
    }
}

/// Checks an advertised URL: `http://host:port`, nothing after.
pub fn check_url(url: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::AdvertiseUrl(url.to_owned());
    let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
    let path_ok = matches!(uri.path_and_query().map(|p| p.as_str()), None | Some("/"));
    if uri.scheme_str() != Some("http") || uri.authority().is_none() || !path_ok {
        return Err(bad());
    }
    Ok(())
}

/// Checks a node id.
pub fn check_node_id(id: &str) -> Result<(), ConfigError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok { Ok(()) } else { Err(ConfigError::NodeId) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_urls_and_node_ids_are_checked() {
        assert!(check_url("http://10.0.0.2:8080").is_ok());
        assert!(check_url("http://origin-a:8080/").is_ok());
        assert!(check_url("https://a:1").is_err());
        assert!(check_url("http://a:1/hls").is_err());
        assert!(check_url("a:1").is_err());
        assert!(check_node_id("a-1.b_c:8080").is_ok());
        assert!(check_node_id("").is_err());
        assert!(check_node_id("a b").is_err());
        let mut c = ClusterConfig::default();
        assert!(c.validate().is_ok());
        let any = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(c.node(any), Err(ConfigError::NoAdvertiseUrl));
        let n = c.node("10.0.0.2:8080".parse().unwrap()).unwrap();
        assert_eq!(
            (n.id.as_str(), n.url.as_str()),
            ("10.0.0.2:8080", "http://10.0.0.2:8080")
        );
        c.advertise_url = Some("http://origin-b:8080/".into());
        c.node_id = Some("b".into());
        let n = c.node(any).unwrap();
        assert_eq!(
            (n.id.as_str(), n.url.as_str()),
            ("b", "http://origin-b:8080")
        );
        c.viewers_expiry = c.heartbeat_interval;
        assert_eq!(c.validate(), Err(ConfigError::Timing));
    }
}
