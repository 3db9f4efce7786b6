//! Server configuration: clap flags (each also an environment variable) over an
//! optional TOML file over the crates' `DEFAULT_*` constants.
//! `deploy/origin.toml` is the commented example.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

/// Default RTMP listen address (the standard RTMP port).
pub const DEFAULT_RTMP_LISTEN: &str = "0.0.0.0:1935";
/// Default HTTP listen address.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:8080";
/// Default data directory (the sled database lives here).
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default directory of the web pages (`player/` of the repository).
pub const DEFAULT_PLAYER_DIR: &str = "./player";

/// Command-line flags; every one can also come from the environment.
#[derive(Debug, Parser)]
#[command(
    name = "origin",
    version,
    about = "Live streaming server: RTMP in, LL-HLS out"
)]
pub struct Cli {
    /// RTMP listen address; publishers push to rtmp://HOST:PORT/live/STREAM_KEY.
    #[arg(long, env = "ORIGIN_RTMP_LISTEN", default_value = DEFAULT_RTMP_LISTEN)]
    pub rtmp_listen: SocketAddr,
    /// HTTP listen address for LL-HLS, the API and the pages.
    #[arg(long, env = "ORIGIN_HTTP_LISTEN", default_value = DEFAULT_HTTP_LISTEN)]
    pub http_listen: SocketAddr,
    /// UDP listen address for every WebRTC peer (WHIP publishers); the
    /// addresses to advertise are `[webrtc] advertise` in the config file.
    #[arg(long, env = "ORIGIN_WEBRTC_LISTEN", default_value = webrtc::config::DEFAULT_LISTEN)]
    pub webrtc_listen: SocketAddr,
    /// Directory for persistent data.
    #[arg(long, env = "ORIGIN_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Directory holding the web pages (`src/`) and hls.js (`node_modules/`).
    #[arg(long, env = "ORIGIN_PLAYER_DIR", default_value = DEFAULT_PLAYER_DIR)]
    pub player_dir: PathBuf,
    /// Optional TOML config file (see deploy/origin.toml).
    #[arg(long, env = "ORIGIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL for state shared by several origins, e.g.
    /// `postgres://user:password@db.internal/streaming`. Without it
    /// broadcasts and chat live in sled under the data directory.
    #[arg(long, env = "ORIGIN_DATABASE_URL")]
    pub database_url: Option<String>,
    /// This origin's name among those sharing the database (default: the
    /// host and port of --advertise-url).
    #[arg(long, env = "ORIGIN_NODE_ID")]
    pub node_id: Option<String>,
    /// The URL other origins reach this one's HTTP at, e.g.
    /// `http://10.0.0.2:8080` (default: the HTTP listen address, if specific).
    #[arg(long, env = "ORIGIN_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// A stream key allowed to publish (repeatable, or comma-separated in the
    /// environment). The key is also the broadcast id. For running without the
    /// broadcast API; keys created through the API work as well.
    #[arg(long = "stream-key", env = "ORIGIN_STREAM_KEYS", value_delimiter = ',')]
    pub stream_keys: Vec<String>,
    /// The operator's token (`/api/admin/`, and creating broadcasts under
    /// any policy); at least 16 characters. Without it (and without `[access]
    /// admin_token`), one is generated at the first start and printed once.
    #[arg(long, env = "ORIGIN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Why a configuration cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `[ingest]`.
    #[error("[ingest] {0}")]
    Ingest(#[from] ingest::ConfigError),
    /// `[http]`.
    #[error("[http] {0}")]
    Http(#[from] crate::http::config::ConfigError),
    /// `[transcoder]`.
    #[error("[transcoder] {0}")]
    Transcoder(#[from] transcoder::config::ConfigError),
    /// `[hls]`.
    #[error("[hls] {0}")]
    Hls(#[from] crate::hls::config::ConfigError),
    /// `[chat]`.
    #[error("[chat] {0}")]
    Chat(#[from] crate::chat::config::ConfigError),
    /// `[cluster]`.
    #[error("[cluster] {0}")]
    Cluster(#[from] crate::cluster::config::ConfigError),
    /// `[webrtc]`.
    #[error("[webrtc] {0}")]
    Webrtc(#[from] webrtc::ConfigError),
    /// `[access]`.
    #[error("[access] {0}")]
    Access(#[from] crate::access::config::ConfigError),
    /// `[webhooks]`.
    #[error("[webhooks] {0}")]
    Webhooks(#[from] crate::webhooks::config::ConfigError),
    /// `[recording]`.
    #[error("[recording] {0}")]
    Recording(#[from] crate::recording::config::ConfigError),
    /// A rendition name that cannot be a URL path segment.
    #[error("[transcoder] rendition name {0:?} must be 1 to 64 characters of [A-Za-z0-9_-]")]
    RenditionName(String),
    /// Both listeners on one address.
    #[error("RTMP and HTTP cannot listen on the same address")]
    SameAddress,
}

/// The composed configuration the server runs with. The config file is read
/// straight into it: its tables are the components' own settings types,
/// what the file leaves out keeps its default, and an unknown key is an
/// error. The fields marked "flag" come from the command line (or the
/// environment) only.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// RTMP listen address (flag).
    #[serde(skip)]
    pub rtmp_listen: SocketAddr,
    /// HTTP listen address (flag).
    #[serde(skip)]
    pub http_listen: SocketAddr,
    /// Persistent data directory (flag).
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// Web pages directory (flag).
    #[serde(skip)]
    pub player_dir: PathBuf,
    /// Statically allowed stream keys: the flag's, then the file's.
    pub stream_keys: Vec<String>,
    /// PostgreSQL, when the state is shared; sled otherwise (the flag wins).
    pub database_url: Option<String>,
    /// Ingest settings.
    pub ingest: ingest::IngestConfig,
    /// HTTP server settings.
    pub http: crate::http::HttpConfig,
    /// Transcoder settings.
    pub transcoder: transcoder::TranscoderConfig,
    /// LL-HLS settings.
    pub hls: crate::hls::HlsConfig,
    /// Chat settings.
    pub chat: crate::chat::config::ChatConfig,
    /// Several origins as one service (with `database_url`).
    pub cluster: crate::cluster::config::ClusterConfig,
    /// WebRTC (WHIP) settings; `listen` is a flag.
    pub webrtc: webrtc::WebrtcConfig,
    /// Who may go live; `admin_token` also from the flag.
    pub access: crate::access::config::AccessConfig,
    /// Where events are posted.
    pub webhooks: crate::webhooks::config::WebhooksConfig,
    /// Replays: on or off, age limit and quota.
    pub recording: crate::recording::RecordingConfig,
}

impl Default for Config {
    fn default() -> Self {
        let addr = |a: &str| a.parse().expect("a valid default address");
        Config {
            rtmp_listen: addr(DEFAULT_RTMP_LISTEN),
            http_listen: addr(DEFAULT_HTTP_LISTEN),
            data_dir: DEFAULT_DATA_DIR.into(),
            player_dir: DEFAULT_PLAYER_DIR.into(),
            stream_keys: Vec::new(),
            database_url: None,
            ingest: Default::default(),
            http: Default::default(),
            transcoder: Default::default(),
            hls: Default::default(),
            chat: Default::default(),
            cluster: Default::default(),
            webrtc: Default::default(),
            access: Default::default(),
            webhooks: Default::default(),
            recording: Default::default(),
        }
    }
}

impl Config {
    /// Composes flags, environment and the optional file, and validates the result.
    pub fn load(cli: Cli) -> anyhow::Result<Config> {
        let mut config = match &cli.config {
            Some(path) => read_file(path)?,
            None => Config::default(),
        };
        config.rtmp_listen = cli.rtmp_listen;
        config.http_listen = cli.http_listen;
        config.webrtc.listen = cli.webrtc_listen;
        config.data_dir = cli.data_dir;
        config.player_dir = cli.player_dir;
        config.hls.segment_target = config.transcoder.keyframe_interval;
        let mut stream_keys = cli.stream_keys;
        stream_keys.append(&mut config.stream_keys);
        stream_keys.retain(|k| !k.trim().is_empty());
        config.stream_keys = stream_keys;
        config.database_url = cli.database_url.or(config.database_url);
        config.access.admin_token = cli.admin_token.or(config.access.admin_token);
        config.cluster.node_id = cli.node_id.or(config.cluster.node_id);
        config.cluster.advertise_url = cli.advertise_url.or(config.cluster.advertise_url);
        config.validate()?;
        if config.database_url.is_some() {
            // Other origins must be able to reach this one.
            config
                .cluster
                .node(config.http_listen)
                .map_err(ConfigError::from)?;
        }
        Ok(config)
    }

    /// Rejects bad combinations before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.ingest.validate()?;
        self.http.validate()?;
        self.transcoder.validate()?;
        if let Some(r) = self
            .transcoder
            .renditions
            .iter()
            .find(|r| !crate::hls::uris::valid_name(&r.name))
        {
            return Err(ConfigError::RenditionName(r.name.clone()));
        }
        self.hls.validate()?;
        self.chat.validate()?;
        self.cluster.validate()?;
        self.webrtc.validate()?;
        self.access.validate()?;
        self.webhooks.validate()?;
        self.recording.validate()?;
        if self.rtmp_listen == self.http_listen {
            return Err(ConfigError::SameAddress);
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("origin").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_match_the_documented_ports() {
        let c = Config::load(cli(&[])).unwrap();
        assert_eq!(c.rtmp_listen.port(), 1935);
        assert_eq!(c.http_listen.port(), 8080);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn the_file_sets_ingest_limits_and_unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "stream_keys = [\"k1\"]\n[ingest]\nmax_connections = 9\n",
        )
        .unwrap();
        let c = Config::load(cli(&[
            "--config",
            path.to_str().unwrap(),
            "--stream-key",
            "k0",
        ]))
        .unwrap();
        assert_eq!(c.ingest.max_connections, 9);
        assert_eq!(c.stream_keys, vec!["k0", "k1"]);

        std::fs::write(&path, "[ingest]\nmax_conections = 9\n").unwrap();
        let err = Config::load(cli(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(format!("{err:#}").contains("max_conections"), "{err:#}");
    }

    #[test]
    fn the_example_config_in_deploy_is_valid_and_matches_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/origin.toml");
        let c = Config::load(cli(&["--config", path])).unwrap();
        let d = Config::load(cli(&[])).unwrap();
        assert_eq!(c.ingest.max_connections, d.ingest.max_connections);
        assert_eq!(c.ingest.max_amf_depth, d.ingest.max_amf_depth);
        assert_eq!(c.http.max_connections, d.http.max_connections);
        assert_eq!(c.http.header_read_timeout, d.http.header_read_timeout);
        assert_eq!(c.http.keep_alive_timeout, d.http.keep_alive_timeout);
        assert_eq!(c.http.max_header_bytes, d.http.max_header_bytes);
        assert_eq!(c.transcoder.renditions, d.transcoder.renditions);
        assert_eq!(c.transcoder.preset, d.transcoder.preset);
        assert_eq!(c.transcoder.x264_threads, d.transcoder.x264_threads);
        assert_eq!(c.transcoder.thumbnail_width, d.transcoder.thumbnail_width);
        assert_eq!(
            c.transcoder.keyframe_interval,
            d.transcoder.keyframe_interval
        );
        assert_eq!(c.hls.part_target, d.hls.part_target);
        assert_eq!(c.hls.part_hold_back(), d.hls.part_hold_back());
        assert_eq!(c.hls.reconnect_grace, d.hls.reconnect_grace);
        assert_eq!(c.hls.dvr_window, d.hls.dvr_window);
        assert_eq!(c.hls.linger_after_end, d.hls.linger_after_end);
        let (cc, dc) = (&c.chat, &d.chat);
        assert_eq!(cc.max_sessions_per_room, dc.max_sessions_per_room);
        assert_eq!(cc.count_interval, dc.count_interval);
        assert_eq!(cc.batch_interval, dc.batch_interval);
        assert_eq!(cc.room_messages_per_second, dc.room_messages_per_second);
        assert_eq!(cc.slow_mode_above, dc.slow_mode_above);
        assert_eq!(cc.slow_mode_interval, dc.slow_mode_interval);
        assert_eq!(cc.peak_save_interval, dc.peak_save_interval);
        assert_eq!(cc.backlog_frames, dc.backlog_frames);
        assert_eq!(c.hls.segments_kept, d.hls.segments_kept);
        let (cc, dc) = (&c.cluster, &d.cluster);
        assert_eq!(cc.heartbeat_interval, dc.heartbeat_interval);
        assert_eq!(cc.viewers_expiry, dc.viewers_expiry);
        assert_eq!(cc.proxy_max_requests, dc.proxy_max_requests);
        assert_eq!(cc.proxy_timeout, dc.proxy_timeout);
        assert_eq!(cc.drain, dc.drain);
        assert_eq!((&cc.node_id, &cc.advertise_url), (&None, &None));
        let (ca, da) = (&c.access, &d.access);
        assert_eq!(ca.creation, da.creation);
        assert_eq!(ca.creation, crate::access::config::Policy::Invite);
        assert_eq!((&ca.admin_token, &da.admin_token), (&None, &None));
        assert_eq!(ca.creates_per_hour, da.creates_per_hour);
        assert_eq!(ca.create_burst, da.create_burst);
        let (cw, dw) = (&c.webhooks, &d.webhooks);
        assert_eq!(cw.endpoints, dw.endpoints);
        assert_eq!(cw.queue, dw.queue);
        assert_eq!(cw.max_attempts, dw.max_attempts);
        assert_eq!(cw.timeout, dw.timeout);
        assert_eq!(c.recording, d.recording);
    }

    #[test]
    fn the_cluster_example_names_its_node_and_a_bad_one_is_refused() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/origin-cluster.toml");
        let c = Config::load(cli(&["--config", path])).unwrap();
        assert!(c.database_url.is_some());
        let node = c.cluster.node(c.http_listen).unwrap();
        assert_eq!(
            (node.id.as_str(), node.url.as_str()),
            ("origin-a", "http://10.0.0.1:8080")
        );
        let c = Config::load(cli(&[
            "--config",
            path,
            "--node-id",
            "b",
            "--advertise-url",
            "http://10.0.0.2:8080",
        ]))
        .unwrap();
        assert_eq!(c.cluster.node(c.http_listen).unwrap().id, "b");
        // With a database, other origins must be able to reach this one.
        let err = Config::load(cli(&["--database-url", "postgres://h/d"])).unwrap_err();
        assert!(format!("{err:#}").contains("--advertise-url"), "{err:#}");
        let err = Config::load(cli(&["--advertise-url", "http://a/b"])).unwrap_err();
        assert!(format!("{err:#}").contains("advertise_url"), "{err:#}");
    }

    #[test]
    fn the_admin_token_flag_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[access]\nadmin_token = \"from-the-file-0123\"\n").unwrap();
        let file = path.to_str().unwrap();
        let c = Config::load(cli(&["--config", file])).unwrap();
        assert_eq!(c.access.admin_token.as_deref(), Some("from-the-file-0123"));
        let c = Config::load(cli(&[
            "--config",
            file,
            "--admin-token",
            "from-the-flag-0123",
        ]))
        .unwrap();
        assert_eq!(c.access.admin_token.as_deref(), Some("from-the-flag-0123"));
        let err = Config::load(cli(&["--admin-token", "short"])).unwrap_err();
        assert!(
            format!("{err:#}").contains("[access] admin_token"),
            "{err:#}"
        );
    }

    #[test]
    fn a_file_sets_durations_in_its_units_and_part_hold_back_follows_part_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[transcoder]\nkeyframe_interval_secs = 2.0\n[hls]\npart_target_ms = 300\nreconnect_grace_secs = 4\n",
        )
        .unwrap();
        let c = Config::load(cli(&["--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(c.hls.part_target, Duration::from_millis(300));
        assert_eq!(c.hls.part_hold_back(), Duration::from_millis(900));
        assert_eq!(c.hls.segment_target, Duration::from_secs(2));
        assert_eq!(c.hls.reconnect_grace, Duration::from_secs(4));
        assert_eq!(c.ingest.idle_timeout, ingest::config::DEFAULT_IDLE_TIMEOUT);
    }

    #[test]
    fn validation_errors_are_typed_and_name_their_table() {
        let mut c = Config::load(cli(&[])).unwrap();
        c.hls.max_held_total = 0;
        let err = c.validate().unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Hls(crate::hls::config::ConfigError::HeldLimits)
        ));
        assert_eq!(
            err.to_string(),
            "[hls] held-request limits must be positive"
        );
    }

    #[test]
    fn part_hold_back_below_three_parts_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[hls]\npart_target_ms = 300\npart_hold_back_ms = 600\n",
        )
        .unwrap();
        let err = Config::load(cli(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(format!("{err:#}").contains("3 x PART-TARGET"), "{err:#}");
    }

    #[test]
    fn invalid_limits_are_rejected_early() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for bad in [
            "[ingest]\nmax_message_size = 100\n",
            "[ingest]\nmax_amf_depth = 0\n",
            "[ingest]\nmax_amf_depth = 100000\n",
            "[http]\nmax_connections = 0\n",
            "[http]\nmax_header_bytes = 100\n",
            "[http]\nheader_read_timeout_secs = 3\n",
            "[http]\nkeep_alive_timeout_secs = -1\n",
            "[hls]\npart_target_ms = 1.5\n",
            "[transcoder]\nrenditions = [{ name = \"a.b\", height = 720, bitrate_kbps = 2800 }]\n",
            "[transcoder]\nraw_queue_frames = 1\n",
            "[chat]\nmax_sessions_per_room = 0\n",
            // Flags only: not settable from the file.
            "rtmp_listen = \"127.0.0.1:1\"\n",
            "data_dir = \"/tmp\"\n",
            "[chat]\ncount_interval_ms = 10\n",
            "[chat]\nbacklog_frames = 2\n",
            "[access]\nadmin_token = \"short\"\n",
            "[access]\ncreation = \"anyone\"\n",
            "[access]\ncreates_per_hour = 0\n",
            "[webhooks]\nendpoints = [{ url = \"ftp://h/x\", secret = \"0123456789abcdef\" }]\n",
            "[webhooks]\nendpoints = [{ url = \"http://h/x\", secret = \"short\" }]\n",
            "[webhooks]\nendpoints = [{ url = \"http://h/x\", secret = \"whsec_!!!!!!!!!!!!!!!!\" }]\n",
            "[webhooks]\nmax_attempts = 0\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                Config::load(cli(&["--config", path.to_str().unwrap()])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_config_file_nested_100000_deep_is_an_error_not_a_crash() {
        // toml_edit bounds its recursion (unless its `unbounded` feature is on).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let deep = 100_000;
        for (open, close) in [("[", "]"), ("{a=", "}")] {
            std::fs::write(
                &path,
                format!(
                    "stream_keys = {}1{}\n",
                    open.repeat(deep),
                    close.repeat(deep)
                ),
            )
            .unwrap();
            let err = Config::load(cli(&["--config", path.to_str().unwrap()])).unwrap_err();
            assert!(format!("{err:#}").contains("c.toml"), "{err:#}");
        }
    }
}
