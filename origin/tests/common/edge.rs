//! The nginx edge of `deploy/nginx-edge.conf` in front of test origins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{answers_health, free_addr};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The config's `server` line for each of `origins`, with `params`.
fn servers(origins: &[SocketAddr], params: &str) -> String {
    origins
        .iter()
        .map(|o| format!("server {o} {params};"))
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// nginx in the foreground with the edge config; stopped on drop.
pub struct Edge {
    child: tokio::process::Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    _cache: tempfile::TempDir,
}

impl Edge {
    /// nginx with `deploy/nginx-edge.conf`, its upstream group listing `origins`.
    pub async fn start(origins: &[SocketAddr]) -> Edge {
        // nginx workers run as an unprivileged user when started as root.
        let readable = |dir: tempfile::TempDir| {
            let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
            std::fs::set_permissions(dir.path(), mode).unwrap();
            dir
        };
        let dir = readable(tempfile::tempdir().unwrap());
        let d = dir.path().display().to_string();
        // The cache lives in RAM, as the config has it.
        let shm = readable(tempfile::tempdir_in("/dev/shm").unwrap());
        let addr = free_addr();
        let mut conf = std::fs::read_to_string(repo().join("deploy/nginx-edge.conf")).unwrap();
        for (from, to) in [
            (
                "/dev/shm/nginx-llhls",
                format!("{}/cache", shm.path().display()),
            ),
            ("listen 80;", format!("listen {addr};")),
            (
                "server 127.0.0.1:8080 max_fails=1 fail_timeout=2s;",
                servers(origins, "max_fails=1 fail_timeout=2s"),
            ),
            (
                "server 127.0.0.1:8080 backup max_fails=0;",
                servers(origins, "backup max_fails=0"),
            ),
        ] {
            assert_eq!(
                conf.matches(from).count(),
                1,
                "deploy/nginx-edge.conf has `{from}` once"
            );
            conf = conf.replace(from, &to);
        }
        std::fs::write(dir.path().join("edge.conf"), conf).unwrap();
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               include {d}/edge.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let child = tokio::process::Command::new("nginx")
            .args(["-p", &d, "-e", &format!("{d}/error.log"), "-c"])
            .arg(dir.path().join("nginx.conf"))
            .kill_on_drop(true)
            .spawn()
            .expect("nginx must be installed (scripts/check.sh installs it)");
        assert!(
            answers_health(addr, Duration::from_secs(10)).await,
            "the edge came up: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        Edge {
            child,
            addr,
            _dir: dir,
            _cache: shm,
        }
    }
}

impl Edge {
    /// What nginx logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        // TERM lets the master stop its workers; SIGKILL (kill_on_drop) would orphan them.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..50 {
                if !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z "))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
