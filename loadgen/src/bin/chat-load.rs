//! Chat and presence load generator: N sessions in one room. Prints one JSON
//! line of results. See the `loadgen` crate's `chat` module.

use std::time::Duration;

use clap::Parser;

/// A crowd in one chat room.
#[derive(Parser)]
#[command(name = "chat-load")]
struct Args {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    base: String,
    /// Another origin of the same service (repeatable): sessions are spread
    /// over all of them.
    #[arg(long = "other")]
    others: Vec<String>,
    /// The broadcast whose room to join.
    #[arg(long)]
    broadcast: String,
    /// Sessions.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Seconds over which they join.
    #[arg(long, default_value_t = 30)]
    ramp: u64,
    /// Seconds each wait may take (joins, counts, delivery, leave).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// The server's pid, for its CPU seconds and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let report = loadgen::chat::run(loadgen::chat::ChatLoadConfig {
        base: a.base,
        others: a.others,
        broadcast: a.broadcast,
        sessions: a.sessions,
        ramp: Duration::from_secs(a.ramp),
        timeout: Duration::from_secs(a.timeout),
        server_pid: a.server_pid,
    })
    .await;
    println!("{}", serde_json::to_string(&report).expect("serializable"));
}
