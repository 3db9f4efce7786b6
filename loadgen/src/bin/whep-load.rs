//! WHEP load generator: N str0m viewers of one broadcast. Prints one JSON
//! line of results. See the `loadgen` crate's `whep` module.

use std::time::Duration;

use clap::Parser;

/// Real-time viewers over WebRTC.
#[derive(Parser)]
#[command(name = "whep-load")]
struct Args {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    base: String,
    /// The broadcast to watch.
    #[arg(long)]
    broadcast: String,
    /// The rendition (720p, 480p); the server's default otherwise.
    #[arg(long)]
    rendition: Option<String>,
    /// Viewers.
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    /// Seconds in the measurement window.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds over which viewers join.
    #[arg(long, default_value_t = 5)]
    ramp: u64,
    /// The stream's frame rate.
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// The server's pid, for its CPU seconds over the window.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    str0m::crypto::from_feature_flags().install_process_default();
    let report = loadgen::whep::run(loadgen::whep::WhepLoadConfig {
        base: a.base,
        broadcast: a.broadcast,
        rendition: a.rendition,
        viewers: a.viewers,
        duration: Duration::from_secs(a.seconds),
        ramp: Duration::from_secs(a.ramp),
        fps: a.fps,
        server_pid: a.server_pid,
    })
    .await;
    println!("{}", serde_json::to_string(&report).expect("serializable"));
}
