//! A throwaway PostgreSQL for a test: `initdb` in a temporary directory, the
//! server on a free loopback port (as the `postgres` user when the test runs
//! as root, which PostgreSQL refuses to run as), stopped and deleted when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::wait::free_addr;

/// Where Debian puts the server binaries (the `postgresql` package).
const BIN_DIRS: [&str; 2] = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"];

/// A running server; dropping it stops it (fast shutdown) and removes its data.
pub struct TempPostgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    /// Its port.
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

fn bin(name: &str) -> PathBuf {
    BIN_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `cmd` as the `postgres` user when we are root.
fn as_postgres(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl TempPostgres {
    /// Starts a fresh server; panics with the reason if it cannot.
    pub fn start() -> TempPostgres {
        let dir = tempfile::tempdir().expect("a temporary directory");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of the data directory to postgres");
        }
        let data = dir.path().join("data");
        let out = as_postgres(bin("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .expect("initdb must be installed (scripts/deps.sh installs postgresql)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_addr().port();
        let child = spawn(&data, dir.path(), port);
        TempPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            child,
            dir,
        }
    }

    /// Stops the server (fast shutdown: active transactions rolled back),
    /// keeping its data.
    pub fn stop(&mut self) {
        self.pg_ctl_stop();
        let _ = self.child.wait();
    }

    fn pg_ctl_stop(&self) {
        let _ = as_postgres(bin("pg_ctl"))
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn restart(&mut self) {
        self.child = spawn(&self.data_dir(), self.dir.path(), self.port);
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// The server on `port`, its socket in `socket_dir`; returns once it accepts
/// connections.
fn spawn(data: &Path, socket_dir: &Path, port: u16) -> Child {
    let child = as_postgres(bin("postgres"))
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(socket_dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres must be installed");
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "PostgreSQL did not start in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.pg_ctl_stop();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
