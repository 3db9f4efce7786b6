//! Server configuration: clap flags (each also an environment variable) over an
//! optional TOML file over the crates' `DEFAULT_*` constants.
//! `deploy/origin.toml` is the commented example.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
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
    /// Directory for persistent data.
    #[arg(long, env = "ORIGIN_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Directory holding the web pages (`src/`) and hls.js (`node_modules/`).
    #[arg(long, env = "ORIGIN_PLAYER_DIR", default_value = DEFAULT_PLAYER_DIR)]
    pub player_dir: PathBuf,
    /// Optional TOML config file (see deploy/origin.toml).
    #[arg(long, env = "ORIGIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// A stream key allowed to publish (repeatable, or comma-separated in the
    /// environment). The key is also the broadcast id. For running without the
    /// broadcast API; keys created through the API work as well.
    #[arg(long = "stream-key", env = "ORIGIN_STREAM_KEYS", value_delimiter = ',')]
    pub stream_keys: Vec<String>,
}

/// The `[ingest]` table of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestFile {
    /// RTMP application name.
    pub app: Option<String>,
    /// Simultaneous RTMP connections.
    pub max_connections: Option<usize>,
    /// Seconds to complete the handshake.
    pub handshake_timeout_secs: Option<u64>,
    /// Seconds of silence before a connection is closed.
    pub idle_timeout_secs: Option<u64>,
    /// Largest RTMP message in bytes.
    pub max_message_size: Option<usize>,
    /// Deepest AMF nesting accepted in commands and metadata.
    pub max_amf_depth: Option<usize>,
}

/// The `[http]` table of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// Simultaneous HTTP connections, WebSockets included.
    pub max_connections: Option<usize>,
    /// Seconds for a request head to arrive.
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds of silence before an idle connection is closed.
    pub keep_alive_timeout_secs: Option<u64>,
    /// Largest request head in bytes.
    pub max_header_bytes: Option<usize>,
}

/// The `[transcoder]` table of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscoderFile {
    /// The ladder.
    pub renditions: Option<Vec<transcoder::RenditionSpec>>,
    /// Keyframe (and segment) interval in seconds.
    pub keyframe_interval_secs: Option<f64>,
    /// x264 speed preset.
    pub preset: Option<String>,
    /// x264 threads per rendition (0: x264 chooses).
    pub x264_threads: Option<u32>,
    /// Also offer the untouched source as a rendition.
    pub source_passthrough: Option<bool>,
    /// Seconds between thumbnails.
    pub thumbnail_interval_secs: Option<u64>,
}

/// The `[hls]` table of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsFile {
    /// PART-TARGET in milliseconds.
    pub part_target_ms: Option<u64>,
    /// PART-HOLD-BACK in milliseconds.
    pub part_hold_back_ms: Option<u64>,
    /// Complete segments kept per rendition.
    pub segments_kept: Option<usize>,
    /// Segment bytes kept per rendition.
    pub max_window_bytes: Option<usize>,
    /// Seconds an ended window stays available.
    pub linger_after_end_secs: Option<u64>,
    /// Seconds to wait for a dropped publisher before ending.
    pub reconnect_grace_secs: Option<u64>,
    /// Held requests per client address.
    pub max_held_per_client: Option<usize>,
    /// Held requests in all.
    pub max_held_total: Option<usize>,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Stream keys that may publish without the API.
    pub stream_keys: Option<Vec<String>>,
    /// RTMP ingest settings.
    pub ingest: Option<IngestFile>,
    /// HTTP server settings.
    pub http: Option<HttpFile>,
    /// Transcoder settings.
    pub transcoder: Option<TranscoderFile>,
    /// LL-HLS settings.
    pub hls: Option<HlsFile>,
}

/// The composed configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// RTMP listen address.
    pub rtmp_listen: SocketAddr,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// Persistent data directory.
    pub data_dir: PathBuf,
    /// Web pages directory.
    pub player_dir: PathBuf,
    /// Statically allowed stream keys.
    pub stream_keys: Vec<String>,
    /// Ingest settings.
    pub ingest: ingest::IngestConfig,
    /// HTTP server settings.
    pub http: crate::http::HttpConfig,
    /// Transcoder settings.
    pub transcoder: transcoder::TranscoderConfig,
    /// LL-HLS settings.
    pub hls: crate::hls::HlsConfig,
}

impl Config {
    /// Composes flags, environment and the optional file, and validates the result.
    pub fn load(cli: Cli) -> anyhow::Result<Config> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut ingest = ingest::IngestConfig::default();
        if let Some(f) = file.ingest {
            if let Some(v) = f.app {
                ingest.app = v;
            }
            if let Some(v) = f.max_connections {
                ingest.max_connections = v;
            }
            if let Some(v) = f.handshake_timeout_secs {
                ingest.handshake_timeout = Duration::from_secs(v);
            }
            if let Some(v) = f.idle_timeout_secs {
                ingest.idle_timeout = Duration::from_secs(v);
            }
            if let Some(v) = f.max_message_size {
                ingest.max_message_size = v;
            }
            if let Some(v) = f.max_amf_depth {
                ingest.max_amf_depth = v;
            }
        }
        let mut http = crate::http::HttpConfig::default();
        if let Some(f) = file.http {
            if let Some(v) = f.max_connections {
                http.max_connections = v;
            }
            if let Some(v) = f.header_read_timeout_secs {
                http.header_read_timeout = Duration::from_secs(v);
            }
            if let Some(v) = f.keep_alive_timeout_secs {
                http.keep_alive_timeout = Duration::from_secs(v);
            }
            if let Some(v) = f.max_header_bytes {
                http.max_header_bytes = v;
            }
        }
        let mut tc = transcoder::TranscoderConfig::default();
        if let Some(f) = file.transcoder {
            if let Some(v) = f.renditions {
                tc.renditions = v;
            }
            if let Some(v) = f.keyframe_interval_secs {
                tc.keyframe_interval = Duration::try_from_secs_f64(v)
                    .context("[transcoder] keyframe_interval_secs")?;
            }
            if let Some(v) = f.preset {
                tc.preset = v;
            }
            if let Some(v) = f.x264_threads {
                tc.x264_threads = v;
            }
            if let Some(v) = f.source_passthrough {
                tc.source_passthrough = v;
            }
            if let Some(v) = f.thumbnail_interval_secs {
                tc.thumbnail_interval = Duration::from_secs(v);
            }
        }
        let mut hls = crate::hls::HlsConfig {
            segment_target: tc.keyframe_interval,
            ..Default::default()
        };
        if let Some(f) = file.hls {
            if let Some(v) = f.part_target_ms {
                hls.part_target = Duration::from_millis(v);
                hls.part_hold_back = hls.part_target * 3;
            }
            if let Some(v) = f.part_hold_back_ms {
                hls.part_hold_back = Duration::from_millis(v);
            }
            if let Some(v) = f.segments_kept {
                hls.segments_kept = v;
            }
            if let Some(v) = f.max_window_bytes {
                hls.max_window_bytes = v;
            }
            if let Some(v) = f.linger_after_end_secs {
                hls.linger_after_end = Duration::from_secs(v);
            }
            if let Some(v) = f.reconnect_grace_secs {
                hls.reconnect_grace = Duration::from_secs(v);
            }
            if let Some(v) = f.max_held_per_client {
                hls.max_held_per_client = v;
            }
            if let Some(v) = f.max_held_total {
                hls.max_held_total = v;
            }
        }
        let mut stream_keys = cli.stream_keys;
        stream_keys.extend(file.stream_keys.unwrap_or_default());
        stream_keys.retain(|k| !k.trim().is_empty());
        let config = Config {
            rtmp_listen: cli.rtmp_listen,
            http_listen: cli.http_listen,
            data_dir: cli.data_dir,
            player_dir: cli.player_dir,
            stream_keys,
            ingest,
            http,
            transcoder: tc,
            hls,
        };
        config.validate()?;
        Ok(config)
    }

    /// Rejects bad combinations before anything starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.ingest
            .validate()
            .map_err(anyhow::Error::msg)
            .context("[ingest]")?;
        self.http
            .validate()
            .map_err(anyhow::Error::msg)
            .context("[http]")?;
        self.transcoder
            .validate()
            .map_err(anyhow::Error::msg)
            .context("[transcoder]")?;
        self.hls
            .validate()
            .map_err(anyhow::Error::msg)
            .context("[hls]")?;
        if self.rtmp_listen == self.http_listen {
            bail!("RTMP and HTTP cannot listen on the same address");
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(c.hls.part_target, d.hls.part_target);
        assert_eq!(c.hls.segments_kept, d.hls.segments_kept);
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
