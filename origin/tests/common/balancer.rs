//! HAProxy with `deploy/haproxy-rtmp.cfg` in front of test origins' RTMP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{eventually, free_addr};

/// HAProxy in the foreground; stopped on drop.
pub struct Balancer {
    _child: tokio::process::Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Balancer {
    /// HAProxy with the deploy config, its backend listing each origin as
    /// `(rtmp, http)` (checked with `/readyz` on `http`).
    pub async fn start(origins: &[(SocketAddr, SocketAddr)]) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut conf = std::fs::read_to_string(repo.join("deploy/haproxy-rtmp.cfg")).unwrap();
        for (from, to) in [
            // Logs go to the test's output.
            (
                "log /dev/log local0 info",
                "log stderr format raw local0 info".to_string(),
            ),
            ("bind :1935", format!("bind {addr}")),
            (
                "server origin-a 10.0.0.1:1935 check port 8080",
                origins
                    .iter()
                    .enumerate()
                    .map(|(i, (rtmp, http))| {
                        format!(
                            "server origin-{i} {rtmp} check addr {} port {}",
                            http.ip(),
                            http.port()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n    "),
            ),
        ] {
            assert_eq!(
                conf.matches(from).count(),
                1,
                "deploy/haproxy-rtmp.cfg has `{from}` once"
            );
            conf = conf.replace(from, &to);
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let check = std::process::Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("haproxy must be installed (scripts/deps.sh installs it)");
        assert!(
            check.status.success(),
            "the config is valid: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = tokio::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        assert!(
            eventually(Duration::from_secs(10), async || {
                tokio::net::TcpStream::connect(addr).await.is_ok()
            })
            .await,
            "HAProxy listens"
        );
        Balancer {
            _child: child,
            addr,
            _dir: dir,
        }
    }

    /// An RTMP URL through the balancer.
    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.addr)
    }
}
