//! LL-HLS load generator: N simulated hls.js-like viewers of one stream.
//! Prints one JSON line of results. See the `loadgen` crate.

use std::time::Duration;

use clap::Parser;

/// Simulated low-latency viewers.
#[derive(Parser)]
#[command(name = "llhls-load")]
struct Args {
    /// Multivariant playlist URL.
    #[arg(long)]
    url: String,
    /// Simulated viewers.
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// Seconds each viewer watches.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Rendition playlist to pick, e.g. 480p.m3u8 (default: the last variant).
    #[arg(long)]
    rendition: Option<String>,
    /// Seconds over which viewers join.
    #[arg(long, default_value_t = 2)]
    ramp: u64,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let report = loadgen::llhls::run(loadgen::llhls::LoadConfig {
        url: a.url,
        viewers: a.viewers,
        duration: Duration::from_secs(a.seconds),
        rendition: a.rendition,
        ramp: Duration::from_secs(a.ramp),
    })
    .await;
    println!("{}", serde_json::to_string(&report).expect("serializable"));
}
