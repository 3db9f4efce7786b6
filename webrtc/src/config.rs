//! WebRTC settings: the one UDP port, the addresses to advertise, limits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use serde::Deserialize;
use serde_with::{As, DurationSeconds};

/// Default UDP address for every WebRTC peer (one port for all sessions).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8189";
/// WebRTC sessions (publishers and viewers) on this origin at once. A WHIP
/// publish costs a transcode, so CPU runs out long before this.
pub const DEFAULT_MAX_SESSIONS: usize = 500;
/// WHEP viewers of one broadcast on this origin: each costs an SRTP stream
/// of the rendition's bitrate (see the README's benchmark for the CPU).
pub const DEFAULT_MAX_VIEWERS_PER_BROADCAST: usize = 200;
/// A session whose peer has not completed ICE and DTLS by then is dropped
/// (and its broadcast freed for the next publisher).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Media events buffered between a WHIP session and the transcoder: about 5 s
/// of 30 fps video with 50 Opus packets a second. A full buffer drops video
/// until the next keyframe (asked for at once) rather than stall the socket.
pub const DEFAULT_MEDIA_CHANNEL_CAPACITY: usize = 512;

/// The UDP socket's receive and send buffers. The kernel's default (about
/// 208 KiB, a few hundred small datagrams) overflows while the task writes a
/// frame out to a couple of hundred viewers, and what it drops first are
/// the new peers' STUN checks. Linux caps it at `net.core.rmem_max` and
/// `wmem_max`; the server warns when it gets less.
pub const DEFAULT_SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// A way peers reach the server, offered as host candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP, on the listen port: what WebRTC prefers.
    Udp,
    /// ICE-TCP (RFC 6544, passive) on the same port number, for networks
    /// that block UDP.
    Tcp,
}

/// A STUN or TURN server passed to clients in `Link` headers (RFC 9725 4.6).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:` or `turn:`/`turns:` URL, e.g. `turn:turn.example.net:3478?transport=udp`.
    pub url: String,
    /// TURN username.
    #[serde(default)]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default)]
    pub credential: Option<String>,
}

/// WebRTC settings, read from the `[webrtc]` table of the config file
/// (durations in whole seconds, as `*_secs`); see the `DEFAULT_*` constants.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebrtcConfig {
    /// UDP listen address (the `--webrtc-listen` flag sets it).
    #[serde(skip)]
    pub listen: SocketAddr,
    /// Addresses written into answers as host candidates: the public address
    /// behind a NAT that forwards the UDP port. Empty: the listen address if it
    /// is specific, else the address of this machine's default route.
    pub advertise: Vec<IpAddr>,
    /// Sessions at once, publishers and viewers.
    pub max_sessions: usize,
    /// WHEP viewers of one broadcast.
    pub max_viewers_per_broadcast: usize,
    /// ICE and DTLS deadline for a new session.
    #[serde(rename = "connect_timeout_secs", with = "As::<DurationSeconds<u64>>")]
    pub connect_timeout: Duration,
    /// STUN/TURN servers offered to clients; none are needed on an open network.
    pub ice_servers: Vec<IceServer>,
    /// The UDP socket's receive and send buffer sizes, in bytes.
    pub socket_buffer_bytes: usize,
    /// What answers offer: `["udp", "tcp"]` (UDP preferred, ICE-TCP as the
    /// fallback where UDP is blocked); one of them alone is allowed.
    pub transports: Vec<Transport>,
    /// Capacity of each WHIP session's media channel (not in the file).
    #[serde(skip)]
    pub media_channel_capacity: usize,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid default address"),
            advertise: Vec::new(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_viewers_per_broadcast: DEFAULT_MAX_VIEWERS_PER_BROADCAST,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ice_servers: Vec::new(),
            socket_buffer_bytes: DEFAULT_SOCKET_BUFFER_BYTES,
            transports: vec![Transport::Udp, Transport::Tcp],
            media_channel_capacity: DEFAULT_MEDIA_CHANNEL_CAPACITY,
        }
    }
}

/// What is wrong with a [`WebrtcConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A limit is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// An ICE server URL has the wrong scheme.
    #[error("ice_servers: {0:?} is not a stun:, turn: or turns: URL")]
    IceServer(String),
}

impl WebrtcConfig {
    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_sessions == 0 {
            return Err(ConfigError::Zero("max_sessions"));
        }
        if self.max_viewers_per_broadcast == 0 {
            return Err(ConfigError::Zero("max_viewers_per_broadcast"));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::Zero("connect_timeout_secs"));
        }
        if self.transports.is_empty() {
            return Err(ConfigError::Zero("transports"));
        }
        if self.media_channel_capacity == 0 {
            return Err(ConfigError::Zero("media_channel_capacity"));
        }
        if let Some(s) = self.ice_servers.iter().find(|s| {
            !["stun:", "turn:", "turns:"]
                .iter()
                .any(|p| s.url.starts_with(p))
        }) {
            return Err(ConfigError::IceServer(s.url.clone()));
        }
        Ok(())
    }

    /// The addresses to advertise for a socket bound to `bound`.
    pub fn advertised(&self, bound: SocketAddr) -> Vec<SocketAddr> {
        if !self.advertise.is_empty() {
            return self
                .advertise
                .iter()
                .map(|ip| SocketAddr::new(*ip, bound.port()))
                .collect();
        }
        if !bound.ip().is_unspecified() {
            return vec![bound];
        }
        vec![SocketAddr::new(default_route_ip(), bound.port())]
    }
}

/// This machine's address on its default route, found by asking the kernel
/// which source address a datagram to a documentation address (192.0.2.1)
/// would use; nothing is sent. Loopback when there is no route.
fn default_route_ip() -> IpAddr {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_follow_the_config_then_the_socket() {
        let mut c = WebrtcConfig::default();
        let bound: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(c.advertised(bound), vec![bound]);
        c.advertise = vec!["203.0.113.7".parse().unwrap()];
        assert_eq!(
            c.advertised("0.0.0.0:5000".parse().unwrap()),
            vec!["203.0.113.7:5000".parse::<SocketAddr>().unwrap()]
        );
        c.advertise.clear();
        let any = c.advertised("0.0.0.0:5000".parse().unwrap());
        assert_eq!(any.len(), 1);
        assert!(!any[0].ip().is_unspecified());
    }

    #[test]
    fn bad_settings_are_named() {
        let mut c = WebrtcConfig {
            max_sessions: 0,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_sessions")
        );
        c.max_sessions = 1;
        c.ice_servers.push(IceServer {
            url: "http://x".into(),
            username: None,
            credential: None,
        });
        assert!(c.validate().unwrap_err().to_string().contains("http://x"));
        c.ice_servers[0].url = "turn:turn.example.net:3478".into();
        c.validate().unwrap();
    }
}
